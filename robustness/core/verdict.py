"""The audit's verdict: the one rule that turns sanity checks and gates into pass, fail or unreliable.

Here on the ground floor because the runner applies it and every reader of a results file
(renderers, ``compare``, the baseline gate) checks a recorded verdict against it.
"""

from __future__ import annotations

from typing import Any

VERDICTS = ("pass", "fail", "unreliable")


def verdict(checks: list[dict[str, Any]], gates: list[dict[str, Any]]) -> tuple[str, str]:
    """(verdict, one-sentence reason)."""
    failed_checks = [c for c in checks if c["status"] == "fail"]
    failed_gates = [g for g in gates if not g["passed"]]
    if failed_checks:
        names = ", ".join(c["name"] for c in failed_checks)
        return (
            "unreliable",
            f"Sanity check(s) failed ({names}): the robust accuracy cannot be trusted, whatever the gates say.",
        )
    if failed_gates:
        names = ", ".join(g["name"] for g in failed_gates)
        return "fail", f"Gate(s) not met: {names}."
    waived = [c["name"] for c in checks if c["status"] == "waived"]
    tail = f" ({len(waived)} check(s) waived with a written reason)" if waived else ""
    if not gates:
        return "pass", f"All sanity checks hold; no gates were set{tail}."
    return "pass", f"All {len(gates)} gate(s) and the sanity checks hold{tail}."
