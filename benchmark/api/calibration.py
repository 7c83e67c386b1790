"""Choosing an attack's setting on the attacker's calibration data, never on the evaluated images.

SimA and PIA report the best timestep in hindsight on the test data; here each candidate is scored
on the calibration data (a shadow model's, or labelled target members: the suite's ``knowledge``)
and the winner is then applied, unchanged, to the evaluated images. A candidate is judged by how far
its AUC is from chance in either direction: whether members score higher or lower is learned by the
harness afterwards (the card's ``orientation``), not assumed here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np
from sklearn.metrics import roc_auc_score

Candidate = TypeVar("Candidate")


def choose_by_auc(
    candidates: Iterable[Candidate], scores_for: Callable[[Candidate], np.ndarray], labels: np.ndarray
) -> tuple[Candidate, list[dict]]:
    """The candidate whose calibration scores separate best, max(AUC, 1 − AUC) (first one on ties),
    and the table."""
    table = []
    best, best_separation = None, -np.inf
    for candidate in candidates:
        auc = float(roc_auc_score(labels, scores_for(candidate)))
        table.append({"candidate": candidate, "calibration_auc": auc})
        if max(auc, 1 - auc) > best_separation:
            best, best_separation = candidate, max(auc, 1 - auc)
    return best, table


class ChoosesSettings:
    """For attacks that choose some config fields (a timestep, a statistic) on calibration data.

    ``choose`` scores every candidate, keeps the best as ``settings_`` (the config with the chosen
    fields replaced) and returns the table for the card. ``settings`` is what ``score`` uses: the
    config itself when the attack searches nothing, else the calibrated copy, which must exist.
    """

    config: Any  # Any: the host attack's config dataclass; the mixin reads only the fields it names

    def searches(self) -> bool:
        """True when this config asks for a choice on calibration data."""
        return False

    def needs_calibration(self) -> bool:
        return self.searches()

    @property
    def settings(self) -> Any:  # Any: the host's config type (see ``config``)
        return self.settings_ if self.searches() else self.config

    def choose(
        self,
        candidates: Iterable[Candidate],
        scores_for: Callable[[Candidate], np.ndarray],
        labels: np.ndarray,
        fields: Callable[[Candidate], dict[str, Any]],  # Any: values of the host's config fields
    ) -> tuple[Candidate, list[dict]]:
        """The winning candidate and the table; ``fields(winner)`` are the config fields it sets."""
        best, table = choose_by_auc(candidates, scores_for, labels)
        self.settings_ = dataclasses.replace(self.config, **fields(best))
        return best, table
