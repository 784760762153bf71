import numpy as np
import pytest
from sklearn import metrics as skm

from common.metrics import best_f1_threshold, binary_metrics, recall_at_fpr


def test_metrics_agree_with_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = y * 0.5 + rng.random(500)
    m = binary_metrics(y, s, threshold=0.8)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, s))
    assert m["recall"] == pytest.approx(skm.recall_score(y, s >= 0.8))
    assert m["precision"] == pytest.approx(skm.precision_score(y, s >= 0.8))


def test_recall_at_fpr_by_hand():
    # 10 negatives, 4 positives; at FPR <= 10 % one negative may score above the cut.
    y = np.array([0] * 10 + [1] * 4)
    s = np.array([0.1] * 9 + [0.9] + [0.95, 0.85, 0.2, 0.05])
    assert recall_at_fpr(y, s, 0.0) == pytest.approx(0.25)
    # threshold 0.2 admits the one negative at 0.9 (FPR 0.1) and three positives
    assert recall_at_fpr(y, s, 0.1) == pytest.approx(0.75)
    assert binary_metrics(y, s)["recall_at_1pct_fpr"] == pytest.approx(0.25)


def test_best_f1_threshold_separates_perfect_scores():
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    t = best_f1_threshold(y, s)
    assert 0.3 < t <= 0.7
    assert binary_metrics(y, s, threshold=t)["f1"] == 1.0
