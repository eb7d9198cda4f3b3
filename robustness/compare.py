"""Compare two audits: per-eps accuracy deltas with a paired exact McNemar test.

Two audits of different models (or of one model before and after a change) on the same
threat model are compared sample by sample on the ids both evaluated, from the
``samples.jsonl`` next to each ``results.json``. For each eps (and clean accuracy):

- ``lost``: samples robust in BASE and broken in NEW; ``gained``: the reverse;
- the exact two-sided McNemar p-value (a binomial test of ``lost`` vs ``gained`` at 1/2),
  which only uses the discordant pairs, so it is valid however the two runs are correlated;
- a **regression** is a drop of the paired accuracy larger than ``max_drop`` whose p-value
  is below ``alpha`` (and that goes in the bad direction).

Both audits must have run the same attack budget for a drop to mean anything: a ``quick``
audit breaks fewer samples than a ``standard`` one. The attacks recorded in each results.json
(preset, names, resolved parameters) are compared; a difference is a warning, or with
``strict_budget`` (``--strict-budget``) a refusal. The baseline gate uses the same comparison.

Exit codes of ``robustness compare``: 0 no regression, 1 a regression, 2 bad input.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustness.core.errors import DataError, UsageError

if TYPE_CHECKING:
    from robustness.core.schema import AuditResults

EPS_TOL = 1e-9
# At most this many differences are spelled out in one warning; the rest are counted.
MAX_BUDGET_LINES = 6


class BudgetWarning(UserWarning):
    """An audit's baseline ran a different attack budget (the ``max_drop`` gate warns with it)."""


def mcnemar_exact(lost: int, gained: int) -> float:
    """Exact two-sided McNemar p-value for the discordant counts ``lost`` and ``gained``.

    Under the null both directions are equally likely, so min(lost, gained) ~ Binomial(lost +
    gained, 1/2); the p-value doubles its lower tail (capped at 1). No discordant pairs -> 1.
    """
    if lost < 0 or gained < 0:
        raise ValueError("counts must be >= 0")
    n = lost + gained
    if n == 0:
        return 1.0
    k = min(lost, gained)
    # sum_{i<=k} C(n, i) / 2^n, exact in integers before the one division.
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2.0 * tail / 2.0**n) if n < 1020 else _binom_tail_scipy(k, n)


def _binom_tail_scipy(k: int, n: int) -> float:
    from scipy.stats import binom

    return float(min(1.0, 2.0 * binom.cdf(k, n, 0.5)))


@dataclass
class Row:
    """One line of a comparison: clean accuracy or robust accuracy at one eps."""

    label: str
    eps: float | None
    base_accuracy: float  # as reported in BASE/results.json (all of BASE's samples)
    new_accuracy: float  # as reported in NEW/results.json
    n_shared: int
    base_shared: float  # on the shared samples only (the paired comparison)
    new_shared: float
    delta: float  # new_shared - base_shared
    lost: int
    gained: int
    p_value: float
    regression: bool


@dataclass
class Comparison:
    base: str
    new: str
    alpha: float
    max_drop: float
    n_base: int
    n_new: int
    n_shared: int
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # How the two audits' attack budgets differ (empty: the same attacks and parameters).
    budget_differences: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        return any(r.regression for r in self.rows)

    @property
    def exit_code(self) -> int:
        return 1 if self.regressed else 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for r in d["rows"]:  # an accuracy missing from a results.json is NaN here; JSON has no NaN
            for k, v in r.items():
                if isinstance(v, float) and math.isnan(v):
                    r[k] = None
        d["regressed"] = self.regressed
        d["exit_code"] = self.exit_code
        return d

    def format(self) -> str:
        lines = [
            f"BASE {self.base}",
            f"NEW  {self.new}",
            f"paired on {self.n_shared} shared sample ids (BASE has {self.n_base}, NEW {self.n_new})",
            "",
            f"{'':<12}{'base':>8}{'new':>8}{'delta':>9}{'lost':>6}{'gained':>8}{'p (McNemar)':>13}",
        ]
        for r in self.rows:
            flag = "  REGRESSION" if r.regression else ""
            lines.append(
                f"{r.label:<12}{100 * r.base_shared:>7.1f}%{100 * r.new_shared:>7.1f}%"
                f"{100 * r.delta:>+8.1f}p{r.lost:>6}{r.gained:>8}{_p(r.p_value):>13}{flag}"
            )
        lines.append("")
        if self.budget_differences:
            lines.append(f"warning: {budget_warning(self.budget_differences)}")
        lines += [f"note: {n}" for n in self.notes]
        rule = f"alpha {self.alpha:g}, max drop {100 * self.max_drop:g} points"
        if self.regressed:
            bad = ", ".join(r.label for r in self.rows if r.regression)
            lines.append(f"result: significant regression at {bad} ({rule}); exit 1")
        else:
            lines.append(f"result: no significant regression ({rule}); exit 0")
        return "\n".join(lines)


