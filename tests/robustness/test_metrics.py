"""Metrics: exact Clopper-Pearson intervals and classification metrics against scipy / scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import f1_score, precision_score, recall_score

from robustness.core.metrics import classification_metrics, clopper_pearson, confusion_matrix


@pytest.mark.parametrize(
    "k, n, low, high",
    [
        (5, 10, 0.1871, 0.8129),
        (0, 10, 0.0, 0.3085),
        (10, 10, 0.6915, 1.0),
        (1, 100, 0.0003, 0.0545),
        (56, 100, 0.4572, 0.6592),
        (355, 359, 0.9717, 0.9970),
    ],
)
def test_clopper_pearson_known_values(k, n, low, high):
    lo, hi = clopper_pearson(k, n)
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize(
    "k, n", [(0, 1), (1, 1), (3, 7), (50, 100), (99, 100), (0, 359), (200, 359), (1000, 1000)]
)
@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.32])
def test_clopper_pearson_matches_scipy(k, n, alpha):
    ci = binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="exact")
    lo, hi = clopper_pearson(k, n, alpha)
    assert lo == pytest.approx(ci.low, abs=1e-10) and hi == pytest.approx(ci.high, abs=1e-10)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_clopper_pearson_edges_and_errors():
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    a, b = clopper_pearson(30, 100, 0.05), clopper_pearson(30, 100, 0.01)
    assert b[0] < a[0] and b[1] > a[1]  # a higher confidence level gives a wider interval
    with pytest.raises(ValueError, match="k=11 must be within"):
        clopper_pearson(11, 10)
    with pytest.raises(ValueError, match="k=-1 must be within"):
        clopper_pearson(-1, 10)
    for alpha in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match="alpha"):
            clopper_pearson(5, 10, alpha)


def _labels(seed, n=300, c=10, skip_true=None, only_pred_extra=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    if skip_true is not None:
        y[y == skip_true] = (skip_true + 1) % c
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, c, n))
    if only_pred_extra is not None:
        pred[:5] = only_pred_extra
    return y, pred


@pytest.mark.parametrize(
    "seed, kwargs",
    [
        (0, {}),
        (1, {"skip_true": 3}),  # a class that is never a label
        (2, {"skip_true": 4, "only_pred_extra": 4}),  # a class only ever predicted
        (3, {"c": 2}),
    ],
)
def test_classification_metrics_match_sklearn(seed, kwargs):
    c = kwargs.pop("c", 10)
    y, pred = _labels(seed, c=c, **kwargs)
    m = classification_metrics(y, pred, c)
    assert m["n"] == len(y) and m["correct"] == int((y == pred).sum())
    assert m["accuracy"] == pytest.approx((y == pred).mean())
    assert m["accuracy_ci"] == pytest.approx(list(clopper_pearson(m["correct"], m["n"])))
    with np.errstate(all="ignore"):
        assert m["precision"] == pytest.approx(precision_score(y, pred, average="macro", zero_division=0))
        assert m["recall"] == pytest.approx(recall_score(y, pred, average="macro", zero_division=0))
        assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert m["confusion"] == sk_confusion(y, pred, labels=list(range(c))).tolist()
    for cls in range(c):
        mask = y == cls
        expected = float((pred[mask] == cls).mean()) if mask.any() else None
        assert m["per_class_accuracy"][str(cls)] == (
            pytest.approx(expected) if expected is not None else None
        )


def test_classification_metrics_hand_example():
    y = [0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 1, 2, 0]
    m = classification_metrics(y, pred, 3)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # precision per class 1/2, 2/3, 1 ; recall 1/2, 1, 1/2
    assert m["precision"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert m["recall"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert m["per_class_accuracy"] == {"0": 0.5, "1": 1.0, "2": 0.5}


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match="labels span 0..3, outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="predictions span -1..1"):
        confusion_matrix([0, 1], [-1, 1], 3)
    with pytest.raises(ValueError, match="2 labels but 3 predictions"):
        confusion_matrix([0, 1], [0, 1, 1], 3)
    assert confusion_matrix([], [], 2).tolist() == [[0, 0], [0, 0]]
