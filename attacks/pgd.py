"""Projected gradient descent (Madry et al. 2018), linf / l2 / l1, with random restarts.

Every iterate is checked: a sample keeps the first adversarial point found, and only
samples not yet broken are carried into later steps and restarts. Each restart reports its loss
trajectory to ``ctx.trace`` (:mod:`attacks.trace`): the loss is evaluated at the first ``steps``
iterates (the last one is judged by the base class), so a run of one step has no trajectory.
"""

from __future__ import annotations

from typing import Any

import torch

from attacks.base import Attack, AttackContext
from attacks.losses import get_loss
from attacks.registry import register
from attacks.steps import ascent_direction
from attacks.trace import late_step
from robustness.core.errors import AttackError
from robustness.core.threat import random_in_ball


@register
class PGD(Attack):
    name = "pgd"
    norms = ("linf", "l2", "l1")
    supports_targeted = True
    description = "Projected gradient descent with random start and restarts (Madry et al. 2018)."
    # Both default to None (derived from eps and steps), so their type cannot be read off the defaults.
    declared_param_types = {"step_size": float, "rel_step_size": float}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        # step_size None = 2.5 * eps / steps (Madry et al.); rel_step_size scales eps instead when set.
        return {
            "steps": 20,
            "step_size": None,
            "rel_step_size": None,
            "random_start": True,
            "restarts": 1,
            "loss": "ce",
            "l1_sparsity": 0.99,
        }

    def check_params(self) -> None:
        p = self.params
        if int(p["steps"]) < 1:
            raise AttackError(f"steps must be >= 1, got {p['steps']}", field="steps", fix="Use e.g. 20.")
        if int(p["restarts"]) < 1:
            raise AttackError(
                f"restarts must be >= 1, got {p['restarts']}", field="restarts", fix="Use e.g. 1."
            )
        for k in ("step_size", "rel_step_size"):
            if p[k] is not None and not float(p[k]) > 0:
                raise AttackError(
                    f"{k} must be > 0, got {p[k]}", field=k, fix="Leave it out for the default."
                )
        if not 0 <= float(p["l1_sparsity"]) < 1:
            raise AttackError("l1_sparsity must be in [0, 1)", field="l1_sparsity", fix="Use e.g. 0.99.")
        get_loss(p["loss"])

    def step_size(self, eps: torch.Tensor) -> torch.Tensor:
        p = self.params
        if p["step_size"] is not None:
            return torch.full_like(eps, float(p["step_size"]))
        rel = float(p["rel_step_size"]) if p["rel_step_size"] is not None else 2.5 / int(p["steps"])
        return eps * rel

    def perturb(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        p = self.params
        loss_fn = get_loss(p["loss"])
        shape = (-1,) + (1,) * (x.dim() - 1)
        x_best = x.clone()
        found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        restarts, steps = int(p["restarts"]), int(p["steps"])
        trace = ctx.trace if steps > 1 else None
        # The loss is evaluated after 0 .. steps - 1 moves: the late window is over those moves.
        late = late_step(steps - 1)
        for restart in range(restarts):
            act = (~found).nonzero().flatten()
            if act.numel() == 0:
                if trace is not None and restarts > 1:  # the last restart had nothing left to attack
                    trace.last_restart(self.name, found, 0, found.new_zeros((), dtype=torch.long))
                break
            attacked = int(act.numel())
            xa, ya, ea = x[act], y[act], eps[act]
            ta = None if targets is None else targets[act]
            alpha = self.step_size(ea).view(shape)
            x_adv = xa.clone()
            if p["random_start"]:
                x_adv = ctx.project(xa + random_in_ball(xa, ctx.norm, ea, ctx.generator), xa, ea)
            # linf: the ball and the bounds are one box; clipping to it is the whole projection,
            # two element-wise ops per step instead of six (it matters on small models).
            box = None
            if ctx.norm == "linf":
                ev = ea.view(shape)
                box = ((xa - ev).clamp_min(ctx.bounds[0]), (xa + ev).clamp_max(ctx.bounds[1]))
            # Hits are recorded on the device each step; dropping broken samples needs a host
            # sync, so it happens only every ctx.compact_every steps (at once on a CPU).
            every = ctx.compact_every
            done = torch.zeros(act.numel(), dtype=torch.bool, device=x.device)
            x_first = x_adv.detach()  # the first adversarial iterate of each done sample
            # The loss trajectory (attacks.trace): at the start, best so far, best at the late window.
            f_start = f_best = f_late = torch.zeros(act.numel(), device=x.device)
            for it in range(steps):
                x_adv.requires_grad_(True)
                logits = ctx.model(x_adv)
                loss = loss_fn(logits, ya, ta)
                (grad,) = torch.autograd.grad(loss.sum(), x_adv)
                x_adv = x_adv.detach()
                value = loss.detach()
                f_start = value if it == 0 else f_start
                f_best = value if it == 0 else torch.maximum(f_best, value)
                f_late = f_best if it == late else f_late
                # Record adversarial iterates (judged on the logits we already have): x_first
                # follows the iterate until the sample is done, then keeps its first hit.
                x_first = torch.where(done.view(shape), x_first, x_adv)
                done = done | ctx.is_adversarial(logits.detach(), ya, ta)
                if (it + 1) % every == 0 and bool(done.any()):
                    x_best[act[done]] = x_first[done]
                    found[act[done]] = True
                    keep = ~done
                    act, xa, ya, ea, x_adv, grad, alpha = (
                        act[keep],
                        xa[keep],
                        ya[keep],
                        ea[keep],
                        x_adv[keep],
                        grad[keep],
                        alpha[keep],
                    )
                    ta = None if ta is None else ta[keep]
                    box = None if box is None else (box[0][keep], box[1][keep])
                    x_first, done = x_first[keep], done[keep]
                    f_start, f_best, f_late = f_start[keep], f_best[keep], f_late[keep]
                    if act.numel() == 0:
                        break
                if box is not None:
                    x_adv = torch.maximum(torch.minimum(x_adv + alpha * grad.sign(), box[1]), box[0])
                else:
                    direction = ascent_direction(grad, ctx.norm, x_adv, ctx.bounds, float(p["l1_sparsity"]))
                    x_adv = ctx.project(x_adv + alpha * direction, xa, ea)
            if trace is not None:
                failed = ~done
                trace.run(self.name, found, act[failed], f_start[failed], f_late[failed], f_best[failed])
                if restarts > 1 and restart == restarts - 1:
                    trace.last_restart(self.name, found, attacked, attacked - failed.sum())
            if act.numel() == 0:
                continue
            if restart == restarts - 1:
                # The last iterate of the last restart: the caller re-predicts every returned
                # example anyway (the base class does), so checking it here would cost a pass.
                x_best[act] = torch.where(done.view(shape), x_first, x_adv)
                found[act] = done  # read by the trace: the samples this call failed on
            else:
                # The last iterate has not been checked yet; the next restart needs to know.
                with torch.no_grad():
                    hit = ctx.is_adversarial(ctx.model(x_adv), ya, ta)
                x_best[act] = torch.where(done.view(shape), x_first, x_adv)
                found[act] = done | hit
        return x_best
