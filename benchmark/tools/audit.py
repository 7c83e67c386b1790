"""``audit``: attack a model the harness did not train, with the owner's member and non-member images.

A seeded fraction of each folder is held out for calibration (thresholds, timestep search); the
rest is evaluated, so the calibrated threshold is never fitted on the images it is judged on.
"""

from __future__ import annotations

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
from benchmark.run.scoring import run_attack
from benchmark.run.suite import Component, Scoring, caption_conditioned_attacks
from benchmark.run.targets import obtain
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
    target = TARGETS.get("diffusers_folder")
    given = target.cls(build_config(target.cls.Config, "--model", {"path": str(model_dir)}))
    as_given = DEFENSES.get("none").cls(build_config(DEFENSES.get("none").cls.Config, "defense none"))
    trained = obtain(given, torch.empty(0), as_given, seed, None, {})
    shape = trained.model.sample_shape
    members, member_files = load_image_folder(members_dir, shape)
    nonmembers, nonmember_files = load_image_folder(nonmembers_dir, shape)
    utility = measure_utility(trained.model, members, nonmembers, nonmembers, features=None)
    rng = np.random.default_rng(seed)
    members, cal_members = _hold_out(members, calibration_fraction, rng)
    nonmembers, cal_nonmembers = _hold_out(nonmembers, calibration_fraction, rng)
    images = torch.cat([members, nonmembers])
    labels = np.r_[np.ones(len(members), dtype=np.int64), np.zeros(len(nonmembers), dtype=np.int64)]
    cal_images = torch.cat([cal_members, cal_nonmembers])
    cal_labels = np.r_[np.ones(len(cal_members), dtype=np.int64), np.zeros(len(cal_nonmembers), dtype=np.int64)]
    split_sha = sha256_json(
        {
            "members": member_files,
            "nonmembers": nonmember_files,
            "seed": seed,
            "calibration_fraction": calibration_fraction,
        }
    )
    store = ResultStore(out)
    cards = []
    for name in attack_names or default_attacks():
        entry = ATTACKS.get(name)
        component = Component("attacks", name, name, build_config(entry.cls.Config, f"attack '{name}'", entry.preset))
        result, arrays = run_attack(component, trained.model, images, labels, cal_images, cal_labels, seed, scoring)
        card = Card(
            **{
                "schema_version": CARD_SCHEMA_VERSION,
                "suite": "audit",
                "suite_version": 1,
                "dataset": Path(members_dir).name + "+" + Path(nonmembers_dir).name,
                "split_sha256": split_sha,
                "target": Path(model_dir).name,
                "target_hash": trained.target_hash,
                "defense": "unknown",
                "seed": seed,
                "n_members": len(members),
                "n_nonmembers": len(nonmembers),
                "n_calibration": len(cal_labels),
                "utility": utility,
                "config_hash": sha256_json(
                    {
                        "audit": split_sha,
                        "target": trained.target_hash,
                        "attack": component.description,
                        "scoring": scoring.__dict__,
                    }
                ),
                "versions": software_versions(),
                "device": str(runtime.device()),
                "provenance": "audit",
                **result,
            }
        )
        store.add(card, arrays)
        cards.append(card)
    write_outputs(store.out, cards, store.load_scores, unshown=caption_conditioned_attacks())
    return cards
