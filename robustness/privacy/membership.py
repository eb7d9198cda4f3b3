"""Membership inference: does the model give away which samples it was trained on?

Three black-box attacks, each turning the model's outputs on the audited samples into one
membership score per sample (higher: more likely a member), scored by :mod:`robustness.privacy.roc`:

- ``loss``: the loss-threshold baseline (Yeom et al. 2018): score = -loss. It can show a leak,
  but a model it does not separate is not shown to be safe: it ignores that some samples are
  simply easy for every model.
- ``rmia``: offline RMIA (Zarifzadeh et al. 2024): the likelihood ratio of the audited model's
  probability of the true label ``p(x)`` against the reference models' ``p_out(x)``, with
  ``Pr(x) = ((1 + a) p_out(x) + (1 - a)) / 2`` (``p_in`` approximated as ``a p_out + 1 - a``).
  The paper scores ``x`` by the share of population samples ``z`` with ``ratio(x) / ratio(z) > gamma``;
  with ``gamma = 1`` that share is a monotone function of ``ratio(x)``, so the ROC is that of
  ``ratio(x)`` itself, which is scored directly (no ties from a finite population sample).
  ``a`` is tuned on a reference model whose training set is known, else 0.3.
- ``lira``: offline LiRA with a fixed variance (Carlini et al. 2022): a one-sided test of the
  audited model's logit-scaled confidence against the reference models' (out) distribution,
  ``(phi(x) - median_out(x)) / sigma`` with ``sigma`` pooled over all samples.

RMIA and LiRA need reference models (:mod:`robustness.privacy.references`) that never saw an
audited sample. :func:`audit_membership` runs attacks and adds what a reviewer needs beyond the
curve: per-class leakage, the most exposed samples and the model's accuracy gap.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from robustness.core.errors import ConfigError
from robustness.core.registry import Registry
from robustness.privacy.roc import DEFAULT_FPRS, auc_score, membership_metrics, operating_point
from robustness.privacy.signals import Signals, observe

if TYPE_CHECKING:
    from robustness.core.data import Dataset
    from robustness.core.model import ModelUnderTest
    from robustness.privacy.references import ReferenceModels

# ML Privacy Meter's offline RMIA constant when it cannot be tuned (no reference model with a known
# training set).
RMIA_DEFAULT_A = 0.3
RMIA_A_GRID = tuple(round(0.1 * i, 1) for i in range(11))
# The level at which a result says "leak detected" (Bonferroni-adjusted over its tests).
LEAK_ALPHA = 0.01
# Samples listed as most exposed.
TOP_EXPOSED = 10
# The operating point per-class leakage and exposure are read at.
PER_CLASS_FPR = 0.01


class MembershipAttack:
    """One attack: ``score`` maps the audited model's signals (and the reference models') to
    membership scores. ``params`` is what the result records of how it scored."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    needs_references: ClassVar[bool] = False

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def prepare(self, references: ReferenceModels | None, batch_size: int) -> None:
        """Work on the reference models alone, before scoring (RMIA tunes ``a`` here)."""

    def score(self, target: Signals, references: list[Signals]) -> np.ndarray:
        raise NotImplementedError


MEMBERSHIP_ATTACKS: Registry[type[MembershipAttack]] = Registry(
    "membership attack", error=ConfigError, field="attack"
)


def register_membership_attack(cls: type[MembershipAttack]) -> type[MembershipAttack]:
    return MEMBERSHIP_ATTACKS.add(cls.name, cls)


@register_membership_attack
class LossThreshold(MembershipAttack):
    name = "loss"
    title = "loss threshold (Yeom et al. 2018)"

    def score(self, target: Signals, references: list[Signals]) -> np.ndarray:
        return (-target.loss).numpy()


def rmia_scores(p_target: torch.Tensor, p_out: torch.Tensor, a: float) -> torch.Tensor:
    """log of RMIA's ratio ``p(x) / Pr(x)``, ``Pr(x) = ((1 + a) p_out + 1 - a) / 2`` (all float64)."""
    tiny = torch.finfo(torch.float64).tiny
    pr_x = 0.5 * ((1 + a) * p_out + (1 - a))
    return torch.log(p_target.clamp_min(tiny)) - torch.log(pr_x.clamp_min(tiny))


