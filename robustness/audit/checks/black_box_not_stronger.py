"""(d) Black-box and random-noise attacks do not beat the white-box attacks.

At each eps, random noise (and Square, when no black-box attack is configured) runs on a sample
of the points still standing; what it breaks is folded into the ledger.
"""

from __future__ import annotations

from typing import Any

from robustness.audit.check import AttackCheck, CheckResult, EpsStep, allowed, register_check
from robustness.config import AttackSpec

# The budget of the Square attack the check adds (per sample).
CHECK_SQUARE = {"n_queries": 1000}


@register_check
class BlackBoxNotStronger(AttackCheck):
    name = "black_box_not_stronger"
    letter = "d"
    title = "Black-box and random-noise attacks do not beat the white-box attacks"
    explanation = (
        "Attacks that do not use gradients (random search, Square) should not break samples the "
        "gradient attacks left standing. If they do, the gradients are masked."
    )
    measures = "random noise (and Square) on a sample of the points the white-box attacks left standing"

    def at_eps(self, step: EpsStep) -> None:
        from attacks.registry import available

        audit = self.audit
        known = available()
        chosen = audit.sample(audit.ledger.alive, ("d", step.index))
        by: dict[str, int] = dict(step.black_box_by)
        tested = step.black_box_tested if step.black_box_tested is not None else 0
        extra: list[tuple[str, AttackSpec]] = []
        if "noise" in known:
            extra.append(("noise", AttackSpec(name="noise", params={})))
        if step.black_box_tested is None and "square" in known and audit.norm in known["square"].norms:
            extra.append(("square", AttackSpec(name="square", params=dict(CHECK_SQUARE))))
        if extra:
            tested = max(tested, int(chosen.numel()))
        for short, spec in extra:
            still = chosen[audit.ledger.alive[chosen]]
            _, k = audit.attack_and_fold(
                step, f"check-d-{short}", f"check (d) {short}", spec, still, f"check:{short}"
            )
            by[short] = k
            if k:
                step.found[short] = k
        self.per_eps.append({"eps": step.eps, "n_tested": tested, "n_broken": sum(by.values()), "by": by})

    def judge(self) -> CheckResult:
        return judge(self.per_eps, self.tolerance)


def judge(per_eps: list[dict[str, Any]], tolerance: float) -> CheckResult:
    """``per_eps``: {eps, n_tested, n_broken, by: {attack: n}} where ``n_tested`` counts samples the
    white-box attacks left standing that a black-box or noise attack then ran on."""
    name = BlackBoxNotStronger.name
    rows = [r for r in per_eps if r["n_tested"] > 0]
    if not rows:
        return CheckResult(
            name,
            "skip",
            "The white-box attacks left no sample standing, so nothing was left to test.",
            {"per_eps": per_eps},
        )
    bad = [r for r in rows if r["n_broken"] > allowed(r["n_tested"], tolerance)]
    parts = "; ".join(
        f"eps {r['eps']:g}: "
        + (", ".join(f"{a} broke {k}" for a, k in r["by"].items()) or "nothing broke")
        + f" of {r['n_tested']} samples the white-box attacks left standing"
        for r in rows
    )
    if bad:
        return CheckResult(
            name,
            "fail",
            "Gradient-free attacks broke samples the white-box attacks could not: the gradients do not "
            f"lead the white-box attacks to adversarial examples (gradient masking). {parts}.",
            {"per_eps": per_eps},
        )
    return CheckResult(
        name,
        "pass",
        f"Black-box and random-noise attacks found (almost) nothing new. {parts}.",
        {"per_eps": per_eps},
    )
