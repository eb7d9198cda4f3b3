"""Reading an audit's results folder: ``results.json`` and the files it names next to it.

Renderers take the results dict as it is (schema 1.0, see ``robustness/audit.py``) and never
recompute a number; this module only loads, checks the schema version, refuses values no audit
can produce (:func:`validate_results`) and formats values for display.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from robustness.core.errors import RobustnessError, UsageError

SUPPORTED_SCHEMA = ("1.",)  # any 1.x: minor versions only add keys

# Plain-language meaning of each sanity check, for readers who are not attack specialists.
CHECK_EXPLANATIONS = {
    "iterative_beats_single_step": (
        "A many-step attack should find at least every weakness a one-step attack finds. If it does not, "
        "the gradients are misleading it (gradient masking) and the robust accuracy is over-stated."
    ),
    "monotonic_in_eps": (
        "A bigger perturbation budget gives the attacker more room, so robust accuracy can only fall as "
        "eps grows. A rise means an attack failed to find examples it provably could."
    ),
    "large_eps_breaks_all": (
        "With a budget large enough to erase the image, any model should be fooled. Accuracy well above "
        "zero there means the attack, not the model, is the limit."
    ),
    "black_box_not_stronger": (
        "Attacks that do not use gradients (random search, Square) should not break samples the "
        "gradient attacks left standing. If they do, the gradients are masked."
    ),
    "more_iterations_no_gain": (
        "Running the attack longer or restarting it should not lower robust accuracy much. If it does, "
        "the reported attack had not converged and the number is too optimistic."
    ),
    "gradients_nonzero": (
        "Gradient attacks need finite, non-zero input gradients. Zero or NaN gradients make them "
        "silently fail while the model is not robust at all."
    ),
    "deterministic_forward": (
        "A randomised forward pass makes single gradient samples noisy; such models must be attacked "
        "with expectation over transformation (EOT)."
    ),
    "outputs_logits": (
        "Probabilities saturate, so their gradients vanish and attacks weaken. Audits must attack logits."
    ),
}

STATUS_LABEL = {"pass": "PASS", "fail": "FAIL", "skip": "SKIPPED", "waived": "WAIVED"}
CHECK_STATUSES = tuple(STATUS_LABEL)


class ResultsError(RobustnessError):
    """A results file holds values no audit can produce (damaged, edited by hand or forged)."""


def load_results(path: str | Path) -> dict[str, Any]:
    """Read ``results.json`` (or a folder holding it) and check its schema version."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise UsageError(
            f"no results file at {p}",
            field=str(path),
            fix="Give the results.json written by 'robustness audit' (or its output folder).",
        )
    try:
        results = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"{p} is not valid JSON ({exc})",
            field=str(path),
            fix="Re-run the audit; results.json is written atomically, so a damaged file was edited or copied badly.",
        ) from exc
    check_schema(results, str(p))
    validate_results(results, str(p))
    return results


def check_schema(results: Any, where: str = "results") -> None:
    """Refuse dicts that are not audit results of a schema version this code understands."""
    if not isinstance(results, dict) or "schema_version" not in results:
        raise UsageError(
            f"{where} is not an audit results object (no schema_version)",
            field=where,
            fix="Give the results.json written by 'robustness audit'.",
        )
    version = str(results["schema_version"])
    if not version.startswith(SUPPORTED_SCHEMA):
        raise UsageError(
            f"{where} has results schema {version}; this version reads schema 1.x",
            field=where,
            fix="Re-render with the robustness-audit version that wrote it, or re-run the audit.",
        )
    missing = [k for k in ("verdict", "clean", "robust", "gates", "sanity_checks") if k not in results]
    if missing:
        raise UsageError(
            f"{where} lacks the required key(s) {', '.join(missing)}",
            field=where,
            fix="The file is incomplete; re-run the audit.",
        )


# -- validation ------------------------------------------------------------------------------

# Accuracies are exact ratios of counts and intervals are computed from the same counts, so only
# float rounding separates them; anything beyond this is a changed number, not rounding.
_TOL = 1e-9
_FIX = (
    "The file was edited or damaged after the audit wrote it; re-run the audit, or use the "
    "results.json it wrote."
)


