"""NAIS: noise-aggregation analysis driven by small-noise injection (arXiv 2510.21783, §IV).

Inject noise once, query ε_θ along a short deterministic DDIM path (t, t−m, …, t−(k−1)m) and score
how tightly the k predictions aggregate: members' predictions agree more.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from benchmark.api import ATTACKS, Attack, AttackContext, BenchmarkError, ChoosesSettings, GrayBoxView, ThreatModel

Statistic = Literal["mse", "l2", "l1", "centroid", "density"]
STATISTICS: tuple[str, ...] = ("mse", "l2", "l1", "centroid", "density")


@dataclass
class NAISConfig:
    """Paper defaults: t=80, k=5, stride 10, Eq. 15's mean pairwise squared distance.

    ``noise`` resolves the paper's σ=0.1 ambiguity (attacks.md §1, ambiguity 1):
    ``schedule`` noises in closed form at ``t_inject`` (the §IV-A reading, default);
    ``fixed_sigma`` adds noise of std ``sigma`` to the image and queries it at ``t_inject``;
    ``sigma_matched_t`` injects at the timestep whose noise std √(1−ᾱ_t) is closest to ``sigma``.
    ``sigma_scale`` says whether ``sigma`` is quoted on [-1, 1] images or on [0, 1] pixels (×2).
    """

    t_inject: int = 80
    k: int = 5
    stride: int = 10
    statistic: Statistic = "mse"
    delta: float = 1e-8
    noise: Literal["schedule", "fixed_sigma", "sigma_matched_t"] = "schedule"
    sigma: float = 0.1
    sigma_scale: Literal["minus_one_to_one", "zero_to_one"] = "minus_one_to_one"
    search: bool = False
    search_t_inject: tuple[int, ...] = (10, 20, 40, 80, 150)
    search_stride: tuple[int, ...] = (1, 2, 5, 10)

    def validate(self) -> None:
        if self.k < 2:
            raise ValueError("k must be at least 2: aggregation needs two predictions")
        if self.stride < 1 or self.sigma <= 0 or self.delta <= 0:
            raise ValueError("stride, sigma and delta must be positive")
        if not self.search and self.noise != "sigma_matched_t" and self.t_inject - (self.k - 1) * self.stride < 0:
            raise ValueError(f"t_inject={self.t_inject} is too small for k={self.k} steps of stride {self.stride}")


def aggregation_score(predictions: torch.Tensor, statistic: str, delta: float) -> np.ndarray:
    """Score a (n, k, d) set of predictions; higher = more aggregated = member (Eqs. 14–17)."""
    e = predictions.double()
    k = e.shape[1]
    if statistic in ("mse", "l2"):
        distances = torch.cdist(e, e)
        spread = (distances**2 if statistic == "mse" else distances).sum((1, 2)) / k**2
    elif statistic == "l1":
        spread = torch.cdist(e, e, p=1).sum((1, 2)) / k**2
    elif statistic == "centroid":
        spread = (e - e.mean(1, keepdim=True)).norm(dim=2).mean(1)
    else:  # density: higher is more aggregated already, so it is not negated (ambiguity 3)
        distances = torch.cdist(e, e) + torch.diag(torch.full((k,), float("inf"), dtype=e.dtype))
        density = (1.0 / (distances.min(2).values + delta)).mean(1)
        return torch.log(density).numpy()
    return (-torch.log(spread + delta)).numpy()


@ATTACKS.register("nais", "NAIS with the paper's defaults: noise to t=80, 5 DDIM predictions stride 10")
@ATTACKS.register(
    "nais_cal",
    "NAIS with injection t, stride and statistic chosen on the calibration split",
    search=True,
)
@ATTACKS.register("nais_l1", "NAIS with the L1 average distance (Eq. 14), paper's other settings", statistic="l1")
@ATTACKS.register("nais_centroid", "NAIS with the centroid distance (Eq. 16)", statistic="centroid")
@ATTACKS.register(
    "nais_density", "NAIS with the average density (Eq. 17), higher density = member", statistic="density"
)
class NAIS(ChoosesSettings, Attack[NAISConfig]):
    threat_model = ThreatModel.GRAY_BOX

    def expected_passes(self) -> tuple[int, int]:
        return (self.config.k, 0)

    def searches(self) -> bool:
        return self.config.search

    def _injection(self, access: GrayBoxView, images: torch.Tensor, noise: torch.Tensor, settings) -> tuple:
        scale = 2.0 if settings.sigma_scale == "zero_to_one" else 1.0
        sigma = settings.sigma * scale
        if settings.noise == "schedule":
            return access.add_noise(images, noise, settings.t_inject), settings.t_inject
        if settings.noise == "fixed_sigma":
            return images + sigma * noise, settings.t_inject
        t = int(torch.argmin(((1 - access.alphas_cumprod).sqrt() - sigma).abs()))
        return access.add_noise(images, noise, t), t

    def predictions(self, access: GrayBoxView, images: torch.Tensor, noise: torch.Tensor, settings) -> torch.Tensor:
        """The k ε̂ along the deterministic DDIM path; k counted queries per image."""
        x, t = self._injection(access, images, noise, settings)
        if t - (settings.k - 1) * settings.stride < 0:
            raise BenchmarkError(f"injection at t={t} leaves no room for k={settings.k} steps of {settings.stride}")
        collected = []
        for i in range(settings.k):
            eps = access.predict_noise(x, t)
            collected.append(eps.flatten(1).cpu())
            if i < settings.k - 1:
                x = access.ddim_step(x.to(eps.device), t, t - settings.stride, eps)
                t -= settings.stride
        return torch.stack(collected, 1)

    def calibrate(self, access: GrayBoxView, images: torch.Tensor, labels: np.ndarray, ctx: AttackContext) -> dict:
        if not self.searches():
            return {}
        noise = torch.randn(images.shape, generator=ctx.generator)
        paths = [
            (t, stride)
            for t, stride in itertools.product(self.config.search_t_inject, self.config.search_stride)
            if t - (self.config.k - 1) * stride >= 0
        ]
        found: dict[tuple[int, int], torch.Tensor] = {}

        def scores_for(candidate: tuple[int, int, str]) -> np.ndarray:
            t, stride, statistic = candidate
            if (t, stride) not in found:  # one set of k queries per path serves every statistic
                settings = dataclasses.replace(self.config, t_inject=t, stride=stride, noise="schedule")
                found[(t, stride)] = self.predictions(access, images, noise, settings)
            return aggregation_score(found[(t, stride)], statistic, self.config.delta)

        candidates = [(t, stride, statistic) for t, stride in paths for statistic in STATISTICS]
        (t, stride, statistic), table = self.choose(
            candidates, scores_for, labels, lambda c: {"t_inject": c[0], "stride": c[1], "statistic": c[2],
                                                       "noise": "schedule"}
        )  # fmt: skip
        best = max(row["calibration_auc"] for row in table)
        return {
            "chosen": {"t_inject": t, "stride": stride, "statistic": statistic, "calibration_auc": best},
            "candidates": len(table),
        }

    def score(self, access: GrayBoxView, images: torch.Tensor, ctx: AttackContext) -> np.ndarray:
        noise = torch.randn(images.shape, generator=ctx.generator)
        found = self.predictions(access, images, noise, self.settings)
        return aggregation_score(found, self.settings.statistic, self.settings.delta)
