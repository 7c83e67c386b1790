"""CLiD: Conditional Likelihood Discrepancy (Zhai et al., NeurIPS 2024, arXiv 2405.14800).

Text-to-image models overfit the conditional distribution p(x | c) more than the marginal p(x): a
member's own caption lowers its denoising error more than a weakened caption does. For image x with
caption c, at a few timesteps (one noise draw each, shared by every condition):

    L(x, c)  = mean_t ‖ε − ε_θ(x_t, t, c)‖²                         (conditional loss)
    D(x, c)  = mean_t mean_i (‖ε − ε_θ(x_t, t, c_i*)‖² − ‖ε − ε_θ(x_t, t, c)‖²)
    CLiD_th  = α·S(D) − (1 − α)·S(L)                                 (higher = member)

with S a robust scaling (median / IQR, scikit-learn's ``RobustScaler``), both S and α fitted on the
attacker's calibration data (§4.1 takes α and the threshold from a shadow model; the harness's
knowledge ``shadow`` does the same). The weakened conditions c_i* are, as Appendix D.2 specifies,
the null caption and the caption with its top 30%, 50% and 70% most important words replaced by
the tokenizer's pad token (positions kept, the other words verbatim). Importance comes from
attention attribution (the paper uses PromptCharm, i.e. DAAM): the share of the UNet's
cross-attention each word received on the own-caption queries, which this attack makes anyway, so
the attribution costs no extra query. ``importance: idf`` ranks words by their inverse document
frequency among the calibration captions instead (a fallback that needs only the captions).
Defaults: timesteps 440/450/460 and four weakened conditions, so 3·(1 + 4) = 15 queries (§5.1 and
the DiffAudit summary in attacks.md §8). The vector variant (CLiD_vec, XGBoost) is not implemented.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from sklearn.preprocessing import RobustScaler

from benchmark.api import ATTACKS, Attack, AttackContext, GrayBoxView, ThreatModel, choose_by_auc

ALPHA_GRID = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass
class CLiDConfig:
    timesteps: tuple[int, ...] = (440, 450, 460)
    clip_fractions: tuple[float, ...] = (0.3, 0.5, 0.7)
    importance: Literal["attention", "idf"] = "attention"
    alpha: float = 0.5
    search_alpha: bool = True

    def validate(self) -> None:
        if not self.timesteps or not 0 <= self.alpha <= 1:
            raise ValueError("timesteps must be non-empty and alpha in [0, 1]")
        if not all(0 < f <= 1 for f in self.clip_fractions):
            raise ValueError("clip_fractions must lie in (0, 1]")


def _key(word: str) -> str:
    """A word as IDF counts it: lowercased, without surrounding punctuation."""
    return word.lower().strip(".,;:!?\"'()[]")


def inverse_document_frequency(captions: Sequence[str]) -> dict[str, float]:
    counts = Counter(key for caption in captions for key in {_key(w) for w in caption.split()})
    return {word: math.log((1 + len(captions)) / (1 + count)) + 1 for word, count in counts.items()}


def idf_importance(caption: str, idf: dict[str, float]) -> np.ndarray:
    """Each word's IDF (a word no calibration caption had counts as the most informative)."""
    unseen = max(idf.values(), default=1.0) + 1
    return np.asarray([idf.get(_key(word), unseen) for word in caption.split()])


def pad_important_words(caption: str, importance: Sequence[float], fraction: float, pad_token: str) -> str:
    """``caption`` with its round(fraction × words) most important words (at least one) replaced by
    ``pad_token``: positions kept, every other word verbatim (App. D.2); ties go to the earlier word."""
    words = caption.split()
    if not words:
        return caption
    count = max(1, int(fraction * len(words) + 0.5))
    ranked = sorted(range(len(words)), key=lambda i: (-importance[i], i))
    padded = set(ranked[:count])
    return " ".join(pad_token if i in padded else word for i, word in enumerate(words))