def validate_results(results: dict[str, Any], where: str = "results.json") -> None:
    """Refuse results whose numbers no audit can produce, naming the field path.

    Checked where present (a results file may lack optional sections): accuracies and rates in
    [0, 1], intervals ``[low, high]`` inside [0, 1] that contain their estimate, counts that are
    non-negative integers (``n_robust <= n``, accuracy equal to the counts' ratio), robust
    accuracy not above clean accuracy nor rising with eps, the verdict one of
    :data:`robustness.core.verdict.VERDICTS` and consistent with the gates and checks, and check
    statuses one of :data:`CHECK_STATUSES`. Raises :class:`ResultsError` (field = the path,
    e.g. ``robust[2].accuracy``).
    """
    v = _Validator(where)
    v.mapping(results, "")
    clean = results.get("clean")
    if clean is not None:
        v.mapping(clean, "clean")
        v.rates(clean, "clean", "accuracy", "precision", "recall", "f1")
        v.counted_accuracy(clean, "clean", "correct")
        for key in ("ci", "accuracy_ci"):
            if key in clean:
                v.interval(clean[key], f"clean.{key}", clean.get("accuracy"))
        v.per_class(clean, "clean")
        if clean.get("confusion") is not None:
            v.sequence(clean["confusion"], "clean.confusion")
            for i, row in enumerate(clean["confusion"]):
                v.sequence(row, f"clean.confusion[{i}]")
                for j, c in enumerate(row):
                    v.count(c, f"clean.confusion[{i}][{j}]")
    robust = results.get("robust")
    if robust is not None:
        v.robust(robust, clean)
    data = results.get("data")
    if isinstance(data, dict) and data.get("n") is not None:
        v.count(data["n"], "data.n")
    if results.get("sanity_checks") is not None:
        v.sequence(results["sanity_checks"], "sanity_checks")
        for i, c in enumerate(results["sanity_checks"]):
            v.mapping(c, f"sanity_checks[{i}]")
            v.name(c, f"sanity_checks[{i}]")
            if c.get("status") not in CHECK_STATUSES:
                v.bad(
                    f"sanity_checks[{i}].status",
                    f"check status {c.get('status')!r} is not one of {', '.join(CHECK_STATUSES)}",
                )
    if results.get("gates") is not None:
        v.sequence(results["gates"], "gates")
        for i, g in enumerate(results["gates"]):
            v.mapping(g, f"gates[{i}]")
            v.name(g, f"gates[{i}]")
            if not isinstance(g.get("passed"), bool):
                v.bad(f"gates[{i}].passed", f"{g.get('passed')!r} is not true or false")
            for key in ("value", "threshold"):
                if g.get(key) is not None:
                    v.finite(g[key], f"gates[{i}].{key}")
    if results.get("watermark") is not None:
        v.watermark(results["watermark"])
    if "verdict" in results:
        v.verdict(results)


