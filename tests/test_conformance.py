"""Every registered attack class and defense passes the checks a contribution must pass
(``benchmark.checks.check_attack`` / ``check_defense``), and the checks catch what they claim to."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmark.api import ATTACKS, DEFENSES, Attack, ThreatModel
from benchmark.checks import NULL_TOLERANCE, attack_checks, check_attack, check_defense, parametrize_with_checks
from benchmark.core.configs import build_config


def _one_entry_per_class(registry, skip=lambda cls: False):
    seen, entries = set(), []
    for entry in registry.entries():
        if entry.cls not in seen and not skip(entry.cls):
            seen.add(entry.cls)
            entries.append(entry)
    return entries


ATTACK_ENTRIES = _one_entry_per_class(ATTACKS, skip=lambda cls: cls.requires_captions)  # CLiD: test_text_to_image
DEFENSE_ENTRIES = _one_entry_per_class(DEFENSES)


@pytest.mark.parametrize("entry", ATTACK_ENTRIES, ids=lambda e: e.name)
def test_every_attack_class_passes_check_attack(entry, cache_dir):
    result = check_attack(entry.cls, entry.preset, cache=cache_dir / "conformance")
    attack = entry.cls(build_config(entry.cls.Config, entry.name, entry.preset))
    levels = {"shadow", "target-members"} | (set() if attack.needs_calibration() else {"none"})
    assert set(result["null_auc"]) == levels
    assert all(abs(auc - 0.5) <= NULL_TOLERANCE for auc in result["null_auc"].values()), result["null_auc"]


# The check judges determinism and what a defense reports, not its model: public pretraining (1,000
# steps by default, run twice by the check) is shortened so CI spends its minutes elsewhere.
SHORTER = {"public_only": {"pretrain_steps": 100}}


@pytest.mark.parametrize("entry", DEFENSE_ENTRIES, ids=lambda e: e.name)
def test_every_defense_passes_check_defense(entry, cache_dir):
    preset = {**(entry.preset or {}), **SHORTER.get(entry.name, {})} or None
    assert check_defense(entry.cls, preset, cache=cache_dir)["steps"] > 0


@dataclasses.dataclass
class PeekingConfig:
    t: int = 100


class DeclaresOneQueryButMakesTwo(Attack[PeekingConfig]):
    threat_model = ThreatModel.GRAY_BOX

    def expected_passes(self) -> tuple[int, int]:
        return (1, 0)

    def score(self, access, images, ctx):
        access.predict_noise(images, self.config.t)
        return -access.predict_noise(images, self.config.t).flatten(1).abs().sum(1).double().numpy()


class ScoresByPosition(DeclaresOneQueryButMakesTwo):
    """Leaks the label through the order the harness passes images in (members first)."""

    def expected_passes(self) -> tuple[int, int]:
        return (0, 0)

    def score(self, access, images, ctx):
        return -np.arange(len(images), dtype=np.float64)


def test_the_checks_catch_a_wasteful_and_a_leaking_attack(cache_dir):
    wasteful = r"\[counted_passes_equal_declared\] .*counted \(2.0, 0.0\) .* declared \(1, 0\)"
    with pytest.raises(AssertionError, match=wasteful):
        check_attack(DeclaresOneQueryButMakesTwo, cache=cache_dir / "conformance")
    with pytest.raises(AssertionError, match=r"1 of 7 checks failed: \[null_split_near_chance\] .*on a null split"):
        check_attack(ScoresByPosition, cache=cache_dir / "conformance")


def test_each_check_is_its_own_named_case(cache_dir):
    """``parametrize_with_checks`` gives one pytest case per check, named by it; run one by one, the
    leaking attack fails exactly the null-split check and passes the others."""
    mark = parametrize_with_checks([ScoresByPosition], cache=cache_dir / "conformance")
    (argname,), checks = mark.args[0].split(","), mark.args[1]
    assert argname == "check" and mark.kwargs["ids"] == [c.id for c in checks]
    assert [c.name for c in checks] == [c.name for c in attack_checks(ScoresByPosition)]
    failed = []
    for check in checks:
        try:
            check()
        except AssertionError:
            failed.append(check.name)
    assert failed == ["null_split_near_chance"]
