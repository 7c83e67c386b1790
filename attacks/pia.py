"""PIA and PIAN (Kong et al., ICLR 2024): proximal initialisation with the model's own ε_θ(x0, 0).

Noise x0 to t with ε₀ = ε_θ(x0, 0) instead of a random draw and measure ‖ε₀ − ε_θ(x_t, t)‖_p;
2 queries per image. The paper's defaults on DDPM: t=200, p=4. PIAN first rescales ε₀ so its mean
absolute value is that of standard normal noise, √(2/π), and uses it both to noise x0 and as the
target the prediction at t is compared with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from benchmark.api import ATTACKS, Attack, AttackContext, GrayBoxView, ThreatModel


@dataclass
class PIAConfig:
    t: int = 200
    p: float = 4.0
    normalize: bool = False

    def validate(self) -> None:
        if self.p <= 0:
            raise ValueError("p must be positive")


@ATTACKS.register("pia", "PIA: ε_θ(x0,0) as the noise, ℓ4 distance to ε_θ(x_t,t) at t=200 (2 queries)")
@ATTACKS.register("pian", "PIAN: PIA with ε_θ(x0,0) rescaled to the scale of N(0, I) noise (2 queries)", normalize=True)
class PIA(Attack[PIAConfig]):
    threat_model = ThreatModel.GRAY_BOX

    def expected_passes(self) -> tuple[int, int]:
        return (2, 0)

    def score(self, access: GrayBoxView, images: torch.Tensor, ctx: AttackContext) -> np.ndarray:
        eps0 = access.predict_noise(images, 0)
        noise = eps0
        if self.config.normalize:
            mean_abs = eps0.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, 1, 1, 1)
            noise = eps0 * math.sqrt(2 / math.pi) / mean_abs
        x_t = access.add_noise(images.to(eps0.device), noise, self.config.t)
        distance = (noise - access.predict_noise(x_t, self.config.t)).abs() ** self.config.p
        return -distance.flatten(1).sum(1).double().cpu().numpy()
