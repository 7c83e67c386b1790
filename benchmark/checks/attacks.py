"""The checks an attack must pass: its config round-trips through the suite parser, it declares a
threat model and stays inside it, its counted passes equal the ones it declares, it is
deterministic under a fixed seed, and it finds nothing on a null split, where the "members" are
images the target never saw."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from benchmark.api.model import DiffusionModel
from benchmark.api.plugins import Attack
from benchmark.api.registry import ATTACKS, TARGETS
from benchmark.checks.common import Check, Workdir, check_suite, registered, round_trip, run, run_all, same_scores
from benchmark.core.configs import build_config
from benchmark.core.errors import ThreatModelError
from benchmark.core.protocol import Knowledge, ThreatModel
from benchmark.records.card import Card
from benchmark.records.store import ResultStore
from benchmark.run.access import make_access

# Under a null split both classes are unseen, so the AUC is a draw from its null distribution:
# with 128 members against 512 non-members its standard error is about 0.029, and 0.1 is 3.5 of them.
NULL_TOLERANCE = 0.1
# the routes past a threat model: the model and its parts, the harness's engine and counter, and
# (black-box) the schedule and ε_θ; every view refuses each in one line
SEALED = ("module", "unet", "parameters", "counter", "_engine", "_model", "_gray", "_unet", "__dict__", "use_captions")
FORBIDDEN = {
    ThreatModel.GRAY_BOX: (*SEALED, "loss_gradient_norms"),
    ThreatModel.BLACK_BOX: (*SEALED, "predict_noise", "add_noise", "alphas_cumprod", "loss_gradient_norms"),
    ThreatModel.WHITE_BOX: SEALED,
}


class _NullRuns:
    """The attack run twice on the check suite's null split under every level it accepts; computed
    once, on the first check that needs it, and shared by the checks that read it."""

    def __init__(self, cls: type[Attack], preset: dict[str, Any] | None, cache: Path | None) -> None:
        self.cls, self.preset, self.cache = cls, preset, cache
        self.workdir = Workdir()

    @functools.cached_property
    def runs(self) -> tuple[list[Card], ResultStore, list[Card], ResultStore]:
        with registered(ATTACKS, self.cls, self.preset) as name:
            attack = self.cls(build_config(self.cls.Config, f"attack '{name}'", ATTACKS.get(name).preset))
            levels = [Knowledge.SHADOW, Knowledge.TARGET_MEMBERS]
            levels += [] if attack.needs_calibration() else [Knowledge.NONE]
            null = check_suite() | {"attacks": [name], "knowledge": [level.value for level in levels]}
            null["split"] = null["split"] | {"null": True}
            cache = self.cache or self.workdir.path / "cache"
            cards, store = run(null, self.workdir.path / "null", cache)
            again, store_again = run(null, self.workdir.path / "null-again", cache)
        return cards, store, again, store_again


def attack_checks(cls: type[Attack], preset: dict[str, Any] | None = None, cache: Path | None = None) -> list[Check]:
    """Every check of ``cls`` (with ``preset``), each a named callable. ``cache`` (optional) keeps
    the null target between checks: every attack is checked against the same one."""
    return _checks_and_runs(cls, preset, cache)[0]


def _checks_and_runs(
    cls: type[Attack], preset: dict[str, Any] | None, cache: Path | None
) -> tuple[list[Check], _NullRuns]:
    with registered(ATTACKS, cls, preset) as name:
        where, resolved = f"attack '{name}'", dict(ATTACKS.get(name).preset)
    null = _NullRuns(cls, preset, cache)

    def config_round_trips() -> None:
        round_trip(cls, resolved, where)

    def declares_a_threat_model() -> None:
        declared = getattr(cls, "threat_model", None)
        assert isinstance(declared, ThreatModel), f"{where}: threat_model must be a ThreatModel"

    def counted_passes_equal_declared() -> None:
        expected = cls(build_config(cls.Config, where, resolved)).expected_passes()
        for card in null.runs[0]:
            counted = (card.queries_per_sample, card.backward_passes_per_sample)
            assert counted == tuple(float(x) for x in expected), (
                f"{where}: counted {counted} (forward, backward) passes per image, declared {expected}"
            )

    def card_names_its_threat_model() -> None:
        for card in null.runs[0]:
            assert card.threat_model == cls.threat_model.value, f"{where}: card says {card.threat_model}"

    def null_split_near_chance() -> None:
        for card in null.runs[0]:
            assert abs(card.auc - 0.5) <= NULL_TOLERANCE, (
                f"{where}: AUC {card.auc:.3f} on a null split (members unseen) under knowledge {card.knowledge}"
            )

    def deterministic() -> None:
        cards, store, again, store_again = null.runs
        same_scores(store, store_again, cards, again, where)

    def view_refuses_other_routes() -> None:
        _check_view(cls.threat_model, where)

    checks = (config_round_trips, declares_a_threat_model, counted_passes_equal_declared, card_names_its_threat_model,
              null_split_near_chance, deterministic, view_refuses_other_routes)  # fmt: skip
    return [Check(name, check.__name__, check) for check in checks], null


def check_attack(cls: type[Attack], preset: dict[str, Any] | None = None, cache: Path | None = None) -> dict[str, Any]:
    """Every check; raises one ``AssertionError`` naming each failed check, else returns what was
    measured (the null AUC per knowledge level, the counted passes)."""
    checks, null = _checks_and_runs(cls, preset, cache)
    run_all(checks, checks[0].plugin)
    cards = null.runs[0]
    return {
        "attack": checks[0].plugin,
        "null_auc": {card.knowledge: card.auc for card in cards},
        "passes": (cards[0].queries_per_sample, cards[0].backward_passes_per_sample),
    }


def _check_view(threat_model: ThreatModel, where: str) -> None:
    """Every name outside the threat model is refused by the view the attack gets."""
    (target,) = check_suite()["targets"]
    entry = TARGETS.get(target["name"])
    config = build_config(entry.cls.Config, "conformance model", target["params"])
    plan = entry.cls(config).training_plan(torch.empty(0, 1, 8, 8), None, seed=0)
    view = make_access(DiffusionModel(plan.new_unet(), plan.scheduler), threat_model)
    for forbidden in FORBIDDEN[threat_model]:
        try:
            getattr(view, forbidden)
        except ThreatModelError:
            continue
        raise AssertionError(f"{where}: a {threat_model.value} view lets an attack reach '{forbidden}'")

