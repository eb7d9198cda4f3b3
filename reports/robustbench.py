"""robustbench.json: the audit as a RobustBench leaderboard entry (``--format robustbench``).

An export, written only when asked for (``--format robustbench``, ``output.formats``, or
``robustness report RESULTS --format robustbench``), not by every audit.

RobustBench (Croce et al. 2021) describes each model of a leaderboard with one JSON object:
``link``, ``name``, ``authors``, ``additional_data``, ``number_forward_passes``, ``dataset``,
``venue``, ``architecture``, ``eps``, ``clean_acc``, ``reported``, ``external``,
``autoattack_acc``, ``footnote`` and ``unreliable``; accuracies are percentages written as
strings with two decimals ("59.53"), eps as the leaderboard writes it ("8/255" for linf on
[0, 1] images, "0.5" for l2), plus ``threat_model`` (``Linf``, ``L2``; an l1 audit is exported
with a footnote, as no leaderboard takes it). This renderer fills what the audit knows, at one eps: the
leaderboard's own (8/255 or 4/255 linf, 0.5 l2) when the grid holds it, else the largest. What
the audit cannot know (the paper, its authors, extra training data) is null for the submitter.

Nothing is flattered: ``autoattack_acc`` is the audit's robust accuracy, the per-sample minimum
over every attack of the run (the sanity checks' included); ``unreliable`` is true when the
verdict is unreliable, a sanity check failed or was waived, or the forward pass is randomized
(RobustBench admits only deterministic defenses); and the footnote says what the attacks were
when they were not the standard AutoAttack, and on how many samples.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reports import as_results, renderer
from robustness.core.errors import UsageError

if TYPE_CHECKING:
    from robustness.core.schema import AuditResults

# The leaderboards' radii per norm, in the order a grid is searched for them.
LEADERBOARD_EPS = {"linf": (8 / 255, 4 / 255), "l2": (0.5,)}
STANDARD_ATTACKS = ("apgd-ce", "apgd-t", "fab", "square")
THREAT_MODELS = {"linf": "Linf", "l2": "L2"}


def leaderboard_eps(norm: str, grid: list[float]) -> float:
    """The eps of the entry: the leaderboard's own when the grid holds it, else the largest."""
    for eps in LEADERBOARD_EPS.get(norm, ()):
        for e in grid:
            if math.isclose(e, eps, rel_tol=1e-6):
                return e
    return max(grid)


def eps_text(eps: float, norm: str) -> str:
    """'8/255' for a linf eps that is a whole number of 1/255 steps and no short decimal, else the number."""
    text = f"{eps:g}"
    steps = eps * 255
    if norm == "linf" and len(text) > 5 and abs(steps - round(steps)) < 1e-6 and round(steps) > 0:
        return f"{round(steps)}/255"
    return text


def percent(value: float | None) -> str | None:
    return None if value is None else f"{100 * float(value):.2f}"


def dataset_name(spec: str | None) -> str | None:
    """cifar10 / cifar100 from the data spec's scheme; the spec itself otherwise."""
    if not spec:
        return None
    scheme = spec.split(":", 1)[0].lower()
    return scheme if scheme in ("cifar10", "cifar100", "imagenet") else spec


def to_robustbench(results: AuditResults | dict[str, Any]) -> dict[str, Any]:
    """The leaderboard entry of an audit (see the module docstring)."""
    res = as_results(results)
    norm = res.threat.norm if res.threat is not None else None
    if res.threat is None or not res.robust:
        raise UsageError(
            "the results hold no robust accuracy to export",
            field="results",
            fix="Export the results.json of a finished audit.",
        )
    eps = leaderboard_eps(norm, [row.eps for row in res.robust])
    row = res.row_at(eps)
    names = [a.attack or a.name for a in res.attacks or []]
    randomized = bool(res.eot_used)
    failed = [c.name for c in res.sanity_checks if c.status in ("fail", "waived")]
    notes = (
        []
        if norm in THREAT_MODELS
        else [f"RobustBench has Linf and L2 leaderboards only (this audit: {norm})."]
    )
    if [n for n in names if n in STANDARD_ATTACKS] != list(STANDARD_ATTACKS) or len(names) != len(
        STANDARD_ATTACKS
    ):
        notes.append(
            f"Attacks: {', '.join(a.name for a in res.attacks or [])} (not the standard AutoAttack)."
        )
    n = row.n if row is not None else None
    notes.append(
        f"Evaluated with robustness-audit {res.tool_version or ''} on {n} samples.".replace("  ", " ")
    )
    if row is not None and row.found_by_checks:
        notes.append(f"Includes examples found by the sanity checks: {', '.join(row.found_by_checks)}.")
    if failed:
        notes.append(f"Sanity checks failed or waived: {', '.join(failed)}.")
    if randomized:
        notes.append("Randomized forward pass: EOT attacks, success judged by majority vote.")
    config = res.config or {}
    return {
        "link": None,
        "name": res.model.spec if res.model is not None else None,
        "authors": None,
        "additional_data": None,
        "number_forward_passes": int(config.get("eot_samples", 1)) if randomized else 1,
        "dataset": dataset_name(res.data.spec if res.data is not None else None),
        "venue": None,
        "architecture": None,
        "threat_model": THREAT_MODELS.get(norm, norm),
        "eps": eps_text(eps, norm),
        "clean_acc": percent(res.clean.accuracy),
        "reported": None,
        "external": None,
        "autoattack_acc": percent(row.accuracy if row is not None else None),
        "footnote": " ".join(notes),
        "unreliable": res.verdict == "unreliable" or bool(failed) or randomized,
    }


@renderer("robustbench", "robustbench.json", order=60, default=False)
def render(results: AuditResults | dict[str, Any], path: str | Path, *, source: Path | None = None) -> Path:
    """Write robustbench.json atomically."""
    from robustness.core.io import atomic_write_text

    return atomic_write_text(path, json.dumps(to_robustbench(results), indent=2) + "\n")
