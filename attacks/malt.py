"""MALT (Melamed, Yehudai & Shamir, "MALT Powers Up Adversarial Attacks", NeurIPS 2024).

Targeted APGD, like AutoAttack's APGD-T, but on targets chosen by Mesoscopic Almost Linearity
Targeting instead of the top-k classes of the clean logits. At the clean input each wrong class
``t`` is scored by the distance to its decision boundary under a linear model of the network,

    d_t = (z_y(x) - z_t(x)) / ||grad z_t(x) - grad z_y(x)||_*

(``||.||_*`` the dual norm: l1 for linf, l2 for l2), and targeted APGD runs on the
``n_target_classes`` classes with the smallest ``d_t`` (3 by default, as in the authors' code),
each on the samples still robust. The paper's finding is that networks are almost linear at the
scale of eps, so this ranking puts the reachable class first far more often than the logit order:
MALT found every adversarial example AutoAttack found, and more, in about a fifth of its time.
The scores cost one gradient per candidate class and sample (``n_candidates``: the most likely
wrong classes scored, all by default).

Two restarts per target by default (the authors run one): alone, with one restart, MALT left
standing one sample of 100 that AutoAttack's FAB-T broke on the adversarially trained digits
model (at eps 0.2; APGD-T with all 9 targets missed it too), and the second restart finds it; at
twice the cost of a restart MALT still takes a fraction of AutoAttack's time (bench/RESULTS.md).
In the ``malt`` preset, where FAB-T and Square follow, it runs with AutoAttack's one restart.
"""

from __future__ import annotations

from typing import Any

import torch

from attacks.apgd import APGDBase
from attacks.base import AttackContext
from attacks.losses import dlr_loss
from attacks.registry import register
from robustness.core.errors import AttackError


def malt_scores(
    ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, n_candidates: int | None
) -> torch.Tensor:
    """Per sample and class, the linearised distance to the boundary with that class (lower is
    closer); ``inf`` for the true class and for classes outside the ``n_candidates`` most likely."""
    with torch.no_grad():
        logits = ctx.model(x)
    n, classes = logits.shape
    k = classes - 1 if n_candidates is None else min(int(n_candidates), classes - 1)
    candidates = logits.scatter(1, y[:, None], float("-inf")).topk(k, dim=1).indices  # (n, k)
    # One gradient of z_t - z_y per candidate column: k passes over the batch, bounded memory.
    dual = 1 if ctx.norm == "linf" else 2
    grad_norm = torch.empty(n, k, device=x.device)
    for j in range(k):
        rows = x.detach().requires_grad_(True)
        out = ctx.model(rows)
        margin = out.gather(1, candidates[:, j : j + 1]) - out.gather(1, y[:, None])
        (grad,) = torch.autograd.grad(margin.sum(), rows)
        grad_norm[:, j] = grad.flatten(1).norm(p=dual, dim=1)
    gap = (logits.gather(1, y[:, None]) - logits.gather(1, candidates)).detach()
    distance = torch.where(
        grad_norm > 0, gap / grad_norm.clamp_min(1e-30), torch.full_like(gap, float("inf"))
    )
    scores = torch.full_like(logits, float("inf"))
    return scores.scatter(1, candidates, distance)


@register
class MALT(APGDBase):
    """Targeted APGD on the classes MALT ranks closest (see the module docstring)."""

    name = "malt"
    supports_targeted = False
    loss_name = "dlr"
    description = (
        "MALT (Melamed et al. 2024): targeted APGD (DLR) on the 3 classes a linearisation at the input "
        "ranks closest, instead of the top logits; as strong as AutoAttack at a fraction of its cost."
    )
    declared_param_types = {"n_candidates": int}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {**APGDBase.defaults(), "n_target_classes": 3, "restarts": 2, "n_candidates": None}

    def check_params(self) -> None:
        super().check_params()
        c = self.params["n_candidates"]
        if c is not None and int(c) < 1:
            raise AttackError(
                f"n_candidates must be >= 1, got {c!r}",
                field="n_candidates",
                fix="Leave it out to score every class.",
            )

    def perturb(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        self._check_classes(ctx, 4)
        scores = malt_scores(ctx, x, y, self.params["n_candidates"])
        scored = (
            scores.shape[1] - 1 if self.params["n_candidates"] is None else int(self.params["n_candidates"])
        )
        k = min(int(self.params["n_target_classes"]), scored, scores.shape[1] - 1)
        order = scores.argsort(dim=1)  # the closest boundary first
        x_out = x.clone()
        found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        f_best = torch.full((x.shape[0],), float("-inf"), device=x.device)
        for r in range(k):
            self._restarts(ctx, x, y, eps, dlr_loss, order[:, r], None, x_out, found, f_best)
        return x_out
