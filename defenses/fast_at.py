"""Fast adversarial training (Wong et al. 2020): FGSM from a uniform random start, step 1.25 eps.

The inner step is the project's PGD with one step (``attacks/pgd.py``; FGSM with a random
start is exactly that). Fast AT can fail by catastrophic overfitting: within an epoch the
model learns to defeat the single-step attack while multi-step PGD accuracy collapses to
about zero. The trainer guards against it: PGD accuracy on the held-out split each epoch,
the best epoch kept, training stopped on a collapse (``collapse_drop``).
"""

from __future__ import annotations

from typing import Any

from defenses.objective import register_objective
from defenses.pgd_at import PGDAT


@register_objective
class FastAT(PGDAT):
    """PGD-AT's loss on one PGD step of 1.25 eps from a random start (FGSM-RS)."""

    name = "fast-at"
    description = "Wong et al. 2020: FGSM from a random start (step 1.25 eps), cyclic LR, overfitting guard."
    adversarial = True
    options = ("step_size",)
    default_schedule = "cyclic"
    needs_validation = True
    guards_collapse = True

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        return {}

    def inner_attack(self) -> Any:
        from attacks.registry import get_attack

        c = self.config
        step = float(c.step_size) if c.step_size is not None else 1.25 * float(c.eps)
        return get_attack("pgd", steps=1, step_size=step, random_start=True, restarts=1)