@ATTACKS.register(
    "clid", "CLiD_th: own vs null and 30/50/70%-padded caption loss gap at t=440/450/460 (text-to-image; 15 queries)"
)
class CLiD(Attack[CLiDConfig]):
    threat_model = ThreatModel.GRAY_BOX
    requires_captions = True

    def expected_passes(self) -> tuple[int, int]:
        return (len(self.config.timesteps) * (2 + len(self.config.clip_fractions)), 0)

    def needs_calibration(self) -> bool:
        return True

    def weakened(self, captions: list[str], importance: list[np.ndarray], pad_token: str) -> list[list[str]]:
        """The null caption, then each caption with its top 30/50/70% words padded out."""
        return [[""] * len(captions)] + [
            [pad_important_words(c, w, f, pad_token) for c, w in zip(captions, importance, strict=True)]
            for f in self.config.clip_fractions
        ]

    def _statistics(self, access: GrayBoxView, latents: torch.Tensor, generator: torch.Generator) -> np.ndarray:
        """Per image: (D, L), the mean weakened-minus-own loss gap and the own-caption loss. The own
        caption is queried first at every timestep (recording attention); the weakened ones after."""
        captions = access.captions
        noises = [torch.randn(latents.shape, generator=generator) for _ in self.config.timesteps]
        noisy = [access.add_noise(latents, noise, t) for noise, t in zip(noises, self.config.timesteps, strict=True)]
        own, attention = [], []
        for x_t, t, noise in zip(noisy, self.config.timesteps, noises, strict=True):
            if self.config.importance == "attention":
                eps, shares = access.predict_noise_with_attention(x_t, t)
                attention.append(shares)
            else:
                eps = access.predict_noise(x_t, t)
            own.append(_error(eps, noise))
        if self.config.importance == "attention":
            importance = [np.sum(per_image, axis=0) for per_image in zip(*attention, strict=True)]
        else:
            idf = self.idf_ if self.has_learned("idf_") else inverse_document_frequency(captions)
            importance = [idf_importance(c, idf) for c in captions]
        conditions = self.weakened(captions, importance, access.pad_token)
        gaps = []
        for x_t, t, noise, loss in zip(noisy, self.config.timesteps, noises, own, strict=True):
            others = torch.stack([_error(access.predict_noise(x_t, t, captions=c), noise) for c in conditions])
            gaps.append((others - loss).mean(0))
        return torch.stack([torch.stack(gaps).mean(0), torch.stack(own).mean(0)], dim=1).numpy()

    def _combine(self, statistics: np.ndarray, alpha: float, scalers: tuple[RobustScaler, RobustScaler]) -> np.ndarray:
        gap = scalers[0].transform(statistics[:, :1])[:, 0]
        loss = scalers[1].transform(statistics[:, 1:])[:, 0]
        return alpha * gap - (1 - alpha) * loss

    def calibrate(self, access: GrayBoxView, images: torch.Tensor, labels: np.ndarray, ctx: AttackContext) -> dict:
        if self.config.importance == "idf":
            self.idf_ = inverse_document_frequency(access.captions)
        statistics = self._statistics(access, images, ctx.generator)
        self.scalers_ = (RobustScaler().fit(statistics[:, :1]), RobustScaler().fit(statistics[:, 1:]))
        if not self.config.search_alpha:
            self.alpha_ = self.config.alpha
            return {"scaling": "fitted on the calibration split"}
        self.alpha_, table = choose_by_auc(ALPHA_GRID, lambda a: self._combine(statistics, a, self.scalers_), labels)
        return {"chosen": {"alpha": self.alpha_}, "table": table}

    def score(self, access: GrayBoxView, images: torch.Tensor, ctx: AttackContext) -> np.ndarray:
        return self._combine(self._statistics(access, images, ctx.generator), self.alpha_, self.scalers_)


def _error(predicted: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return ((predicted.cpu() - noise) ** 2).flatten(1).mean(1).double()
