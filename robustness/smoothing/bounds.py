"""The statistics of randomized smoothing, exactly as Cohen, Rosenfeld & Kolter (2019) state them.

CERTIFY bounds the top class's probability under noise from below with a one-sided
Clopper–Pearson bound at level ``alpha`` and certifies the l2 radius ``sigma * Phi^-1(p_lower)``
(abstaining below 1/2); PREDICT abstains unless a two-sided binomial test on the top two counts
rejects a tie at ``alpha``. They run once per image on its counts, not in the sampling loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def lower_confidence_bound(count: int | np.ndarray, n: int, alpha: float) -> np.ndarray:
    """One-sided (1 - alpha) Clopper–Pearson lower bound on a probability seen ``count`` times in
    ``n`` draws: ``Beta(alpha; count, n - count + 1)``, and 0 for ``count == 0``."""
    from scipy.stats import beta

    k = np.asarray(count, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bound = beta.ppf(alpha, k, n - k + 1)
    return np.where(k > 0, bound, 0.0)


def binomial_p_value(top: int, runner_up: int) -> float:
    """Two-sided exact binomial test of ``top`` successes in ``top + runner_up`` draws against 1/2
    (PREDICT's test; scipy's ``binomtest``)."""
    from scipy.stats import binomtest

    total = int(top) + int(runner_up)
    if total == 0:
        return 1.0
    return float(binomtest(int(top), total, 0.5).pvalue)


def radius(sigma: float, p_lower: float | np.ndarray) -> np.ndarray:
    """The certified l2 radius ``sigma * Phi^-1(p_lower)`` (negative below 1/2: no certificate)."""
    from scipy.stats import norm

    return sigma * norm.ppf(np.asarray(p_lower, dtype=np.float64))


def max_certifiable_radius(sigma: float, n: int, alpha: float) -> float:
    """The largest radius CERTIFY can return with ``n`` samples: every draw votes for the class,
    so ``p_lower = alpha^(1/n)`` and the radius is ``sigma * Phi^-1(alpha^(1/n))``."""
    return float(radius(sigma, alpha ** (1.0 / n)))


def certified_accuracy(
    correct: Sequence[bool] | np.ndarray, radii: Sequence[float | None] | np.ndarray, at: Sequence[float]
) -> list[float]:
    """Share of samples predicted correctly with a certified radius of at least each of ``at``
    (an abstention, radius None or NaN, counts as wrong; Cohen et al.'s ``radius >= r``)."""
    ok = np.asarray(correct, dtype=bool)
    r = np.array([np.nan if v is None else float(v) for v in radii], dtype=np.float64)
    if ok.size == 0:
        return [0.0 for _ in at]
    with np.errstate(invalid="ignore"):
        return [float(np.mean(ok & (r >= float(a)))) for a in at]


def radius_grid(max_radius: float, points: int = 12) -> list[float]:
    """Round radii from 0 up to ``max_radius``: the smallest step of 0.05, 0.1, 0.25, 0.5, 1, ...
    that keeps at most ``points`` of them."""
    steps = [0.05, 0.1, 0.25, 0.5]
    step = next((s for s in steps if max_radius / s < points), None)
    if step is None:
        step = float(10 ** math.ceil(math.log10(max_radius / points)))
    count = int(math.floor(max_radius / step + 1e-9))
    return [round(i * step, 10) for i in range(count + 1)]
