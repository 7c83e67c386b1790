"""``audit``: attack a model the harness did not train, with the owner's member and non-member images.

A seeded fraction of each folder is held out for calibration (thresholds, timestep search); the
rest is evaluated, so the fitted threshold is never fitted on the images it is judged on. The
owner knows its training set, so the audit's knowledge is ``target-members`` (the stronger
assumption of the leaderboard's two) and every card and summary says so; with
``--calibration-fraction 0`` it is ``none`` and only fixed-setting attacks run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.api.registry import ATTACKS, DEFENSES, TARGETS
from benchmark.core.configs import build_config
from benchmark.core.errors import BenchmarkError
from benchmark.core.hashing import sha256_json
from benchmark.core.images import load_captions, load_image_folder
from benchmark.core.names import as_name
from benchmark.core.progress import console
from benchmark.core.protocol import Knowledge, ThreatModel
from benchmark.records.builder import CellOrigin, build_card
from benchmark.records.card import Card
from benchmark.records.store import ResultStore
from benchmark.report.render import write_outputs
from benchmark.run.scoring import CalibrationData, Labelled, run_attack
from benchmark.run.suite import Component, Scoring, baseline_defense
from benchmark.run.targets import TrainedTarget, obtain
from benchmark.run.utility import measure_utility
from benchmark.tools.audit_report import verdict, write_report
from benchmark.tools.exposure import exposure_table


def default_attacks(calibrated: bool = True, captioned: bool = False) -> list[str]:
    """Every gray-box attack (without calibration images, only those that need none; caption-
    conditioned ones only on a text-to-image model)."""
    return [
        e.name for e in ATTACKS.entries()
        if e.cls.threat_model is ThreatModel.GRAY_BOX and (captioned or not e.cls.requires_captions)
        and (calibrated or not _instance(e.name).needs_calibration())
    ]  # fmt: skip


def _instance(name: str):
    entry = ATTACKS.get(name)
    return entry.cls(build_config(entry.cls.Config, f"attack '{name}'", entry.preset))


def _hold_out(count: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(evaluated, calibration) positions in a folder of ``count`` images."""
    order = rng.permutation(count)
    n_cal = int(round(count * fraction))
    if fraction > 0 and (n_cal < 1 or count - n_cal < 1):
        raise BenchmarkError(
            "too few images to hold some out for calibration; add images or pass --calibration-fraction 0"
        )
    return order[n_cal:], order[:n_cal]


def run_audit(
    model_dir: Path,
    members_dir: Path,
    nonmembers_dir: Path,
    attack_names: list[str],
    out: Path,
    calibration_fraction: float = 0.25,
    seed: int = 0,
    scoring: Scoring | None = None,
    quiet: bool = False,
    leaderboard: Path = Path("leaderboard"),
    lora: Path | None = None,
    caption_column: str = "text",
) -> list[Card]:
    """Every attack on the owner's model, its cards and scores in ``out``, and the report
    (``report.md``/``report.html``/``exposure.csv``) a model owner acts on."""
    scoring = scoring or Scoring()
    if not 0 <= calibration_fraction < 1:
        raise BenchmarkError("--calibration-fraction must be in [0, 1)")
    trained, image_shape = _given_model(Path(model_dir), seed, lora)
    model = trained.model
    column = caption_column if model.text_conditioned else None
    images = AuditImages.load(members_dir, nonmembers_dir, image_shape, calibration_fraction, seed, column)
    captions = (images.member_captions, images.nonmember_captions) if model.text_conditioned else None
    utility = measure_utility(model, images.all_members, images.all_nonmembers, images.all_nonmembers, None,
                              captions)  # fmt: skip
    store = ResultStore(out)
    dataset = as_name(f"{Path(members_dir).name}_vs_{Path(nonmembers_dir).name}")  # card names are identifiers
    calibration = CalibrationData.nothing()
    if len(images.calibration):
        calibration = CalibrationData(Knowledge.TARGET_MEMBERS, model, images.calibration.prepared(model),
                                      images.calibration_files)  # fmt: skip
    evaluated = images.evaluated.prepared(model)  # VAE latents for a text-to-image model, encoded once
    cards, arrays_of = [], {}
    for name in attack_names or default_attacks(len(images.calibration) > 0, model.text_conditioned):
        entry = ATTACKS.get(name)
        component = Component("attacks", name, name, build_config(entry.cls.Config, f"attack '{name}'", entry.preset))
        result, arrays = run_attack(component, model, evaluated, calibration, seed, scoring)
        cell = {"audit": images.split_sha256, "target": trained.target_hash, "attack": component.description,
                "scoring": scoring.__dict__}  # fmt: skip
        origin = CellOrigin(suite="audit", suite_version=1, dataset=dataset, split_sha256=images.split_sha256,
                            target=as_name(Path(model_dir).name), target_hash=trained.target_hash, defense="unknown",
                            seed=seed, config_hash=sha256_json(cell), utility=utility, provenance="audit",
                            training=trained.training)  # fmt: skip
        card = build_card(origin, images.evaluated.labels, result)
        store.add(card, arrays)
        cards.append(card)
        arrays_of[card.attack] = arrays
    write_outputs(store.out, cards, store.load_scores, console_table=not quiet)
    evaluated_nonmembers = images.evaluated.images[torch.from_numpy(images.evaluated.labels == 0)]
    exposure, strongest, duplicates = exposure_table(
        cards, arrays_of, images.member_files, images.evaluated_members, images.nonmember_files,
        images.all_nonmembers, evaluated_nonmembers, images.all_members,
    )  # fmt: skip
    pictures = (images.evaluated_members, images.member_files, images.all_nonmembers, images.nonmember_files)
    _, page = write_report(store.out, cards, arrays_of, exposure, strongest, pictures, calibration_fraction,
                           leaderboard, duplicates)  # fmt: skip
    if not quiet:
        console.print(verdict(strongest))
        console.print(f"report: {page}  per-image exposure: {store.out / 'exposure.csv'}")
    return cards


