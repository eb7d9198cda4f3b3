"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020), as used in AutoAttack.

A score-based black-box attack: random search over square-shaped updates, accepted only
when they lower the margin loss on the logits. linf updates set a random square to +-eps
(per channel); l2 updates move perturbation mass between two windows, shaped by a
centre-weighted "pseudo-Gaussian" pattern, keeping the total norm at eps. The fraction
``p`` of pixels changed per step follows the published piecewise schedule, rescaled to the
query budget as AutoAttack does.

Only forward passes are used, and only on samples that are not yet adversarial. Window
positions and signs are drawn per sample from ``ctx.generator``; everything is batched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch.nn.functional import cross_entropy

from attacks.base import Attack, AttackContext
from attacks.layout import in_layout, iterate_layout
from attacks.registry import register
from robustness.core.errors import AttackError

# The published schedule for 10,000 iterations: (upper iteration bound, divisor of p_init).
_P_SCHEDULE = (
    (10, 1),
    (50, 2),
    (200, 4),
    (500, 8),
    (1000, 16),
    (2000, 32),
    (4000, 64),
    (6000, 128),
    (8000, 256),
)


def p_selection(p_init: float, it: int, n_iters: int) -> float:
    """Fraction of pixels to change at iteration ``it`` of ``n_iters`` (schedule rescaled to 10k)."""
    scaled = int(it / n_iters * 10000)
    for bound, div in _P_SCHEDULE:
        if scaled <= bound:
            return p_init / div
    return p_init / 512


