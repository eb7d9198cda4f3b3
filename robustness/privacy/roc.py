"""How well membership scores separate members from non-members: the numbers the field reports.

Carlini et al. 2022 ("Membership Inference Attacks From First Principles") made the true-positive
rate at a low false-positive rate the headline, read off a log-log ROC curve, with AUC only as a
secondary number. With ``n`` non-members an FPR of ``f`` rests on ``f * n`` false positives, so
every operating point carries exact Clopper-Pearson intervals for its TPR and its FPR.

The operating point of FPR ``f``: the strictest threshold that lets through at most
``floor(f * n)`` non-members. When ``f * n < 1`` that would be "no false positive at all", a
stricter point than asked, which under-states leakage; such a point is *unresolved* and is
measured at the first false positive instead (FPR ``1 / n >= f``), which can only over-state it.
FPR 0 is always the zero-false-positive point (every member scoring above every non-member).

Higher scores mean "member". Scores are small vectors (one per audited sample): NumPy is fine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from robustness.core.metrics import clopper_pearson

# The operating points every membership result reports (0: no false positive at all).
DEFAULT_FPRS = (0.01, 0.001, 0.0)
# Points of the ROC curve kept for plotting (log-spaced in FPR).
ROC_POINTS = 120


@dataclass(frozen=True)
class OperatingPoint:
    """The TPR of the strictest threshold that admits ``fp`` of the non-members."""

    fpr: float  # as asked
    fp: int
    tp: int
    n_members: int
    n_non_members: int
    threshold: float  # a member is flagged when its score is > threshold
    resolved: bool  # False: fewer than 1/fpr non-members, measured at the first false positive

    @property
    def tpr(self) -> float:
        return self.tp / self.n_members if self.n_members else 0.0

    @property
    def fpr_achieved(self) -> float:
        return self.fp / self.n_non_members if self.n_non_members else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "fpr": self.fpr,
            "fpr_achieved": self.fpr_achieved,
            "fpr_ci": list(clopper_pearson(self.fp, self.n_non_members)),
            "fp": self.fp,
            "tp": self.tp,
            "tpr": self.tpr,
            "tpr_ci": list(clopper_pearson(self.tp, self.n_members)),
            "tpr_null_ci": list(self.null_tpr_interval()),
            "p_value": self.p_value(),
            "threshold": self.threshold,
            "resolved": self.resolved,
        }

    def null_tpr_interval(self, alpha: float = 0.05) -> tuple[float, float]:
        """The central ``1 - alpha`` range of this point's TPR when nothing leaks.

        Without leakage member and non-member scores are exchangeable, and the members counted
        above the ``(fp + 1)``-th highest non-member follow a negative hypergeometric law: exact,
        threshold noise included.
        """
        if not self.n_members:
            return (0.0, 1.0)
        if self.fp >= self.n_non_members:
            return (1.0, 1.0)  # threshold below every non-member: every member counts
        law = self._null_law()
        return (float(law.ppf(alpha / 2)) / self.n_members, float(law.ppf(1 - alpha / 2)) / self.n_members)

    def p_value(self) -> float:
        """One-sided P(TPR >= the measured one) when nothing leaks."""
        if not self.n_members or self.fp >= self.n_non_members:
            return 1.0
        return float(min(1.0, self._null_law().sf(self.tp - 1)))

    def _null_law(self) -> Any:
        from scipy.stats import nhypergeom

        return nhypergeom(self.n_members + self.n_non_members, self.n_members, self.fp + 1)


def _as_scores(values: Any, what: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError(f"no {what} scores")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} scores hold NaN or infinite values")
    return a


def operating_point(members: np.ndarray, non_members: np.ndarray, fpr: float) -> OperatingPoint:
    """The TPR at FPR ``fpr`` (see the module docstring for the rule)."""
    n_m, n_n = members.size, non_members.size
    allowed = math.floor(fpr * n_n + 1e-9)
    resolved = fpr == 0 or allowed >= 1
    if not resolved:
        allowed = 1
    ordered = np.sort(non_members)[::-1]
    # Flag scores strictly above the (allowed+1)-th highest non-member: ties never sneak in.
    threshold = float(ordered[allowed]) if allowed < n_n else -math.inf
    fp = int((non_members > threshold).sum())
    tp = int((members > threshold).sum())
    return OperatingPoint(float(fpr), fp, tp, n_m, n_n, threshold, resolved)


def roc_curve(members: np.ndarray, non_members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct threshold, from (0, 0) to (1, 1)."""
    scores = np.concatenate([members, non_members])
    is_member = np.concatenate([np.ones(members.size), np.zeros(non_members.size)])
    order = np.argsort(-scores, kind="stable")
    scores, is_member = scores[order], is_member[order]
    tp, fp = np.cumsum(is_member), np.cumsum(1 - is_member)
    last = np.r_[np.diff(scores) != 0, True]  # one point per distinct score
    tpr = np.r_[0.0, tp[last] / members.size]
    fpr = np.r_[0.0, fp[last] / non_members.size]
    return fpr, tpr


