"""CLiD: Conditional Likelihood Discrepancy (Zhai et al., NeurIPS 2024, arXiv 2405.14800).

Text-to-image models overfit the conditional distribution p(x | c) more than the marginal p(x): a
member's own caption lowers its denoising error more than a weakened caption does. For image x with
caption c, at a few timesteps (one noise draw each, shared by every condition):

    L(x, c)  = mean_t ‖ε − ε_θ(x_t, t, c)‖²                         (conditional loss)
    D(x, c)  = mean_t mean_i (‖ε − ε_θ(x_t, t, c_i*)‖² − ‖ε − ε_θ(x_t, t, c)‖²)
    CLiD_th  = α·S(D) − (1 − α)·S(L)                                 (higher = member)

with S a robust scaling (median / IQR, scikit-learn's ``RobustScaler``) fitted on the calibration
split. The weakened conditions c_i* are the null caption and "importance-clipped" captions: the
caption with its most informative words removed. Defaults (timesteps 440/450/460, k = 4 weakened
conditions, so 3·(1 + 4) = 15 queries) follow the DiffAudit summary in attacks.md §8.

What could not be checked here: the paper's method section was not reachable offline, so two
readings are ours and are configurable: informativeness is a word's inverse document frequency
among the calibration captions, and α is chosen on the calibration split (``alpha`` when
``search_alpha`` is off). The vector variant (CLiD_vec, XGBoost) is not implemented.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.preprocessing import RobustScaler

from benchmark.api import ATTACKS, Attack, AttackContext, GrayBoxView, ThreatModel, choose_by_auc

ALPHA_GRID = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass
class CLiDConfig:
    timesteps: tuple[int, ...] = (440, 450, 460)
    weakened: int = 4
    alpha: float = 0.5
    search_alpha: bool = True

    def validate(self) -> None:
        if not self.timesteps or self.weakened < 1 or not 0 <= self.alpha <= 1:
            raise ValueError("timesteps must be non-empty, weakened ≥ 1 and alpha in [0, 1]")


def words(caption: str) -> list[str]:
    return re.findall(r"[\w']+", caption.lower())


def inverse_document_frequency(captions: Sequence[str]) -> dict[str, float]:
    counts = Counter(word for caption in captions for word in set(words(caption)))
    return {word: math.log((1 + len(captions)) / (1 + count)) + 1 for word, count in counts.items()}


def clip_important_words(caption: str, drop: int, idf: dict[str, float]) -> str:
    """``caption`` without its ``drop`` most informative words (highest IDF; unseen words count as
    most informative; ties go to the earlier word)."""
    tokens = words(caption)
    unseen = max(idf.values(), default=1.0) + 1
    ranked = sorted(range(len(tokens)), key=lambda i: (-idf.get(tokens[i], unseen), i))
    removed = set(ranked[:drop])
    return " ".join(token for i, token in enumerate(tokens) if i not in removed)


@ATTACKS.register(
    "clid", "CLiD_th: own-caption vs weakened-caption loss gap at t=440/450/460 (text-to-image; 15 queries)"
)
class CLiD(Attack):
    threat_model = ThreatModel.GRAY_BOX
    requires_captions = True
    Config = CLiDConfig

    def expected_passes(self) -> tuple[int, int]:
        return (len(self.config.timesteps) * (1 + self.config.weakened), 0)

    def needs_calibration(self) -> bool:
        return True

    def _weakened(self, captions: list[str], idf: dict[str, float]) -> list[list[str]]:
        """The null caption, then the captions with their 1, 2, ... most informative words clipped."""
        return [[""] * len(captions)] + [
            [clip_important_words(c, drop, idf) for c in captions] for drop in range(1, self.config.weakened)
        ]

    def _statistics(self, access: GrayBoxView, latents: torch.Tensor, generator: torch.Generator) -> np.ndarray:
        """Per image: (D, L), the mean weakened-minus-own loss gap and the own-caption loss."""
        captions = access.captions
        idf = self.idf_ if self.has_learned("idf_") else inverse_document_frequency(captions)
        weakened = self._weakened(captions, idf)
        gaps, losses = [], []
        for t in self.config.timesteps:
            noise = torch.randn(latents.shape, generator=generator)
            x_t = access.add_noise(latents, noise, t)

            def error(predicted: torch.Tensor, noise: torch.Tensor = noise) -> torch.Tensor:
                return ((predicted.cpu() - noise) ** 2).flatten(1).mean(1).double()

            own = error(access.predict_noise(x_t, t))
            others = torch.stack([error(access.predict_noise(x_t, t, captions=w)) for w in weakened])
            gaps.append((others - own).mean(0))
            losses.append(own)
        return torch.stack([torch.stack(gaps).mean(0), torch.stack(losses).mean(0)], dim=1).numpy()

    def _combine(self, statistics: np.ndarray, alpha: float, scalers: tuple[RobustScaler, RobustScaler]) -> np.ndarray:
        gap = scalers[0].transform(statistics[:, :1])[:, 0]
        loss = scalers[1].transform(statistics[:, 1:])[:, 0]
        return alpha * gap - (1 - alpha) * loss

    def calibrate(self, access: GrayBoxView, images: torch.Tensor, labels: np.ndarray, ctx: AttackContext) -> dict:
        self.idf_ = inverse_document_frequency(access.captions)
        statistics = self._statistics(access, images, ctx.generator)
        self.scalers_ = (RobustScaler().fit(statistics[:, :1]), RobustScaler().fit(statistics[:, 1:]))
        if not self.config.search_alpha:
            self.alpha_ = self.config.alpha
            return {"scaling": "fitted on the calibration split"}
        self.alpha_, table = choose_by_auc(ALPHA_GRID, lambda a: self._combine(statistics, a, self.scalers_), labels)
        return {"chosen": {"alpha": self.alpha_}, "table": table}

    def score(self, access: GrayBoxView, images: torch.Tensor, ctx: AttackContext) -> np.ndarray:
        """Without a calibration split (``audit``), the scaling is fitted on the scored statistics
        themselves: label-free and monotone in each statistic."""
        statistics = self._statistics(access, images, ctx.generator)
        if not self.has_learned("scalers_"):
            scalers = (RobustScaler().fit(statistics[:, :1]), RobustScaler().fit(statistics[:, 1:]))
            return self._combine(statistics, self.config.alpha, scalers)
        return self._combine(statistics, self.alpha_, self.scalers_)