def _given_model(model_dir: Path, seed: int, lora: Path | None) -> tuple[TrainedTarget, tuple[int, int, int]]:
    """The owner's model loaded as given through the registry (no defense can change it), and the
    pixel shape its images take. The target family is the one whose class ``audits`` the folder's
    layout (a StableDiffusionPipeline folder, or any other diffusers folder)."""
    families = [entry for entry in TARGETS.entries() if entry.cls.audits(model_dir)]
    if len(families) != 1:
        found = ", ".join(entry.name for entry in families) or "none"
        raise BenchmarkError(f"{model_dir}: {len(families)} target families read this folder ({found}); pass a "
                             "diffusers pipeline or UNet folder")  # fmt: skip
    (entry,) = families
    params = {"path": str(model_dir)}
    if lora is not None:
        if "lora" not in {f.name for f in dataclasses.fields(entry.cls.Config)}:
            raise BenchmarkError(f"--lora needs a StableDiffusionPipeline folder as --model; {model_dir} is not one")
        params["lora"] = str(lora)
    given = entry.cls(build_config(entry.cls.Config, "--model", params))
    baseline = DEFENSES.get(baseline_defense())
    defense = baseline.cls(build_config(baseline.cls.Config, f"defense {baseline.name}"))
    shape = given.image_shape()
    trained = obtain(given, torch.empty(0, *(shape or ())), defense, seed, None, {})
    return trained, shape or trained.model.sample_shape


@dataclass
class AuditImages:
    """The owner's two folders, each split by a seeded draw into evaluated and calibration images."""

    evaluated: Labelled
    calibration: Labelled
    all_members: torch.Tensor
    all_nonmembers: torch.Tensor
    split_sha256: str
    calibration_files: dict[str, list[str]]
    member_files: list[str]  # the evaluated members, in evaluation order
    evaluated_members: torch.Tensor
    nonmember_files: list[str]  # every non-member, in ``all_nonmembers`` order
    member_captions: list[str] | None = None  # every member's, in ``all_members`` order
    nonmember_captions: list[str] | None = None

    @classmethod
    def load(cls, members_dir: Path, nonmembers_dir: Path, shape: tuple[int, ...], fraction: float,
             seed: int, caption_column: str | None = None) -> AuditImages:  # fmt: skip
        """``caption_column``: read each image's caption from its folder's metadata.jsonl."""
        members, member_files = load_image_folder(members_dir, shape)
        nonmembers, nonmember_files = load_image_folder(nonmembers_dir, shape)
        member_captions = nonmember_captions = None
        if caption_column:
            member_captions = load_captions(members_dir, member_files, caption_column)
            nonmember_captions = load_captions(nonmembers_dir, nonmember_files, caption_column)
        rng = np.random.default_rng(seed)
        evaluated_members, cal_members = _hold_out(len(members), fraction, rng)
        evaluated_nonmembers, cal_nonmembers = _hold_out(len(nonmembers), fraction, rng)
        split = {"members": member_files, "nonmembers": nonmember_files, "seed": seed, "calibration_fraction": fraction}
        files = {"members": [member_files[i] for i in cal_members],
                 "nonmembers": [nonmember_files[i] for i in cal_nonmembers]}  # fmt: skip
        def labelled(member_rows: np.ndarray, nonmember_rows: np.ndarray) -> Labelled:
            captions = None
            if member_captions is not None:
                captions = [member_captions[i] for i in member_rows] + [nonmember_captions[i] for i in nonmember_rows]
            return Labelled.of(members[member_rows], nonmembers[nonmember_rows], captions)

        return cls(labelled(evaluated_members, evaluated_nonmembers), labelled(cal_members, cal_nonmembers), members,
                   nonmembers, sha256_json(split), files, [member_files[i] for i in evaluated_members],
                   members[evaluated_members], nonmember_files, member_captions, nonmember_captions)  # fmt: skip
