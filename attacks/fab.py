"""FAB-T, the targeted Fast Adaptive Boundary attack (Croce & Hein, ICML 2020), as used in AutoAttack.

FAB looks for the adversarial example of minimal norm. Each step linearises the decision
boundary between the true class ``y`` and a target class ``t`` at the current iterate,
``f(z) = z_t - z_y ~ f(x_k) + <grad f(x_k), z - x_k>``, and projects onto that hyperplane
intersected with the input box, both from the iterate (``d_k``) and from the original point
(``d_o``). The next iterate is the convex combination

    x_{k+1} = clip((1 - alpha) * (x_k + eta * d_k) + alpha * (x_o + eta * d_o)),
    alpha = min(||d_k|| / (||d_k|| + ||d_o||), alpha_max),

which biases the search towards points close to the original (``eta`` overshoots the
hyperplane slightly). When an iterate is adversarial it is recorded if it is the smallest
found so far, and the iterate moves back towards the original: ``x_o + beta * (x - x_o)``.
Restarts after the first start from a random point at radius ``min(best norm, eps) / 2``.
Targets are the top-k wrong classes of the clean logits (k = ``n_target_classes``, capped at
``num_classes - 1``), each run only on the samples still robust. A sample counts as broken
only if an adversarial example with norm <= eps was found (the final check against eps).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from attacks.base import Attack, AttackContext
from attacks.layout import in_layout, iterate_layout
from attacks.registry import register
from robustness.core.errors import AttackError
from robustness.core.threat import lp_norm


def _sort_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``t.sort(dim=1)`` (values, indices) of a float32 matrix of non-NaN values.

    On the CPU through NumPy's argsort (vectorised introsort, AVX-512 where there is one): on
    FAB's (2 x batch, 3072) breakpoints of a CIFAR-shaped input it takes about a fifth of the
    time of ``torch.sort``, the largest single cost of a FAB step there. Equal values may come
    out in another order than ``torch.sort``'s (neither is stable); the projection is the same
    up to the rounding of the sums over them.
    """
    if t.device.type != "cpu" or t.dtype != torch.float32 or t.dim() != 2 or t.requires_grad:
        return t.sort(dim=1)
    import numpy as np

    order = torch.from_numpy(np.argsort(t.contiguous().numpy(), axis=1)).to(torch.long)
    return t.gather(1, order), order


def project_on_hyperplane_box(
    p: torch.Tensor,
    w: torch.Tensor,
    r: torch.Tensor,
    lo: float,
    hi: float,
    norm: str,
) -> torch.Tensor:
    """Minimal-norm ``d`` with ``<w, d> = r`` and ``lo <= p + d <= hi``, batched over rows.

    ``p`` and ``w`` are (B, n), ``r`` is (B,). With ``s = sign(r)`` every coordinate moves in
    the direction ``s * sign(w_i)`` by ``min(c_i * tau, cap_i)``, where ``cap_i`` is its room to
    the bound and ``c_i = 1`` (linf) or ``|w_i|`` (l2, the KKT solution ``d = clip(lambda * w)``).
    The achieved ``<w, d>`` is increasing and piecewise linear in ``tau``, so sorting the
    breakpoints ``cap_i / c_i`` gives ``tau`` exactly. When the hyperplane cannot be reached
    inside the box, every coordinate goes to its bound (the box point closest to the plane).
    """
    s = torch.where(r < 0, -1.0, 1.0).to(p.dtype)
    ws = w * s[:, None]
    aw = ws.abs()
    rho = r.abs()
    cap = torch.where(ws > 0, hi - p, p - lo).clamp_min(0)
    moving = aw > 0
    scale = torch.ones_like(aw) if norm == "linf" else aw
    inf = torch.tensor(float("inf"), dtype=p.dtype, device=p.device)
    bp = torch.where(moving, cap / torch.where(moving, scale, 1.0), inf)
    bps, order = _sort_rows(bp)
    full = (aw * cap).gather(1, order)  # contribution of a coordinate once at its bound
    slope = (aw * scale).gather(1, order)  # rate of a coordinate still moving
    sat = full.cumsum(dim=1)  # contribution of the first j+1 (saturated) coordinates
    slope_ge = slope.flip(1).cumsum(dim=1).flip(1)  # slope of coordinates j..n-1
    slope_gt = torch.cat([slope_ge[:, 1:], torch.zeros_like(slope_ge[:, :1])], dim=1)
    reach = sat + torch.where(slope_gt > 0, bps * slope_gt, torch.zeros_like(bps))  # value at tau = bps_j
    j = (reach < rho[:, None]).sum(dim=1)  # first breakpoint at which the plane is reached
    n = p.shape[1]
    feasible = j < n
    jc = j.clamp(max=n - 1)
    sat_before = torch.where(j > 0, sat.gather(1, (jc - 1).clamp_min(0)[:, None]).squeeze(1), 0.0)
    denom = slope_ge.gather(1, jc[:, None]).squeeze(1)
    tau = torch.where(denom > 0, (rho - sat_before) / denom.clamp_min(1e-30), torch.zeros_like(rho))
    tau = torch.where(feasible, tau.clamp_min(0), inf)
    mag = torch.where(moving, torch.minimum(scale * tau[:, None], cap), torch.zeros_like(cap))
    return torch.sign(ws) * mag


