"""Run one attack against one model: calibrate, score with counted queries, compute metrics.

Shared by ``run`` (harness-trained targets) and ``audit`` (a model someone else trained), so
both report identical fields.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from benchmark.api.model import DiffusionModel
from benchmark.api.plugins import AttackContext, Shadow
from benchmark.core.errors import BenchmarkError
from benchmark.core.hashing import sha256_json
from benchmark.report.metrics import evaluate
from benchmark.run.access import make_access
from benchmark.run.suite import Component, Scoring

ShadowProvider = Callable[[int], list[tuple[DiffusionModel, torch.Tensor, torch.Tensor]]]


def seeded_generator(*parts: object) -> torch.Generator:
    """A generator seeded from (seed, cell, purpose), so no two draws share a stream by accident."""
    return torch.Generator().manual_seed(int(sha256_json(list(parts))[:15], 16))


def run_attack(
    component: Component,
    model: DiffusionModel,
    images: torch.Tensor,
    labels: np.ndarray,
    cal_images: torch.Tensor,
    cal_labels: np.ndarray,
    seed: int,
    scoring: Scoring,
    shadow_models: ShadowProvider | None = None,
    captions: Sequence[str] | None = None,
    cal_captions: Sequence[str] | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """``images`` are what the model denoises (``model.prepare``: VAE latents for a text-to-image
    target, encoded once by the caller for all its attacks); ``captions``/``cal_captions`` are
    theirs, bound to the access view of a text-conditioned target."""
    attack = component.instantiate()
    access = make_access(model, attack.threat_model, scoring.batch_size)
    shadows = None
    if shadow_models is not None:

        def shadows(n: int) -> list[Shadow]:
            """Shadow targets behind the attack's own threat model, with their own (uncounted) counters."""
            return [
                Shadow(make_access(m, attack.threat_model, scoring.batch_size), members, nonmembers)
                for m, members, nonmembers in shadow_models(n)
            ]

    calibration: dict = {}
    cal_scores = np.empty(0)
    if len(cal_images):
        access.use_captions(cal_captions)
        calibration = attack.calibrate(
            access, cal_images, cal_labels, AttackContext(seeded_generator(seed, component.label, "calibrate"), shadows)
        )
        cal_scores = _checked(
            attack.score(access, cal_images, AttackContext(seeded_generator(seed, component.label, "cal-score"))),
            component.label,
            len(cal_images),
        )
    access.use_captions(captions)
    access.counter.reset()
    started = time.perf_counter()
    scores = _checked(
        attack.score(access, images, AttackContext(seeded_generator(seed, component.label, "score"))),
        component.label,
        len(images),
    )
    seconds = time.perf_counter() - started
    queries = access.counter.forward_passes / len(images)
    result = evaluate(
        labels, scores, seed, cal_labels if len(cal_images) else None, cal_scores, resamples=scoring.bootstrap
    )
    result.update(
        {
            "attack": component.label,
            "attack_name": component.name,
            "attack_config": component.description["config"],
            "budget": component.budget,
            "calibration": calibration,
            "threat_model": attack.threat_model.value,
            "queries_per_sample": queries,
            "backward_passes_per_sample": access.counter.backward_passes / len(images),
            "expected_passes_per_sample": list(attack.expected_passes()),
            "seconds_per_sample": seconds / len(images),
        }
    )
    arrays = {"scores": scores, "labels": labels, "calibration_scores": cal_scores, "calibration_labels": cal_labels}
    return result, arrays


def _checked(scores: np.ndarray, label: str, expected: int) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (expected,):
        raise BenchmarkError(f"attack '{label}' returned {scores.shape} scores for {expected} images; fix the attack")
    if not np.all(np.isfinite(scores)):
        bad = int((~np.isfinite(scores)).sum())
        raise BenchmarkError(f"attack '{label}' produced {bad} NaN/inf scores; check its parameters (e.g. delta, t)")
    return scores
