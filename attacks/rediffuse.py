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

from benchmark.access import BlackBoxAccess, ThreatModel
from benchmark.classifiers import HeadConfig, fit_difference_head
from benchmark.interfaces import Attack, AttackContext
from benchmark.registry import ATTACKS


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
class ReDiffuse(Attack):
    threat_model = ThreatModel.BLACK_BOX
    Config = ReDiffuseConfig

    def expected_passes(self) -> tuple[int, int]:
        return (self.config.n * self.config.steps, 0)

    def difference(self, access: BlackBoxAccess, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        variations = [
            access.vary(images, self.config.t, self.config.steps, generator).cpu() for _ in range(self.config.n)
        ]
        return images - torch.stack(variations).mean(0)

    def calibrate(self, access: BlackBoxAccess, images: torch.Tensor, labels: np.ndarray, ctx: AttackContext) -> dict:
        if self.config.head != "classifier":
            return {}
        self.classifier, trained_on = fit_difference_head(
            self.config.classifier, self.difference(access, images, ctx.generator).abs(), labels, ctx.generator
        )
        return trained_on

    def score(self, access: BlackBoxAccess, images: torch.Tensor, ctx: AttackContext) -> np.ndarray:
        difference = self.difference(access, images, ctx.generator)
        if self.config.head == "classifier":
            return self.classifier.decision(difference.abs())
        return -(difference**2).flatten(1).sum(1).double().numpy()
