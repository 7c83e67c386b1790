"""Expand a suite into cells (dataset × seed × target × defense × attack) and run the missing ones."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.api.model import DiffusionModel
from benchmark.core import progress, runtime
from benchmark.core.configs import config_dict
from benchmark.core.errors import BenchmarkError
from benchmark.core.hashing import sha256_json
from benchmark.core.progress import console
from benchmark.core.protocol import Knowledge
from benchmark.records.builder import CellOrigin, build_card
from benchmark.records.card import CARD_SCHEMA_VERSION, Card
from benchmark.records.store import ResultStore
from benchmark.run.cache import Cache
from benchmark.run.executors import GroupJob, SubmititRunner, job_folder, merge_all_job_results
from benchmark.run.fid import FeatureExtractor, feature_extractor
from benchmark.run.scoring import CalibrationData, Labelled, run_attack
from benchmark.run.splits import Split, make_split
from benchmark.run.suite import Component, Suite, load_suite, registered_suites
from benchmark.run.targets import TrainedTarget, obtain
from benchmark.run.utility import UTILITY_VERSION, measure_utility


def target_key(dataset: Component, split_sha256: str, target: Component, defense: Component) -> dict:
    """Everything that changes a target's weights except the seed (which the target adds)."""
    return {
        "dataset": dataset.description,
        "split_sha256": split_sha256,
        "target": target.description["config"] | {"name": target.name},
        "defense": defense.description,
        **runtime.precision_key(),
    }


def pick(captions: list[str] | None, indices: np.ndarray) -> list[str] | None:
    """The captions of ``images[indices]`` (None for a dataset without captions)."""
    return None if captions is None else [captions[int(i)] for i in indices]


def unused_pool(split: Split, n_images: int) -> np.ndarray:
    """Indices no block of the split uses: the only images shadows and validation may draw from."""
    return np.setdiff1d(np.arange(n_images), np.concatenate(list(split.indices().values())))


def obtain_target(
    images: torch.Tensor, members: np.ndarray, pool: np.ndarray, key: dict, target: Component,
    defense: Component, seed: int, cache: Cache, captions: list[str] | None = None, public: np.ndarray | None = None,
) -> TrainedTarget:  # fmt: skip
    """Train (or load) a target on ``images[members]``; a defense that asks for validation images
    gets a seeded draw from ``pool``, one that pretrains on public data gets ``images[public]``,
    and both join the cache key."""
    instance = defense.instantiate()
    public_images = None
    if instance.uses_public_data():
        if public is None or not len(public):
            raise BenchmarkError(
                f"defense {defense.label} pretrains on public images but the split has none; set split: public: N"
            )
        public_images = images[public]
        key = key | {"public_sha256": sha256_json(public.tolist())}
    wanted = instance.validation_size()
    validation = None
    if wanted:
        if wanted > len(pool):
            raise BenchmarkError(
                f"defense {defense.label} needs {wanted} validation images but only {len(pool)} are outside "
                "the split; lower the split sizes or the defense's validation size"
            )
        chosen = np.sort(np.random.default_rng([seed, 0x7A11D]).choice(pool, wanted, replace=False))
        validation = images[chosen]
        key = key | {"validation_sha256": sha256_json(chosen.tolist())}
    member_captions = pick(captions, members)
    return obtain(target.instantiate(), images[members], instance, seed, cache, key, validation, member_captions,
                  public_images)  # fmt: skip


@dataclass
class ShadowTarget:
    """A target trained by the harness with the target's recipe and defense on ``members``, which,
    like ``nonmembers``, are dataset indices outside every block of the target's split."""

    model: DiffusionModel
    members: np.ndarray
    nonmembers: np.ndarray