@dataclass
class _Active:
    """The samples of one FAB run still being attacked; compacted as they finish."""

    idx: torch.Tensor  # positions in the run's batch
    x_orig: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor
    eps: torch.Tensor
    x_cur: torch.Tensor

    def kept(self, keep: torch.Tensor) -> _Active:
        return _Active(*(getattr(self, field.name)[keep] for field in fields(self)))


def _fab_run(
    ctx: AttackContext,
    x: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor,
    eps: torch.Tensor,
    best_norm: torch.Tensor,
    x_best: torch.Tensor,
    *,
    steps: int,
    alpha_max: float,
    eta: float,
    beta: float,
    random_start: bool,
) -> None:
    """One FAB-T run towards targets ``t``; updates ``best_norm`` / ``x_best`` in place.

    Samples leave the run as soon as their best adversarial example is within eps: from
    then on they are broken and further norm reduction cannot change the result.
    """
    norm = ctx.norm
    lo, hi = ctx.bounds
    b = x.shape[0]
    view = (-1,) + (1,) * (x.dim() - 1)
    flat = x[0].numel()
    layout = iterate_layout(ctx, x)
    if random_start:
        u = 2 * ctx.rand(*x.shape) - 1 if norm == "linf" else ctx.randn(*x.shape)
        u = u / (lp_norm(u, norm).view(view) + 1e-12)
        radius = torch.minimum(best_norm, eps) / 2
        x_cur = (x + radius.view(view) * u).clamp(lo, hi)
    else:
        x_cur = x.clone()
    active = _Active(torch.arange(b, device=x.device), x, y, t, eps, x_cur)

    def evaluate(xc: torch.Tensor, yy: torch.Tensor, tt: torch.Tensor, grad: bool):
        """Logits, f = z_t - z_y and its input gradient (None without ``grad``)."""
        if not grad:
            with torch.no_grad():
                logits = ctx.model(in_layout(xc, layout))
            return logits, None, None
        xr = in_layout(xc.detach(), layout).requires_grad_(True)
        logits = ctx.model(xr)
        f = logits.gather(1, tt[:, None]).squeeze(1) - logits.gather(1, yy[:, None]).squeeze(1)
        (g,) = torch.autograd.grad(f.sum(), xr)
        return logits.detach(), f.detach(), g

    def record_and_step_back(logits: torch.Tensor, live: torch.Tensor) -> None:
        """Record adversarial iterates that beat the best norm, then move them back towards x_o.

        Only ``live`` samples (not yet within eps) count; all on the device, no host sync.
        """
        adv = (logits.argmax(dim=1) != active.labels) & live
        gidx = active.idx  # distinct indices: the scatters below need no host sync
        d = lp_norm(active.x_cur - active.x_orig, norm)
        better = adv & (d < best_norm[gidx])
        best_norm[gidx] = torch.where(better, d, best_norm[gidx])
        x_best[gidx] = torch.where(better.view(view), active.x_cur, x_best[gidx])
        active.x_cur = torch.where(
            adv.view(view), active.x_orig + beta * (active.x_cur - active.x_orig), active.x_cur
        )

    if random_start:
        # A random start can already be adversarial (x_o itself is not: it was filtered).
        record_and_step_back(evaluate(active.x_cur, y, t, grad=False)[0], best_norm[active.idx] > active.eps)
    for it in range(steps):
        # Samples within eps are done. Dropping them needs a host sync, so it happens every
        # ctx.compact_every steps; in between they are carried along but no longer recorded.
        live = best_norm[active.idx] > active.eps
        if it % ctx.compact_every == 0 and not bool(live.all()):
            active = active.kept(live)
            if active.idx.numel() == 0:
                return
            live = live[live]
        xc, x0 = active.x_cur, active.x_orig
        _, f, g = evaluate(xc, active.labels, active.targets, grad=True)
        bb = xc.shape[0]
        w = g.reshape(bb, flat)
        # Hyperplane f(x_k) + <w, z - x_k> = 0, reached from x_k and from x_o.
        r_cur = -f
        r_orig = -(f + (w * (x0 - xc).reshape(bb, flat)).sum(dim=1))
        d = project_on_hyperplane_box(
            torch.cat([xc.reshape(bb, flat), x0.reshape(bb, flat)]),
            torch.cat([w, w]),
            torch.cat([r_cur, r_orig]),
            lo,
            hi,
            norm,
        )
        dn = lp_norm(d, norm).clamp_min(1e-8)
        d_cur, d_orig = d[:bb].view_as(xc), d[bb:].view_as(xc)
        alpha = (dn[:bb] / (dn[:bb] + dn[bb:])).clamp(0.0, alpha_max).view(view)
        active.x_cur = ((1 - alpha) * (xc + eta * d_cur) + alpha * (x0 + eta * d_orig)).clamp(lo, hi)
        # FAB iterates hover at the boundary, so most steps are adversarial: a forward-only check
        # here is cheaper than a gradient at every point later stepped back from.
        record_and_step_back(evaluate(active.x_cur, active.labels, active.targets, grad=False)[0], live)


