"""Fast adversarial training (Wong et al. 2020): FGSM from a uniform random start, step 1.25 eps.

The inner step is the project's PGD with one step (``attacks/pgd.py``; FGSM with a random
start is exactly that). Fast AT can fail by catastrophic overfitting: within an epoch the
model learns to defeat the single-step attack while multi-step PGD accuracy collapses to
about zero. The trainer guards against it: PGD accuracy on the held-out split each epoch,
the best epoch kept, training stopped on a collapse (``collapse_drop``).
"""

from __future__ import annotations

from typing import Any

from defenses.objective import HyperParameter, register_objective
from defenses.objectives.pgd_at import PGDAT


@register_objective
class FastAT(PGDAT):
    """PGD-AT's loss on one PGD step of 1.25 eps from a random start (FGSM-RS)."""

    name = "fast-at"
    description = "Wong et al. 2020: FGSM from a random start (step 1.25 eps), cyclic LR, overfitting guard."
    adversarial = True
    hyperparameters = {
        "step_size": HyperParameter(
            None, float, "FGSM step size (default 1.25 eps)", minimum=0, exclusive=True
        ),
    }
    default_schedule = "cyclic"
    needs_validation = True
    guards_collapse = True

    def inner_attack(self) -> Any:
        from attacks.registry import get_attack

        given = self.params["step_size"]
        step = float(given) if given is not None else 1.25 * float(self.config.eps)
        return get_attack("pgd", steps=1, step_size=step, random_start=True, restarts=1)
