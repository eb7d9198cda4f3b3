"""Reading an audit's results folder: ``results.json`` and the files it names next to it.

Renderers take the results dict as it is (schema 1.0, see ``robustness/audit.py``) and never
recompute a number; this module only loads, checks the schema version and formats values
for display.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from robustness.errors import UsageError

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
