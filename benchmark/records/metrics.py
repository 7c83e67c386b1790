"""One metric contract: exact ROC from scikit-learn, bootstrap intervals, a calibrated threshold.

TPR@α is the largest TPR among operating points with FPR ≤ α. ``asr_best_threshold`` is the papers'
ASR: the best balanced accuracy over every threshold, chosen on the evaluated images themselves (an
oracle no attacker has). What a deployed attacker reaches is ``at_fitted_threshold``: the threshold
fitted on its own calibration data, applied unchanged to the evaluated images.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

LOW_FPRS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0_1pct_fpr": 0.001}


def point_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    # every operating point: the default drop_intermediate=True can drop the one that sets TPR@α
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    result = {"auc": float(roc_auc_score(labels, scores)), "asr_best_threshold": float(np.max((tpr + 1 - fpr) / 2))}
    for name, alpha in LOW_FPRS.items():
        result[name] = float(tpr[fpr <= alpha].max())
    return result


def weighted_curve_metrics(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """The same metrics for many weightings of one sample at once (rows of ``weights``).

    A bootstrap resample is a weighting by draw counts, so 1,000 resamples become one cumulative
    sum over the sorted scores instead of 1,000 ``roc_curve`` calls. Ties are merged exactly as
    in scikit-learn (one operating point per distinct score); a test checks the two agree.
    """
    order = np.argsort(-scores, kind="mergesort")
    ranked_scores, ranked_labels, w = scores[order], labels[order], weights[:, order]
    ends = np.r_[np.flatnonzero(np.diff(ranked_scores)), len(ranked_scores) - 1]
    tp = np.cumsum(w * ranked_labels, axis=1)[:, ends]
    fp = np.cumsum(w * (1 - ranked_labels), axis=1)[:, ends]
    zeros = np.zeros((len(w), 1))
    tpr = np.hstack([zeros, tp / tp[:, -1:]])
    fpr = np.hstack([zeros, fp / fp[:, -1:]])
    result = {"auc": np.trapezoid(tpr, fpr, axis=1), "asr_best_threshold": np.max((tpr + 1 - fpr) / 2, axis=1)}
    for name, alpha in LOW_FPRS.items():
        result[name] = np.max(np.where(fpr <= alpha, tpr, 0.0), axis=1)
    return result


def stratified_resample_weights(labels: np.ndarray, seed: int, resamples: int) -> np.ndarray:
    """Draw counts of each image in each bootstrap resample; members and non-members separately."""
    rng = np.random.default_rng(seed)
    weights = np.zeros((resamples, len(labels)))
    for cls in (0, 1):
        chosen = np.flatnonzero(labels == cls)
        weights[:, chosen] = rng.multinomial(len(chosen), np.full(len(chosen), 1 / len(chosen)), size=resamples)
    return weights


def bootstrap_intervals(
    labels: np.ndarray, scores: np.ndarray, seed: int, resamples: int = 1000, level: float = 0.95
) -> dict[str, list[float]]:
    """Percentile intervals, resampling members and non-members separately (sizes stay fixed)."""
    draws = weighted_curve_metrics(labels, scores, stratified_resample_weights(labels, seed, resamples))
    tail = (1 - level) / 2 * 100
    return {
        f"{name}_ci": [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))] for name, v in draws.items()
    }


def fitted_threshold(cal_labels: np.ndarray, cal_scores: np.ndarray) -> float:
    """The threshold with the best balanced accuracy on the attacker's calibration data."""
    fpr, tpr, thresholds = roc_curve(cal_labels, cal_scores)
    best = int(np.argmax(tpr - fpr))
    return float(thresholds[best]) if np.isfinite(thresholds[best]) else float(np.max(cal_scores))


def rates_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = scores >= threshold
    tpr, fpr = float(predicted[labels == 1].mean()), float(predicted[labels == 0].mean())
    return {"balanced_accuracy": (tpr + 1 - fpr) / 2, "tpr": tpr, "fpr": fpr}


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
        threshold = fitted_threshold(cal_labels, cal_scores)
        result["at_fitted_threshold"] = {"threshold": threshold, **rates_at(labels, scores, threshold)}
    return result


def paired_auc_difference(
    labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, seed: int, resamples: int = 1000
) -> dict[str, float | list[float] | bool]:
    """AUC(a) − AUC(b) on the same images, with a paired bootstrap (same resamples for both)."""
    weights = stratified_resample_weights(labels, seed, resamples)
    draws = (
        weighted_curve_metrics(labels, scores_a, weights)["auc"]
        - weighted_curve_metrics(labels, scores_b, weights)["auc"]
    )
    low, high = float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))
    difference = point_metrics(labels, scores_a)["auc"] - point_metrics(labels, scores_b)["auc"]
    # two-sided bootstrap p-value: twice the share of resamples on the far side of zero
    p_value = min(1.0, 2 * min(float(np.mean(draws <= 0)), float(np.mean(draws >= 0))))
    return {"difference": difference, "ci": [low, high], "p_value": max(p_value, 1 / resamples)}
