"""Numbers no audit can produce, refused on the typed result (:func:`check_numbers`).

A results file is read by people and by CI gates; a damaged, hand-edited or forged one must not
render as a report, compare as a baseline or pass a gate. The types are checked when the file
is parsed (:mod:`robustness.core.schema`); here the values: accuracies and rates in [0, 1],
intervals ``[low, high]`` inside [0, 1] that contain their estimate, counts consistent with each
other (``n_robust <= n``, accuracy equal to the counts' ratio), robust accuracy not above clean
accuracy nor rising with eps, check statuses and the verdict known and the verdict the one the
gates and checks give, and each section's own numbers (:meth:`SectionResult.check_numbers`).
The first bad value raises :class:`~robustness.core.schema.ResultsError` with its field path
(``robust[2].accuracy``).
"""

from __future__ import annotations

import math
from typing import Any

from robustness.core.schema import (
    CHECK_STATUSES,
    FIX_EDITED,
    AuditResults,
    CleanMetrics,
    ResultsError,
    RobustRow,
)
from robustness.core.verdict import VERDICTS, verdict

# Accuracies are exact ratios of counts and intervals are computed from the same counts, so only
# float rounding separates them; anything beyond this is a changed number, not rounding.
TOLERANCE = 1e-9


class Checker:
    """The value checks; each raises on a bad value, naming ``where`` (the file) and the path."""

    def __init__(self, where: str) -> None:
        self.where = where

    def bad(self, path: str, message: str) -> None:
        raise ResultsError(f"{message} (in {self.where})", field=path or "results", fix=FIX_EDITED)

    def finite(self, value: float, path: str) -> float:
        if not math.isfinite(float(value)):
            self.bad(path, f"{value!r} is not a finite number")
        return float(value)

    def fraction(self, value: float | None, path: str) -> None:
        if value is None:
            return
        if not (-TOLERANCE <= float(value) <= 1.0 + TOLERANCE):  # NaN fails too; float dust does not
            self.bad(path, f"{value!r} is not in [0, 1]")

    def rates(self, entry: Any, path: str, *names: str) -> None:
        for name in names:
            self.fraction(getattr(entry, name, None), f"{path}.{name}")

    def not_negative(self, value: float | None, path: str, what: str = "time") -> None:
        if value is not None and self.finite(value, path) < 0:
            self.bad(path, f"{what} {value!r} is negative")

    def interval(self, ci: list[float] | None, path: str, estimate: float | None) -> None:
        if ci is None:
            return
        low, high = ci
        self.fraction(low, f"{path}[0]")
        self.fraction(high, f"{path}[1]")
        if low > high:
            self.bad(path, f"interval {list(ci)} has low > high")
        if estimate is not None and not (low - TOLERANCE <= float(estimate) <= high + TOLERANCE):
            self.bad(path, f"interval {list(ci)} does not contain its estimate {estimate!r}")

    def counted(self, n: int | None, k: int | None, accuracy: float | None, path: str, k_name: str) -> None:
        """``k <= n`` and ``accuracy == k / n``."""
        if n is None or k is None:
            return
        if k > n:
            self.bad(f"{path}.{k_name}", f"{k_name} {k} is larger than n {n}")
        if n > 0 and accuracy is not None and abs(float(accuracy) - k / n) > TOLERANCE:
            self.bad(f"{path}.accuracy", f"accuracy {accuracy!r} is not {k_name}/n = {k}/{n}")

    def per_class(self, per_class: dict[str, float | None] | None, path: str) -> None:
        for c, a in (per_class or {}).items():
            self.fraction(a, f"{path}.per_class_accuracy.{c}")  # None: a class absent from the data


def check_numbers(results: AuditResults, where: str = "results.json") -> None:
    """Refuse results whose numbers no audit can produce (see the module docstring)."""
    check = Checker(where)
    _clean(check, results.clean)
    _robust(check, results.robust, results.clean)
    for i, c in enumerate(results.sanity_checks):
        if c.status not in CHECK_STATUSES:
            check.bad(
                f"sanity_checks[{i}].status",
                f"check status {c.status!r} is not one of {', '.join(CHECK_STATUSES)}",
            )
    for i, g in enumerate(results.gates):
        for name in ("value", "threshold"):
            if getattr(g, name) is not None:
                check.finite(getattr(g, name), f"gates[{i}].{name}")
    for name, result in results.sections.items():
        result.check_numbers(check, name)
    if results.verdict not in VERDICTS:
        check.bad("verdict", f"verdict {results.verdict!r} is not one of {', '.join(VERDICTS)}")
    expected, _ = verdict(
        [{"name": c.name, "status": c.status} for c in results.sanity_checks],
        [{"name": g.name, "passed": g.passed} for g in results.gates],
    )
    if results.verdict != expected:
        check.bad(
            "verdict",
            f"verdict {results.verdict!r} contradicts the gates and checks recorded, which give {expected!r}",
        )


def _clean(check: Checker, clean: CleanMetrics) -> None:
    check.rates(clean, "clean", "accuracy", "precision", "recall", "f1")
    check.counted(clean.n, clean.correct, clean.accuracy, "clean", "correct")
    check.interval(clean.ci, "clean.ci", clean.accuracy)
    check.interval(clean.accuracy_ci, "clean.accuracy_ci", clean.accuracy)
    check.per_class(clean.per_class_accuracy, "clean")


def _robust(check: Checker, rows: list[RobustRow], clean: CleanMetrics) -> None:
    by_eps: list[tuple[float, float, str]] = []
    for i, r in enumerate(rows):
        path = f"robust[{i}]"
        if check.finite(r.eps, f"{path}.eps") < 0:
            check.bad(f"{path}.eps", f"eps {r.eps!r} is negative")
        check.rates(r, path, "accuracy", "accuracy_attacks_only")
        check.counted(r.n, r.n_robust, r.accuracy, path, "n_robust")
        check.interval(r.ci, f"{path}.ci", r.accuracy)
        for name, a in (r.per_attack or {}).items():
            check.fraction(a, f"{path}.per_attack.{name}")
        for name, cost in (r.per_attack_cost or {}).items():
            check.not_negative(cost.time_s, f"{path}.per_attack_cost.{name}.time_s")
        check.not_negative(r.time_s, f"{path}.time_s")
        check.per_class(r.per_class_accuracy, path)
        if r.accuracy is None:
            continue
        # Robust samples are a subset of the correctly classified ones (same samples, same n).
        if clean.n is None or clean.n == r.n:
            if float(r.accuracy) > float(clean.accuracy) + TOLERANCE:
                check.bad(
                    f"{path}.accuracy",
                    f"robust accuracy {r.accuracy!r} exceeds clean accuracy {clean.accuracy!r}",
                )
        by_eps.append((float(r.eps), float(r.accuracy), path))
    # A sample broken at a smaller eps stays broken at every larger one.
    by_eps.sort()
    for (e0, a0, _), (e1, a1, p1) in zip(by_eps, by_eps[1:]):
        if a1 > a0 + TOLERANCE:
            check.bad(
                f"{p1}.accuracy", f"robust accuracy rises from {a0:g} at eps {e0:g} to {a1:g} at eps {e1:g}"
            )
