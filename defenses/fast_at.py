"""Fast adversarial training (Wong et al. 2020): FGSM from a uniform random start, step 1.25 eps.

The inner step is the project's PGD with one step (``attacks/pgd.py``; FGSM with a random
start is exactly that). Fast AT can fail by catastrophic overfitting: within an epoch the
model learns to defeat the single-step attack while multi-step PGD accuracy collapses to
about zero. The trainer guards against it: PGD accuracy on the held-out split each epoch,
the best epoch kept, training stopped on a collapse (``collapse_drop``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from defenses.objective import Objective, register_objective


@register_objective
class FastAT(Objective):
    name = "fast-at"
    description = "Wong et al. 2020: FGSM from a random start (step 1.25 eps), cyclic LR, overfitting guard."
    adversarial = True
    options = ("step_size",)
    default_schedule = "cyclic"
    needs_validation = True
    guards_collapse = True

    def __init__(self, config, model, generator) -> None:  # noqa: ANN001 - see Objective
        super().__init__(config, model, generator)
        from attacks.registry import get_attack

        step = float(config.step_size) if config.step_size is not None else 1.25 * float(config.eps)
        self.attack = get_attack("pgd", steps=1, step_size=step, random_start=True, restarts=1)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        x_adv = self.attack.perturb_batch(
            self.model, x, y, eps=c.eps, norm=c.norm, generator=self.generator, eval_mode=c.attack_eval_mode
        )
        logits = self.model(x_adv)
        return F.cross_entropy(logits.float(), y), logits

    def card(self) -> dict[str, Any]:
        return {**super().card(), "inner_attack": {"attack": "pgd", **self.attack.params}}
