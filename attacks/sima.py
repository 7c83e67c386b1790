"""SimA (arXiv 2509.25003): the norm of the predicted noise on the clean image, ‖ε_θ(x0, t)‖₄.

For a training point the optimal denoiser's output shrinks toward zero as t → 0; for held-out
points it stays away. The paper picks t in hindsight on the test data; here t is chosen on the
calibration split. ``sima_mc`` averages the statistic over n noisy draws x_t (n queries).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.api import ATTACKS, Attack, AttackContext, ChoosesSettings, GrayBoxView, ThreatModel


@dataclass
class SimAConfig:
    t: int = 100
    p: float = 4.0
    mc_draws: int = 0
    search_t: tuple[int, ...] = (10, 20, 30, 50, 75, 100, 150, 200, 250, 300)

    def validate(self) -> None:
        if self.mc_draws < 0 or self.p <= 0:
            raise ValueError("mc_draws must be ≥ 0 and p positive")


@ATTACKS.register("sima", "SimA: ‖ε_θ(x0, t)‖₄ on the clean image, t chosen on calibration (1 query)")
@ATTACKS.register("sima_mc", "SimA-MC: ‖ε_θ(x_t, t)‖₄ averaged over 10 noise draws, t calibrated", mc_draws=10)
class SimA(ChoosesSettings, Attack[SimAConfig]):
    threat_model = ThreatModel.GRAY_BOX

    def expected_passes(self) -> tuple[int, int]:
        return (max(1, self.config.mc_draws), 0)

    def searches(self) -> bool:
        return bool(self.config.search_t)

    def _scores(self, access: GrayBoxView, images: torch.Tensor, t: int, noises: list[torch.Tensor]) -> np.ndarray:
        inputs = [access.add_noise(images, noise, t) for noise in noises] or [images]
        norms = [(access.predict_noise(x, t).abs() ** self.config.p).flatten(1).sum(1) for x in inputs]
        return -torch.stack(norms).mean(0).double().cpu().numpy()

    def _noises(self, images: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        return [torch.randn(images.shape, generator=generator) for _ in range(self.config.mc_draws)]

    def calibrate(self, access: GrayBoxView, images: torch.Tensor, labels: np.ndarray, ctx: AttackContext) -> dict:
        if not self.searches():
            return {}
        noises = self._noises(images, ctx.generator)
        scores_for = lambda t: self._scores(access, images, t, noises)  # noqa: E731
        t, table = self.choose(self.config.search_t, scores_for, labels, lambda t: {"t": t})
        return {"chosen": {"t": t}, "table": table}

    def score(self, access: GrayBoxView, images: torch.Tensor, ctx: AttackContext) -> np.ndarray:
        return self._scores(access, images, self.settings.t, self._noises(images, ctx.generator))
