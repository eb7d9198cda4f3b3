"""TRADES (Zhang et al. 2019): CE(f(x), y) + beta * KL(f(x) || f(x')).

x' maximises the KL term, not a cross-entropy: it starts at x + 0.001 N(0, 1) and takes
steepest-ascent steps on KL(softmax f(x) || softmax f(x')), projected into the eps ball and
the bounds after every step, as in the paper. This inner loop is not an attack on labels
(it needs the clean prediction as its reference), so it lives here, built from the same
steps and projections as the attack library.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch.nn import functional

from attacks.steps import ascent_direction
from defenses.objective import HyperParameter, Objective, register_objective
from defenses.objectives.pgd_at import PGDAT
from robustness.core.model import ModelUnderTest
from robustness.core.threat import clip_to_ball_and_bounds


def kl_to_clean(logits_adv: torch.Tensor, p_clean: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(p_clean || softmax(logits_adv))."""
    return functional.kl_div(
        functional.log_softmax(logits_adv.float(), dim=1), p_clean, reduction="none"
    ).sum(dim=1)


def maximise_kl(
    model: ModelUnderTest,
    x: torch.Tensor,
    *,
    eps: float,
    norm: str,
    steps: int,
    step_size: float,
    generator: torch.Generator,
    eval_mode: bool = True,
) -> torch.Tensor:
    """TRADES' inner maximisation; returns x' detached. Gradients are taken w.r.t. x' only."""
    guard = model.evaluating(freeze=True) if eval_mode else contextlib.nullcontext()
    with guard, torch.enable_grad():
        with torch.no_grad():
            p_clean = functional.softmax(model(x).float(), dim=1)
        noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        x_adv = clip_to_ball_and_bounds(x + 0.001 * noise, x, norm, eps, model.bounds).detach()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = kl_to_clean(model(x_adv), p_clean).sum()
            # autograd.grad w.r.t. x' only: nothing is accumulated into the weights' .grad
            (grad,) = torch.autograd.grad(loss, x_adv)
            step = ascent_direction(grad, norm, x_adv.detach(), model.bounds)
            x_adv = clip_to_ball_and_bounds(x_adv.detach() + step_size * step, x, norm, eps, model.bounds)
    return x_adv.detach()


@register_objective
class TRADES(Objective):
    name = "trades"
    description = "Zhang et al. 2019: CE on clean inputs + beta * KL(f(x) || f(x')), x' maximising the KL."
    adversarial = True
    hyperparameters = {
        **PGDAT.hyperparameters,
        "beta": HyperParameter(6.0, float, "TRADES robustness weight", minimum=0, fix="Use 6 (the paper's)."),
    }

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        x_adv = maximise_kl(
            self.model,
            x,
            eps=float(c.eps),
            norm=c.norm,
            steps=int(self.params["steps"]),
            step_size=self.default_step_size(),
            generator=self.generator,
            eval_mode=c.attack_eval_mode,
        )
        # Two forward passes, as in the paper: batch-norm sees clean and adversarial batches apart.
        clean, adv = self.model(x), self.model(x_adv)
        robust = kl_to_clean(adv, functional.softmax(clean.float(), dim=1)).mean()
        return functional.cross_entropy(clean.float(), y) + float(self.params["beta"]) * robust, clean

    def card(self) -> dict[str, Any]:
        return {
            **super().card(),
            "inner_maximisation": {
                "loss": "kl",
                "steps": self.params["steps"],
                "step_size": self.default_step_size(),
            },
        }