def shadow_target(
    images: torch.Tensor, split: Split, dataset: Component, target: Component, defense: Component, seed: int,
    cache: Cache, captions: list[str] | None = None, index: int = 0,
) -> ShadowTarget:  # fmt: skip
    """Shadow ``index``: members and non-members drawn (seeded) from the images no block of the
    split uses, each as many as the target's training set; cached like targets."""
    pool = unused_pool(split, len(images))
    size = len(split.training)
    if 2 * size > len(pool):
        raise BenchmarkError(
            f"a shadow target needs {2 * size} images outside the split but only {len(pool)} are left; "
            "lower the split sizes, or use knowledge 'target-members'"
        )
    order = np.random.default_rng([seed, index, 0x5AD0]).permutation(pool)
    members, nonmembers = np.sort(order[:size]), np.sort(order[size : 2 * size])
    key = target_key(dataset, sha256_json({"shadow": index, "members": members}), target, defense)
    rest = np.setdiff1d(pool, order[: 2 * size])
    trained = obtain_target(images, members, rest, key, target, defense, seed, cache, captions, split.public)
    return ShadowTarget(trained.model, members, nonmembers)


@dataclass
class Cell:
    """One attack under one knowledge level: a card."""

    attack: Component
    knowledge: Knowledge

    @property
    def id(self) -> str:
        return f"{self.attack.label} ({self.knowledge})"


def cell_hash(
    suite: Suite, dataset: Component, target: Component, defense: Component, cell: Cell, seed: int
) -> str:
    """Everything that changes a cell's numbers; equal hashes mean a finished cell can be reused."""
    return sha256_json(
        {
            "knowledge": cell.knowledge,
            "shadows": suite.shadows if cell.knowledge == Knowledge.SHADOW else 0,
            "suite_version": suite.version,
            "dataset": dataset.description,
            "split": config_dict(suite.split_for(target)),
            "target": target.description,
            "defense": defense.description,
            "attack": cell.attack.description,
            "seed": seed,
            "scoring": config_dict(suite.scoring),
            "card_schema": CARD_SCHEMA_VERSION,
            **runtime.precision_key(),
        }
    )


@dataclass
class TargetCells:
    """One trained target and the cells still to run on it (everything one (dataset, seed,
    target, defense) combination shares)."""

    suite: Suite
    dataset: Component
    target: Component
    defense: Component
    seed: int
    images: torch.Tensor
    captions: list[str] | None
    split: Split
    cells: list[Cell]
    hashes: dict[str, str]
    features: Callable[[], FeatureExtractor | None]

    @property
    def where(self) -> str:
        return f"{self.dataset.label}/{self.target.label}/{self.defense.label}/seed {self.seed}"

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.dataset.label, self.target.label, self.defense.label, self.seed)


def _lazy_features(
    dataset: Component, images: torch.Tensor, labels: np.ndarray | None, cache: Cache
) -> Callable[[], FeatureExtractor | None]:
    """The dataset's FID feature network, trained or loaded only once a utility must be measured
    (a finished run touches no cache)."""

    @functools.cache
    def features() -> FeatureExtractor | None:
        return None if labels is None else feature_extractor(dataset.description, images, labels, cache)

    return features


def plan_groups(suite: Suite, cache: Cache) -> Iterator[TargetCells]:
    """Every cell group of the suite (one trained target and its attacks), loading each dataset once."""
    for dataset in suite.datasets:
        source = dataset.instantiate()
        images, labels, captions = source.load(), source.labels(), source.captions()
        features = _lazy_features(dataset, images, labels, cache)
        for seed in suite.seeds:
            for target in suite.targets:
                split = make_split(images, suite.split_for(target), seed)
                for defense in suite.defenses_for(seed):
                    cells = [Cell(a, k) for a in suite.attacks_for(defense) for k in suite.knowledge_for(a)]
                    hashes = {c.id: cell_hash(suite, dataset, target, defense, c, seed) for c in cells}
                    yield TargetCells(suite, dataset, target, defense, seed, images, captions, split, cells, hashes,
                                      features)  # fmt: skip


