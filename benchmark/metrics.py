"""One metric contract: exact ROC from scikit-learn, bootstrap intervals, a calibrated threshold.

TPR@α is the largest TPR among operating points with FPR ≤ α; ASR is the best balanced accuracy.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

LOW_FPRS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0_1pct_fpr": 0.001}
HEADLINE = ("auc", "asr", *LOW_FPRS)


def point_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    fpr, tpr, _ = roc_curve(labels, scores)
    result = {"auc": float(roc_auc_score(labels, scores)), "asr": float(np.max((tpr + 1 - fpr) / 2))}
    for name, alpha in LOW_FPRS.items():
        result[name] = float(tpr[fpr <= alpha].max())
    return result


def bootstrap_intervals(
    labels: np.ndarray, scores: np.ndarray, seed: int, resamples: int = 1000, level: float = 0.95
) -> dict[str, list[float]]:
    """Percentile intervals, resampling members and non-members separately (sizes stay fixed)."""
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    draws = {name: [] for name in HEADLINE}
    for _ in range(resamples):
        pick = np.concatenate([rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))])
        for name, value in point_metrics(labels[pick], scores[pick]).items():
            draws[name].append(value)
    tail = (1 - level) / 2 * 100
    return {
        f"{name}_ci": [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))]
        for name, v in draws.items()
    }


def calibrated_threshold(cal_labels: np.ndarray, cal_scores: np.ndarray) -> float:
    """The threshold with the best balanced accuracy on the calibration split."""
    fpr, tpr, thresholds = roc_curve(cal_labels, cal_scores)
    best = int(np.argmax(tpr - fpr))
    return float(thresholds[best]) if np.isfinite(thresholds[best]) else float(np.max(cal_scores))


def rates_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = scores >= threshold
    return {
        "tpr": float(predicted[labels == 1].mean()),
        "fpr": float(predicted[labels == 0].mean()),
    }


def evaluate(
    labels: np.ndarray,
    scores: np.ndarray,
    seed: int,
    cal_labels: np.ndarray | None = None,
    cal_scores: np.ndarray | None = None,
    resamples: int = 1000,
) -> dict:
    result: dict = point_metrics(labels, scores)
    result.update(bootstrap_intervals(labels, scores, seed, resamples))
    n_negatives = int((labels == 0).sum())
    result["tpr_reliable"] = {name: alpha * n_negatives >= 10 for name, alpha in LOW_FPRS.items()}
    if cal_labels is not None and len(np.unique(cal_labels)) == 2:
        threshold = calibrated_threshold(cal_labels, cal_scores)
        result["calibrated_threshold"] = {"threshold": threshold, **rates_at(labels, scores, threshold)}
    return result
