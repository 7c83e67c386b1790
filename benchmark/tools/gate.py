"""``audit --fail-if "tpr_at_1pct_fpr>0.05"``: a release gate a CI step can run.

The condition names a numeric card field, ``>`` or ``<``, and a limit; the gate trips when any
audited attack's card meets it (the strongest attack decides, whichever it is). A tripped gate
exits with its own code (``GATE_EXIT_CODE``, 3), distinct from a usage error (2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from benchmark.core.errors import BenchmarkError, GateTripped
from benchmark.records.card import Card, card_schema

_CONDITION = re.compile(r"^\s*([a-z0-9_]+)\s*([<>])\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Gate:
    metric: str
    above: bool  # True for ">", False for "<"
    limit: float

    @classmethod
    def parse(cls, text: str) -> Gate:
        match = _CONDITION.match(text)
        numeric = {name for name, spec in card_schema()["properties"].items()
                   if {"number", "integer"} & {t.get("type") for t in spec.get("anyOf", [spec])}}  # fmt: skip
        if not match:
            raise BenchmarkError(f"--fail-if '{text}' is not METRIC>VALUE or METRIC<VALUE (e.g. tpr_at_1pct_fpr>0.05)")
        metric, sign, limit = match.groups()
        if metric not in numeric:
            raise BenchmarkError(f"--fail-if names '{metric}', which is not a numeric card field; use one of "
                                 f"{', '.join(sorted(numeric))}")  # fmt: skip
        try:
            return cls(metric, sign == ">", float(limit))
        except ValueError:
            raise BenchmarkError(f"--fail-if '{text}': '{limit}' is not a number") from None

    def trips(self, card: Card) -> bool:
        value = float(card.metric(self.metric))
        return value > self.limit if self.above else value < self.limit

    def check(self, cards: list[Card]) -> None:
        """Raises :class:`GateTripped` naming the worst card that meets the condition."""
        tripped = [c for c in cards if self.trips(c)]
        if tripped:
            worst = (max if self.above else min)(tripped, key=lambda c: float(c.metric(self.metric)))
            value = float(worst.metric(self.metric))
            raise GateTripped(f"release gate tripped: {self.metric} = {value:.4g} ({worst.attack}) "
                              f"{'>' if self.above else '<'} the limit {self.limit:g}")  # fmt: skip