def tune_rmia_a(references: ReferenceModels, batch_size: int) -> tuple[float, str]:
    """RMIA's ``a``: the grid value with the best AUC when the first reference model plays the target.

    Its members are the pool samples it trained on; each pool sample's ``p_out`` averages the
    other reference models that did not train on it (samples with none are left out).
    """
    if references.pool is None or references.trained_on is None or len(references) < 2:
        return RMIA_DEFAULT_A, f"default {RMIA_DEFAULT_A} (needs 2 or more trained reference models to tune)"
    pool = references.pool
    probs = torch.stack([observe(m, pool.x, pool.y, batch_size).probability for m in references.models])
    out_mask = ~references.trained_on[1:]
    usable = out_mask.any(dim=0)
    if int(usable.sum()) < 4:
        return RMIA_DEFAULT_A, f"default {RMIA_DEFAULT_A} (too few pool samples to tune)"
    p_out = (probs[1:] * out_mask).sum(dim=0)[usable] / out_mask.sum(dim=0)[usable]
    p_target, is_member = probs[0][usable], references.trained_on[0][usable]
    if bool(is_member.all()) or not bool(is_member.any()):
        return (
            RMIA_DEFAULT_A,
            f"default {RMIA_DEFAULT_A} (the pool gives no members and non-members to tune on)",
        )
    best = max(
        RMIA_A_GRID,
        key=lambda a: auc_score(
            rmia_scores(p_target, p_out, a)[is_member].numpy(),
            rmia_scores(p_target, p_out, a)[~is_member].numpy(),
        ),
    )
    how = f"grid search with the first reference model as target ({int(usable.sum())} pool samples)"
    return float(best), how


@register_membership_attack
class OfflineRMIA(MembershipAttack):
    name = "rmia"
    title = "offline RMIA (Zarifzadeh et al. 2024)"
    needs_references = True

    def __init__(self, a: float | None = None) -> None:
        super().__init__()
        self.a = a

    def prepare(self, references: ReferenceModels | None, batch_size: int) -> None:
        if self.a is not None:
            self.params = {"a": float(self.a), "a_method": "given", "gamma": 1.0}
            return
        assert references is not None
        a, how = tune_rmia_a(references, batch_size)
        self.a = a
        self.params = {"a": a, "a_method": how, "gamma": 1.0}

    def score(self, target: Signals, references: list[Signals]) -> np.ndarray:
        p_out = torch.stack([r.probability for r in references]).mean(dim=0)
        return rmia_scores(target.probability, p_out, float(self.a)).numpy()


@register_membership_attack
class OfflineLiRA(MembershipAttack):
    name = "lira"
    title = "offline LiRA, fixed variance (Carlini et al. 2022)"
    needs_references = True

    def score(self, target: Signals, references: list[Signals]) -> np.ndarray:
        phi_out = torch.stack([r.confidence for r in references])
        center = phi_out.median(dim=0).values
        # One variance for all samples: with few reference models per-sample variances are noise.
        if phi_out.shape[0] > 1:
            sigma = float(phi_out.var(dim=0, unbiased=True).mean().sqrt())
        else:
            sigma = float(phi_out.std())
        sigma = max(sigma, 1e-12)
        self.params = {"sigma": sigma, "center": "median over reference models"}
        return ((target.confidence - center) / sigma).numpy()


def make_attack(name: str, **params: Any) -> MembershipAttack:
    """The membership attack called ``name`` (``loss``, ``rmia``, ``lira``)."""
    return MEMBERSHIP_ATTACKS.get(name)(**params)


def _per_class(
    scores_m: np.ndarray, scores_n: np.ndarray, y_m: np.ndarray, y_n: np.ndarray, threshold: float
) -> list[dict[str, Any]]:
    from robustness.core.metrics import clopper_pearson

    rows = []
    for c in sorted(set(y_m.tolist()) | set(y_n.tolist())):
        sm, sn = scores_m[y_m == c], scores_n[y_n == c]
        tp = int((sm > threshold).sum())
        rows.append(
            {
                "label": int(c),
                "n_members": int(sm.size),
                "n_non_members": int(sn.size),
                "auc": auc_score(sm, sn) if sm.size and sn.size else None,
                "tpr": tp / sm.size if sm.size else None,
                "tpr_ci": list(clopper_pearson(tp, int(sm.size))),
                "fpr": float((sn > threshold).mean()) if sn.size else None,
            }
        )
    return rows


