"""(a) Iterative attacks are not weaker than single-step ones.

At each eps, FGSM runs on every sample the audit's attacks ran on; what it breaks that they
left standing is folded into the ledger and counted against the iterative attacks.
"""

from __future__ import annotations

from typing import Any

from robustness.audit.check import AttackCheck, CheckResult, EpsStep, allowed, pct, register_check
from robustness.config import AttackSpec

FGSM = AttackSpec(name="fgsm", params={})


@register_check
class IterativeBeatsSingleStep(AttackCheck):
    name = "iterative_beats_single_step"
    letter = "a"
    title = "Iterative attacks are not weaker than single-step ones"
    explanation = (
        "A many-step attack should find at least every weakness a one-step attack finds. If it does not, "
        "the gradients are misleading it (gradient masking) and the robust accuracy is over-stated."
    )
    measures = "FGSM on every sample attacked at each eps, against what the iterative attacks left standing"

    def at_eps(self, step: EpsStep) -> None:
        audit = self.audit
        idx = step.start_alive.nonzero().flatten()
        n_attacked = int(idx.numel())
        out, extra = audit.attack_and_fold(step, "check-a-fgsm", "check (a) fgsm", FGSM, idx, "check:fgsm")
        if extra:
            step.found["fgsm"] = extra
        self.per_eps.append(
            {
                "eps": step.eps,
                "n_attacked": n_attacked,
                "fgsm_robust": n_attacked - out.n_broken,
                "iterative_robust": (n_attacked - step.white_box_broken)
                if audit.main_attack is not None
                else None,
                "extra": extra,
            }
        )

    def judge(self) -> CheckResult:
        return judge(self.per_eps, self.tolerance)


def judge(per_eps: list[dict[str, Any]], tolerance: float) -> CheckResult:
    """``per_eps``: {eps, n_attacked, fgsm_robust, iterative_robust, extra} per eps, where
    ``extra`` counts samples FGSM broke that every configured attack left standing."""
    name = IterativeBeatsSingleStep.name
    rows = [r for r in per_eps if r["n_attacked"] > 0]
    if not rows:
        return CheckResult(
            name, "skip", "No sample was correctly classified and unbroken, so nothing was attacked."
        )
    if all(r.get("iterative_robust") is None for r in rows):
        return CheckResult(name, "skip", "No iterative white-box attack is configured to compare FGSM with.")
    bad = []
    parts = []
    for r in rows:
        n, lim = r["n_attacked"], allowed(r["n_attacked"], tolerance)
        parts.append(
            f"eps {r['eps']:g}: FGSM left {pct(r['fgsm_robust'], n)} robust, the iterative attacks "
            f"{pct(r['iterative_robust'], n)}; FGSM broke {r['extra']} that no configured attack broke"
        )
        if r["extra"] > lim or r["fgsm_robust"] < r["iterative_robust"] - lim:
            bad.append(r["eps"])
    detail = "; ".join(parts) + "."
    if bad:
        return CheckResult(
            name,
            "fail",
            "A single gradient step beat the iterative attacks at eps "
            + ", ".join(f"{e:g}" for e in bad)
            + ": the iterative attacks are not working on this model (often masked or saturated "
            "gradients), so their robust accuracy is too high. " + detail,
            {"per_eps": per_eps},
        )
    return CheckResult(name, "pass", "FGSM never beat the iterative attacks. " + detail, {"per_eps": per_eps})
