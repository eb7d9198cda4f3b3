"""(c) At a very large eps, accuracy falls to about zero.

After the eps loop the white-box attacks (all attacks if none is white-box) run in order, each
on the points still standing, at a very large eps on a sample of correctly classified points.
What each attack left standing there is its indicator of unreachable misclassification
(:mod:`robustness.audit.indicators`), shown on its attack record.
"""

from __future__ import annotations

import math

from robustness.audit.check import AttackCheck, CheckResult, pct, register_check
from robustness.config import default_large_eps


@register_check
class LargeEpsBreaksAll(AttackCheck):
    name = "large_eps_breaks_all"
    letter = "c"
    title = "At a very large eps, accuracy falls to about zero"
    explanation = (
        "With a budget large enough to erase the image, any model should be fooled. Accuracy well above "
        "zero there means the attack, not the model, is the limit."
    )
    measures = "the white-box attacks on a sample of correct points at a very large eps"

    def after_attacks(self) -> None:
        import torch

        audit = self.audit
        settings = audit.cfg.sanity_checks
        self.eps = settings.large_eps or default_large_eps(audit.norm, audit.eps_grid, audit.model.bounds)
        specs = [s for s in audit.attack_specs if audit.stages.instance(s).kind == "white-box"]
        specs = specs or audit.attack_specs
        self.attack = " + ".join(audit.labels_of(specs))
        chosen = audit.sample(audit.ledger.correct, "c")
        standing = torch.zeros_like(audit.ledger.correct)
        standing[chosen] = True
        label_of = {id(spec): label for spec, label in zip(audit.attack_specs, audit.labels)}
        for k, spec in enumerate(specs):
            out = audit.stages.run(
                len(audit.eps_grid),
                self.eps,
                f"check-c-large-{k}-{spec.name}",
                f"check (c) {spec.name}",
                spec,
                standing.nonzero().flatten(),
                standing,
                show_robust=False,
            )
            standing[out.broken] = False
            audit.indicators.add_unreachable(
                label_of[id(spec)],
                self.eps,
                int(out.idx.numel()),
                int(out.idx.numel()) - out.n_broken,
                settings.large_eps_max_accuracy,
            )
        self.n_tested = int(chosen.numel())
        self.n_robust = int(standing.sum())

    def judge(self) -> CheckResult:
        return judge(
            self.eps,
            self.attack,
            self.n_tested,
            self.n_robust,
            self.audit.cfg.sanity_checks.large_eps_max_accuracy,
        )


def judge(eps: float, attack: str | None, n_tested: int, n_robust: int, max_accuracy: float) -> CheckResult:
    name = LargeEpsBreaksAll.name
    measured = {"eps": eps, "attack": attack, "n_tested": n_tested, "n_robust": n_robust}
    if attack is None or n_tested == 0:
        return CheckResult(name, "skip", "No correctly classified sample to attack at a large eps.", measured)
    lim = max(math.floor(max_accuracy * n_tested + 1e-9), 0)
    text = (
        f"At eps {eps:g}, far beyond the evaluated radii, {attack} left {pct(n_robust, n_tested)} of "
        "the sampled points correctly classified"
    )
    if n_robust > lim:
        return CheckResult(
            name,
            "fail",
            text
            + f" (at most {lim} allowed). An unbounded adversary should win almost always: the attack is "
            "not reaching the model (masked gradients, a non-differentiable step, or too few iterations).",
            measured,
        )
    return CheckResult(
        name, "pass", text + "; the attack works when the adversary is strong enough.", measured
    )
