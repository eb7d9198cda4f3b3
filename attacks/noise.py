"""Random noise inside the ball: the baseline that the audit's sanity checks compare against.

Per sample, ``n_corners`` draws on the boundary of the ball (linf: a random sign vector at
full eps, i.e. a corner of the box; l2: a random direction at radius eps; l1: a random
vertex, one coordinate moved by eps) and ``n_samples`` draws uniformly inside it; the first
adversarial draw is kept. Only forward passes, only on samples still unbroken. A white-box
attack that breaks fewer samples than this is not working.
"""

from __future__ import annotations

from typing import Any

import torch

from attacks.base import Attack, AttackContext
from attacks.registry import register
from robustness.core.errors import AttackError
from robustness.core.threat import random_in_ball

# Upper bounds on a forward pass when several draws are stacked into one batch: samples, and
# input values (4,096 stacked images of 224 x 224 would be 2.4 GB; this keeps a stack near 64 MB).
_MAX_ROWS = 4096
_MAX_VALUES = 2**24


def _boundary(x: torch.Tensor, norm: str, eps: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random perturbation of norm exactly eps (before clipping to the bounds)."""
    e = eps.view(-1, *([1] * (x.dim() - 1)))
    if norm == "linf":
        return (torch.randint(0, 2, x.shape, device=x.device, generator=gen) * 2.0 - 1.0) * e
    if norm == "l2":
        g = torch.randn(x.shape, device=x.device, generator=gen)
        return g / (g.flatten(1).norm(dim=1).view_as(e) + 1e-12) * e
    flat = torch.zeros(x.shape[0], x[0].numel(), device=x.device)
    pos = torch.randint(0, flat.shape[1], (x.shape[0], 1), device=x.device, generator=gen)
    sign = torch.randint(0, 2, (x.shape[0], 1), device=x.device, generator=gen) * 2.0 - 1.0
    flat.scatter_(1, pos, sign)
    return flat.view_as(x) * e


@register
class Noise(Attack):
    name = "noise"
    norms = ("linf", "l2", "l1")
    kind = "black-box"
    supports_targeted = True
    description = "Random search in the eps ball (boundary and uniform draws); the sanity-check baseline."

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"n_samples": 100, "n_corners": 100}

    def check_params(self) -> None:
        p = self.params
        for k in ("n_samples", "n_corners"):
            if int(p[k]) < 0:
                raise AttackError(f"{k} must be >= 0, got {p[k]}", field=k, fix="Use e.g. 100.")
        if int(p["n_samples"]) + int(p["n_corners"]) < 1:
            raise AttackError(
                "noise needs at least one draw", field="n_samples", fix="Set n_samples or n_corners > 0."
            )

    def perturb(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        p = self.params
        # Boundary draws first: they are the stronger half.
        kinds = [True] * int(p["n_corners"]) + [False] * int(p["n_samples"])
        x_best = x.clone()
        act = torch.arange(x.shape[0], device=x.device)
        i = 0
        while i < len(kinds) and act.numel():
            # Stack several draws into one forward pass while the active set is small.
            rows = min(_MAX_ROWS, _MAX_VALUES // x[0].numel())
            k = max(1, min(len(kinds) - i, rows // act.numel()))
            xa, ya, ea = x[act], y[act], eps[act]
            cands = []
            for boundary in kinds[i : i + k]:
                if boundary:
                    delta = _boundary(xa, ctx.norm, ea, ctx.generator)
                else:
                    delta = random_in_ball(xa, ctx.norm, ea, ctx.generator)
                cands.append(ctx.project(xa + delta, xa, ea))
            i += k
            stacked = torch.cat(cands)
            with torch.no_grad():
                logits = ctx.model(stacked)
            ta = None if targets is None else targets[act].repeat(k)
            hit = ctx.is_adversarial(logits, ya.repeat(k), ta)
            hit = hit.view(k, -1)
            first = hit.float().argmax(dim=0)  # the first adversarial draw per sample
            any_hit = hit.any(dim=0)
            if any_hit.any():
                cols = any_hit.nonzero().flatten()
                rows = first[cols]
                x_best[act[cols]] = stacked.view(k, act.numel(), *x.shape[1:])[rows, cols]
                act = act[~any_hit]
        return x_best
