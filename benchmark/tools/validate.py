"""``validate``: what a contribution must pass before review (lm-eval's validate, MLPerf's checker).

1. every registry entry loads and its config round-trips through the suite parser;
2. every attack and defense the published suite does not name yet (a contribution) passes
   ``check_attack`` / ``check_defense`` (null split, counted = declared passes, determinism, views);
3. the smoke suite runs every registered attack against every registered defense end to end;
4. every card it writes is valid;
5. the published leaderboard is consistent with its cards.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from benchmark.api.registry import ATTACKS, DATASETS, DEFENSES, TARGETS
from benchmark.checks import check_attack, check_defense
from benchmark.core.configs import build_config
from benchmark.records.card import Card
from benchmark.report.leaderboard import PUBLISHED_SUITES, Leaderboard
from benchmark.run.cache import Cache
from benchmark.run.runner import run_suite
from benchmark.run.suite import parse_suite, registered_suites


def check_registries(say: Callable[[str], None]) -> int:
    count = 0
    for kind, registry in (("attack", ATTACKS), ("defense", DEFENSES), ("target", TARGETS), ("dataset", DATASETS)):
        for entry in registry.entries():
            where = f"{kind} '{entry.name}'"
            if _required_fields(entry.cls.Config) - set(entry.preset):
                continue  # needs user parameters (a model path, say); the suite parser checks those
            config = build_config(entry.cls.Config, where, entry.preset)
            again = build_config(entry.cls.Config, where, dataclasses.asdict(config))
            if again != config:
                raise AssertionError(f"{where}: config does not round-trip: {config} != {again}")
            if kind == "attack" and not entry.description:
                raise AssertionError(f"{where}: needs a one-line description")
            count += 1
    say(f"registries: {count} entries load and round-trip their configs")
    return count


def _required_fields(config_cls: type) -> set[str]:
    missing = dataclasses.MISSING
    return {f.name for f in dataclasses.fields(config_cls) if f.default is missing and f.default_factory is missing}


def smoke_run(say: Callable[[str], None], workdir: Path) -> list[Card]:
    raw = yaml.safe_load(registered_suites()["smoke"].read_text())
    # caption-conditioned attacks need a text-to-image target: tests/test_text_to_image.py runs them
    raw["attacks"] = [entry.name for entry in ATTACKS.entries() if not entry.cls.requires_captions]
    raw["defenses"] = [entry.name for entry in DEFENSES.entries()]
    suite = parse_suite(raw, "smoke", "smoke suite")
    cards = run_suite(suite, workdir / "run", Cache(workdir / "cache", log=say))
    for card in cards:
        Card.parse(card.to_dict(), f"smoke card {card.defense}/{card.attack}")  # survives its JSON round-trip
    say(f"smoke: {len(suite.attacks)} attacks × {len(suite.defenses)} defenses ran; {len(cards)} valid cards")
    return cards


def check_new_plugins(say: Callable[[str], None]) -> int:
    """``check_attack``/``check_defense`` on every attack and defense no published suite names: a
    contribution. (The published ones are checked by ``tests/test_conformance.py``.)"""
    named = set()
    for name in PUBLISHED_SUITES:
        published = parse_suite(yaml.safe_load(registered_suites()[name].read_text()), name, f"{name} suite")
        named |= {c.name for c in published.attacks} | {c.name for c in published.defenses}
    checked = 0
    for registry, check in ((ATTACKS, check_attack), (DEFENSES, check_defense)):
        for entry in registry.entries():
            if entry.name in named or entry.name.startswith("_") or getattr(entry.cls, "requires_captions", False):
                continue
            if _required_fields(entry.cls.Config) - set(entry.preset):
                continue
            result = check(entry.cls, entry.preset)
            say(
                f"conformance: {entry.name} passes ({', '.join(f'{k} {v}' for k, v in result.items() if k != 'costs')})"
            )
            checked += 1
    if not checked:
        say("conformance: every attack and defense is on the published board (tests/test_conformance.py checks them)")
    return checked


def run_validation(leaderboard_dir: Path, say: Callable[[str], None] = print) -> None:
    check_registries(say)
    check_new_plugins(say)
    with tempfile.TemporaryDirectory(prefix="mia-validate-") as workdir:
        smoke_run(say, Path(workdir))
    if (leaderboard_dir / "cards").is_dir():
        say(f"leaderboard: {Leaderboard(leaderboard_dir).check()} cards valid and the page is up to date")
    else:
        say(f"leaderboard: {leaderboard_dir}/cards does not exist yet (nothing published); skipped")
