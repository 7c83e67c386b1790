"""Conformance checks every attack and defense must pass (scikit-learn's ``check_estimator``).

They run the real harness on tiny targets trained on real digits, so a plugin that passes here
behaves in a suite: its config round-trips through the suite parser, its counted passes equal the
ones it declares, it is deterministic under a fixed seed, it stays inside its threat model, and
(attacks) it finds nothing on a null split, where the "members" are images the target never saw.
``validate`` runs them on every registered plugin; contributors call them from ``benchmark.api``.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.api.model import DiffusionModel, ThreatModel
from benchmark.api.plugins import Attack, Defense
from benchmark.api.registry import ATTACKS, DEFENSES, TARGETS, Registry
from benchmark.core.configs import build_config
from benchmark.core.errors import BenchmarkError, ThreatModelError
from benchmark.report.card import Card
from benchmark.run.access import make_access
from benchmark.run.cache import Cache
from benchmark.run.results import ResultStore
from benchmark.run.runner import run_suite
from benchmark.run.suite import parse_suite

# Under a null split both classes are unseen, so the AUC is a draw from its null distribution:
# with 128 members against 512 non-members its standard error is about 0.029, and 0.1 is 3.5 of them.
NULL_TOLERANCE = 0.1
CHECK_SUITE = {
    "name": "conformance",
    "version": 1,
    "datasets": [{"name": "digits", "params": {"image_size": 8}}],
    "split": {"members": 128, "nonmembers": 512, "calibration_members": 16, "calibration_nonmembers": 32},
    "targets": [
        {
            "name": "ddpm_unet",
            "label": "conformance",
            "params": {"block_out_channels": [16, 32], "train_steps": 40, "batch_size": 32, "learning_rate": 0.002},
        }
    ],
    "defenses": ["none"],
    "attacks": ["loss"],
    "seeds": [0],
    "scoring": {"bootstrap": 20},
}
# the routes past a threat model: the model and its parts, the harness's engine and counter, and
# (black-box) the schedule and ε_θ; every view refuses each in one line
SEALED = ("module", "unet", "parameters", "counter", "_engine", "_model", "_gray", "_unet", "__dict__", "use_captions")
FORBIDDEN = {
    ThreatModel.GRAY_BOX: (*SEALED, "loss_gradient_norms"),
    ThreatModel.BLACK_BOX: (*SEALED, "predict_noise", "add_noise", "alphas_cumprod", "loss_gradient_norms"),
    ThreatModel.WHITE_BOX: SEALED,
}


@contextmanager
def _registered(registry: Registry, cls: type, preset: dict[str, Any] | None) -> Iterator[str]:
    """The registered name of ``cls`` with ``preset``, or a check-only name for the block's duration."""
    for entry in registry.entries():
        if entry.cls is cls and (preset is None or entry.preset == preset):
            yield entry.name
            return
    # no leading underscore: it labels the check run's plots, and matplotlib hides such labels
    with registry.temporarily(f"check_{cls.__name__.lower()}", cls, preset) as name:
        yield name


def _round_trip(cls: type, preset: dict[str, Any], where: str) -> None:
    config = build_config(cls.Config, where, preset)
    again = build_config(cls.Config, where, dataclasses.asdict(config))
    assert again == config, f"{where}: config does not round-trip through the suite parser: {config} != {again}"


def _run(suite: dict, out: Path, cache: Path) -> tuple[list[Card], ResultStore]:
    cards = run_suite(parse_suite(copy.deepcopy(suite), "conformance", "conformance suite"), out,
                      Cache(cache, log=lambda _: None), console_table=False)  # fmt: skip
    return cards, ResultStore(out)


def _same_scores(first: ResultStore, second: ResultStore, cards: list[Card], again: list[Card], where: str) -> None:
    for a, b in zip(cards, again, strict=True):
        left, right = first.load_scores(a), second.load_scores(b)
        assert np.array_equal(left["scores"], right["scores"]), f"{where}: two runs with one seed gave different scores"


def check_attack(cls: type[Attack], preset: dict[str, Any] | None = None, cache: Path | None = None) -> dict[str, Any]:
    """Raises ``AssertionError`` naming the first failed check; returns what was measured. ``cache``
    (optional) keeps the null target between checks: every attack is checked against the same one."""
    with _registered(ATTACKS, cls, preset) as name:
        return _check_attack(cls, name, cache)


