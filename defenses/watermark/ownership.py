"""The ownership test: does a suspect model carry the watermark of a key?

A marked model labels the key's triggers as assigned; an unmarked model matches about as often
as chance allows. Verification is a one-sided exact binomial test:

    H0: the suspect is not derived from the marked model, so each trigger matches with rate <= p0.
    p-value = P[X >= k | X ~ Binomial(K, p0)],  verified  <=>  p-value <= alpha (default 1e-6).

The null rate p0 is chosen conservatively. The random labels alone would give 1/num_classes,
but out-of-distribution triggers collapse onto a few classes in unmarked models, and a label
draw that happens to favour that class would then match far above 1/num_classes. The default
rule (``max-class-share``) therefore takes the largest share of the triggers that the suspect
assigns to any one class, never less than 1/num_classes: the match rate a model that ignores the
labels could reach by predicting its favourite class. With reference models (independently
trained, unmarked), p0 is raised further to the largest upper 97.5% Clopper-Pearson bound of
their match rates; their false-positive rate is measured leave-one-out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from defenses.watermark.key import WatermarkKey, check_compatible, load_key
from robustness.core.errors import ConfigError
from robustness.core.metrics import clopper_pearson

if TYPE_CHECKING:
    from robustness.core.model import ModelUnderTest

DEFAULT_ALPHA = 1e-6
REFERENCE_CI_ALPHA = 0.05  # two-sided 95% interval: its upper end is a one-sided 97.5% bound


def binomial_p_value(k: int, n: int, p0: float) -> float:
    """Exact one-sided P[X >= k] for X ~ Binomial(n, p0)."""
    from scipy.stats import binom

    if k <= 0:
        return 1.0
    return float(binom.sf(k - 1, n, p0))


def max_class_share(pred: Sequence[int] | np.ndarray, num_classes: int) -> float:
    """The largest share of predictions on one class, floored at 1/num_classes."""
    counts = np.bincount(np.asarray(pred, dtype=np.int64), minlength=num_classes)
    return max(1.0 / num_classes, float(counts.max()) / max(1, int(counts.sum())))


def trigger_predictions(model: ModelUnderTest, key: WatermarkKey, batch_size: int = 512) -> np.ndarray:
    """The suspect's labels for the key's triggers."""
    x, _ = key.trigger_tensors()
    return model.predict(x, batch_size).cpu().numpy()


def decide(
    pred: np.ndarray, key: WatermarkKey, alpha: float, p0_floor: float | None = None
) -> dict[str, Any]:
    """The binomial test on a suspect's trigger predictions ``pred``.

    p0 is the suspect's max-class share, raised to ``p0_floor`` (the reference models' bound)
    when given. Returns ``k``, ``K``, ``match_rate``, ``match_rate_ci``, ``p0``,
    ``max_class_share``, ``p_value``, ``alpha`` and ``verified``.
    """
    labels = np.asarray(key.labels)
    k, n = int((pred == labels).sum()), key.n_triggers
    share = max_class_share(pred, key.num_classes)
    p0 = share if p0_floor is None else max(share, p0_floor)
    p_value = binomial_p_value(k, n, p0)
    return {
        "k": k,
        "K": n,
        "match_rate": k / n,
        "match_rate_ci": list(clopper_pearson(k, n, 0.05)),
        "p0": p0,
        "max_class_share": share,
        "p_value": p_value,
        "alpha": alpha,
        "verified": bool(p_value <= alpha),
    }


def _load_suspects(models: Sequence[Any], like: ModelUnderTest) -> list[ModelUnderTest]:
    from robustness.core.model import ModelUnderTest, load_model

    out = []
    for m in models:
        out.append(m if isinstance(m, ModelUnderTest) else load_model(m, device=like.device))
    return out


def check_alpha(alpha: float) -> float:
    """The significance level as a float in (0, 1), else a :class:`ConfigError`."""
    if not isinstance(alpha, (int, float)) or not 0 < float(alpha) < 1:
        raise ConfigError(
            f"alpha must be in (0, 1), got {alpha!r}",
            field="watermark.alpha",
            fix="Use a small significance level such as 1e-6 (the default).",
        )
    return float(alpha)


def verify(
    model: ModelUnderTest,
    key: WatermarkKey | str | Path,
    *,
    alpha: float = DEFAULT_ALPHA,
    reference_models: Sequence[Any] = (),
    batch_size: int = 512,
) -> dict[str, Any]:
    """Test whether ``model`` carries the watermark of ``key``.

    Returns ``k``, ``K``, ``p0``, ``p0_method``, ``p_value``, ``match_rate_ci`` (95%
    Clopper-Pearson), ``alpha``, ``verified``, ``false_positive_rate`` (None without reference
    models) and, with them, ``references`` (one row per reference model).
    """
    key = load_key(key)
    alpha = check_alpha(alpha)
    check_compatible(key, model)
    refs = _load_suspects(reference_models, model)
    ref_rows: list[dict[str, Any]] = []
    for ref in refs:
        check_compatible(key, ref)
        pred = trigger_predictions(ref, key, batch_size)
        k = int((pred == np.asarray(key.labels)).sum())
        upper = clopper_pearson(k, key.n_triggers, REFERENCE_CI_ALPHA)[1]
        ref_rows.append({"model": ref.spec, "k": k, "upper": upper, "pred": pred})
    floor = max((r["upper"] for r in ref_rows), default=None)
    res = decide(trigger_predictions(model, key, batch_size), key, alpha, floor)
    res["p0_method"] = (
        "max-class-share" if floor is None else "max(max-class-share, reference 97.5% upper bound)"
    )
    res["reference_p0"] = floor
    fpr = None
    if ref_rows:
        # Each reference is judged by the same rule, its own match rate left out of the p0 bound.
        for i, r in enumerate(ref_rows):
            others = [o["upper"] for j, o in enumerate(ref_rows) if j != i]
            outcome = decide(r.pop("pred"), key, alpha, max(others) if others else None)
            r.update({name: outcome[name] for name in ("p0", "p_value", "verified")})
        fpr = sum(r["verified"] for r in ref_rows) / len(ref_rows)
        res["references"] = ref_rows
    res["false_positive_rate"] = fpr
    res["key_sha256"] = key.commitment()
    return res
