"""Choosing an attack's setting on the calibration split, never on the evaluated images.

SimA and PIA report the best timestep in hindsight on the test data; here each candidate is scored
on the calibration split and the winner is then applied, unchanged, to the evaluated images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score


def choose_by_auc(
    candidates: Iterable[Any], scores_for: Callable[[Any], np.ndarray], labels: np.ndarray
) -> tuple[Any, list[dict]]:
    """The candidate whose calibration scores give the highest AUC (first one on ties), and the table."""
    table = []
    best, best_auc = None, -np.inf
    for candidate in candidates:
        auc = float(roc_auc_score(labels, scores_for(candidate)))
        table.append({"candidate": candidate, "calibration_auc": auc})
        if auc > best_auc:
            best, best_auc = candidate, auc
    return best, table