@register
class FAB(Attack):
    """Targeted FAB (FAB-T) over the top-k wrong classes, as in AutoAttack; linf and l2."""

    name = "fab"
    norms = ("linf", "l2")
    supports_targeted = False
    description = (
        "Fast Adaptive Boundary attack, targeted version FAB-T over the top-k classes (Croce & Hein "
        "2020; AutoAttack's third attack): minimal-norm search, success only within eps."
    )

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {
            "steps": 100,
            "n_target_classes": 9,
            "restarts": 1,
            "alpha_max": 0.1,
            "eta": 1.05,
            "beta": 0.9,
        }

    def check_params(self) -> None:
        p = self.params
        for key, example in (("steps", 100), ("n_target_classes", 9), ("restarts", 1)):
            if int(p[key]) < 1 or int(p[key]) != p[key]:
                raise AttackError(
                    f"{key} must be an integer >= 1, got {p[key]!r}", field=key, fix=f"Use e.g. {example}."
                )
        if not 0 <= float(p["alpha_max"]) <= 1:
            raise AttackError("alpha_max must be in [0, 1]", field="alpha_max", fix="Use 0.1.")
        if not float(p["eta"]) >= 1:
            raise AttackError("eta (overshoot) must be >= 1", field="eta", fix="Use 1.05.")
        if not 0 < float(p["beta"]) < 1:
            raise AttackError("beta (backward step) must be in (0, 1)", field="beta", fix="Use 0.9.")

    def perturb(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        p = self.params
        with torch.no_grad():
            clean = ctx.model(x)
        k = min(int(p["n_target_classes"]), clean.shape[1] - 1)
        order = clean.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
        best_norm = torch.full((x.shape[0],), float("inf"), device=x.device)
        x_best = x.clone()
        for r in range(k):
            for restart in range(int(p["restarts"])):
                act = (best_norm > eps).nonzero().flatten()
                if act.numel() == 0:
                    break
                bn, xb = best_norm[act], x_best[act]
                _fab_run(
                    ctx,
                    x[act],
                    y[act],
                    order[act, r],
                    eps[act],
                    bn,
                    xb,
                    steps=int(p["steps"]),
                    alpha_max=float(p["alpha_max"]),
                    eta=float(p["eta"]),
                    beta=float(p["beta"]),
                    random_start=restart > 0,
                )
                best_norm[act], x_best[act] = bn, xb
        # Minimal adversarial examples beyond eps are returned too: the base class projects them
        # into the ball and re-predicts, which can only add (never invent) successes.
        return x_best
