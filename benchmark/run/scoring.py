"""Run one attack against one model: calibrate, score with counted queries, compute metrics.

Shared by ``run`` (harness-trained targets) and ``audit`` (a model someone else trained), so
both report identical fields.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from benchmark.api.model import DiffusionModel
from benchmark.api.plugins import Attack, AttackContext, Shadow
from benchmark.api.views import AccessView
from benchmark.core.errors import BenchmarkError
from benchmark.core.hashing import sha256_json
from benchmark.report.metrics import evaluate
from benchmark.run.access import make_access
from benchmark.run.suite import Component, Scoring

ShadowProvider = Callable[[int], list[tuple[DiffusionModel, torch.Tensor, torch.Tensor]]]


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


def seeded_generator(*parts: object) -> torch.Generator:
    """A generator seeded from (seed, cell, purpose), so no two draws share a stream by accident."""
    return torch.Generator().manual_seed(int(sha256_json(list(parts))[:15], 16))


def run_attack(
    component: Component, model: DiffusionModel, evaluated: Labelled, calibration: Labelled, seed: int,
    scoring: Scoring, shadow_models: ShadowProvider | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:  # fmt: skip
    """The card's attack fields (metrics, queries, what calibration chose) and the raw scores."""
    attack = component.instantiate()
    access = make_access(model, attack.threat_model, scoring.batch_size)
    shadows = None if shadow_models is None else _shadows(shadow_models, attack, scoring.batch_size)
    chosen, cal_scores = _calibrate(attack, access, calibration, seed, component.label, shadows)
    access.use_captions(evaluated.captions)
    access.counter.reset()
    started = time.perf_counter()
    context = AttackContext(seeded_generator(seed, component.label, "score"))
    scores = _checked(attack.score(access, evaluated.images, context), component.label, len(evaluated))
    seconds = time.perf_counter() - started
    cal_labels = calibration.labels if len(calibration) else None
    result = evaluate(evaluated.labels, scores, seed, cal_labels, cal_scores, resamples=scoring.bootstrap)
    result |= {
        "attack": component.label,
        "attack_name": component.name,
        "attack_config": component.description["config"],
        "budget": component.budget,
        "calibration": chosen,
        "threat_model": attack.threat_model.value,
        "queries_per_sample": access.counter.forward_passes / len(evaluated),
        "backward_passes_per_sample": access.counter.backward_passes / len(evaluated),
        "expected_passes_per_sample": list(attack.expected_passes()),
        "seconds_per_sample": seconds / len(evaluated),
    }
    arrays = {"scores": scores, "labels": evaluated.labels, "calibration_scores": cal_scores,
              "calibration_labels": calibration.labels}  # fmt: skip
    return result, arrays


def _shadows(shadow_models: ShadowProvider, attack: Attack, batch_size: int) -> Callable[[int], list[Shadow]]:
    def shadows(n: int) -> list[Shadow]:
        """Shadow targets behind the attack's own threat model, with their own (uncounted) counters."""
        return [Shadow(make_access(m, attack.threat_model, batch_size), members, nonmembers)
                for m, members, nonmembers in shadow_models(n)]  # fmt: skip

    return shadows


def _calibrate(
    attack: Attack, access: AccessView, calibration: Labelled, seed: int, label: str,
    shadows: Callable[[int], list[Shadow]] | None,
) -> tuple[dict, np.ndarray]:  # fmt: skip
    """What ``calibrate`` chose, and the calibration images' scores the threshold is fitted on."""
    if not len(calibration):
        return {}, np.empty(0)
    access.use_captions(calibration.captions)
    context = AttackContext(seeded_generator(seed, label, "calibrate"), shadows)
    chosen = attack.calibrate(access, calibration.images, calibration.labels, context)
    scored = attack.score(access, calibration.images, AttackContext(seeded_generator(seed, label, "cal-score")))
    return chosen, _checked(scored, label, len(calibration))


def _checked(scores: np.ndarray, label: str, expected: int) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (expected,):
        raise BenchmarkError(f"attack '{label}' returned {scores.shape} scores for {expected} images; fix the attack")
    if not np.all(np.isfinite(scores)):
        bad = int((~np.isfinite(scores)).sum())
        raise BenchmarkError(f"attack '{label}' produced {bad} NaN/inf scores; check its parameters (e.g. delta, t)")
    return scores