def _check_attack(cls: type[Attack], name: str, cache: Path | None) -> dict[str, Any]:
    where = f"attack '{name}'"
    _round_trip(cls, ATTACKS.get(name).preset, where)
    assert isinstance(cls.threat_model, ThreatModel), f"{where}: threat_model must be a ThreatModel"
    with tempfile.TemporaryDirectory(prefix="mia-check-") as folder:
        workdir = Path(folder)
        attack = cls(build_config(cls.Config, where, ATTACKS.get(name).preset))
        levels = ["shadow", "target-members"] + ([] if attack.needs_calibration() else ["none"])
        suite = copy.deepcopy(CHECK_SUITE) | {"attacks": [name], "knowledge": levels}
        null = copy.deepcopy(suite)
        null["split"] = suite["split"] | {"null": True}
        cache = cache or workdir / "cache"
        cards, store = _run(null, workdir / "null", cache)
        again, store_again = _run(null, workdir / "null-again", cache)
        expected = attack.expected_passes()
        for card in cards:
            counted = (card.queries_per_sample, card.backward_passes_per_sample)
            assert counted == tuple(float(x) for x in expected), (
                f"{where}: counted {counted} (forward, backward) passes per image, declared {expected}"
            )
            assert card.threat_model == cls.threat_model.value, f"{where}: card says {card.threat_model}"
            assert abs(card.auc - 0.5) <= NULL_TOLERANCE, (
                f"{where}: AUC {card.auc:.3f} on a null split (members unseen) under knowledge {card.knowledge}"
            )
        _same_scores(store, store_again, cards, again, where)
        _check_view(cls.threat_model, where)
    return {"attack": name, "null_auc": {c.knowledge: c.auc for c in cards}, "passes": counted}


def _check_view(threat_model: ThreatModel, where: str) -> None:
    """Every name outside the threat model is refused by the view the attack gets."""
    entry = TARGETS.get("ddpm_unet")
    config = build_config(entry.cls.Config, "conformance model", {"block_out_channels": [8, 16]})
    plan = entry.cls(config).training_plan(torch.empty(0, 1, 8, 8), None, seed=0)
    view = make_access(DiffusionModel(plan.new_unet(), plan.scheduler), threat_model)
    for forbidden in FORBIDDEN[threat_model]:
        try:
            getattr(view, forbidden)
        except ThreatModelError:
            continue
        raise AssertionError(f"{where}: a {threat_model.value} view lets an attack reach '{forbidden}'")


def check_defense(
    cls: type[Defense], preset: dict[str, Any] | None = None, cache: Path | None = None
) -> dict[str, Any]:
    """Raises ``AssertionError`` naming the first failed check; returns what was measured. The second
    training always starts from an empty cache (``cache``, optional, serves the first)."""
    with _registered(DEFENSES, cls, preset) as name:
        return _check_defense(cls, name, cache)


def _check_defense(cls: type[Defense], name: str, cache: Path | None) -> dict[str, Any]:
    where = f"defense '{name}'"
    _round_trip(cls, DEFENSES.get(name).preset, where)
    fresh = cls(build_config(cls.Config, where, DEFENSES.get(name).preset))
    try:
        fresh.costs()
    except BenchmarkError:
        pass  # learned state read before train(): refused with a clear error, as it should be
    except AttributeError as error:
        raise AssertionError(f"{where}: costs() before train() fails with {error!r}; keep learned state in "
                             "attributes ending in '_' (LearnedState)") from None  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mia-check-") as folder:
        workdir = Path(folder)
        # a defense is judged by its training, so its attack calibrates on the target (no shadow to train)
        suite = copy.deepcopy(CHECK_SUITE) | {"defenses": [name], "knowledge": ["target-members"]}
        if fresh.uses_public_data():
            suite["split"] = suite["split"] | {"public": 64}
        first_cache = cache or workdir / "cache-one"
        cards, store = _run(suite, workdir / "one", first_cache)
        # a second training from scratch: an empty target cache, the same (content-addressed) FID features
        (workdir / "cache-two").mkdir()
        if (Path(first_cache) / "features").is_dir():
            (workdir / "cache-two" / "features").symlink_to(Path(first_cache).resolve() / "features")
        again, store_again = _run(suite, workdir / "two", workdir / "cache-two")
        card = cards[0]
        assert isinstance(card.defense_costs, dict), f"{where}: costs() must return a dict"
        steps = (card.training or {}).get("steps")
        assert isinstance(steps, int) and steps > 0, f"{where}: the training report must say how many steps ran"
        assert card.utility == again[0].utility, f"{where}: two trainings with one seed gave different models"
        _same_scores(store, store_again, cards, again, where)
    return {"defense": name, "steps": steps, "costs": card.defense_costs, "auc": card.auc}
