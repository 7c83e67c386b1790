import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmark.records.metrics import (
    bootstrap_intervals,
    evaluate,
    fitted_threshold,
    point_metrics,
    rates_at,
    weighted_curve_metrics,
)


def test_perfect_separation():
    labels = np.array([1, 1, 1, 0, 0, 0])
    result = point_metrics(labels, np.array([3.0, 2.5, 2.0, 1.0, 0.5, 0.0]))
    assert result == {"auc": 1.0, "asr_best_threshold": 1.0, "tpr_at_1pct_fpr": 1.0, "tpr_at_0_1pct_fpr": 1.0}


def test_tpr_at_fpr_is_max_tpr_with_fpr_not_above_alpha():
    # 100 negatives: one false positive is FPR 1%; the top-scored image is a negative
    labels = np.array([0] + [1] * 10 + [0] * 99)
    scores = np.array([100.0] + list(range(90, 80, -1)) + list(range(50, -49, -1)), dtype=float)
    result = point_metrics(labels, scores)
    assert result["tpr_at_1pct_fpr"] == 1.0  # all 10 members above every negative but one (FPR 0.01)
    assert result["tpr_at_0_1pct_fpr"] == 0.0  # FPR 0 only before any member is admitted


def test_asr_is_best_balanced_accuracy():
    labels = np.array([1, 1, 0, 0])
    scores = np.array([0.9, 0.2, 0.5, 0.1])
    # threshold 0.9: TPR .5 FPR 0 -> .75; threshold 0.5: TPR .5 FPR .5; threshold .2: TPR 1 FPR .5 -> .75
    assert point_metrics(labels, scores)["asr_best_threshold"] == pytest.approx(0.75)


def test_vectorised_curves_match_scikit_learn_on_ties():
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(6, 200))
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        scores = np.round(rng.normal(size=n) + labels, 1)
        weights = rng.integers(0, 3, size=(3, n)).astype(float)
        weights[:, :2] = 1
        vectorised = weighted_curve_metrics(labels, scores, weights)
        for row in range(3):
            expanded = np.repeat(np.arange(n), weights[row].astype(int))
            expected = point_metrics(labels[expanded], scores[expanded])
            for name, value in expected.items():
                assert vectorised[name][row] == pytest.approx(value, abs=1e-12)


def test_bootstrap_interval_brackets_the_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(100, int), np.zeros(100, int)]
    scores = rng.normal(size=200) + labels
    intervals = bootstrap_intervals(labels, scores, seed=3)
    low, high = intervals["auc_ci"]
    assert low < roc_auc_score(labels, scores) < high
    assert 0.05 < high - low < 0.25
    assert bootstrap_intervals(labels, scores, seed=3) == intervals


def test_fitted_threshold_applies_to_evaluation_split():
    cal_labels = np.array([1, 1, 1, 0, 0, 0])
    cal_scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    threshold = fitted_threshold(cal_labels, cal_scores)
    assert 2.0 < threshold <= 3.0
    rates = rates_at(np.array([1, 0]), np.array([3.5, 2.5]), threshold)
    assert rates == {"balanced_accuracy": 1.0, "tpr": 1.0, "fpr": 0.0}


def test_low_fpr_flags_too_few_negatives():
    labels = np.r_[np.ones(50, int), np.zeros(500, int)]
    result = evaluate(labels, np.random.default_rng(0).normal(size=550), seed=0, resamples=50)
    assert result["tpr_reliable"] == {"tpr_at_1pct_fpr": False, "tpr_at_0_1pct_fpr": False}
    labels = np.r_[np.ones(50, int), np.zeros(1000, int)]
    result = evaluate(labels, np.random.default_rng(0).normal(size=1050), seed=0, resamples=50)
    assert result["tpr_reliable"] == {"tpr_at_1pct_fpr": True, "tpr_at_0_1pct_fpr": False}
