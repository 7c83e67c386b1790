"""Loss attack (Matsumoto et al. 2023; PIA's "NA" defaults): one noise draw at t=200, 1 query."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.access import GrayBoxAccess, ThreatModel
from benchmark.interfaces import Attack, AttackContext
from benchmark.registry import ATTACKS


@dataclass
class LossConfig:
    t: int = 200


@ATTACKS.register("loss", "denoising loss ‖ε − ε_θ(x_t, t)‖² for one noise draw at t=200 (1 query)")
class LossAttack(Attack):
    threat_model = ThreatModel.GRAY_BOX
    Config = LossConfig

    def score(self, access: GrayBoxAccess, images: torch.Tensor, ctx: AttackContext) -> np.ndarray:
        noise = torch.randn(images.shape, generator=ctx.generator)
        predicted = access.predict_noise(access.add_noise(images, noise, self.config.t), self.config.t).cpu()
        return -((predicted - noise) ** 2).flatten(1).sum(1).double().numpy()
