"""Robust accuracy of a smoothed classifier bracketed from both sides, at each eps of an audit.

Below: CERTIFY's certified accuracy at radius eps (with probability 1 - alpha per sample, each
certified sample is robust). Above: the share of samples the attack on ``g``
(:mod:`~robustness.smoothing.empirical`) leaves standing. A certified sample the attack broke
contradicts the two; a few are Monte Carlo error (a certificate fails with probability alpha,
and the vote that judges an example can err when ``g``'s margin there is thin), more is a bug
in the certificate or the attack. :func:`bracket_rows` counts them against the number Monte
Carlo error allows, per eps; :func:`certify_section` is the ``certify`` entry of results.json.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from robustness.core.metrics import clopper_pearson
from robustness.smoothing import bounds
from robustness.smoothing.classifier import Certificates, SmoothedClassifier
from robustness.smoothing.empirical import AttackSettings, EmpiricalResult, attack_smoothed

# Contradictions allowed: the 99.9% quantile of a Poisson variable whose mean is the number
# expected from Monte Carlo error (it bounds the spread of a sum of unlikely independent events).
CONTRADICTION_QUANTILE = 0.999
# Points of the certified-accuracy curve (radius 0 to the largest certifiable radius).
CURVE_POINTS = 40


def certified_curve(certs: Certificates, y: torch.Tensor, radii: Sequence[float]) -> list[dict[str, float]]:
    """``[{radius, certified_accuracy}]`` at each of ``radii``."""
    acc = certs.certified_accuracy(y, radii)
    return [{"radius": float(r), "certified_accuracy": a} for r, a in zip(radii, acc)]


def per_sample(
    certs: Certificates, y: torch.Tensor, index: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """One record per sample: ``index``, ``label``, ``prediction`` (-1: abstain), ``radius``
    (None: abstain), ``correct``, ``p_lower``."""
    y = y.cpu().long()
    ids = range(len(y)) if index is None else index
    correct = certs.correct(y).tolist()
    rows = []
    for i, ident in enumerate(ids):
        pred = int(certs.prediction[i])
        r = float(certs.radius[i])
        rows.append(
            {
                "index": int(ident),
                "label": int(y[i]),
                "prediction": pred,
                "radius": None if pred < 0 or np.isnan(r) else r,
                "correct": bool(correct[i]),
                "p_lower": float(certs.p_lower[i]),
            }
        )
    return rows


def _vote_error(votes: int, q: np.ndarray) -> np.ndarray:
    """An upper bound on the chance that a vote of ``votes`` draws misses a class of probability
    at least ``q``: at most half its draws for it."""
    from scipy.stats import binom

    return binom.cdf(votes // 2, votes, q)


def bracket_rows(
    certs: Certificates, empirical: EmpiricalResult, y: torch.Tensor, restarts: int, votes: int
) -> list[dict[str, Any]]:
    """Per eps: certified and empirical accuracy (exact 95% intervals), and the contradictions
    (certified at eps, broken by the attack) against the number Monte Carlo error allows."""
    from scipy.stats import norm, poisson

    y = y.cpu().long()
    n = int(y.numel())
    correct = certs.correct(y).numpy()
    radius = np.nan_to_num(certs.radius.numpy(), nan=-np.inf)
    rows = []
    for k, eps in enumerate(empirical.eps):
        certified = correct & (radius >= eps)
        robust = empirical.robust[k].numpy()
        contradictions = int((certified & ~robust).sum())
        # A certificate of radius R keeps g's top-class probability at least Phi((R - eps) / sigma)
        # everywhere in the eps ball (Cohen et al., Theorem 1); each of the sample's votes so far
        # (clean, then `restarts` per eps) could still miss the class by chance.
        q = norm.cdf((np.where(certified, radius, eps) - eps) / certs.sigma)
        n_votes = 1 + (k + 1) * restarts
        expected = float(
            np.sum(np.where(certified, certs.alpha + np.minimum(1.0, n_votes * _vote_error(votes, q)), 0.0))
        )
        allowed = int(poisson.ppf(CONTRADICTION_QUANTILE, expected)) if expected > 0 else 0
        n_cert, n_rob = int(certified.sum()), int(robust.sum())
        rows.append(
            {
                "eps": float(eps),
                "certified_accuracy": n_cert / n if n else 0.0,
                "certified_ci": list(clopper_pearson(n_cert, n)),
                "n_certified": n_cert,
                "empirical_accuracy": n_rob / n if n else 0.0,
                "empirical_ci": list(clopper_pearson(n_rob, n)),
                "n_robust": n_rob,
                "contradictions": contradictions,
                "contradictions_expected": expected,
                "contradictions_allowed": allowed,
            }
        )
    return rows


def certify_section(
    smoothed: SmoothedClassifier,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float],
    *,
    n0: int,
    n: int,
    alpha: float,
    settings: AttackSettings,
    seed: int = 0,
    index: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Certify ``x`` with ``g``, attack ``g`` at each eps, and bracket the two: the ``certify``
    entry of results.json (see :class:`robustness.core.sections.certify.CertifyResult`)."""
    t0 = time.perf_counter()
    certs = smoothed.certify(x, n0, n, alpha, index=index)
    certify_s = time.perf_counter() - t0
    empirical = attack_smoothed(smoothed, x, y, eps, settings, seed=seed, index=index)
    rows = bracket_rows(certs, empirical, y, settings.restarts, settings.votes)
    max_radius = certs.max_radius
    radii = np.linspace(0.0, max_radius, CURVE_POINTS).tolist()
    correct = certs.correct(y)
    count = int(y.numel())
    return {
        "sigma": smoothed.sigma,
        "n0": int(n0),
        "n": int(n),
        "alpha": float(alpha),
        "n_samples": count,
        "seed": int(smoothed.seed),
        "batch_size": smoothed.batch_size,
        "max_radius": max_radius,
        "smoothed_accuracy": int(correct.sum()) / count if count else 0.0,
        "abstain_rate": int(certs.abstained.sum()) / count if count else 0.0,
        "vote_accuracy": int(empirical.clean_correct.sum()) / count if count else 0.0,
        "curve": certified_curve(certs, y, radii),
        "rows": rows,
        "attack": settings.describe(),
        "bracket_holds": all(r["contradictions"] <= r["contradictions_allowed"] for r in rows),
        "certify_s": certify_s,
        "attack_s": empirical.time_s,
        "time_s": time.perf_counter() - t0,
    }


def default_radii(certs: Certificates) -> list[float]:
    """The radii a certify report lists: round steps up to the largest certifiable radius."""
    return bounds.radius_grid(certs.max_radius)
