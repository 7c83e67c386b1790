"""Checks by plugin kind, and as pytest cases (scikit-learn's ``parametrize_with_checks``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.api.plugins import Attack, Defense
from benchmark.checks.attacks import attack_checks
from benchmark.checks.common import Check
from benchmark.checks.defenses import defense_checks

if TYPE_CHECKING:
    import pytest


def plugin_checks(cls: type, preset: dict[str, Any] | None = None, cache: Path | None = None) -> list[Check]:
    """The checks for an attack or a defense class, by its base class."""
    if issubclass(cls, Attack):
        return attack_checks(cls, preset, cache)
    if issubclass(cls, Defense):
        return defense_checks(cls, preset, cache)
    raise TypeError(f"{cls.__name__} is neither an Attack nor a Defense")


def parametrize_with_checks(
    plugins: Sequence[type | tuple[type, dict[str, Any]]], cache: Path | None = None
) -> pytest.MarkDecorator:
    """A ``pytest.mark.parametrize`` over every check of every plugin (a class, or a (class, preset)
    pair), one case per check with the check's name as its id, so a failing plugin sees every
    failed check by name. The test takes one argument, ``check``, and calls it."""
    import pytest

    checks = []
    for plugin in plugins:
        cls, preset = plugin if isinstance(plugin, tuple) else (plugin, None)
        checks += plugin_checks(cls, preset, cache)
    return pytest.mark.parametrize("check", checks, ids=[c.id for c in checks])

