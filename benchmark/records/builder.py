"""The one place a result card is assembled, for the runner's cells and for ``audit``'s.

Both describe a cell the same way (what was trained, on which split, with which software on which
device); only what they know of the model differs (an audited model has no recipe or defense). One
function keeps the fields they share from drifting apart.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

import numpy as np

import benchmark
from benchmark.core import runtime
from benchmark.records.card import CARD_SCHEMA_VERSION, Card

_VERSIONED = ("torch", "diffusers", "accelerate", "scikit-learn", "numpy", "opacus")


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "benchmark": benchmark.__version__}
    for package in _VERSIONED:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def device_description() -> str:
    """The device and the numeric precision the numbers were computed in (e.g. ``cpu, fp32``)."""
    return str(runtime.device()) + "".join(f", {v}" for v in runtime.precision_key().values())


@dataclass(frozen=True)
class CellOrigin:
    """What produced a cell's model and split. The recipe fields stay ``None`` for a model the
    harness did not train (an audit), and are then left off the card."""

    suite: str
    suite_version: int
    dataset: str
    split_sha256: str
    target: str
    target_hash: str
    defense: str
    seed: int
    config_hash: str
    utility: dict[str, Any]
    provenance: Literal["reproduced", "audit"]
    training: dict[str, Any] | None = None
    dataset_config: dict[str, Any] | None = None
    split_sizes: dict[str, Any] | None = None
    split_indices: dict[str, list[int]] | None = None
    target_config: dict[str, Any] | None = None
    defense_config: dict[str, Any] | None = None


_RECIPE = ("training", "dataset_config", "split_sizes", "split_indices", "target_config", "defense_config")


def build_card(origin: CellOrigin, labels: np.ndarray, result: dict[str, Any]) -> Card:
    """A card from the cell's origin, the evaluated images' labels and ``run_attack``'s result."""
    recipe = {name: getattr(origin, name) for name in _RECIPE if getattr(origin, name) is not None}
    training = origin.training or {}
    return Card(
        schema_version=CARD_SCHEMA_VERSION,
        suite=origin.suite,
        suite_version=origin.suite_version,
        dataset=origin.dataset,
        split_sha256=origin.split_sha256,
        target=origin.target,
        target_hash=origin.target_hash,
        defense=origin.defense,
        defense_costs=training.get("defense_costs", {}),
        seed=origin.seed,
        n_members=int(labels.sum()),
        n_nonmembers=int((labels == 0).sum()),
        n_calibration=sum(map(len, (result["calibration_images"] or {}).values())),
        utility=origin.utility,
        config_hash=origin.config_hash,
        versions=software_versions(),
        device=device_description(),
        processes=runtime.accelerator().num_processes,
        provenance=origin.provenance,
        **recipe,
        **result,
    )
