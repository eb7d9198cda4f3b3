"""CI gates (the verdict rule itself is robustness.core.verdict).

``min_clean_accuracy`` and ``min_robust_accuracy`` are judged on the lower end of the
exact 95% interval by default (``judge: ci_low``): a gate passes only when the data show
the model meets it, not when a lucky sample does. ``judge: point`` uses the point
estimate. ``max_drop`` compares point estimates with a baseline results.json (for a
paired significance test use ``robustness compare``).

Every gate records what it judged explicitly (``kind``, ``eps`` — null for a gate not tied to
one eps —, ``comparator`` and ``threshold``): readers of results.json never parse its name.

The baseline is read with the one results loader (``robustness.core.schema.load_results``: a
results.json of an older schema is migrated), must hold possible numbers and should
come from an audit of the same attack budget: a different one (a ``quick`` baseline for a
``standard`` audit) is a :class:`~robustness.compare.BudgetWarning` and a note in the gate's
detail, or an error when the config sets ``gates.strict_budget``.

Verdict: ``unreliable`` when a sanity check failed and was not waived (the numbers
cannot be trusted, whatever the gates say); else ``fail`` when a gate failed; else
``pass``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from robustness.config import AuditConfig, find_eps, load_baseline
from robustness.core.errors import ConfigError

if TYPE_CHECKING:
    from robustness.core.schema import AuditResults

BASELINE_NAMES = ("the baseline", "this audit")


def _judged(entry: dict[str, Any], judge: str) -> float:
    return float(entry["ci"][0]) if judge == "ci_low" else float(entry["accuracy"])


def audit_budget(cfg: AuditConfig) -> dict[str, Any]:
    """The attack budget this config runs, in the form results.json records it."""
    from attacks.registry import get_attack
    from robustness.compare import budget_of
    from robustness.config import resolve_attacks

    attacks = [
        {"attack": spec.name, "params": get_attack(spec.name, **spec.params).params}
        for spec in resolve_attacks(cfg)
    ]
    return budget_of(attacks, cfg.attacks) or {"preset": None, "attacks": {}}


def check_baseline(
    cfg: AuditConfig, attacks: list[dict[str, Any]] | None = None
) -> tuple[AuditResults, list[str]]:
    """Load ``gates.baseline`` and judge it usable: (typed results, attack-budget differences).

    Refuses (ConfigError, field ``gates.baseline``) a baseline whose numbers are impossible, and
    with ``gates.strict_budget`` one run at another attack budget (or that lists no attacks).
    ``attacks`` are this audit's attacks as results.json records them, when known (the runner
    may have wrapped them in EOT); by default they come from the config.
    """
    from robustness.compare import (
        budget_differences,
        budget_of,
        budget_warning,
        results_budget,
        unknown_budget,
    )

    base = load_baseline(cfg.gates.baseline, cfg.threat.norm)
    n_budget = budget_of(attacks, cfg.attacks) if attacks is not None else audit_budget(cfg)
    b_budget = results_budget(base)
    diffs = budget_differences(b_budget, n_budget, BASELINE_NAMES)
    if cfg.gates.strict_budget and diffs != []:
        raise ConfigError(
            budget_warning(diffs) if diffs else unknown_budget(b_budget, n_budget, BASELINE_NAMES),
            field="gates.baseline",
            fix="Use a baseline audited with the same attacks (the same preset), or set "
            "gates.strict_budget: false to gate on it with a warning.",
        )
    return base, diffs or []


def gate(
    name: str,
    kind: str,
    eps: float | None,
    passed: bool,
    value: Any,
    comparator: str,
    threshold: Any,
    judge: str,
    detail: str,
    **more: Any,
) -> dict[str, Any]:
    """One results.json gate entry, every judged quantity explicit (in the file's key order)."""
    return {
        "name": name,
        "kind": kind,
        "eps": eps,
        "passed": passed,
        "value": value,
        "comparator": comparator,
        "threshold": threshold,
        "judge": judge,
        "detail": detail,
        **more,
    }


def evaluate_gates(
    cfg: AuditConfig,
    clean: dict[str, Any],
    robust: list[dict[str, Any]],
    data_sha256: str | None = None,
    attacks: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One entry per gate: name, kind, eps, passed, value, comparator, threshold, judge, detail.

    The audit sections add their own gates after these (``AuditSection.gates``). ``attacks`` (the
    attacks as results.json records them) are what the baseline's budget is compared with;
    by default the config's.
    """
    g = cfg.gates
    what = "CI low" if g.judge == "ci_low" else "point estimate"
    out: list[dict[str, Any]] = []
    if g.min_clean_accuracy is not None:
        v = _judged(clean, g.judge)
        ok = v >= g.min_clean_accuracy
        out.append(
            gate(
                "min_clean_accuracy",
                "min_clean_accuracy",
                None,
                ok,
                v,
                ">=",
                g.min_clean_accuracy,
                g.judge,
                f"clean accuracy {what} {v:.4f} {'>=' if ok else '<'} {g.min_clean_accuracy:g}",
            )
        )
    by_eps = {float(r["eps"]): r for r in robust}
    for key, thr in sorted(g.min_robust_accuracy.items()):
        e = find_eps(key, list(by_eps))
        entry = by_eps[e]  # check_config guarantees the eps is in the grid
        v = _judged(entry, g.judge)
        ok = v >= thr
        out.append(
            gate(
                f"min_robust_accuracy@{e:g}",
                "min_robust_accuracy",
                e,
                ok,
                v,
                ">=",
                thr,
                g.judge,
                f"robust accuracy at eps {e:g} {what} {v:.4f} {'>=' if ok else '<'} {thr:g}",
            )
        )
    if g.max_drop is not None and g.baseline is not None:
        from robustness.compare import BudgetWarning, budget_warning

        base, budget = check_baseline(cfg, attacks)
        if budget:
            warnings.warn(budget_warning(budget), BudgetWarning, stacklevel=2)
        base_by_eps = {float(r.eps): r for r in base.robust}
        limits = (
            {find_eps(k, list(by_eps)): v for k, v in g.max_drop.items()}
            if isinstance(g.max_drop, dict)
            else {e: g.max_drop for e in by_eps}
        )
        base_sha = base.data.sha256 if base.data is not None else None
        note = "" if data_sha256 is None or base_sha == data_sha256 else " (the baseline used different data)"
        if budget:
            note += f" (the baseline ran a different attack budget: {'; '.join(budget[:2])}{'; ...' if len(budget) > 2 else ''})"
        for e, limit in sorted(limits.items()):
            b = find_eps(e, list(base_by_eps))
            if b is None or base_by_eps[b].accuracy is None:
                out.append(
                    gate(
                        f"max_drop@{e:g}",
                        "max_drop",
                        e,
                        False,
                        None,
                        "<=",
                        limit,
                        "point",
                        f"the baseline {g.baseline} has no result at eps {e:g}; the drop cannot be measured",
                    )
                )
                continue
            base_acc = float(base_by_eps[b].accuracy)
            drop = base_acc - float(by_eps[e]["accuracy"])
            ok = drop <= limit + 1e-12
            out.append(
                gate(
                    f"max_drop@{e:g}",
                    "max_drop",
                    e,
                    ok,
                    drop,
                    "<=",
                    limit,
                    "point",
                    f"robust accuracy at eps {e:g} {by_eps[e]['accuracy']:.4f} vs baseline "
                    f"{base_acc:.4f}: drop {drop:+.4f} {'<=' if ok else '>'} {limit:g}{note}",
                    baseline=g.baseline,
                    baseline_accuracy=base_acc,
                )
            )
    return out