def _rectangles(rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """Concentric rectangles around the centre, ring k weighted 1/(k+1)^2 (cumulative), l2-normalised."""
    if rows == 0:
        return torch.zeros(0, cols, device=device)
    i = torch.arange(rows, device=device).view(-1, 1)
    j = torch.arange(cols, device=device).view(1, -1)
    ring = torch.maximum((i - rows // 2).abs(), (j - cols // 2).abs())  # smallest rectangle covering (i, j)
    n_rings = max(rows // 2 + 1, cols // 2 + 1)
    w = 1.0 / torch.arange(1, n_rings + 1, device=device, dtype=torch.float32) ** 2
    tail = w.flip(0).cumsum(0).flip(0)  # tail[k] = sum_{m >= k} w[m]
    out = tail[ring]
    return out / out.norm()


def pseudo_gaussian(s: int, device: torch.device) -> torch.Tensor:
    """The s x s l2 update pattern: a positive and a negative half, each centre-weighted; unit l2 norm."""
    top = _rectangles(s // 2, s, device)
    bottom = -_rectangles(s - s // 2, s, device)
    out = torch.cat([top, bottom], dim=0)
    return out / out.norm()


def _corners(n: int, h: int, w: int, s: int, ctx: AttackContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Random top-left corners of an s x s window, one per sample of the whole batch."""
    vh = torch.randint(0, h - s + 1, (n,), device=ctx.device, generator=ctx.generator)
    vw = torch.randint(0, w - s + 1, (n,), device=ctx.device, generator=ctx.generator)
    return vh, vw


def _window_mask(
    vh: torch.Tensor, vw: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, s: int
) -> torch.Tensor:
    """The (n, 1, h, w) 0/1 mask of the s x s windows with top-left corners (vh, vw); ``rows``
    and ``cols`` are ``arange(h)`` and ``arange(w)`` shaped (1, h, 1) and (1, 1, w)."""
    inside = (
        (rows >= vh.view(-1, 1, 1))
        & (rows < (vh + s).view(-1, 1, 1))
        & (cols >= vw.view(-1, 1, 1))
        & (cols < (vw + s).view(-1, 1, 1))
    )
    return inside.unsqueeze(1).float()


def _signs(shape: tuple[int, ...], ctx: AttackContext) -> torch.Tensor:
    return torch.randint(0, 2, shape, device=ctx.device, generator=ctx.generator) * 2.0 - 1.0


def _place(pattern: torch.Tensor, vh: torch.Tensor, vw: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Put one s x s pattern per sample (n, s, s) at its corner into an (n, 1, h, w) canvas."""
    n, s, _ = pattern.shape
    ar = torch.arange(s, device=pattern.device)
    flat_idx = ((vh.view(-1, 1, 1) + ar.view(1, -1, 1)) * w + (vw.view(-1, 1, 1) + ar.view(1, 1, -1))).view(
        n, -1
    )
    canvas = torch.zeros(n, h * w, device=pattern.device, dtype=pattern.dtype)
    canvas.scatter_(1, flat_idx, pattern.reshape(n, -1))
    return canvas.view(n, 1, h, w)


def _l2(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def _still_searching(
    act: torch.Tensor, margin: torch.Tensor, it: int, every: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch indices still searched at iteration ``it`` and which of them are not broken.

    Dropping broken samples (margin <= 0) needs a host sync, so it happens every ``every``
    iterations; in between, broken samples ride along but their state is frozen (``live``).
    """
    if it % every == 0:
        act = act[margin[act] > 0]
    return act, margin[act] > 0


@dataclass
class _SearchState:
    """What the linf search reads of the samples still searched: their batch positions, clean
    inputs, labels, targets, step (2 eps) and box (the eps ball within the bounds)."""

    act: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    targets: torch.Tensor | None
    two_eps: torch.Tensor
    box_lo: torch.Tensor
    box_hi: torch.Tensor

    def kept(self, keep: torch.Tensor) -> _SearchState:
        """The samples ``keep`` selects (a boolean mask)."""
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        return _SearchState(**{name: None if v is None else v[keep] for name, v in values.items()})


def _accept(
    act: torch.Tensor,
    live: torch.Tensor,
    x_new: torch.Tensor,
    x_old: torch.Tensor,
    m_new: torch.Tensor,
    l_new: torch.Tensor,
    margin: torch.Tensor,
    loss: torch.Tensor,
    x_best: torch.Tensor,
) -> None:
    """Keep the proposals that lower the loss or are adversarial (live samples only), in place."""
    lower = (l_new < loss[act]) & live
    better = lower | ((m_new <= 0) & live)
    loss[act] = torch.where(lower, l_new, loss[act])
    margin[act] = torch.where(better, m_new, margin[act])
    x_best[act] = torch.where(better.view(-1, 1, 1, 1), x_new, x_old)


@register
class Square(Attack):
    name = "square"
    norms = ("linf", "l2")
    kind = "black-box"
    supports_targeted = True
    description = "Score-based black-box random search with square updates (Andriushchenko et al. 2020)."

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        # n_queries: iterations per restart after the one query for the starting point (as in AutoAttack).
        return {"n_queries": 5000, "p_init": 0.8, "restarts": 1, "loss": "margin"}

    def check_params(self) -> None:
        p = self.params
        if int(p["n_queries"]) < 1:
            raise AttackError(
                f"n_queries must be >= 1, got {p['n_queries']}", field="n_queries", fix="Use e.g. 5000."
            )
        if not 0 < float(p["p_init"]) <= 1:
            raise AttackError(f"p_init must be in (0, 1], got {p['p_init']}", field="p_init", fix="Use 0.8.")
        if int(p["restarts"]) < 1:
            raise AttackError(
                f"restarts must be >= 1, got {p['restarts']}", field="restarts", fix="Use e.g. 1."
            )
        if p["loss"] not in ("margin", "ce"):
            raise AttackError(f"unknown loss {p['loss']!r}", field="loss", fix="Use margin or ce.")

    # -- scoring -----------------------------------------------------------------------------
    def _score(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        layout: torch.memory_format,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(margin, loss): margin <= 0 means adversarial; the search minimises loss. The model
        sees ``x`` in ``layout``, the layout of the batch (see :mod:`attacks.layout`)."""
        with torch.no_grad():
            logits = ctx.model(in_layout(x, layout))
        cls = y if targets is None else targets
        z_c = logits.gather(1, cls[:, None]).squeeze(1)
        other = logits.scatter(1, cls[:, None], float("-inf")).amax(dim=1)
        if targets is not None:
            return other - z_c, cross_entropy(logits, targets, reduction="none")
        margin = z_c - other
        if self.params["loss"] == "ce":
            return margin, -cross_entropy(logits, y, reduction="none")
        return margin, margin

    # -- the attack ----------------------------------------------------------------------------
    def perturb(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        if x.dim() != 4:
            raise AttackError(
                f"square needs image inputs of shape N x C x H x W, got {tuple(x.shape)}",
                field="attack",
                fix="Use pgd/apgd or noise for non-image inputs.",
            )
        x = x.detach()
        x_best = x.clone()
        found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(int(self.params["restarts"])):
            act = (~found).nonzero().flatten()
            if act.numel() == 0:
                break
            ta = None if targets is None else targets[act]
            run = self._linf if ctx.norm == "linf" else self._l2
            x_run, margin = run(ctx, x[act], y[act], eps[act].view(-1, 1, 1, 1), ta)
            hit = margin <= 0
            # Unbroken samples keep the latest restart's best point (the caller projects and re-predicts).
            x_best[act] = x_run
            found[act[hit]] = True
        return x_best

    def _linf(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = ctx.bounds
        n, c, h, w = x.shape
        layout = iterate_layout(ctx, x)
        n_iters, p_init = int(self.params["n_queries"]), float(self.params["p_init"])
        # Vertical stripes: one random sign per column and channel, at full eps.
        stripes = _signs((n, c, 1, w), ctx)
        x_best = (x + eps * stripes).clamp(lo, hi)
        margin, loss = self._score(ctx, x_best, y, targets, layout)
        # The state of the samples still searched, compacted as they break (written back then):
        # a step costs no gathers or scatters into the whole batch. The box is the eps ball
        # intersected with the bounds (they intersect: x is inside both).
        act = torch.arange(n, device=x.device)
        state = _SearchState(act, x, y, targets, 2.0 * eps, (x - eps).clamp(min=lo), (x + eps).clamp(max=hi))
        xb, m_a, l_a = x_best.clone(), margin.clone(), loss.clone()
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        for it in range(n_iters):
            live = m_a > 0
            # Dropping broken samples needs a host sync: every ctx.compact_every iterations.
            if it % ctx.compact_every == 0 and not bool(live.all()):
                x_best[state.act], margin[state.act] = xb, m_a
                state = state.kept(live)
                xb, m_a, l_a, live = xb[live], m_a[live], l_a[live], live[live]
                if state.act.numel() == 0:
                    break
            s = max(int(round(math.sqrt(p_selection(p_init, it, n_iters) * h * w))), 1)
            s = min(s, h, w)
            # Random draws cover the whole batch, so the result does not depend on when broken
            # samples leave it.
            vh, vw = _corners(n, h, w, s, ctx)
            sign = _signs((n, c, 1, 1), ctx)
            if state.act.numel() < n:
                vh, vw, sign = vh[state.act], vw[state.act], sign[state.act]
            mask = _window_mask(vh, vw, rows, cols, s)
            x_new = xb + mask * (state.two_eps * sign)
            x_new = torch.minimum(torch.maximum(x_new, state.box_lo), state.box_hi)
            m_new, l_new = self._score(ctx, x_new, state.y, state.targets, layout)
            # Keep the proposals that lower the loss or are adversarial (live samples only).
            lower = (l_new < l_a) & live
            better = lower | ((m_new <= 0) & live)
            l_a = torch.where(lower, l_new, l_a)
            m_a = torch.where(better, m_new, m_a)
            xb = torch.where(better.view(-1, 1, 1, 1), x_new, xb)
        if state.act.numel():
            x_best[state.act], margin[state.act] = xb, m_a
        return x_best, margin

    def _l2(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = ctx.bounds
        n, c, h, w = x.shape
        dev = x.device
        n_iters, p_init = int(self.params["n_queries"]), float(self.params["p_init"])
        # Start: a grid of small pseudo-Gaussian tiles with random signs, scaled to norm eps.
        s0 = max(h // 5, 1)
        off_h, off_w = (h - s0 * (h // s0)) // 2, (w - s0 * (w // s0)) // 2
        tile = pseudo_gaussian(s0, dev)
        delta = torch.zeros_like(x)
        for r in range(off_h, h - s0 + 1, s0):
            for q in range(off_w, w - s0 + 1, s0):
                sign = _signs((n, c, 1, 1), ctx)
                delta[:, :, r : r + s0, q : q + s0] += tile * sign
        x_best = (x + delta / (_l2(delta) + 1e-12) * eps).clamp(lo, hi)
        layout = iterate_layout(ctx, x)
        margin, loss = self._score(ctx, x_best, y, targets, layout)
        rows = torch.arange(h, device=dev).view(1, h, 1)
        cols = torch.arange(w, device=dev).view(1, 1, w)
        patterns = None
        act = torch.arange(n, device=dev)
        for it in range(n_iters):
            act, live = _still_searching(act, margin, it, ctx.compact_every)
            if act.numel() == 0:
                break
            xa, xb, ea = x[act], x_best[act], eps[act]
            d = xb - xa
            s = max(int(round(math.sqrt(p_selection(p_init, it, n_iters) * h * w))), 3)
            s += 1 - s % 2  # odd, so the pattern has a centre
            s = min(s, h, w)
            if patterns is None or patterns[0].shape[0] != s:
                base = pseudo_gaussian(s, dev)
                patterns = torch.stack([base, base.t()])
            # Drawn for the whole batch (see _linf).
            vh, vw = (v[act] for v in _corners(n, h, w, s, ctx))
            mask1 = _window_mask(vh, vw, rows, cols, s)
            mask2 = _window_mask(*(v[act] for v in _corners(n, h, w, s, ctx)), rows, cols, s)
            # The new window: a fresh pattern plus the old content of window 1 (normalised per channel),
            # carrying the mass of both windows plus whatever budget is unused, so ||delta|| stays ~eps.
            flip = torch.randint(0, 2, (n,), device=dev, generator=ctx.generator)[act]
            fresh = _place(patterns[flip], vh, vw, h, w)
            sign = _signs((n, c, 1, 1), ctx)[act]
            old = d * mask1
            old = old / (old.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt() + 1e-12)
            new = fresh * sign + old
            new = new / (new.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt() + 1e-12)
            mass = (
                torch.clamp(ea**2 - _l2(d) ** 2, min=0) / c + _l2(d * torch.maximum(mask1, mask2)) ** 2
            ).sqrt()
            d_new = d * (1 - torch.maximum(mask1, mask2)) + new * mass * mask1
            x_new = (xa + d_new / (_l2(d_new) + 1e-12) * ea).clamp(lo, hi)
            m_new, l_new = self._score(ctx, x_new, y[act], None if targets is None else targets[act], layout)
            _accept(act, live, x_new, xb, m_new, l_new, margin, loss, x_best)
        return x_best, margin
