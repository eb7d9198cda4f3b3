"""(b) Robust accuracy does not rise with eps.

At each eps after the first, a sample of the points broken at a smaller eps is attacked again by
the attack that broke them; a stable attack breaks them again (the balls are nested).
"""

from __future__ import annotations

from typing import Any

from robustness.audit.check import AttackCheck, CheckResult, EpsStep, allowed, register_check


@register_check
class MonotonicInEps(AttackCheck):
    name = "monotonic_in_eps"
    letter = "b"
    title = "Robust accuracy does not rise with eps"
    explanation = (
        "A bigger perturbation budget gives the attacker more room, so robust accuracy can only fall as "
        "eps grows. A rise means an attack failed to find examples it provably could."
    )
    measures = "robust accuracy per eps, and samples broken at a smaller eps re-attacked at the larger one"

    def at_eps(self, step: EpsStep) -> None:
        if step.index == 0:
            return
        import torch

        audit = self.audit
        carried = audit.ledger.correct & ~step.start_alive
        chosen = audit.sample(carried, ("b", step.index))
        broken_by = audit.ledger.broken_by_at[step.index - 1]
        groups: dict[str, list[int]] = {}
        for i in chosen.tolist():
            groups.setdefault(broken_by[i] or "", []).append(i)
        n_tested = n_not_broken = 0
        for label, members in sorted(groups.items()):
            spec = audit.spec_for(label)
            if spec is None:
                continue
            group = torch.tensor(members, dtype=torch.long)
            shown = torch.zeros_like(step.start_alive)
            shown[group] = True
            out = audit.stages.run(
                step.index,
                step.eps,
                f"check-b-{label}",
                f"check (b) {label}",
                spec,
                group,
                shown,
                show_robust=False,
            )
            n_tested += int(group.numel())
            n_not_broken += int((~out.success).sum())
        self.per_eps.append({"eps": step.eps, "n_tested": n_tested, "n_not_broken": n_not_broken})

    def judge(self) -> CheckResult:
        audit = self.audit
        return judge(
            audit.eps_grid, [row["accuracy"] for row in audit.robust_rows], self.per_eps, self.tolerance
        )


def judge(
    eps: list[float], accuracy: list[float], per_eps: list[dict[str, Any]], tolerance: float
) -> CheckResult:
    """``accuracy``: reported robust accuracy per eps (ascending eps). ``per_eps``: for each eps
    after the first, {eps, n_tested, n_not_broken}: samples broken at a smaller eps, attacked
    again at this eps by the attack that broke them, and how many it now failed to break."""
    name = MonotonicInEps.name
    rising = [(eps[i], eps[i + 1]) for i in range(len(eps) - 1) if accuracy[i + 1] > accuracy[i] + 1e-12]
    measured = {"accuracy": accuracy, "per_eps": per_eps}
    if rising:
        return CheckResult(
            name,
            "fail",
            "Robust accuracy rises from eps "
            + ", ".join(f"{a:g} to {b:g}" for a, b in rising)
            + "; a larger eps can only make the adversary stronger.",
            measured,
        )
    if len(eps) < 2:
        return CheckResult(
            name, "skip", "Only one eps was evaluated; monotonicity needs two or more.", measured
        )
    tested = [r for r in per_eps if r["n_tested"] > 0]
    if not tested:
        return CheckResult(
            name,
            "pass",
            "Robust accuracy does not rise with eps; no sample was broken at a smaller eps, so no re-attack "
            "was needed.",
            measured,
        )
    bad = [r for r in tested if r["n_not_broken"] > allowed(r["n_tested"], tolerance)]
    parts = "; ".join(
        f"at eps {r['eps']:g}, {r['n_not_broken']} of {r['n_tested']} samples broken at a smaller eps "
        "resisted the same attack"
        for r in tested
    )
    if bad:
        return CheckResult(
            name,
            "fail",
            "Attacks that broke samples at a small eps failed on them at a larger eps: the attacks are "
            f"unstable (step size or gradients), so their numbers are not trustworthy. {parts}.",
            measured,
        )
    return CheckResult(
        name,
        "pass",
        "Robust accuracy does not rise with eps (an example found at a smaller eps counts at every larger "
        f"one), and re-attacking at larger eps confirms it: {parts}.",
        measured,
    )
