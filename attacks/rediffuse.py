"""ReDiffuse (Li et al., ICML 2025): black-box, through an image-variation API only.

Ask for n variations of the image (noise to t=200, deterministic DDIM back to 0 in 2 steps),
average them and measure the distance to the query image: members come back closer. About
n × 2 = 20 passes per image, counted by the adapter behind the variation API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from benchmark.api import ATTACKS, Attack, AttackContext, BlackBoxView, DifferenceHead, HeadConfig, ThreatModel


@dataclass
class ReDiffuseConfig:
    t: int = 200
    steps: int = 2
    n: int = 10
    head: Literal["threshold", "classifier"] = "threshold"
    classifier: HeadConfig = field(default_factory=HeadConfig)

    def validate(self) -> None:
        if self.n < 1 or self.steps < 1 or self.t < self.steps:
            raise ValueError("n and steps must be ≥ 1 and t ≥ steps")


@ATTACKS.register("rediffuse", "ReDiffuse: distance to the mean of 10 variations at t=200, 2 DDIM steps (black-box)")
@ATTACKS.register(
    "rediffuse_nn", "ReDiffuse with a CNN head on the difference image, trained on calibration", head="classifier"
)
class ReDiffuse(DifferenceHead, Attack[ReDiffuseConfig]):
    threat_model = ThreatModel.BLACK_BOX

    def expected_passes(self) -> tuple[int, int]:
        return (self.config.n * self.config.steps, 0)

    def difference(self, access: BlackBoxView, images: torch.Tensor) -> torch.Tensor:
        variations = [access.vary(images, self.config.t, self.config.steps).cpu() for _ in range(self.config.n)]
        return images - torch.stack(variations).mean(0)

    def calibrate(self, access: BlackBoxView, images: torch.Tensor, labels: np.ndarray, ctx: AttackContext) -> dict:
        if not self.uses_classifier():
            return {}
        return self.fit_head(self.difference(access, images), labels, ctx.generator)

    def score(self, access: BlackBoxView, images: torch.Tensor, ctx: AttackContext) -> np.ndarray:
        difference = self.difference(access, images)
        return self.head_score(difference)
