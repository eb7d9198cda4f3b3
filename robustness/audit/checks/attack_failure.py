"""(j) The attacks' own optimisation shows no sign of failure.

The indicators of attack failure (Pintor et al., NeurIPS 2022; :mod:`robustness.audit.indicators`)
read off the audit's own attacks at no extra cost: a loss that never moved, a loss still rising
when the budget ran out, a last restart that still broke samples. Attacks run in order on what
the earlier ones left, so an indicator fired on one attack is covered when a later attack at the
same eps shows no sign of failure (APGD-CE blinded by a saturated softmax, then APGD-T's DLR
loss doing the work), or when no sample was left standing there. The check fails on an indicator
that nothing covers. Unreachable misclassification, the fourth indicator, is recorded per attack
too but judged by check (c), whose runs measure it.
"""

from __future__ import annotations

from typing import Any

from robustness.audit.check import AttackCheck, CheckResult, register_check
from robustness.audit.indicators import INDICATORS, TRAJECTORY


@register_check
class AttackFailure(AttackCheck):
    name = "attack_failure"
    letter = "j"
    title = "The attacks' own optimisation shows no sign of failure"
    explanation = (
        "An attack that fails because of its optimisation, not the model, over-reports robustness. Its own "
        "loss shows it: a loss that never moved (no gradient signal), a loss still rising when the budget ran "
        "out, or restarts that still find new examples (Pintor et al. 2022, indicators of attack failure)."
    )
    measures = "the loss trajectories of the audit's attacks on the samples they failed on (no extra attack)"

    def judge(self) -> CheckResult:
        audit = self.audit
        uncovered, covered, n_reporters = audit.indicators.judged(list(audit.labels))
        standing = {row["eps"]: row["n_robust"] for row in audit.robust_rows}
        for item in [i for i in uncovered if standing.get(i["eps"]) == 0]:
            uncovered.remove(item)
            covered.append({**item, "covered_by": "no sample left standing"})
        measured = {"uncovered": uncovered, "covered": covered, "n_reporting": n_reporters}
        if not n_reporters:
            return self.result(
                "skip",
                "No attack of the run reports its loss trajectory (APGD, MALT and PGD do) on a sample it "
                "failed on: nothing to read the indicators from.",
                measured,
            )
        also = (
            " Covered by a later attack that shows no sign of failure: "
            + "; ".join(f"{_sentence(i)}, covered by {i['covered_by']}" for i in covered)
            + "."
            if covered
            else ""
        )
        if uncovered:
            parts = "; ".join(_sentence(i) for i in uncovered)
            return self.result(
                "fail",
                f"Indicators of attack failure fired and no later attack made up for them: {parts}. Those "
                "failures are the attack's, so the robust accuracy is likely too high: strengthen the attack "
                "(more steps or restarts, a margin loss such as DLR, BPDA or EOT where gradients are masked) "
                "and audit again." + also,
                measured,
            )
        names = ", ".join(INDICATORS[n].title.lower() for n in TRAJECTORY)
        return self.result(
            "pass",
            f"The samples still standing were attacked by an optimisation with no sign of failure ({names}); "
            "unreachable misclassification is judged by check (c)." + also,
            measured,
        )


def _sentence(item: dict[str, Any]) -> str:
    """One fired indicator in the check's detail."""
    who = item["attack"] + (f" ({item['member']})" if item["member"] else "")
    return (
        f"{who} at eps {item['eps']:g}: {item['title'].lower()} on {item['n_fired']} of the "
        f"{item['n_measured']} samples it failed on"
    )
