"""PIA (Kong et al., ICLR 2024): proximal initialisation with the model's own ε_θ(x0, 0).

Noise x0 to t with ε₀ = ε_θ(x0, 0) instead of a random draw and measure ‖ε₀ − ε_θ(x_t, t)‖_p;
2 queries per image. The paper's defaults on DDPM: t=200, p=4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.access import GrayBoxAccess, ThreatModel
from benchmark.interfaces import Attack, AttackContext
from benchmark.registry import ATTACKS


@dataclass
class PIAConfig:
    t: int = 200
    p: float = 4.0

    def validate(self) -> None:
        if self.p <= 0:
            raise ValueError("p must be positive")


@ATTACKS.register("pia", "PIA: ε_θ(x0,0) as the noise, ℓ4 distance to ε_θ(x_t,t) at t=200 (2 queries)")
class PIA(Attack):
    threat_model = ThreatModel.GRAY_BOX
    Config = PIAConfig

    def score(self, access: GrayBoxAccess, images: torch.Tensor, ctx: AttackContext) -> np.ndarray:
        eps0 = access.predict_noise(images, 0)
        x_t = access.add_noise(images.to(eps0.device), eps0, self.config.t)
        distance = (eps0 - access.predict_noise(x_t, self.config.t)).abs() ** self.config.p
        return -distance.flatten(1).sum(1).double().cpu().numpy()