def _p(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _load(path: str | Path, role: str) -> tuple[AuditResults, dict[str, dict[str, Any]], Path]:
    """One audit: its typed results (the one results loader: an older schema is migrated,
    impossible numbers refused) and its samples.jsonl by sample id."""
    from robustness.core.schema import RESULTS_FILE, load_results

    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    res = load_results(p, role=role)
    name = (res.files or {}).get("samples") or "samples.jsonl"
    sp = p.parent / name
    if not sp.is_file():
        raise UsageError(
            f"{role}: {sp} is missing; the paired test needs the per-sample results next to results.json",
            field=role,
            fix="Copy samples.jsonl along with results.json, or re-run the audit.",
        )
    samples: dict[str, dict[str, Any]] = {}
    with open(sp, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                sid = str(row["id"])
                _ = row["label"], row["clean_pred"], row["eps"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(
                    f"{role}: {sp} line {lineno} is not a sample record ({exc})",
                    field=role,
                    fix="The file is damaged; re-run the audit.",
                ) from exc
            if sid in samples:
                raise DataError(
                    f"{role}: sample id {sid!r} appears twice in {sp}",
                    field=role,
                    fix="Sample ids must be unique; re-run the audit.",
                )
            samples[sid] = row
    return res, samples, p


# -- attack budgets ----------------------------------------------------------------------------


def budget_of(attacks: list[dict[str, Any]] | None, preset: Any = None) -> dict[str, Any] | None:
    """An audit's attack budget: {"preset", "attacks": {key: params}}; None when unrecorded.

    ``attacks`` are results.json's entries ({"attack" or "name", "params"}). Keys are attack
    names, numbered from the second run of one attack (``pgd #2``), so two lists of the same
    attacks line up whatever labels the runner gave them. Parameters go through JSON so tuples
    and lists, or values the runner stored as text, compare equal.
    """
    if not isinstance(attacks, list):
        return None
    out: dict[str, Any] = {}
    seen: dict[str, int] = {}
    for a in attacks:
        if not isinstance(a, dict):
            return None
        name = str(a.get("attack") or a.get("name") or "?")
        seen[name] = seen.get(name, 0) + 1
        key = name if seen[name] == 1 else f"{name} #{seen[name]}"
        out[key] = json.loads(json.dumps(a.get("params") or {}, sort_keys=True, default=str))
    return {"preset": preset if isinstance(preset, str) else None, "attacks": out}


def results_budget(res: AuditResults) -> dict[str, Any] | None:
    """The attack budget recorded in a results file (its ``attacks`` and the config's preset)."""
    attacks = None if res.attacks is None else [a.to_dict() for a in res.attacks]
    return budget_of(attacks, (res.config or {}).get("attacks"))


def budget_differences(
    base: dict[str, Any] | None, new: dict[str, Any] | None, names: tuple[str, str] = ("BASE", "NEW")
) -> list[str] | None:
    """How two budgets differ, one phrase each: empty when they are the same, None when either
    is unrecorded (nothing shows whether they are the same)."""
    if base is None or new is None:
        return None
    b_name, n_name = names
    out: list[str] = []
    if base["preset"] and new["preset"] and base["preset"] != new["preset"]:
        out.append(f"{b_name} ran the {base['preset']!r} preset, {n_name} the {new['preset']!r} preset")
    b_att, n_att = base["attacks"], new["attacks"]
    for key in dict.fromkeys([*b_att, *n_att]):
        if key not in n_att:
            out.append(f"{key} ran only in {b_name}")
        elif key not in b_att:
            out.append(f"{key} ran only in {n_name}")
        else:
            bp, np_ = b_att[key], n_att[key]
            changed = [
                f"{k} {bp.get(k)!r} vs {np_.get(k)!r}"
                for k in dict.fromkeys([*bp, *np_])
                if bp.get(k) != np_.get(k)
            ]
            if changed:
                out.append(f"{key} {', '.join(changed)} ({b_name} vs {n_name})")
    return out


def unknown_budget(base: dict[str, Any] | None, new: dict[str, Any] | None, names: tuple[str, str]) -> str:
    """The sentence for budgets that cannot be compared because a results file lists no attacks."""
    missing = " and ".join(n for n, b in zip(names, (base, new)) if b is None)
    return f"the attack budgets cannot be compared: {missing} list{'s' if ' and ' not in missing else ''} no attacks"


def budget_warning(differences: list[str]) -> str:
    """One sentence for a warning or an error: the audits ran different attack budgets."""
    shown = differences[:MAX_BUDGET_LINES]
    more = len(differences) - len(shown)
    tail = f"; and {more} more" if more > 0 else ""
    return (
        f"the audits ran different attack budgets ({'; '.join(shown)}{tail}), so accuracy differences "
        "may come from the attacks, not the models"
    )


def _threat(res: AuditResults) -> tuple[str, list[float], Any]:
    t = res.threat
    norm = (t.norm if t else None) or (res.robust[0].norm if res.robust else None)
    eps = sorted(float(e) for e in ((t.eps if t else None) or [r.eps for r in res.robust]))
    return str(norm), eps, (t.bounds if t else None) or (res.model.bounds if res.model else None)


def _accuracy_at(res: AuditResults, eps: float) -> float:
    """The reported robust accuracy at ``eps``; NaN when the file has none there."""
    row = res.row_at(eps)
    return float("nan") if row is None or row.accuracy is None else float(row.accuracy)


def _robust_at(row: dict[str, Any], eps: float) -> bool:
    for e in row["eps"]:
        if abs(float(e["eps"]) - eps) < EPS_TOL:
            return bool(e["robust"])
    raise DataError(
        f"sample {row['id']!r} has no entry for eps {eps:g} in samples.jsonl",
        field="samples.jsonl",
        fix="The file is incomplete; re-run the audit.",
    )


def _paired(base_ok: list[bool], new_ok: list[bool]) -> tuple[int, int, float, float]:
    lost = sum(1 for b, n in zip(base_ok, new_ok) if b and not n)
    gained = sum(1 for b, n in zip(base_ok, new_ok) if n and not b)
    m = len(base_ok)
    return lost, gained, sum(base_ok) / m, sum(new_ok) / m


def compare(
    base: str | Path,
    new: str | Path,
    *,
    max_drop: float = 0.0,
    alpha: float = 0.05,
    strict_budget: bool = False,
) -> Comparison:
    """Compare two audits (their results.json paths or output folders).

    Different attack budgets are a warning (``Comparison.budget_differences``, a "warning:"
    line in :meth:`Comparison.format`); with ``strict_budget`` they are a :class:`UsageError`.
    Both results files are read with the one results loader (a results.json of an older schema is
    migrated); impossible numbers in either are a ``robustness.core.schema.ResultsError``.
    """
    if not (0.0 <= float(max_drop) < 1.0):
        raise UsageError(
            f"max_drop must be in [0, 1) (a fraction of accuracy), got {max_drop}",
            field="--max-drop",
            fix="Use e.g. 0.02 for two points.",
        )
    if not (0.0 < float(alpha) < 1.0):
        raise UsageError(f"alpha must be in (0, 1), got {alpha}", field="--alpha", fix="Use e.g. 0.05.")
    b_res, b_samples, b_path = _load(base, "BASE")
    n_res, n_samples, n_path = _load(new, "NEW")

    b_norm, b_eps, b_bounds = _threat(b_res)
    n_norm, n_eps, n_bounds = _threat(n_res)
    if b_norm != n_norm or (
        b_bounds and n_bounds and list(map(float, b_bounds)) != list(map(float, n_bounds))
    ):
        raise UsageError(
            f"the audits use different threat models (BASE norm {b_norm}, bounds {b_bounds}; "
            f"NEW norm {n_norm}, bounds {n_bounds})",
            field="NEW",
            fix="Compare audits run with the same threat section.",
        )
    if len(b_eps) != len(n_eps) or any(abs(a - b) > EPS_TOL for a, b in zip(b_eps, n_eps)):
        raise UsageError(
            f"the audits use different eps grids (BASE {b_eps}, NEW {n_eps})",
            field="NEW",
            fix="Compare audits run with the same eps grid.",
        )
    b_budget, n_budget = results_budget(b_res), results_budget(n_res)
    budget = budget_differences(b_budget, n_budget)
    if strict_budget and budget != []:
        raise UsageError(
            budget_warning(budget) if budget else unknown_budget(b_budget, n_budget, ("BASE", "NEW")),
            field="--strict-budget",
            fix="Compare audits run with the same attacks and parameters (the same preset), "
            "or leave out --strict-budget to compare them with a warning.",
        )
    shared = [i for i in b_samples if i in n_samples]
    if not shared:
        raise UsageError(
            "the two audits share no sample ids, so there is nothing to pair",
            field="NEW",
            fix="Audit both models on the same data (same spec, n_examples and seed).",
        )
    relabelled = [i for i in shared if int(b_samples[i]["label"]) != int(n_samples[i]["label"])]
    if relabelled:
        raise UsageError(
            f"{len(relabelled)} shared sample ids have different labels in the two audits (e.g. {relabelled[0]!r}): "
            "the ids do not name the same samples",
            field="NEW",
            fix="Audit both models on the same data.",
        )

    cmp = Comparison(
        base=str(b_path),
        new=str(n_path),
        alpha=float(alpha),
        max_drop=float(max_drop),
        n_base=len(b_samples),
        n_new=len(n_samples),
        n_shared=len(shared),
        budget_differences=budget or [],
    )
    if budget is None:
        cmp.notes.append(unknown_budget(b_budget, n_budget, ("BASE", "NEW")))
    b_data = b_res.data.spec if b_res.data else None
    n_data = n_res.data.spec if n_res.data else None
    if b_data != n_data:
        cmp.notes.append(f"data specs differ (BASE {b_data}, NEW {n_data}); samples are paired by id")
    if len(shared) < max(len(b_samples), len(n_samples)):
        cmp.notes.append(f"only {len(shared)} sample ids are in both audits; the paired numbers use those")

    def add(label: str, eps: float | None, base_acc: float, new_acc: float, b_ok, n_ok) -> None:
        lost, gained, bs, ns = _paired(b_ok, n_ok)
        p = mcnemar_exact(lost, gained)
        delta = ns - bs
        regression = lost > gained and p < alpha and -delta > max_drop + 1e-12
        cmp.rows.append(
            Row(label, eps, base_acc, new_acc, len(shared), bs, ns, delta, lost, gained, p, regression)
        )

    add(
        "clean",
        None,
        float(b_res.clean.accuracy),
        float(n_res.clean.accuracy),
        [int(b_samples[i]["clean_pred"]) == int(b_samples[i]["label"]) for i in shared],
        [int(n_samples[i]["clean_pred"]) == int(n_samples[i]["label"]) for i in shared],
    )
    for e in b_eps:
        add(
            f"eps {e:g}",
            e,
            _accuracy_at(b_res, e),
            _accuracy_at(n_res, e),
            [_robust_at(b_samples[i], e) for i in shared],
            [_robust_at(n_samples[i], e) for i in shared],
        )
    return cmp
