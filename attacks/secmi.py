"""SecMI (Duan et al., ICML 2023): the t-error of a deterministic DDIM round trip.

Invert x0 with DDIM to t_sec − stride, step once forward to t_sec and once back, and measure how far
the round trip lands from where it started: members are reconstructed more faithfully. Our loop
makes t_sec/stride + 1 queries (11 at the defaults, as the official code). ``secmi_nn`` classifies
the per-pixel difference image with a CNN trained on the calibration split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from benchmark.api import ATTACKS, Attack, AttackContext, DifferenceHead, GrayBoxView, HeadConfig, ThreatModel


@dataclass
class SecMIConfig:
    t_sec: int = 100
    stride: int = 10
    head: Literal["threshold", "classifier"] = "threshold"
    classifier: HeadConfig = field(default_factory=HeadConfig)

    def validate(self) -> None:
        if self.stride < 1 or self.t_sec % self.stride or self.t_sec < self.stride:
            raise ValueError("t_sec must be a positive multiple of stride")


@ATTACKS.register("secmi", "SecMI-stat: DDIM round-trip error at t_sec=100, stride 10 (11 queries)")
@ATTACKS.register(
    "secmi_nn", "SecMI-NNs: CNN on the round-trip difference image, trained on calibration", head="classifier"
)
class SecMI(DifferenceHead, Attack[SecMIConfig]):
    threat_model = ThreatModel.GRAY_BOX

    def expected_passes(self) -> tuple[int, int]:
        return (self.config.t_sec // self.config.stride + 1, 0)

    def difference(self, access: GrayBoxView, images: torch.Tensor) -> torch.Tensor:
        """x̃_{t_sec−stride} minus its one-step-forward, one-step-back reconstruction."""
        stride, start = self.config.stride, self.config.t_sec - self.config.stride
        x = images
        for t in range(0, start, stride):
            eps = access.predict_noise(x, t)
            x = access.ddim_step(x.to(eps.device), t, t + stride, eps)
        x = x.to(access.device)
        forward = access.ddim_step(x, start, self.config.t_sec, access.predict_noise(x, start))
        back = access.ddim_step(forward, self.config.t_sec, start, access.predict_noise(forward, self.config.t_sec))
        return (x - back).cpu()

    def calibrate(self, access: GrayBoxView, images: torch.Tensor, labels: np.ndarray, ctx: AttackContext) -> dict:
        if not self.uses_classifier():
            return {}
        return self.fit_head(self.difference(access, images), labels, ctx.generator)

    def score(self, access: GrayBoxView, images: torch.Tensor, ctx: AttackContext) -> np.ndarray:
        difference = self.difference(access, images)
        return self.head_score(difference)
