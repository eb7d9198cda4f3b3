"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016), l2 and linf.

At each step the classifier is linearised around the current point for the true class and
the top candidate classes (ranked by the clean logits); the step goes to the nearest
linearised boundary (distance ``|f_k| / ||w_k||_q``, with q the dual norm), accumulated and
scaled by ``1 + overshoot``. A sample stops as soon as it is misclassified. DeepFool looks
for a minimal perturbation and ignores eps; the base class projects the result onto the
ball and re-predicts it.
"""

from __future__ import annotations

from typing import Any

import torch

from attacks.base import Attack, AttackContext
from attacks.registry import register
from robustness.core.errors import AttackError


@register
class DeepFool(Attack):
    name = "deepfool"
    norms = ("linf", "l2")
    description = "Minimal perturbation by iterative linearisation of the decision boundaries (2016)."

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"steps": 50, "overshoot": 0.02, "candidates": 10}

    def check_params(self) -> None:
        p = self.params
        if int(p["steps"]) < 1:
            raise AttackError(f"steps must be >= 1, got {p['steps']}", field="steps", fix="Use e.g. 50.")
        if float(p["overshoot"]) < 0:
            raise AttackError(
                f"overshoot must be >= 0, got {p['overshoot']}", field="overshoot", fix="Use 0.02."
            )
        if int(p["candidates"]) < 2:
            raise AttackError(
                f"candidates must be >= 2, got {p['candidates']}", field="candidates", fix="Use e.g. 10."
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
        lo, hi = ctx.bounds
        shape = (-1,) + (1,) * (x.dim() - 1)
        overshoot = float(p["overshoot"])
        with torch.no_grad():
            logits0 = ctx.model(x)
        k = min(int(p["candidates"]), logits0.shape[1])
        # Candidate classes other than y: the top-k of the clean logits, y excluded.
        ranked = logits0.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)[:, : k - 1]
        r_tot = torch.zeros_like(x)
        x_out = x.clone()
        act = torch.arange(x.shape[0], device=x.device)
        live = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        for it in range(int(p["steps"])):
            # Dropping broken samples needs a host sync: only every ctx.compact_every steps.
            # In between they ride along without moving (``live`` is False).
            if it % ctx.compact_every == 0:
                act, live = act[live], live[live]
                if act.numel() == 0:
                    break
            xa = (x[act] + (1 + overshoot) * r_tot[act]).clamp(lo, hi).requires_grad_(True)
            logits = ctx.model(xa)
            ya, cand = y[act], ranked[act]
            with torch.no_grad():
                hit = (logits.argmax(dim=1) != ya) & live
                x_out[act] = torch.where(hit.view(shape), xa.detach(), x_out[act])
                live = live & ~hit
            # f_k = z_k - z_y and its gradient w_k, for every candidate k (one backward per candidate).
            z_y = logits.gather(1, ya[:, None]).squeeze(1)
            f = logits.gather(1, cand) - z_y[:, None]  # (n, k-1), negative while y wins
            grads = []
            for j in range(cand.shape[1]):
                (g,) = torch.autograd.grad(f[:, j].sum(), xa, retain_graph=j < cand.shape[1] - 1)
                grads.append(g)
            with torch.no_grad():
                w = torch.stack(grads, dim=1)  # (n, k-1, *x)
                f = f.detach()
                dual = 1 if ctx.norm == "linf" else 2
                w_norm = w.flatten(2).norm(p=dual, dim=2) + 1e-8
                dist = f.abs() / w_norm
                best = dist.argmin(dim=1)
                idx = torch.arange(best.numel(), device=x.device)
                w_b, f_b, n_b = w[idx, best], f[idx, best], w_norm[idx, best]
                if ctx.norm == "linf":
                    step = ((f_b.abs() + 1e-4) / n_b).view(shape) * w_b.sign()
                else:
                    step = ((f_b.abs() + 1e-4) / n_b**2).view(shape) * w_b
                r_tot[act] += step * live.view(shape)
        if act.numel():
            with torch.no_grad():
                # The final point of samples still standing (checked by the caller after projection).
                final = (x[act] + (1 + overshoot) * r_tot[act]).clamp(lo, hi)
                x_out[act] = torch.where(live.view(shape), final, x_out[act])
        return x_out
