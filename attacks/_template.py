"""TEMPLATE — copy to attacks/<your_attack>.py, rename, and fill in. Files starting with "_" are not loaded.

Say in this docstring what signal the attack reads and why members differ, and cite its paper.
Import only from ``benchmark.api``. Before opening a PR, ``python -m benchmark validate`` runs
``check_attack`` on it (null split near 0.5, counted = declared passes, determinism, threat model);
from Python: ``from benchmark.checks import check_attack; check_attack(MyAttack)``. Whatever
``calibrate`` learns goes in attributes ending in ``_`` (see ``ChoosesSettings`` and
``DifferenceHead`` in ``benchmark.api`` for the common cases).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.api import ATTACKS, Attack, AttackContext, GrayBoxView, ThreatModel


@dataclass
class MyAttackConfig:
    """The paper's defaults. Anything chosen from data is chosen in ``calibrate``, never in ``score``."""

    t: int = 100


@ATTACKS.register("my_attack", "one line for `python -m benchmark list`, with its query cost")
class MyAttack(Attack[MyAttackConfig]):
    threat_model = ThreatModel.GRAY_BOX  # the weakest access the attack needs; the adapter enforces it

    def calibrate(self, access: GrayBoxView, images: torch.Tensor, labels: np.ndarray, ctx: AttackContext) -> dict:
        """Optional: fit thresholds, timesteps or a classifier on labelled calibration images; store
        what it learns as ``self.<name>_`` and return what it chose, for the card."""
        return {}

    def expected_passes(self) -> tuple[int, int]:
        """(forward, backward) passes per image as the paper specifies; a test checks the counted ones."""
        return (1, 0)

    def score(self, access: GrayBoxView, images: torch.Tensor, ctx: AttackContext) -> np.ndarray:
        """One float per image, higher = member. Every ``predict_noise`` call is counted per image."""
        noise = torch.randn(images.shape, generator=ctx.generator)
        predicted = access.predict_noise(access.add_noise(images, noise, self.config.t), self.config.t)
        return -((predicted.cpu() - noise) ** 2).flatten(1).sum(1).double().numpy()