def planned_hashes(suite: Suite) -> set[str]:
    """The config hash of every cell the suite makes today: what a finished run (or a published
    board) of it holds, no more (cells of an older version of the file) and no less."""
    return {
        cell_hash(suite, dataset, target, defense, Cell(attack, knowledge), seed)
        for dataset in suite.datasets
        for seed in suite.seeds
        for target in suite.targets
        for defense in suite.defenses_for(seed)
        for attack in suite.attacks_for(defense)
        for knowledge in suite.knowledge_for(attack)
    }


def registered_plan(name: str) -> set[str] | None:
    """``planned_hashes`` of the registered suite ``name``; ``None`` when no suite file has that name."""
    return planned_hashes(load_suite(name)) if name in registered_suites() else None


def run_suite(suite: Suite, out: Path, cache: Cache, executor: SubmititRunner | None = None) -> list[Card]:
    """Run every unfinished cell: in this process, or (``executor``) as one job per cell group; the
    suite's cards (the page is the caller's: the runner knows nothing of reporting)."""
    store = ResultStore(out)
    if executor is not None:
        merge_all_job_results(store)
    per_target = sum(
        len(suite.knowledge_for(a))
        for seed in suite.seeds
        for defense in suite.defenses_for(seed)
        for a in suite.attacks_for(defense)
    )
    counter = {"done": 0, "total": len(suite.datasets) * len(suite.targets) * per_target}
    jobs: list[GroupJob] = []
    for group in plan_groups(suite, cache):
        pending = [c.id for c in group.cells if not store.has(group.hashes[c.id])]
        if executor is None or not pending:  # a group with only a stale utility is quick: done here
            run_group(group, store, cache, counter)
        else:
            jobs.append(GroupJob(suite, group.key, pending, job_folder(out, group.key), cache.root,
                                 executor.job_settings()))  # fmt: skip
    if jobs:
        console.print(f"{len(jobs)} cell groups to run as {executor.kind} jobs (logs: {out / 'jobs' / 'logs'})")
        executor.run(jobs, store, out / "jobs" / "logs", run_group_job)
    planned = planned_hashes(suite)
    return [card for card in store.cards if card.config_hash in planned]


def run_group_job(job: GroupJob) -> int:
    """The body of one job (runs in the worker process): the group's pending cells, into ``job.out``."""
    runtime.configure(**job.settings)
    store, cache = ResultStore(job.out), Cache(job.cache)
    for group in plan_groups(job.suite, cache):
        if group.key == job.key:
            group.cells = [c for c in group.cells if c.id in job.cells]
            run_group(group, store, cache, {"done": 0, "total": len(group.cells)})
            return len(store.cards)
    raise BenchmarkError(f"job {job.name}: the suite has no such cell group; rerun from the same suite file")


def run_group(cells: TargetCells, store: ResultStore, cache: Cache, counter: dict) -> None:
    """Obtain the target only if some attack on it is unfinished or its utility is stale, then
    measure what is missing."""
    pending = [c for c in cells.cells if not store.has(cells.hashes[c.id])]
    counter["done"] += len(cells.cells) - len(pending)
    finished = [c for c in store.cards if c.config_hash in set(cells.hashes.values())]
    stale = any(c.utility.get("version") != UTILITY_VERSION for c in finished)
    if not pending and not stale:
        return
    split, images = cells.split, cells.images
    console.print(f"[bold]{cells.where}[/]: obtaining target")
    progress.doing = f"obtaining the target {cells.where}"
    key = target_key(cells.dataset, split.sha256, cells.target, cells.defense)
    pool = unused_pool(split, len(images))
    captions = cells.captions
    trained = obtain_target(images, split.training, pool, key, cells.target, cells.defense, cells.seed, cache,
                            captions, split.public)  # fmt: skip
    progress.doing = f"measuring the utility of {cells.where}"

    def measure(_folder: Path, _scratch: Path) -> dict:
        return measure_utility(
            trained.model, images[split.training], images[split.calibration_nonmembers], images[split.nonmembers],
            cells.features(), (pick(captions, split.training), pick(captions, split.calibration_nonmembers)),
        )  # fmt: skip

    # measured once per target and stored beside it in the cache: a resumed run (at another thread
    # count, whose float reductions differ in the last digits) reads it back and rewrites no card
    utility_key = sha256_json({"target": trained.target_hash, "utility": UTILITY_VERSION})
    utility = cache.get_or_build("utility", utility_key, measure)[1]
    store.set_utility(trained.target_hash, utility)
    evaluated = _labelled(images, captions, split.members, split.nonmembers).prepared(trained.model)
    calibrations = _calibrations(cells, trained, cache)
    for cell in pending:
        progress.doing = f"scoring {cell.id} on {cells.where}"
        calibration = calibrations(cell.knowledge)
        result, arrays = run_attack(cell.attack, trained.model, evaluated, calibration, cells.seed, cells.suite.scoring)
        card = build_card(_origin(cells, trained, utility, cells.hashes[cell.id]), evaluated.labels, result)
        store.add(card, arrays)
        counter["done"] += 1
        console.print(
            f"  [{counter['done']}/{counter['total']}] {cell.id}: AUC {card.auc:.3f}, "
            f"TPR@1%FPR {card.tpr_at_1pct_fpr:.3f}, {card.queries_per_sample:g} queries/sample"
        )


