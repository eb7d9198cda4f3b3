"""What the renderers share: reading results (re-exported from the one loader), gate labels, the
companion files, and number formatting. A check's title and explanation are in its outcome.

Renderers take the typed result (:class:`robustness.core.schema.AuditResults`) and never
recompute a number; loading, the version check, the migration of older files and the refusal of
impossible numbers are :mod:`robustness.core.schema`'s (re-exported here: :func:`load_results`,
:func:`validate_results`, :class:`ResultsError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustness.core.formatting import ci, eps_str, num, pct, seconds  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from robustness.core.schema import AuditResults, Gate


STATUS_LABEL = {"pass": "PASS", "fail": "FAIL", "skip": "SKIPPED", "waived": "WAIVED"}

# The loader's names, imported when first used (pydantic stays out of a plain ``import reports``,
# which the CLI does to list the formats).
_FROM_SCHEMA = ("load_results", "ResultsError", "CHECK_STATUSES", "check_version", "parse_results")


def __getattr__(name: str) -> Any:
    if name in _FROM_SCHEMA:
        from robustness.core import schema

        return getattr(schema, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def validate_results(results: Any, where: str = "results.json") -> AuditResults:
    """The typed result of a results dict; a ResultsError (field = the path, e.g.
    ``robust[2].accuracy``) for a value of the wrong type or a number no audit can produce."""
    from robustness.core.schema import parse_results

    return parse_results(results, where)


def gate_label(gate: Gate) -> str:
    """'min robust accuracy @ eps 0.1' for the min_robust_accuracy gate at eps 0.1."""
    text = gate.kind.replace("_", " ")
    return f"{text} @ eps {float(gate.eps):g}" if gate.eps is not None else text


def gate_symbol(gate: Gate) -> str:
    """How a gate's value must relate to its threshold to pass, as printed: ≥ or ≤."""
    return {">=": "≥", "<=": "≤"}.get(gate.comparator, gate.comparator)


def companion(results: AuditResults, source: Path | None, key: str) -> Path | None:
    """Path of a file the results name in ``files`` (``samples``, ``examples``) if it exists."""
    if source is None:
        return None
    name = (results.files or {}).get(key)
    if not name:
        return None
    p = Path(source) / name
    return p if p.is_file() else None


def load_examples(results: AuditResults, source: Path | None) -> dict[str, Any] | None:
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