def _most_exposed(
    scores_m: np.ndarray, members: Dataset, points: list[dict[str, Any]], k: int
) -> list[dict[str, Any]]:
    order = np.argsort(-scores_m, kind="stable")[:k]
    rows = []
    for i in order.tolist():
        flagged = [p["fpr"] for p in points if scores_m[i] > p["threshold"]]
        rows.append(
            {
                "id": str(members.ids[i]),
                "label": int(members.y[i]),
                "score": float(scores_m[i]),
                "flagged_at_fpr": min(flagged) if flagged else None,
            }
        )
    return rows


def run_attack(
    attack: MembershipAttack,
    target_m: Signals,
    target_n: Signals,
    refs_m: list[Signals],
    refs_n: list[Signals],
    members: Dataset,
    non_members: Dataset,
    fprs: Sequence[float] = DEFAULT_FPRS,
) -> dict[str, Any]:
    """One attack's result: the metrics of :func:`robustness.privacy.roc.membership_metrics`, plus
    ``attack``, ``params``, ``leak_detected``, ``per_class`` and ``most_exposed``."""
    t0 = time.perf_counter()
    s_m = attack.score(target_m, refs_m)
    s_n = attack.score(target_n, refs_n)
    metrics = membership_metrics(s_m, s_n, fprs)
    at = operating_point(s_m, s_n, PER_CLASS_FPR)
    return {
        "attack": attack.name,
        "title": attack.title,
        "params": dict(attack.params),
        **metrics,
        "leak_detected": bool(metrics["leak_p_value"] < LEAK_ALPHA),
        "per_class_fpr": PER_CLASS_FPR,
        "per_class": _per_class(s_m, s_n, members.y.numpy(), non_members.y.numpy(), at.threshold),
        "most_exposed": _most_exposed(s_m, members, metrics["operating_points"], TOP_EXPOSED),
        "time_s": time.perf_counter() - t0,
    }


def audit_membership(
    model: ModelUnderTest,
    members: Dataset,
    non_members: Dataset,
    attacks: Sequence[str | MembershipAttack] = ("loss",),
    references: ReferenceModels | None = None,
    *,
    fprs: Sequence[float] = DEFAULT_FPRS,
    batch_size: int = 512,
) -> dict[str, Any]:
    """Run each membership attack on ``model`` with its ``members`` and ``non_members``.

    Returns ``attacks`` (one :func:`run_attack` result each), ``n_members``, ``n_non_members``,
    ``accuracy`` (on members and non-members: the generalisation gap), ``references`` (what the
    reference models were) and ``time_s``.
    """
    t0 = time.perf_counter()
    chosen = [make_attack(a) if isinstance(a, str) else a for a in attacks]
    if any(a.needs_references for a in chosen) and (references is None or len(references) == 0):
        names = ", ".join(a.name for a in chosen if a.needs_references)
        raise ConfigError(
            f"attack {names} needs reference models",
            field="reference_models",
            fix="Give reference models trained without the audited samples (--reference-models SPEC ...), "
            "or let the audit train them from a recipe on data that excludes the audited samples.",
        )
    target_m = observe(model, members.x, members.y, batch_size)
    target_n = observe(model, non_members.x, non_members.y, batch_size)
    refs_m: list[Signals] = []
    refs_n: list[Signals] = []
    if references is not None and any(a.needs_references for a in chosen):
        refs_m = [observe(r, members.x, members.y, batch_size) for r in references.models]
        refs_n = [observe(r, non_members.x, non_members.y, batch_size) for r in references.models]
    results = []
    for attack in chosen:
        attack.prepare(references, batch_size)
        results.append(run_attack(attack, target_m, target_n, refs_m, refs_n, members, non_members, fprs))
    return {
        "n_members": len(members),
        "n_non_members": len(non_members),
        "accuracy": {
            "members": float(target_m.correct.double().mean()),
            "non_members": float(target_n.correct.double().mean()),
        },
        "references": references.info if references is not None else None,
        "fprs": [float(f) for f in fprs],
        "attacks": results,
        "time_s": time.perf_counter() - t0,
    }


def strongest(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The attack with the highest TPR at the lowest FPR the non-members resolve (ties: the
    smaller leak p-value): the field's headline, read where it is measured."""

    def key(r: dict[str, Any]) -> tuple[float, float]:
        points = [p for p in r["operating_points"] if p["fpr"] > 0 and p["resolved"]]
        point = (
            min(points, key=lambda p: p["fpr"])
            if points
            else max(r["operating_points"], key=lambda p: p["fpr"])
        )
        return (point["tpr"], -r["leak_p_value"])

    return max(results, key=key)
