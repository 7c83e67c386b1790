"""``check_attack`` / ``check_defense``: the conformance checks every plugin must pass (scikit-learn's
``check_estimator``). They train tiny targets and run the harness, so the work lives in
``benchmark.tools.conformance``; these doors import it only when called, which keeps the plugin
API free of the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def check_attack(cls: type, preset: dict[str, Any] | None = None, cache: Path | None = None) -> dict[str, Any]:
    """Null split near 0.5, declared = counted passes, config round-trip, determinism, threat model
    respected; raises ``AssertionError`` naming the first failure, returns the measured figures."""
    from benchmark.tools.conformance import check_attack as run

    return run(cls, preset, cache)


def check_defense(cls: type, preset: dict[str, Any] | None = None, cache: Path | None = None) -> dict[str, Any]:
    """Config round-trip, training under the defense on a tiny target, determinism of the trained
    weights, costs readable after training and refused before it."""
    from benchmark.tools.conformance import check_defense as run

    return run(cls, preset, cache)
