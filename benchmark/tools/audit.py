"""``audit``: attack a model the harness did not train, with the owner's member and non-member images.

A seeded fraction of each folder is held out for calibration (thresholds, timestep search); the
rest is evaluated, so the calibrated threshold is never fitted on the images it is judged on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.api.model import ThreatModel
from benchmark.api.registry import ATTACKS, DEFENSES, TARGETS
from benchmark.core import runtime
from benchmark.core.configs import build_config
from benchmark.core.errors import BenchmarkError
from benchmark.core.hashing import sha256_json
from benchmark.core.images import load_image_folder
from benchmark.report.card import CARD_SCHEMA_VERSION, Card
from benchmark.report.render import write_outputs
from benchmark.run.results import ResultStore, software_versions
from benchmark.run.scoring import Labelled, run_attack
from benchmark.run.suite import Component, Scoring, caption_conditioned_attacks
from benchmark.run.targets import TrainedTarget, obtain
from benchmark.run.utility import measure_utility


def default_attacks() -> list[str]:
    return [
        e.name for e in ATTACKS.entries() if e.cls.threat_model is ThreatModel.GRAY_BOX and not e.cls.requires_captions
    ]


def _hold_out(images: torch.Tensor, fraction: float, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    order = rng.permutation(len(images))
    n_cal = int(round(len(images) * fraction))
    if fraction > 0 and (n_cal < 1 or len(images) - n_cal < 1):
        raise BenchmarkError(
            "too few images to hold some out for calibration; add images or pass --calibration-fraction 0"
        )
    return images[order[n_cal:]], images[order[:n_cal]]


def run_audit(
    model_dir: Path,
    members_dir: Path,
    nonmembers_dir: Path,
    attack_names: list[str],
    out: Path,
    calibration_fraction: float = 0.25,
    seed: int = 0,
    scoring: Scoring | None = None,
) -> list[Card]:
    scoring = scoring or Scoring()
    if not 0 <= calibration_fraction < 1:
        raise BenchmarkError("--calibration-fraction must be in [0, 1)")
    trained = _given_model(model_dir, seed)
    images = AuditImages.load(members_dir, nonmembers_dir, trained.model.sample_shape, calibration_fraction, seed)
    utility = measure_utility(trained.model, images.all_members, images.all_nonmembers, images.all_nonmembers,
                              features=None)  # fmt: skip
    store = ResultStore(out)
    common = {
        "suite": "audit",
        "suite_version": 1,
        "dataset": Path(members_dir).name + "+" + Path(nonmembers_dir).name,
        "split_sha256": images.split_sha256,
        "target": Path(model_dir).name,
        "target_hash": trained.target_hash,
        "defense": "unknown",
        "seed": seed,
        "n_calibration": len(images.calibration),
        "utility": utility,
        "versions": software_versions(),
        "device": str(runtime.device()),
        "provenance": "audit",
    }
    cards = []
    for name in attack_names or default_attacks():
        entry = ATTACKS.get(name)
        component = Component("attacks", name, name, build_config(entry.cls.Config, f"attack '{name}'", entry.preset))
        result, arrays = run_attack(component, trained.model, images.evaluated, images.calibration, seed, scoring)
        cell = {"audit": images.split_sha256, "target": trained.target_hash, "attack": component.description,
                "scoring": scoring.__dict__}  # fmt: skip
        card = Card(**common, **result, config_hash=sha256_json(cell), schema_version=CARD_SCHEMA_VERSION,
                    n_members=int(images.evaluated.labels.sum()),
                    n_nonmembers=int((images.evaluated.labels == 0).sum()))  # fmt: skip
        store.add(card, arrays)
        cards.append(card)
    write_outputs(store.out, cards, store.load_scores, unshown=caption_conditioned_attacks())
    return cards


def _given_model(model_dir: Path, seed: int) -> TrainedTarget:
    """The owner's model, loaded as given through the registry (no defense can change it)."""
    target, none = TARGETS.get("diffusers_folder"), DEFENSES.get("none")
    given = target.cls(build_config(target.cls.Config, "--model", {"path": str(model_dir)}))
    return obtain(given, torch.empty(0), none.cls(build_config(none.cls.Config, "defense none")), seed, None, {})


@dataclass
class AuditImages:
    """The owner's two folders, each split by a seeded draw into evaluated and calibration images."""

    evaluated: Labelled
    calibration: Labelled
    all_members: torch.Tensor
    all_nonmembers: torch.Tensor
    split_sha256: str

    @classmethod
    def load(cls, members_dir: Path, nonmembers_dir: Path, shape: tuple[int, ...], fraction: float,
             seed: int) -> AuditImages:  # fmt: skip
        members, member_files = load_image_folder(members_dir, shape)
        nonmembers, nonmember_files = load_image_folder(nonmembers_dir, shape)
        rng = np.random.default_rng(seed)
        evaluated_members, cal_members = _hold_out(members, fraction, rng)
        evaluated_nonmembers, cal_nonmembers = _hold_out(nonmembers, fraction, rng)
        split = {"members": member_files, "nonmembers": nonmember_files, "seed": seed, "calibration_fraction": fraction}
        return cls(_labelled(evaluated_members, evaluated_nonmembers), _labelled(cal_members, cal_nonmembers),
                   members, nonmembers, sha256_json(split))  # fmt: skip


def _labelled(members: torch.Tensor, nonmembers: torch.Tensor) -> Labelled:
    labels = np.r_[np.ones(len(members), dtype=np.int64), np.zeros(len(nonmembers), dtype=np.int64)]
    return Labelled(torch.cat([members, nonmembers]), labels)
