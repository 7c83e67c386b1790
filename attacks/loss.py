"""Loss attack (Matsumoto et al. 2023; PIA's "NA" defaults): one noise draw at t=200, 1 query.

``loss_cal`` picks t on the calibration split instead (the Goldilocks zone moves with the target).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.api import ATTACKS, Attack, AttackContext, ChoosesSettings, GrayBoxView, ThreatModel


@dataclass
class LossConfig:
    t: int = 200
    search_t: tuple[int, ...] = ()


@ATTACKS.register("loss", "denoising loss ‖ε − ε_θ(x_t, t)‖² for one noise draw at t=200 (1 query)")
@ATTACKS.register(
    "loss_cal",
    "loss attack with t chosen on the calibration split (1 query)",
    search_t=(10, 25, 50, 100, 150, 200, 300, 400, 600),
)
class LossAttack(ChoosesSettings, Attack[LossConfig]):
    threat_model = ThreatModel.GRAY_BOX

    def expected_passes(self) -> tuple[int, int]:
        return (1, 0)

    def searches(self) -> bool:
        return bool(self.config.search_t)

    def _scores(self, access: GrayBoxView, images: torch.Tensor, t: int, noise: torch.Tensor) -> np.ndarray:
        predicted = access.predict_noise(access.add_noise(images, noise, t), t).cpu()
        return -((predicted - noise) ** 2).flatten(1).sum(1).double().numpy()

    def calibrate(self, access: GrayBoxView, images: torch.Tensor, labels: np.ndarray, ctx: AttackContext) -> dict:
        if not self.searches():
            return {}
        noise = torch.randn(images.shape, generator=ctx.generator)
        scores_for = lambda t: self._scores(access, images, t, noise)  # noqa: E731
        t, table = self.choose(self.config.search_t, scores_for, labels, lambda t: {"t": t})
        return {"chosen": {"t": t}, "table": table}

    def score(self, access: GrayBoxView, images: torch.Tensor, ctx: AttackContext) -> np.ndarray:
        noise = torch.randn(images.shape, generator=ctx.generator)
        return self._scores(access, images, self.settings.t, noise)
