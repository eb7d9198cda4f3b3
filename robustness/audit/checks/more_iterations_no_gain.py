"""(e) More iterations and restarts do not lower robust accuracy materially.

At each eps the main gradient attack (the first iterative white-box one) runs again with twice
the iterations and two more restarts on a sample of the points still standing; what it breaks
is folded into the ledger.
"""

from __future__ import annotations

from typing import Any

from robustness.audit.check import AttackCheck, CheckResult, EpsStep, allowed, pct, register_check
from robustness.config import AttackSpec

STRONGER_STEPS = 2  # twice the iterations ...
STRONGER_EXTRA_RESTARTS = 2  # ... and two more restarts


@register_check
class MoreIterationsNoGain(AttackCheck):
    name = "more_iterations_no_gain"
    letter = "e"
    title = "More iterations and restarts do not lower robust accuracy"
    explanation = (
        "Running the attack longer or restarting it should not lower robust accuracy much. If it does, "
        "the reported attack had not converged and the number is too optimistic."
    )
    measures = "the main gradient attack with twice the steps and more restarts on the still-robust points"

    def at_eps(self, step: EpsStep) -> None:
        audit = self.audit
        main = audit.main_attack
        if main is None:
            return
        strong = self.stronger(main)
        chosen = audit.sample(audit.ledger.alive, ("e", step.index))
        _, k = audit.attack_and_fold(
            step,
            "check-e-stronger",
            f"check (e) {main.name} x2",
            strong,
            chosen,
            f"check:{main.name}-stronger",
        )
        if k:
            step.found[f"{main.name}-stronger"] = k
        self.per_eps.append({"eps": step.eps, "n_tested": int(chosen.numel()), "n_broken": k})

    def stronger(self, spec: AttackSpec) -> AttackSpec:
        declared = self.audit.stages.instance(spec).params
        params = dict(spec.params)
        params["steps"] = int(declared["steps"]) * STRONGER_STEPS
        if "restarts" in declared:
            params["restarts"] = int(declared["restarts"]) + STRONGER_EXTRA_RESTARTS
        return AttackSpec(name=spec.name, params=params)

    def judge(self) -> CheckResult:
        main = self.audit.main_attack
        described = None if main is None else f"{main.name} with twice the steps and more restarts"
        return judge(described, self.per_eps, self.tolerance)


def judge(attack: str | None, per_eps: list[dict[str, Any]], tolerance: float) -> CheckResult:
    """``per_eps``: {eps, n_tested, n_broken}: still-robust samples attacked again with twice the
    iterations and more restarts of the main gradient attack."""
    name = MoreIterationsNoGain.name
    if attack is None:
        return CheckResult(name, "skip", "No iterative gradient attack is configured to strengthen.")
    rows = [r for r in per_eps if r["n_tested"] > 0]
    if not rows:
        return CheckResult(
            name,
            "skip",
            "No sample was left robust, so there was nothing to attack harder.",
            {"per_eps": per_eps},
        )
    bad = [r for r in rows if r["n_broken"] > allowed(r["n_tested"], tolerance)]
    parts = "; ".join(f"eps {r['eps']:g}: broke {pct(r['n_broken'], r['n_tested'])}" for r in rows)
    if bad:
        return CheckResult(
            name,
            "fail",
            f"{attack} broke more still-robust samples: the attacks have not converged, so the reported "
            f"robust accuracy is too high. {parts}.",
            {"attack": attack, "per_eps": per_eps},
        )
    return CheckResult(
        name,
        "pass",
        f"{attack} on a sample of the still-robust points found (almost) nothing new: the attacks have "
        f"converged. {parts}.",
        {"attack": attack, "per_eps": per_eps},
    )
