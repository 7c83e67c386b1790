"""Expand a suite into cells (dataset × seed × target × defense × attack) and run the missing ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from benchmark import progress, runtime
from benchmark.cache import Cache
from benchmark.errors import BenchmarkError
from benchmark.hashing import sha256_json
from benchmark.progress import console
from benchmark.render import write_outputs
from benchmark.results import CARD_SCHEMA_VERSION, ResultStore, software_versions
from benchmark.scoring import run_attack
from benchmark.splits import Split, make_split
from benchmark.suite import Component, Suite
from benchmark.utility import measure_utility


def labelled(members: torch.Tensor, nonmembers: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    labels = np.concatenate([np.ones(len(members), dtype=np.int64), np.zeros(len(nonmembers), dtype=np.int64)])
    return torch.cat([members, nonmembers]), labels


def target_key(dataset: Component, split_sha256: str, target: Component, defense: Component) -> dict:
    """Everything that changes a target's weights except the seed (which the target adds)."""
    return {
        "dataset": dataset.description,
        "split_sha256": split_sha256,
        "target": target.description["config"] | {"name": target.name},
        "defense": defense.description,
    }


def shadow_provider(
    images: torch.Tensor,
    split: Split,
    dataset: Component,
    target: Component,
    defense: Component,
    seed: int,
    cache: Cache,
):
    """Shadow targets for attacks that learn from them (GSA): the target's recipe on disjoint data.

    Shadow members and non-members are drawn from the images no block of the split uses, each
    shadow its own seeded draw of the same size as the target's training set; shadows are cached
    like targets.
    """
    used = np.concatenate(list(split.indices().values()))
    pool = np.setdiff1d(np.arange(len(images)), used)
    size = len(split.training)

    def shadows(n: int) -> list[tuple]:
        if 2 * size > len(pool):
            raise BenchmarkError(
                f"shadow targets need {2 * size} images outside the split but only {len(pool)} are left; "
                "lower the split sizes"
            )
        models = []
        for index in range(n):
            order = np.random.default_rng([seed, index, 0x5AD0]).permutation(pool)
            members, nonmembers = np.sort(order[:size]), np.sort(order[size : 2 * size])
            key = target_key(dataset, sha256_json({"shadow": index, "members": members}), target, defense)
            trained = target.instantiate().obtain(images[members], defense.instantiate(), seed, cache, key)
            models.append((trained.model, images[members], images[nonmembers]))
        return models

    return shadows


def cell_hash(
    suite: Suite, dataset: Component, target: Component, defense: Component, attack: Component, seed: int
) -> str:
    """Everything that changes a cell's numbers; equal hashes mean a finished cell can be reused."""
    return sha256_json(
        {
            "suite_version": suite.version,
            "dataset": dataset.description,
            "split": dataclasses.asdict(suite.split),
            "target": target.description,
            "defense": defense.description,
            "attack": attack.description,
            "seed": seed,
            "scoring": dataclasses.asdict(suite.scoring),
            "card_schema": CARD_SCHEMA_VERSION,
        }
    )


def run_suite(suite: Suite, out: Path, cache: Cache, console_table: bool = True) -> list[dict]:
    store = ResultStore(out)
    total = len(suite.datasets) * len(suite.seeds) * len(suite.targets) * len(suite.defenses) * len(suite.attacks)
    done = 0
    planned: set[str] = set()
    for dataset_spec in suite.datasets:
        images = dataset_spec.instantiate().load()
        for seed in suite.seeds:
            split = make_split(images, suite.split, seed)
            eval_images, eval_labels = labelled(images[split.members], images[split.nonmembers])
            cal_images, cal_labels = labelled(images[split.calibration_members], images[split.calibration_nonmembers])
            for target_spec in suite.targets:
                for defense_spec in suite.defenses:
                    hashes = {
                        a.label: cell_hash(suite, dataset_spec, target_spec, defense_spec, a, seed)
                        for a in suite.attacks
                    }
                    planned.update(hashes.values())
                    pending = [a for a in suite.attacks if not store.has(hashes[a.label])]
                    done += len(suite.attacks) - len(pending)
                    if not pending:
                        continue
                    where = f"{dataset_spec.label}/{target_spec.label}/{defense_spec.label}/seed {seed}"
                    console.print(f"[bold]{where}[/]: obtaining target")
                    progress.doing = f"obtaining the target {where}"
                    key = target_key(dataset_spec, split.sha256, target_spec, defense_spec)
                    defense = defense_spec.instantiate()
                    trained = target_spec.instantiate().obtain(images[split.training], defense, seed, cache, key)
                    utility = measure_utility(
                        trained.model, images[split.training], images[split.calibration_nonmembers]
                    )
                    for attack_spec in pending:
                        progress.doing = f"scoring {attack_spec.label} on {where}"
                        result, arrays = run_attack(
                            attack_spec,
                            trained.model,
                            eval_images,
                            eval_labels,
                            cal_images,
                            cal_labels,
                            seed,
                            suite.scoring,
                            shadow_provider(images, split, dataset_spec, target_spec, defense_spec, seed, cache),
                        )
                        card = {
                            "schema_version": CARD_SCHEMA_VERSION,
                            "suite": suite.name,
                            "suite_version": suite.version,
                            "dataset": dataset_spec.label,
                            "dataset_config": dataset_spec.description["config"],
                            "split_sha256": split.sha256,
                            "split_sizes": dataclasses.asdict(suite.split),
                            "split_indices": split.indices(),
                            "target": target_spec.label,
                            "target_config": target_spec.description["config"],
                            "target_hash": trained.target_hash,
                            "training": trained.training,
                            "defense": defense_spec.label,
                            "defense_config": defense_spec.description["config"],
                            "defense_costs": trained.training.get("defense_costs", {}),
                            "seed": seed,
                            "n_members": int(eval_labels.sum()),
                            "n_nonmembers": int((eval_labels == 0).sum()),
                            "n_calibration": len(cal_labels),
                            "utility": utility,
                            "config_hash": hashes[attack_spec.label],
                            "versions": software_versions(),
                            "device": str(runtime.device()),
                            "provenance": "reproduced",
                            **result,
                        }
                        store.add(card, arrays)
                        done += 1
                        console.print(
                            f"  [{done}/{total}] {attack_spec.label}: AUC {card['auc']:.3f}, "
                            f"TPR@1%FPR {card['tpr_at_1pct_fpr']:.3f}, {card['queries_per_sample']:g} queries/sample"
                        )
    cards = [card for card in store.cards if card["config_hash"] in planned]
    write_outputs(store.out, cards, store.load_scores, console_table)
    return cards
