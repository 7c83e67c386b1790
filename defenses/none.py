"""The undefended baseline every defense is compared with."""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.api import DEFENSES, Defense


@dataclass
class NoDefenseConfig:
    pass


@DEFENSES.register("none", "no defense: the target is trained on its members as they are")
class NoDefense(Defense[NoDefenseConfig]):
    """Training as the target's recipe says, nothing changed: the row every defense is compared with."""

    baseline = True
