"""PGD adversarial training (Madry et al. 2018): minimise the loss on PGD examples of every sample.

The inner maximisation is the project's one PGD (``attacks/pgd.py``) run through
:meth:`attacks.base.Attack.perturb_batch`: every sample of the batch is attacked with the
full budget (misclassified ones included, no early stop on success) and training uses the
final iterate, with the weights frozen (and, by default, the network in eval mode) while it runs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional

from defenses.objective import HyperParameter, Objective, register_objective

STEPS = HyperParameter(10, int, "inner attack steps", minimum=1)


@register_objective
class PGDAT(Objective):
    name = "pgd-at"
    description = "Madry et al. 2018: cross-entropy on PGD adversarial examples (random start, k steps)."
    adversarial = True
    hyperparameters = {
        "steps": STEPS,
        "step_size": HyperParameter(
            None, float, "inner step size (default 2.5 eps / steps)", minimum=0, exclusive=True
        ),
    }

    def __init__(self, config, model, generator) -> None:  # noqa: ANN001 - see Objective
        super().__init__(config, model, generator)
        self.attack = self.inner_attack()

    def inner_attack(self) -> Any:
        """The PGD that crafts the training examples (fast-at overrides the budget)."""
        from attacks.registry import get_attack

        return get_attack(
            "pgd",
            steps=int(self.params["steps"]),
            step_size=self.default_step_size(),
            random_start=bool(self.config.random_start),
            restarts=1,
        )

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        x_adv = self.attack.perturb_batch(
            self.model, x, y, eps=c.eps, norm=c.norm, generator=self.generator, eval_mode=c.attack_eval_mode
        )
        logits = self.model(x_adv)
        return functional.cross_entropy(logits.float(), y), logits

    def card(self) -> dict[str, Any]:
        return {**super().card(), "inner_attack": {"attack": "pgd", **self.attack.params}}
