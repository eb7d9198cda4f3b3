"""Classification metrics and exact confidence intervals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact two-sided (1 - alpha) binomial interval for k successes out of n."""
    from scipy.stats import beta

    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha} must be within (0, 1)")
    if n <= 0:
        return (0.0, 1.0)  # no data: the interval is everything
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must be within [0, n={n}]")
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return (lo, hi)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"{t.size} labels but {p.size} predictions")
    for name, a in (("labels", t), ("predictions", p)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} span {a.min()}..{a.max()}, outside [0, {num_classes})")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], num_classes: int, alpha: float = 0.05
) -> dict[str, Any]:
    """Accuracy with its Clopper-Pearson interval, macro precision/recall/F1, per-class accuracy, confusion."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    n = int(cm.sum())
    correct = int(np.trace(cm))
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    # Macro averages over the classes that occur as a label or a prediction (scikit-learn's default).
    present = (support > 0) | (predicted > 0)
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "accuracy_ci": list(clopper_pearson(correct, n, alpha)),
        "precision": float(precision[present].mean()) if present.any() else 0.0,
        "recall": float(recall[present].mean()) if present.any() else 0.0,
        "f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class_accuracy": {
            str(c): (float(recall[c]) if support[c] > 0 else None) for c in range(num_classes)
        },
        "confusion": cm.tolist(),
    }
