"""Run one attack against one model: calibrate on what the attacker knows, score with counted
queries, compute metrics.

Shared by ``run`` (harness-trained targets) and ``audit`` (a model someone else trained), so
both report identical fields.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import mannwhitneyu
from sklearn.metrics import roc_auc_score

from benchmark.api.model import DiffusionModel
from benchmark.api.plugins import Attack, AttackContext
from benchmark.api.views import AccessView
from benchmark.core.errors import BenchmarkError
from benchmark.core.hashing import sha256_json
from benchmark.core.protocol import Knowledge
from benchmark.records.metrics import evaluate
from benchmark.run.access import bind_captions, counter_of, make_access, seed_variations
from benchmark.run.suite import Component, Scoring

ORIENTATION_ALPHA = 0.05


@dataclass
class Labelled:
    """Images with membership labels (1 = member) and, for a captioned dataset, their captions.

    ``images`` are what the model denoises (``model.prepare``: VAE latents for a text-to-image
    target, encoded once by the caller for all its attacks)."""

    images: torch.Tensor
    labels: np.ndarray
    captions: Sequence[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def of(cls, members: torch.Tensor, nonmembers: torch.Tensor, captions: Sequence[str] | None = None) -> Labelled:
        """Members first, then non-members (``captions`` in the same order)."""
        labels = np.concatenate([np.ones(len(members), dtype=np.int64), np.zeros(len(nonmembers), dtype=np.int64)])
        return cls(torch.cat([members, nonmembers]), labels, captions)

    def prepared(self, model: DiffusionModel) -> Labelled:
        """The same images as ``model`` denoises them (VAE latents for a latent model)."""
        return Labelled(model.prepare(self.images), self.labels, self.captions)

    def halves(self, seed: int) -> tuple[Labelled, Labelled]:
        """A seeded stratified split in two: one half to fit on, the other to fit thresholds on."""
        rng = np.random.default_rng([seed, 0xC0FF])
        first = np.zeros(len(self), dtype=bool)
        for cls in (0, 1):
            chosen = rng.permutation(np.flatnonzero(self.labels == cls))
            first[chosen[: (len(chosen) + 1) // 2]] = True
        return self.subset(first), self.subset(~first)

    def subset(self, mask: np.ndarray) -> Labelled:
        captions = None if self.captions is None else [c for c, keep in zip(self.captions, mask, strict=True) if keep]
        return Labelled(self.images[torch.from_numpy(mask)], self.labels[mask], captions)

    def counts(self) -> dict[str, int]:
        return {"members": int(self.labels.sum()), "nonmembers": int((self.labels == 0).sum())}


@dataclass
class CalibrationData:
    """What the attacker fits its choices on (the card's ``knowledge``).

    ``model`` is the model the labelled images are queried through: a shadow target under
    ``shadow``, the target itself under ``target-members``; None (and no images) under ``none``.
    ``indices`` are the dataset indices of those images, so a test can check what was touched.
    """

    knowledge: Knowledge
    model: DiffusionModel | None = None
    images: Labelled | None = None
    indices: dict[str, list[int]] | dict[str, list[str]] | None = None
    shadows: int = 0

    @classmethod
    def nothing(cls) -> CalibrationData:
        return cls(Knowledge.NONE)


def seeded_generator(*parts: object) -> torch.Generator:
    """A generator seeded from (seed, cell, purpose), so no two draws share a stream by accident."""
    return torch.Generator().manual_seed(int(sha256_json(list(parts))[:15], 16))


def run_attack(
    component: Component, model: DiffusionModel, evaluated: Labelled, calibration: CalibrationData, seed: int,
    scoring: Scoring,
) -> tuple[dict, dict[str, np.ndarray]]:  # fmt: skip
    """The card's attack fields (metrics, queries, what calibration chose) and the raw scores.

    Scores are oriented as calibration found them: multiplied by the card's ``orientation`` (−1
    when the attack's statistic ranks calibration members below non-members)."""
    attack = component.instantiate()
    access = make_access(model, attack.threat_model, scoring.batch_size)
    chosen, orientation, threshold_data = _calibrate(attack, calibration, seed, component.label, scoring)
    _bind(access, evaluated, seed, component.label, "score")
    counter = counter_of(access)
    counter.reset()
    started = time.perf_counter()
    context = AttackContext(seeded_generator(seed, component.label, "score"))
    scores = orientation * _checked(attack.score(access, evaluated.images, context), component.label, len(evaluated))
    seconds = time.perf_counter() - started
    cal_labels, cal_scores = threshold_data
    result = evaluate(evaluated.labels, scores, seed, cal_labels, cal_scores, resamples=scoring.bootstrap)
    result |= {
        "attack": component.label,
        "attack_name": component.name,
        "attack_config": component.description["config"],
        "budget": component.budget,
        "knowledge": calibration.knowledge,
        "shadows": calibration.shadows,
        "calibration_images": calibration.indices,
        "orientation": orientation,
        "calibration": chosen,
        "threat_model": attack.threat_model.value,
        "queries_per_sample": counter.forward_passes / len(evaluated),
        "backward_passes_per_sample": counter.backward_passes / len(evaluated),
        "expected_passes_per_sample": list(attack.expected_passes()),
        "seconds_per_sample": seconds / len(evaluated),
    }
    arrays = {"scores": scores, "labels": evaluated.labels}
    if cal_labels is not None:
        arrays |= {"calibration_scores": cal_scores, "calibration_labels": cal_labels}
    return result, arrays


def _bind(access: AccessView, images: Labelled, seed: int, label: str, purpose: str) -> None:
    """Before each calibrate/score call: the images' captions, and fresh variation-service noise."""
    bind_captions(access, images.captions)
    seed_variations(access, seeded_generator(seed, label, purpose, "variations"))


def _calibrate(
    attack: Attack, calibration: CalibrationData, seed: int, label: str, scoring: Scoring
) -> tuple[dict, int, tuple[np.ndarray | None, np.ndarray | None]]:
    """(what ``calibrate`` chose, the learned orientation, the labels and oriented scores the
    threshold is fitted on), through a view of the calibration model of the attack's own threat
    model (uncounted). An attack that learns from labelled images calibrates on one seeded
    half and its orientation and threshold come from the other half, so neither is fitted on
    images that chose a setting or trained a head."""
    if not calibration.knowledge.calibrates:
        if attack.needs_calibration():
            raise BenchmarkError(
                f"attack '{label}' learns from calibration data, which knowledge 'none' does not grant; "
                "run it under knowledge 'shadow' or 'target-members'"
            )
        return {}, 1, (None, None)
    data, model = calibration.images, calibration.model
    view = make_access(model, attack.threat_model, scoring.batch_size)
    chosen: dict = {}
    held_out = data
    if attack.needs_calibration():
        fit, held_out = data.halves(seed)
        _bind(view, fit, seed, label, "calibrate")
        context = AttackContext(seeded_generator(seed, label, "calibrate"))
        chosen = attack.calibrate(view, fit.images, fit.labels, context)
        chosen = {**chosen, "fitted_on": fit.counts()}
    _bind(view, held_out, seed, label, "cal-score")
    context = AttackContext(seeded_generator(seed, label, "cal-score"))
    scores = _checked(attack.score(view, held_out.images, context), label, len(held_out))
    orientation, evidence = _orientation(held_out.labels, scores)
    chosen["threshold_and_orientation_fitted_on"] = held_out.counts()
    chosen["orientation_evidence"] = evidence
    return chosen, orientation, (held_out.labels, orientation * scores)


def _orientation(labels: np.ndarray, scores: np.ndarray) -> tuple[int, dict]:
    """−1 when the calibration data show members scoring *lower* than non-members (one-sided
    Mann–Whitney U, p < 0.05), else the paper's sign: a flip needs evidence, so a dozen noisy
    calibration images cannot invert an attack that works."""
    members, nonmembers = scores[labels == 1], scores[labels == 0]
    if not len(members) or not len(nonmembers):  # a tiny audit folder may leave one class out
        return 1, {}
    p_lower = float(mannwhitneyu(members, nonmembers, alternative="less").pvalue)
    evidence = {"calibration_auc": float(roc_auc_score(labels, scores)), "p_members_score_lower": p_lower}
    return (-1 if p_lower < ORIENTATION_ALPHA else 1), evidence


def _checked(scores: np.ndarray, label: str, expected: int) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (expected,):
        raise BenchmarkError(f"attack '{label}' returned {scores.shape} scores for {expected} images; fix the attack")
    if not np.all(np.isfinite(scores)):
        bad = int((~np.isfinite(scores)).sum())
        raise BenchmarkError(f"attack '{label}' produced {bad} NaN/inf scores; check its parameters (e.g. delta, t)")
    return scores
