"""What every check shares: a named check, the check suite, registering a class for the duration of a
check, running the suite, and running many checks so that every failure is reported by name."""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmark.api.registry import Registry
from benchmark.core.configs import build_config
from benchmark.records.card import Card
from benchmark.records.store import ResultStore
from benchmark.run.cache import Cache
from benchmark.run.runner import run_suite
from benchmark.run.suite import parse_suite, registered_suites


@dataclass(frozen=True)
class Check:
    """One named check of one plugin; calling it raises ``AssertionError`` when the plugin fails it."""

    plugin: str
    name: str
    run: Callable[[], None]

    def __call__(self) -> None:
        self.run()

    @property
    def id(self) -> str:
        return f"{self.plugin}-{self.name}"


def check_suite() -> dict[str, Any]:
    """The registered ``conformance`` suite as a mapping each check puts its own plugin into."""
    return yaml.safe_load(registered_suites()["conformance"].read_text())


@contextmanager
def registered(registry: Registry, cls: type, preset: dict[str, Any] | None) -> Iterator[str]:
    """The registered name of ``cls`` with ``preset``, or a check-only name for the block's duration."""
    for entry in registry.entries():
        if entry.cls is cls and (preset is None or entry.preset == preset):
            yield entry.name
            return
    # no leading underscore: it labels the check run's plots, and matplotlib hides such labels
    with registry.temporarily(f"check_{cls.__name__.lower()}", cls, preset) as name:
        yield name


def round_trip(cls: type, preset: dict[str, Any], where: str) -> None:
    config = build_config(cls.Config, where, preset)
    again = build_config(cls.Config, where, dataclasses.asdict(config))
    assert again == config, f"{where}: config does not round-trip through the suite parser: {config} != {again}"


def run(suite: dict[str, Any], out: Path, cache: Path) -> tuple[list[Card], ResultStore]:
    cards = run_suite(parse_suite(copy.deepcopy(suite), "conformance", "conformance suite"), out,
                      Cache(cache, log=lambda _: None))  # fmt: skip
    return cards, ResultStore(out)


def same_scores(first: ResultStore, second: ResultStore, cards: list[Card], again: list[Card], where: str) -> None:
    for a, b in zip(cards, again, strict=True):
        left, right = first.load_scores(a), second.load_scores(b)
        assert np.array_equal(left["scores"], right["scores"]), f"{where}: two runs with one seed gave different scores"


class Workdir:
    """A temporary folder that lives as long as the checks sharing it (removed with the object)."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="mia-check-")
        self.path = Path(self._folder.name)


def run_all(checks: Sequence[Check], plugin: str) -> None:
    """Every check, then one ``AssertionError`` naming each that failed (not only the first)."""
    failures = []
    for check in checks:
        try:
            check()
        except AssertionError as error:
            failures.append(f"[{check.name}] {error}")
    if failures:
        raise AssertionError(f"{plugin}: {len(failures)} of {len(checks)} checks failed: " + "; ".join(failures))
