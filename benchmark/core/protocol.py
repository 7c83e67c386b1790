"""The benchmark protocol's dimensions, defined once: what the attacker may touch (threat model) and
what it knows (knowledge level). Both are ``str`` enums, so a card's JSON, a suite's YAML and a
comparison with a plain string all see the value ("gray-box", "shadow")."""

from __future__ import annotations

import enum


class ThreatModel(str, enum.Enum):
    """What an attack may call on the model (the sealed view enforces it)."""

    WHITE_BOX = "white-box"
    GRAY_BOX = "gray-box"
    BLACK_BOX = "black-box"

    def __str__(self) -> str:
        return self.value


class Knowledge(str, enum.Enum):
    """What the attacker holds to fit its choices on: a shadow target trained with the target's recipe
    on disjoint images, a labelled slice of the target's own training and held-out images, or nothing."""

    SHADOW = "shadow"
    TARGET_MEMBERS = "target-members"
    NONE = "none"

    def __str__(self) -> str:
        return self.value

    @property
    def calibrates(self) -> bool:
        """Whether an attack that learns from labelled images may run under this level."""
        return self is not Knowledge.NONE


HEADLINE_KNOWLEDGE = Knowledge.SHADOW  # what the page leads with and what a suite assumes by default