def auc_score(members: np.ndarray, non_members: np.ndarray) -> float:
    """P(member score > non-member score) + 0.5 P(tie): the Mann-Whitney form of the ROC area."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([members, non_members]))
    n_m, n_n = members.size, non_members.size
    return float((ranks[:n_m].sum() - n_m * (n_m + 1) / 2) / (n_m * n_n))


def auc_null(n_members: int, n_non_members: int) -> float:
    """The standard deviation of the AUC when scores carry no membership at all (AUC 0.5)."""
    return math.sqrt((n_members + n_non_members + 1) / (12.0 * n_members * n_non_members))


def auc_p_value(members: np.ndarray, non_members: np.ndarray) -> float:
    """One-sided Mann-Whitney p-value of "members score higher" (exact ties handled by scipy)."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(members, non_members, alternative="greater").pvalue)


def thin_roc(fpr: np.ndarray, tpr: np.ndarray, points: int = ROC_POINTS) -> tuple[list[float], list[float]]:
    """At most ``points`` points of the curve, spread evenly in log FPR (what a log-log plot shows);
    the first point with a false positive and the last point are always kept."""
    keep = np.flatnonzero(fpr > 0)
    if keep.size <= points:
        idx = keep
    else:
        targets = np.geomspace(fpr[keep[0]], 1.0, points)
        # the last curve point at or below each target FPR (the highest TPR reached there)
        idx = np.unique(np.searchsorted(fpr, targets, side="right") - 1)
        idx = np.unique(np.r_[keep[0], idx[fpr[idx] > 0], fpr.size - 1])
    return [float(v) for v in fpr[idx]], [float(v) for v in tpr[idx]]


def membership_metrics(
    member_scores: Sequence[float] | np.ndarray,
    non_member_scores: Sequence[float] | np.ndarray,
    fprs: Sequence[float] = DEFAULT_FPRS,
) -> dict[str, Any]:
    """Everything the field reports about one attack's scores.

    ``auc``; ``auc_null_sd`` (its spread when nothing leaks); ``auc_p_value`` (one-sided
    Mann-Whitney); ``leak_p_value`` (that test and every resolved operating point's, adjusted);
    ``advantage`` (Yeom et al.'s membership advantage, max over thresholds of
    TPR - FPR); ``tpr_at_fpr`` and ``tpr_at_fpr_ci`` (FPR as a string -> TPR / [low, high]);
    ``operating_points`` (the full records); ``roc`` (``fpr``, ``tpr`` thinned for a log-log plot).
    """
    members = _as_scores(member_scores, "member")
    non_members = _as_scores(non_member_scores, "non-member")
    points = [operating_point(members, non_members, float(f)) for f in fprs]
    auc_p = auc_p_value(members, non_members)
    fpr, tpr = roc_curve(members, non_members)
    roc_fpr, roc_tpr = thin_roc(fpr, tpr)
    return {
        "n_members": int(members.size),
        "n_non_members": int(non_members.size),
        "auc": auc_score(members, non_members),
        "auc_null_sd": auc_null(members.size, non_members.size),
        "auc_p_value": auc_p,
        "advantage": float(np.max(tpr - fpr)),
        "tpr_at_fpr": {fpr_key(p.fpr): p.tpr for p in points},
        "tpr_at_fpr_ci": {fpr_key(p.fpr): list(clopper_pearson(p.tp, p.n_members)) for p in points},
        "operating_points": [p.to_dict() for p in points],
        # Bonferroni over the AUC test and every resolved operating point: one false alarm in 100
        # audits of a model that leaks nothing.
        "leak_p_value": leak_p_value(auc_p, [p.p_value() for p in points if p.resolved and p.fpr > 0]),
        "roc": {"fpr": roc_fpr, "tpr": roc_tpr},
    }


def leak_p_value(auc_p: float, point_ps: Sequence[float]) -> float:
    """The smallest of the p-values, Bonferroni-adjusted for their number."""
    ps = [auc_p, *point_ps]
    return float(min(1.0, min(ps) * len(ps)))


def fpr_key(fpr: float) -> str:
    """The key of an FPR in ``tpr_at_fpr`` (JSON keys are strings): ``0.01``, ``0.001``, ``0``."""
    return f"{float(fpr):g}"