# the attacker labels its own shadow's images, as many as it likes; beyond about a hundred per class
# they cost scoring time (a 1,024-member shadow would double a cell) without moving a threshold much
SHADOW_CALIBRATION_CAP = 128


def _at_most(indices: np.ndarray, seed: int) -> np.ndarray:
    if len(indices) <= SHADOW_CALIBRATION_CAP:
        return indices
    return np.sort(np.random.default_rng([seed, 0xCA1]).choice(indices, SHADOW_CALIBRATION_CAP, replace=False))


def _calibrations(cells: TargetCells, trained: TrainedTarget, cache: Cache) -> Callable[[str], CalibrationData]:
    """The attacker's calibration data per knowledge level, built (a shadow trained) on first use."""
    split, images, captions = cells.split, cells.images, cells.captions

    @functools.cache
    def calibration(knowledge: Knowledge) -> CalibrationData:
        if knowledge == Knowledge.NONE:
            return CalibrationData.nothing()
        if knowledge == Knowledge.TARGET_MEMBERS:
            members, nonmembers = split.calibration_members, split.calibration_nonmembers
            model, shadows = trained.model, 0
        else:
            progress.doing = f"obtaining the shadow target of {cells.where}"
            shadow = shadow_target(images, split, cells.dataset, cells.target, cells.defense, cells.seed, cache,
                                   captions)  # fmt: skip
            members, nonmembers = _at_most(shadow.members, cells.seed), _at_most(shadow.nonmembers, cells.seed)
            model, shadows = shadow.model, 1
        labelled = _labelled(images, captions, members, nonmembers).prepared(model)
        indices = {"members": members.tolist(), "nonmembers": nonmembers.tolist()}
        return CalibrationData(knowledge, model, labelled, indices, shadows)

    return calibration


def _labelled(
    images: torch.Tensor, captions: list[str] | None, members: np.ndarray, nonmembers: np.ndarray
) -> Labelled:
    return Labelled.of(images[members], images[nonmembers], pick(captions, np.concatenate([members, nonmembers])))


def _origin(cells: TargetCells, trained: TrainedTarget, utility: dict, config_hash: str) -> CellOrigin:
    return CellOrigin(
        suite=cells.suite.name,
        suite_version=cells.suite.version,
        dataset=cells.dataset.label,
        split_sha256=cells.split.sha256,
        target=cells.target.label,
        target_hash=trained.target_hash,
        defense=cells.defense.label,
        seed=cells.seed,
        config_hash=config_hash,
        utility=utility,
        provenance="reproduced",
        training=trained.training,
        dataset_config=cells.dataset.description["config"],
        split_sizes=config_dict(cells.suite.split_for(cells.target)),
        split_indices=cells.split.indices(),
        target_config=cells.target.description["config"],
        defense_config=cells.defense.description["config"],
    )
