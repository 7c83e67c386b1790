"""Shared tiny world: a small UNet overfit on 48 real digits (8×8), trained once per test session."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from benchmark.core import runtime
from benchmark.run.cache import Cache
from benchmark.run.suite import Suite, parse_suite

TINY_SUITE = {
    "name": "tiny",
    "version": 1,
    "description": "test suite: overfit tiny target",
    "datasets": [{"name": "digits", "params": {"image_size": 8}}],
    "split": {"members": 32, "nonmembers": 128, "calibration_members": 16, "calibration_nonmembers": 32},
    "targets": [
        {
            "name": "ddpm_unet",
            "label": "tiny-0.1M",
            "params": {"block_out_channels": [16, 32], "train_steps": 800, "batch_size": 48, "learning_rate": 0.002},
        }
    ],
    "defenses": ["none"],
    "attacks": ["nais", "nais_cal", "loss", "pia"],
    "seeds": [0],
    "scoring": {"bootstrap": 200},
    "knowledge": ["shadow", "target-members"],
}


def tiny_suite_dict(**changes) -> dict:
    suite = copy.deepcopy(TINY_SUITE)
    suite.update(changes)
    return suite


def plain_tiny_unet(seed: int = 0):
    """A UNet2DModel built by plain diffusers code (not the harness), 1×8×8."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=16,
    )


def make_suite(raw: dict) -> Suite:
    return parse_suite(raw, default_name=raw.get("name", "test"), where="test suite")


def write_suite(folder: Path, raw: dict, name: str = "suite.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(raw))
    return path


# pytest-xdist runs one worker a logical CPU (``-n logical``); each worker, and every process a
# test starts, gets one torch thread (``OMP_NUM_THREADS``, which the harness honours), so the
# workers share the cores instead of spinning against each other
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if XDIST_WORKER:
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(scope="session", autouse=True)
def _runtime() -> None:
    runtime.configure("cpu")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache for every worker: its per-key file lock makes the second worker that needs the
    tiny target wait for the first and load it, instead of training it again."""
    if not XDIST_WORKER:
        return tmp_path_factory.mktemp("cache")
    shared = tmp_path_factory.getbasetemp().parent / "cache"
    shared.mkdir(exist_ok=True)
    return shared


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, cache_dir) -> tuple[Path, list[dict]]:
    """The tiny suite run end to end once, its page written as the CLI does; many tests read its outputs."""
    from benchmark.records.store import ResultStore
    from benchmark.report.render import write_outputs
    from benchmark.run.runner import run_suite

    out = tmp_path_factory.mktemp("tiny-run")
    cards = run_suite(make_suite(tiny_suite_dict()), out, Cache(cache_dir, log=lambda _: None))
    write_outputs(out, cards, ResultStore(out).load_scores)
    return out, cards


@dataclass
class TinyWorld:
    model: object
    images: torch.Tensor
    labels: np.ndarray
    cal_images: torch.Tensor
    cal_labels: np.ndarray


@pytest.fixture(scope="session")
def tiny_world(tiny_run, cache_dir) -> TinyWorld:
    """The trained tiny target (a cache hit after ``tiny_run``) and its evaluation images."""
    from benchmark.run.runner import target_key
    from benchmark.run.scoring import Labelled
    from benchmark.run.splits import make_split
    from benchmark.run.targets import obtain

    suite = make_suite(tiny_suite_dict())
    images = suite.datasets[0].instantiate().load()
    split = make_split(images, suite.split, 0)
    key = target_key(suite.datasets[0], split.sha256, suite.targets[0], suite.defenses[0])
    cache = Cache(cache_dir, log=lambda _: None)
    defense = suite.defenses[0].instantiate()
    trained = obtain(suite.targets[0].instantiate(), images[split.training], defense, 0, cache, key)
    evaluated = Labelled.of(images[split.members], images[split.nonmembers])
    calibration = Labelled.of(images[split.calibration_members], images[split.calibration_nonmembers])
    return TinyWorld(trained.model, evaluated.images, evaluated.labels, calibration.images, calibration.labels)
