"""A model's accuracy under every corruption and severity (the CIFAR-10-C / ImageNet-C table).

:func:`corruption_accuracy` corrupts the data part by part on the model's device (the draws of a
sample are those :func:`~robustness.core.corruptions.corrupt` gives it on the whole set), and
returns the ``corruptions`` entry of ``results.json``: accuracy per corruption and severity, the
mean corruption accuracy (the mean of all those accuracies, RobustBench's "corruption
accuracy") with a 95% interval, the drop relative to clean accuracy, and a strip of examples.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from robustness.core.corruptions.base import (
    CHUNK,
    SEVERITIES,
    check_images,
    check_severity,
    constants_for,
    corruption_names,
    get_corruption,
)
from robustness.core.errors import UsageError

if TYPE_CHECKING:
    from robustness.core.model import ModelUnderTest

EXAMPLE_MAX_SIDE = 32  # stored examples are shrunk to this, so results.json stays small
EXAMPLE_DECIMALS = 3


def mean_score_interval(mean: float, n: int, alpha: float = 0.05) -> list[float]:
    """A 95% interval of the mean of ``n`` per-sample scores in [0, 1] (the share of corrupted
    versions a sample survives), as Clopper-Pearson for ``mean * n`` successes out of ``n``.

    The correlated cells of one sample are not independent trials, so the interval is taken over
    samples; a binomial has the largest variance a [0, 1] score of that mean can have, which makes
    the interval conservative rather than optimistic.
    """
    from scipy.stats import beta

    k = mean * n
    low = 0.0 if k <= 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k >= n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return [low, high]


def thumbnail(image: torch.Tensor, bounds: Sequence[float]) -> list[Any]:
    """One ``C x H x W`` image as nested lists in [0, 1]: ``H x W`` (grey) or ``H x W x 3``, at most
    :data:`EXAMPLE_MAX_SIDE` pixels a side."""
    lo, hi = float(bounds[0]), float(bounds[1])
    img = ((image.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)[None]
    h, w = img.shape[-2:]
    if max(h, w) > EXAMPLE_MAX_SIDE:
        f = EXAMPLE_MAX_SIDE / max(h, w)
        img = F.interpolate(img, size=(max(1, round(h * f)), max(1, round(w * f))), mode="area")
    img = torch.round(img[0] * 10**EXAMPLE_DECIMALS) / 10**EXAMPLE_DECIMALS
    return img[0].tolist() if img.shape[0] == 1 else img.permute(1, 2, 0).tolist()


def check_names(names: Sequence[str] | None) -> list[str]:
    known = corruption_names()
    if names is None:
        return known
    chosen = list(names)
    if not chosen:
        raise UsageError(
            "no corruption chosen", field="corruptions", fix=f"Name some of: {', '.join(known)}."
        )
    for name in chosen:
        get_corruption(name)  # the registry's error for an unknown name
    if len(set(chosen)) != len(chosen):
        raise UsageError(
            f"a corruption is named twice in {chosen}", field="corruptions", fix="Name each corruption once."
        )
    return chosen


def corruption_accuracy(
    model: ModelUnderTest,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    names: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    batch_size: int = 512,
    example_severity: int | None = 3,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Accuracy of ``model`` on ``x`` (labels ``y``) under each corruption at each severity.

    Returns the ``corruptions`` entry of results.json (see the module docstring); the examples
    are one correctly classified sample, clean and under every corruption at ``example_severity``.
    """
    check_images(x)
    chosen = check_names(names)
    levels = [check_severity(s) for s in severities]
    if not levels or len(set(levels)) != len(levels):
        raise UsageError(
            f"severities must be distinct values from 1 to 5, got {list(severities)}",
            field="severities",
            fix="Use e.g. [1, 2, 3, 4, 5].",
        )
    if example_severity is not None and example_severity not in levels:
        example_severity = levels[len(levels) // 2]
    t0 = time.perf_counter()
    n = int(x.shape[0])
    y = y.detach().cpu().long()
    bounds = tuple(float(b) for b in model.bounds)
    clean_pred = model.predict(x, batch_size).cpu()
    clean_correct = clean_pred == y
    survived = torch.zeros(n, dtype=torch.float64)  # per sample: cells classified correctly
    shown = int(clean_correct.nonzero()[0, 0]) if bool(clean_correct.any()) else 0
    examples: list[tuple[str, torch.Tensor, int]] = [("clean", x[shown], int(clean_pred[shown]))]
    rows = []
    for name in chosen:
        corruption = get_corruption(name)
        started = time.perf_counter()
        correct = []
        for severity in levels:
            if progress is not None:
                progress(f"corruptions: {name} at severity {severity}")
            hits = torch.zeros(n, dtype=torch.bool)
            for start in range(0, n, CHUNK):
                part = x[start : start + CHUNK].to(model.device)
                corrupted = corruption(part, severity, seed=seed, bounds=bounds, start=start)
                pred = model.predict(corrupted, batch_size).cpu()
                hits[start : start + CHUNK] = pred == y[start : start + CHUNK]
                if severity == example_severity and start <= shown < start + CHUNK:
                    examples.append((name, corrupted[shown - start].cpu(), int(pred[shown - start])))
            survived += hits.double()
            correct.append(int(hits.sum()))
        rows.append(
            {
                "name": name,
                "title": corruption.title,
                "family": corruption.family,
                "correct": correct,
                "accuracy": [k / n for k in correct],
                "mean_accuracy": sum(correct) / (n * len(levels)),
                "time_s": time.perf_counter() - started,
            }
        )
    cells = len(rows) * len(levels)
    mean_accuracy = float(survived.sum()) / (n * cells)
    clean_accuracy = float(clean_correct.double().mean())
    constants, scale = constants_for(int(x.shape[-2]), int(x.shape[-1]))
    from robustness.core.metrics import clopper_pearson

    return {
        "constants": constants,
        "pixel_scale": scale,
        "n": n,
        "seed": int(seed),
        "severities": levels,
        "channels": int(x.shape[1]),
        "clean_accuracy": clean_accuracy,
        "clean_ci": list(clopper_pearson(int(clean_correct.sum()), n)),
        "mean_corruption_accuracy": mean_accuracy,
        "mean_corruption_ci": mean_score_interval(mean_accuracy, n),
        "relative_drop": (clean_accuracy - mean_accuracy) / clean_accuracy if clean_accuracy > 0 else None,
        "corruptions": rows,
        "examples": {
            "index": shown,
            "label": int(y[shown]),
            "severity": example_severity,
            "names": [e[0] for e in examples],
            "predictions": [e[2] for e in examples],
            "images": [thumbnail(e[1], bounds) for e in examples],
        }
        if example_severity is not None
        else None,
        "time_s": time.perf_counter() - t0,
    }
