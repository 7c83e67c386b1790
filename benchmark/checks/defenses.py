"""The checks a defense must pass: its config round-trips through the suite parser, its learned
costs are refused before training and readable after it, its training report says how many steps
ran, and two trainings from scratch under one seed give the same model."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from benchmark.api.plugins import Defense
from benchmark.api.registry import DEFENSES
from benchmark.checks.common import Check, Workdir, check_suite, registered, round_trip, run, run_all, same_scores
from benchmark.core.configs import build_config
from benchmark.core.errors import BenchmarkError
from benchmark.core.protocol import Knowledge
from benchmark.records.card import Card
from benchmark.records.store import ResultStore


class _Trainings:
    """The check suite trained twice under the defense, the second time from an empty target cache."""

    def __init__(self, cls: type[Defense], preset: dict[str, Any] | None, cache: Path | None) -> None:
        self.cls, self.preset, self.cache = cls, preset, cache
        self.workdir = Workdir()

    @functools.cached_property
    def runs(self) -> tuple[list[Card], ResultStore, list[Card], ResultStore]:
        workdir = self.workdir.path
        with registered(DEFENSES, self.cls, self.preset) as name:
            fresh = self.cls(build_config(self.cls.Config, name, DEFENSES.get(name).preset))
            # a defense is judged by its training, so its attack calibrates on the target (no shadow to train)
            suite = check_suite() | {"defenses": [name], "knowledge": [Knowledge.TARGET_MEMBERS.value]}
            if fresh.uses_public_data():
                suite["split"] = suite["split"] | {"public": 64}
            first_cache = self.cache or workdir / "cache-one"
            cards, store = run(suite, workdir / "one", first_cache)
            # a second training from scratch: an empty target cache, the same (content-addressed) FID features
            (workdir / "cache-two").mkdir()
            if (Path(first_cache) / "features").is_dir():
                (workdir / "cache-two" / "features").symlink_to(Path(first_cache).resolve() / "features")
            again, store_again = run(suite, workdir / "two", workdir / "cache-two")
        return cards, store, again, store_again


def defense_checks(cls: type[Defense], preset: dict[str, Any] | None = None, cache: Path | None = None) -> list[Check]:
    """Every check of ``cls`` (with ``preset``), each a named callable. The second training always
    starts from an empty cache (``cache``, optional, serves the first)."""
    return _checks_and_runs(cls, preset, cache)[0]


def _checks_and_runs(
    cls: type[Defense], preset: dict[str, Any] | None, cache: Path | None
) -> tuple[list[Check], _Trainings]:
    with registered(DEFENSES, cls, preset) as name:
        where, resolved = f"defense '{name}'", dict(DEFENSES.get(name).preset)
    trainings = _Trainings(cls, preset, cache)

    def config_round_trips() -> None:
        round_trip(cls, resolved, where)

    def costs_refused_before_training() -> None:
        try:
            cls(build_config(cls.Config, where, resolved)).costs()
        except BenchmarkError:
            pass  # learned state read before train(): refused with a clear error, as it should be
        except AttributeError as error:
            raise AssertionError(f"{where}: costs() before train() fails with {error!r}; keep learned state in "
                                 "attributes ending in '_' (LearnedState)") from None  # fmt: skip

    def reports_costs_and_steps() -> None:
        card = trainings.runs[0][0]
        assert isinstance(card.defense_costs, dict), f"{where}: costs() must return a dict"
        steps = (card.training or {}).get("steps")
        assert isinstance(steps, int) and steps > 0, f"{where}: the training report must say how many steps ran"

    def deterministic() -> None:
        cards, store, again, store_again = trainings.runs
        assert cards[0].utility == again[0].utility, f"{where}: two trainings with one seed gave different models"
        same_scores(store, store_again, cards, again, where)

    checks = (config_round_trips, costs_refused_before_training, reports_costs_and_steps, deterministic)
    return [Check(name, check.__name__, check) for check in checks], trainings


def check_defense(
    cls: type[Defense], preset: dict[str, Any] | None = None, cache: Path | None = None
) -> dict[str, Any]:
    """Every check; raises one ``AssertionError`` naming each failed check, else returns what was
    measured (steps, costs, the attack's AUC on the defended target)."""
    checks, trainings = _checks_and_runs(cls, preset, cache)
    run_all(checks, checks[0].plugin)
    card = trainings.runs[0][0]
    return {"defense": checks[0].plugin, "steps": card.training["steps"], "costs": card.defense_costs, "auc": card.auc}