class _Validator:
    """The checks of :func:`validate_results`; each raises on the first bad value."""

    def __init__(self, where: str) -> None:
        self.where = where

    def bad(self, path: str, message: str) -> None:
        raise ResultsError(f"{message} (in {self.where})", field=path or "results", fix=_FIX)

    def mapping(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            self.bad(path, f"expected an object, got {type(value).__name__}")

    def sequence(self, value: Any, path: str) -> None:
        if not isinstance(value, list):
            self.bad(path, f"expected a list, got {type(value).__name__}")

    def name(self, entry: dict[str, Any], path: str) -> None:
        if not isinstance(entry.get("name"), str):
            self.bad(f"{path}.name", f"expected a name, got {entry.get('name')!r}")

    def number(self, value: Any, path: str) -> float:
        # bool is an int subclass, but true is no accuracy or count
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.bad(path, f"{value!r} is not a number")
        return float(value)

    def finite(self, value: Any, path: str) -> float:
        x = self.number(value, path)
        if not math.isfinite(x):
            self.bad(path, f"{value!r} is not a finite number")
        return x

    def fraction(self, value: Any, path: str) -> float:
        x = self.number(value, path)
        if not (-_TOL <= x <= 1.0 + _TOL):  # NaN fails too; float dust (1 + 2e-16) does not
            self.bad(path, f"{value!r} is not in [0, 1]")
        return x

    def count(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.bad(path, f"{value!r} is not a non-negative integer")
        return int(value)

    def rates(self, entry: dict[str, Any], path: str, *keys: str) -> None:
        for k in keys:
            if entry.get(k) is not None:
                self.fraction(entry[k], f"{path}.{k}")

    def interval(self, ci: Any, path: str, estimate: Any) -> None:
        if not isinstance(ci, list | tuple) or len(ci) != 2:
            self.bad(path, f"{ci!r} is not an interval [low, high]")
        low = self.fraction(ci[0], f"{path}[0]")
        high = self.fraction(ci[1], f"{path}[1]")
        if low > high:
            self.bad(path, f"interval {list(ci)} has low > high")
        if isinstance(estimate, int | float) and not isinstance(estimate, bool):
            if not (low - _TOL <= float(estimate) <= high + _TOL):
                self.bad(path, f"interval {list(ci)} does not contain its estimate {estimate!r}")

    def counted_accuracy(self, entry: dict[str, Any], path: str, k_key: str) -> None:
        """``n`` and the count ``k_key`` are non-negative integers with k <= n and accuracy = k / n."""
        n = self.count(entry["n"], f"{path}.n") if entry.get("n") is not None else None
        k = self.count(entry[k_key], f"{path}.{k_key}") if entry.get(k_key) is not None else None
        if n is None or k is None:
            return
        if k > n:
            self.bad(f"{path}.{k_key}", f"{k_key} {k} is larger than n {n}")
        acc = entry.get("accuracy")
        if n > 0 and isinstance(acc, int | float) and abs(float(acc) - k / n) > _TOL:
            self.bad(f"{path}.accuracy", f"accuracy {acc!r} is not {k_key}/n = {k}/{n}")

    def per_class(self, entry: dict[str, Any], path: str) -> None:
        pc = entry.get("per_class_accuracy")
        if pc is None:
            return
        self.mapping(pc, f"{path}.per_class_accuracy")
        for c, a in pc.items():
            if a is not None:  # a class absent from the data has no accuracy
                self.fraction(a, f"{path}.per_class_accuracy.{c}")

    def robust(self, robust: Any, clean: Any) -> None:
        self.sequence(robust, "robust")
        clean_acc = clean.get("accuracy") if isinstance(clean, dict) else None
        clean_n = clean.get("n") if isinstance(clean, dict) else None
        by_eps: list[tuple[float, float, str]] = []
        for i, r in enumerate(robust):
            path = f"robust[{i}]"
            self.mapping(r, path)
            if "eps" not in r:
                self.bad(f"{path}.eps", "the entry has no eps")
            eps = self.finite(r["eps"], f"{path}.eps")
            if eps < 0:
                self.bad(f"{path}.eps", f"eps {r['eps']!r} is negative")
            self.rates(r, path, "accuracy", "accuracy_attacks_only")
            self.counted_accuracy(r, path, "n_robust")
            if "ci" in r:
                self.interval(r["ci"], f"{path}.ci", r.get("accuracy"))
            for key in ("per_attack", "per_attack_cost", "found_by_checks"):
                if r.get(key) is not None:
                    self.mapping(r[key], f"{path}.{key}")
            for name, a in (r.get("per_attack") or {}).items():
                self.fraction(a, f"{path}.per_attack.{name}")
            for name, cost in (r.get("per_attack_cost") or {}).items():
                self.mapping(cost, f"{path}.per_attack_cost.{name}")
                for k, val in cost.items():
                    if k == "time_s":
                        if self.finite(val, f"{path}.per_attack_cost.{name}.time_s") < 0:
                            self.bad(f"{path}.per_attack_cost.{name}.time_s", f"time {val!r} is negative")
                    elif k.startswith("n_"):
                        self.count(val, f"{path}.per_attack_cost.{name}.{k}")
            for name, k in (r.get("found_by_checks") or {}).items():
                self.count(k, f"{path}.found_by_checks.{name}")
            if r.get("time_s") is not None and self.finite(r["time_s"], f"{path}.time_s") < 0:
                self.bad(f"{path}.time_s", f"time {r['time_s']!r} is negative")
            self.per_class(r, path)
            acc = r.get("accuracy")
            if acc is None:
                continue
            # Robust samples are a subset of the correctly classified ones (same samples, same n).
            if clean_acc is not None and (clean_n is None or clean_n == r.get("n")):
                if float(acc) > float(clean_acc) + _TOL:
                    self.bad(
                        f"{path}.accuracy", f"robust accuracy {acc!r} exceeds clean accuracy {clean_acc!r}"
                    )
            by_eps.append((eps, float(acc), path))
        # A sample broken at a smaller eps stays broken at every larger one.
        by_eps.sort()
        for (e0, a0, _), (e1, a1, p1) in zip(by_eps, by_eps[1:]):
            if a1 > a0 + _TOL:
                self.bad(
                    f"{p1}.accuracy",
                    f"robust accuracy rises from {a0:g} at eps {e0:g} to {a1:g} at eps {e1:g}",
                )

    def watermark(self, wm: Any) -> None:
        self.mapping(wm, "watermark")
        self.rates(
            wm, "watermark", "p0", "p_value", "alpha", "false_positive_rate", "removal_max_accuracy_drop"
        )
        k = self.count(wm["k"], "watermark.k") if wm.get("k") is not None else None
        big_k = self.count(wm["K"], "watermark.K") if wm.get("K") is not None else None
        if k is not None and big_k is not None and k > big_k:
            self.bad("watermark.k", f"{k} trigger matches out of {big_k} triggers")
        for i, s in enumerate(wm.get("surrogates") or []):
            path = f"watermark.surrogates[{i}]"
            self.mapping(s, path)
            self.rates(s, path, "clean_accuracy", "agreement", "p_value")
            if s.get("k") is not None:
                self.count(s["k"], f"{path}.k")

    def verdict(self, results: dict[str, Any]) -> None:
        from robustness.core.verdict import VERDICTS, verdict

        v = results["verdict"]
        if v not in VERDICTS:
            self.bad("verdict", f"verdict {v!r} is not one of {', '.join(VERDICTS)}")
        checks, gates = results.get("sanity_checks"), results.get("gates")
        if checks is None or gates is None:
            return
        expected, _ = verdict(checks, gates)
        if v != expected:
            self.bad(
                "verdict", f"verdict {v!r} contradicts the gates and checks recorded, which give {expected!r}"
            )


def companion(results: dict[str, Any], source: Path | None, key: str) -> Path | None:
    """Path of a file the results name in ``files`` (``samples``, ``examples``) if it exists."""
    if source is None:
        return None
    name = (results.get("files") or {}).get(key)
    if not name:
        return None
    p = Path(source) / name
    return p if p.is_file() else None


def load_examples(results: dict[str, Any], source: Path | None) -> dict[str, Any] | None:
    """The stored adversarial examples for the image grid, or None when absent or unreadable."""
    p = companion(results, source, "examples")
    if p is None:
        return None
    import numpy as np

    try:
        with np.load(p, allow_pickle=False) as z:
            ex = {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None
    need = {"x_clean", "x_adv", "eps", "y", "clean_pred", "adv_pred"}
    return ex if need <= set(ex) and len(ex["y"]) > 0 else None


# -- formatting ------------------------------------------------------------------------------


def pct(v: Any, digits: int = 1) -> str:
    """0.925 -> '92.5%'; None/NaN -> 'n/a'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{100 * float(v):.{digits}f}%"


def ci(interval: Any, digits: int = 1) -> str:
    """[0.88, 0.96] -> '[88.0%, 96.0%]'."""
    if not interval or len(interval) != 2:
        return "n/a"
    return f"[{pct(interval[0], digits)}, {pct(interval[1], digits)}]"


def num(v: Any) -> str:
    """A gate value or threshold: fractions as numbers with 3 decimals, ints as ints."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def eps_str(e: Any) -> str:
    """Eps as written in the config (0.1), and as a fraction of 255 when it is one (8/255)."""
    e = float(e)
    k = e * 255
    s = f"{e:g}"
    if abs(k - round(k)) < 1e-6 and round(k) > 0 and len(s) > 5:
        s += f" ({round(k)}/255)"
    return s


def seconds(t: Any) -> str:
    if t is None:
        return "n/a"
    t = float(t)
    if t < 60:
        return f"{t:.2f} s"
    m, s = divmod(int(round(t)), 60)
    return f"{m} min {s} s"


def gate_label(name: str) -> str:
    """'min_robust_accuracy@0.1' -> 'min robust accuracy @ eps 0.1'."""
    base, _, at = name.partition("@")
    text = base.replace("_", " ")
    return f"{text} @ eps {at}" if at else text


def gate_comparator(name: str) -> str:
    """How a gate's value must relate to its threshold to pass: max_* gates and the watermark's
    p-value (judged against alpha) are upper limits."""
    return "≤" if str(name).startswith("max_") or name == "watermark_verified" else "≥"


def failed_checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in results.get("sanity_checks") or [] if c.get("status") == "fail"]


def failed_gates(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [g for g in results.get("gates") or [] if not g.get("passed")]
