"""Auto-PGD (Croce & Hein, ICML 2020): PGD with momentum and a budget-aware step-size schedule.

One algorithm, three registered entries: ``apgd-ce`` (cross-entropy), ``apgd-dlr``
(untargeted DLR loss) and ``apgd-t`` (targeted DLR towards each of the top-k classes of the
clean logits in turn, the version used in AutoAttack).

The schedule follows the paper: initial step ``2 * eps``; momentum 0.75 (weight 1 on the
first step); checkpoints at ``ceil(p_j * steps)`` with ``p_0 = 0``, ``p_1 = 0.22`` and
``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``; at a checkpoint the step is halved when
the loss increased in at most ``rho`` of the steps since the previous checkpoint, or when the
step was not halved at the previous checkpoint and the best loss has not improved since; after
halving, the iterate restarts from the best-loss point (with its gradient).

Two things are tracked per sample: the best-loss point (drives the schedule) and the first
adversarial point seen (the attack's result). A sample that becomes adversarial is recorded at
once (on the device, ``torch.where``) and leaves the batch at the next compaction: every step on
the CPU; every ``attacks.base.COMPACT_EVERY_CUDA`` steps on a GPU, where deciding to shrink the batch needs a
host synchronisation that would stall the queue of kernels every step. Later steps, restarts and
targets cost only what is still robust.

Each run reports its loss trajectory to ``ctx.trace`` (:mod:`attacks.trace`) once it is over: per
sample the loss at the start, the best loss when the last tenth of the steps began and the best
loss at the end, from which the indicators of attack failure are read at no extra cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch

from attacks.base import Attack, AttackContext
from attacks.layout import in_layout, iterate_layout
from attacks.losses import ce_loss, dlr_loss
from attacks.registry import register
from attacks.steps import ascent_direction
from attacks.trace import late_step
from robustness.core.errors import AttackError
from robustness.core.threat import lp_norm

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def apgd_checkpoints(steps: int) -> list[int]:
    """Iteration counts at which APGD reconsiders its step size (the paper's ``w_j = ceil(p_j * steps)``).

    ``p`` is computed in hundredths with integers so that float rounding never moves a
    checkpoint (``0.41 * 100`` is ``41.000000000000004`` in floating point). For 100 steps
    this is ``[0, 22, 41, 57, 70, 80, 87, 93, 99]``.
    """
    if steps < 1:
        raise AttackError(f"steps must be >= 1, got {steps}", field="steps", fix="Use e.g. 100.")
    p = [0, 22]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - 3, 6)
        if nxt > 100:
            break
        p.append(nxt)
    w = sorted({-(-pj * steps // 100) for pj in p})
    return [c for c in w if c <= steps]


def _random_start(ctx: AttackContext, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """A point on the surface of the eps ball (as in the reference implementation), clipped to the bounds."""
    view = (-1,) + (1,) * (x.dim() - 1)
    if ctx.norm == "linf":
        t = 2 * ctx.rand(*x.shape) - 1
    else:
        t = ctx.randn(*x.shape)
    t = t / (lp_norm(t, ctx.norm).view(view) + 1e-12)
    return ctx.project(x + eps.view(view) * t, x, eps)


def _loss_and_grad(
    ctx: AttackContext,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    targets: torch.Tensor | None,
    loss_fn: LossFn,
    eot_iter: int,
    layout: torch.memory_format = torch.contiguous_format,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logits of every draw (``eot_iter``, n, classes), and the per-sample loss and input
    gradient averaged over the ``eot_iter`` draws (expectation over a randomized model's draws)."""
    grad = torch.zeros_like(x_adv)
    loss_sum = torch.zeros(x_adv.shape[0], device=x_adv.device)
    draws = []
    for _ in range(eot_iter):
        xr = in_layout(x_adv.detach(), layout).requires_grad_(True)
        logits = ctx.model(xr)
        loss = loss_fn(logits, y, targets)
        (g,) = torch.autograd.grad(loss.sum(), xr)
        grad += g
        loss_sum += loss.detach()
        draws.append(logits.detach())
    return torch.stack(draws), loss_sum / eot_iter, grad / eot_iter


@dataclass
class _Active:
    """Per-sample state of one APGD run, for the samples still being attacked."""

    idx: torch.Tensor  # positions in the run's batch
    x_orig: torch.Tensor
    labels: torch.Tensor
    eps: torch.Tensor
    x_cur: torch.Tensor
    x_prev: torch.Tensor
    grad: torch.Tensor
    f_cur: torch.Tensor
    # The best-loss point, its gradient and loss (they drive the step-size schedule).
    x_max: torch.Tensor
    g_max: torch.Tensor
    f_max: torch.Tensor
    step: torch.Tensor
    n_inc: torch.Tensor  # steps that increased the loss since the last checkpoint
    f_last: torch.Tensor  # the best loss at the last checkpoint
    halved_last: torch.Tensor
    # The first adversarial point, recorded on the device until the next compaction.
    hit: torch.Tensor
    adv: torch.Tensor
    # The loss at the start and the best loss when the late window began (attacks.trace).
    f_start: torch.Tensor
    f_late: torch.Tensor
    loss_targets: torch.Tensor | None  # feed the loss (targeted DLR)
    adv_targets: torch.Tensor | None  # decide what counts as adversarial (None: any misclassification)

    def kept(self, keep: torch.Tensor) -> _Active:
        """The samples ``keep`` selects (a boolean mask)."""
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        return _Active(**{name: None if v is None else v[keep] for name, v in values.items()})


class APGDRun(NamedTuple):
    """What one APGD run found, per sample of its batch.

    ``x_adv``, ``found``: the first adversarial point and whether there was one. ``x_max``,
    ``f_max``: the best-loss point and its loss (for a sample that left early, at the moment it
    left). ``f_start``, ``f_late``: the loss at the random start and the best loss when the last
    tenth of the steps began (:func:`attacks.trace.late_step`), for the indicators of failure.
    """

    x_adv: torch.Tensor
    found: torch.Tensor
    x_max: torch.Tensor
    f_max: torch.Tensor
    f_start: torch.Tensor
    f_late: torch.Tensor


def apgd_run(
    ctx: AttackContext,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    *,
    loss_fn: LossFn,
    loss_targets: torch.Tensor | None,
    adv_targets: torch.Tensor | None,
    steps: int,
    rho: float,
    eot_iter: int = 1,
) -> APGDRun:
    """One APGD run from a random start on the batch ``x`` (see :class:`APGDRun`).

    ``loss_targets`` feed the loss (e.g. the target class of targeted DLR); ``adv_targets`` decide
    what counts as adversarial (None: any misclassification).
    """
    n = x.shape[0]
    view = (-1,) + (1,) * (x.dim() - 1)
    x_adv_out = x.clone()
    found = torch.zeros(n, dtype=torch.bool, device=x.device)
    x_max_out = x.clone()
    f_max_out = torch.full((n,), float("-inf"), device=x.device)
    f_start_out = f_max_out.clone()
    f_late_out = f_max_out.clone()
    checkpoints = set(apgd_checkpoints(steps))
    late = late_step(steps)

    x_cur = _random_start(ctx, x, eps)
    # The model sees the iterates in the layout of the batch (see attacks.layout).
    layout = iterate_layout(ctx, x)
    draws, loss, grad = _loss_and_grad(ctx, x_cur, y, loss_targets, loss_fn, eot_iter, layout)
    # Per-sample state of the samples still being attacked; compacted when samples break.
    active = _Active(
        idx=torch.arange(n, device=x.device),
        x_orig=x,
        labels=y,
        eps=eps,
        x_cur=x_cur,
        x_prev=x_cur.clone(),
        grad=grad,
        f_cur=loss,
        x_max=x_cur.clone(),
        g_max=grad.clone(),
        f_max=loss.clone(),
        step=2.0 * eps,
        n_inc=torch.zeros(n, device=x.device),
        f_last=loss.clone(),
        halved_last=torch.zeros(n, dtype=torch.bool, device=x.device),
        hit=torch.zeros(n, dtype=torch.bool, device=x.device),
        adv=x_cur.clone(),
        f_start=loss.clone(),
        f_late=loss.clone(),
        loss_targets=loss_targets,
        adv_targets=adv_targets,
    )

    def record(draws: torch.Tensor) -> None:
        """Keep the first adversarial point of each sample (no host synchronisation). With EOT
        draws a point counts only when every draw is adversarial (as the eot wrapper's default
        min_success): one lucky draw never stops the attack, and a point only just past half the
        draws would often fail the fresh majority vote that judges the result."""
        hits = torch.stack([ctx.is_adversarial(d, active.labels, active.adv_targets) for d in draws])
        new = hits.all(dim=0) & ~active.hit
        active.adv = torch.where(new.view(view), active.x_cur, active.adv)
        active.hit = active.hit | new

    def drop() -> bool:
        """Write out the samples found so far and drop them from the batch. True if none is left."""
        nonlocal active
        hit = active.hit
        if hit.any():
            gidx = active.idx[hit]
            x_adv_out[gidx] = active.adv[hit]
            found[gidx] = True
            x_max_out[gidx] = active.x_max[hit]
            f_max_out[gidx] = active.f_max[hit]
            f_start_out[gidx] = active.f_start[hit]
            f_late_out[gidx] = active.f_late[hit]
            keep = ~hit
            active = active.kept(keep)
        return active.idx.numel() == 0

    every = ctx.compact_every
    record(draws)
    if drop():
        return APGDRun(x_adv_out, found, x_max_out, f_max_out, f_start_out, f_late_out)
    last_ck = 0
    for k in range(steps):
        a = 1.0 if k == 0 else 0.75
        xc, x0, e = active.x_cur, active.x_orig, active.eps
        direction = ascent_direction(active.grad, ctx.norm)
        z = ctx.project(xc + active.step.view(view) * direction, x0, e)
        x_new = ctx.project(xc + a * (z - xc) + (1 - a) * (xc - active.x_prev), x0, e)
        active.x_prev, active.x_cur = xc, x_new
        draws, loss, grad = _loss_and_grad(
            ctx, x_new, active.labels, active.loss_targets, loss_fn, eot_iter, layout
        )
        active.grad = grad
        active.n_inc = active.n_inc + (loss > active.f_cur).float()
        active.f_cur = loss
        # A sample already found keeps its best-loss point of the moment it was found.
        better = (loss > active.f_max) & ~active.hit
        bv = better.view(view)
        active.x_max = torch.where(bv, x_new, active.x_max)
        active.g_max = torch.where(bv, grad, active.g_max)
        active.f_max = torch.where(better, loss, active.f_max)
        record(draws)
        done = k + 1
        if done == late:
            active.f_late = active.f_max.clone()
        if (done % every == 0 or done == steps) and drop():
            break
        if done in checkpoints and done < steps:
            window = done - last_ck
            oscillating = active.n_inc <= rho * window
            stalled = ~active.halved_last & (active.f_max <= active.f_last)
            halve = oscillating | stalled
            hv = halve.view(view)
            active.step = torch.where(halve, active.step / 2, active.step)
            active.x_cur = torch.where(hv, active.x_max, active.x_cur)
            active.grad = torch.where(hv, active.g_max, active.grad)
            active.f_cur = torch.where(halve, active.f_max, active.f_cur)
            active.halved_last = halve
            active.f_last = active.f_max.clone()
            active.n_inc = torch.zeros_like(active.n_inc)
            last_ck = done
    if active.idx.numel():
        x_max_out[active.idx] = active.x_max
        f_max_out[active.idx] = active.f_max
        f_start_out[active.idx] = active.f_start
        f_late_out[active.idx] = active.f_late
    return APGDRun(x_adv_out, found, x_max_out, f_max_out, f_start_out, f_late_out)


class APGDBase(Attack):
    """Shared parameters, validation and restart loop of the APGD entries."""

    norms = ("linf", "l2")
    loss_name: str = "ce"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"steps": 100, "restarts": 1, "rho": 0.75, "eot_iter": 1}

    def check_params(self) -> None:
        p = self.params
        for key, example in (("steps", 100), ("restarts", 1), ("eot_iter", 1)):
            if int(p[key]) < 1 or int(p[key]) != p[key]:
                raise AttackError(
                    f"{key} must be an integer >= 1, got {p[key]!r}", field=key, fix=f"Use e.g. {example}."
                )
        if not 0 < float(p["rho"]) <= 1:
            raise AttackError(f"rho must be in (0, 1], got {p['rho']!r}", field="rho", fix="Use 0.75.")
        if "n_target_classes" in p and (int(p["n_target_classes"]) < 1):
            raise AttackError(
                f"n_target_classes must be >= 1, got {p['n_target_classes']!r}",
                field="n_target_classes",
                fix="Use e.g. 9.",
            )

    def _check_classes(self, ctx: AttackContext, needed: int) -> None:
        if ctx.num_classes and ctx.num_classes < needed:
            raise AttackError(
                f"attack {self.name!r} needs at least {needed} classes (the DLR loss uses the "
                f"{needed - 1} largest logits besides one), the model has {ctx.num_classes}",
                field="attack",
                fix="Use apgd-ce for models with few classes.",
            )

    def _restarts(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        loss_fn: LossFn,
        loss_targets: torch.Tensor | None,
        adv_targets: torch.Tensor | None,
        x_out: torch.Tensor,
        found: torch.Tensor,
        f_best: torch.Tensor,
    ) -> None:
        """Run the configured restarts on the samples not yet ``found``; update the outputs in place.

        Each run is reported to ``ctx.trace`` under this call's ``found``, which every restart and
        target of one ``perturb`` call shares (see :class:`attacks.trace.OptimisationTrace`).
        """
        p = self.params
        restarts = int(p["restarts"])
        trace = ctx.trace
        for r in range(restarts):
            act = (~found).nonzero().flatten()
            last = restarts > 1 and r == restarts - 1
            if act.numel() == 0:
                if restarts > 1 and trace is not None:  # the last restart had nothing left to attack
                    trace.last_restart(self.name, found, 0, found.new_zeros((), dtype=torch.long))
                return
            lt = None if loss_targets is None else loss_targets[act]
            at = None if adv_targets is None else adv_targets[act]
            run = apgd_run(
                ctx,
                x[act],
                y[act],
                eps[act],
                loss_fn=loss_fn,
                loss_targets=lt,
                adv_targets=at,
                steps=int(p["steps"]),
                rho=float(p["rho"]),
                eot_iter=int(p["eot_iter"]),
            )
            xa, fa, xm, fm = run.x_adv, run.found, run.x_max, run.f_max
            if trace is not None:
                trace.run(self.name, found, act, run.f_start, run.f_late, fm)
                if last:
                    trace.last_restart(self.name, found, int(act.numel()), fa.sum())
            x_out[act[fa]] = xa[fa]
            found[act[fa]] = True
            # Unbroken samples return their highest-loss point over all runs (useful to inspect).
            better = ~fa & (fm > f_best[act])
            x_out[act[better]] = xm[better]
            f_best[act[better]] = fm[better]

    def perturb(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        loss_fn = ce_loss if self.loss_name == "ce" else dlr_loss
        if self.loss_name == "dlr":
            self._check_classes(ctx, 4 if targets is not None else 3)
        x_out = x.clone()
        found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        f_best = torch.full((x.shape[0],), float("-inf"), device=x.device)
        self._restarts(ctx, x, y, eps, loss_fn, targets, targets, x_out, found, f_best)
        return x_out


@register
class APGDCE(APGDBase):
    name = "apgd-ce"
    supports_targeted = True
    loss_name = "ce"
    description = (
        "Auto-PGD on cross-entropy (Croce & Hein 2020): momentum, step size halved at checkpoints; "
        "AutoAttack's first attack."
    )


@register
class APGDDLR(APGDBase):
    name = "apgd-dlr"
    supports_targeted = True
    loss_name = "dlr"
    description = (
        "Auto-PGD on the DLR loss (Croce & Hein 2020), invariant to the scale of the logits; "
        "targeted DLR when targets are given."
    )


@register
class APGDT(APGDBase):
    """APGD on the targeted DLR loss towards each of the top-k classes of the clean logits in turn.

    The targets are the attack's own (the k most likely wrong classes, k = ``n_target_classes``
    capped at ``num_classes - 1``); success is any misclassification, so it takes no
    caller-given target. Each target runs only on the samples still robust.
    """

    name = "apgd-t"
    supports_targeted = False
    loss_name = "dlr"
    description = (
        "Auto-PGD on the targeted DLR loss over the top-k wrong classes of the clean logits "
        "(AutoAttack's APGD-T; 9 targets)."
    )

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {**APGDBase.defaults(), "n_target_classes": 9}

    def perturb(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        self._check_classes(ctx, 4)
        with torch.no_grad():
            clean = ctx.model(x)
        k = min(int(self.params["n_target_classes"]), clean.shape[1] - 1)
        # The most likely wrong classes first; the true class is excluded even if not on top.
        order = clean.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
        x_out = x.clone()
        found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        f_best = torch.full((x.shape[0],), float("-inf"), device=x.device)
        for r in range(k):
            self._restarts(ctx, x, y, eps, dlr_loss, order[:, r], None, x_out, found, f_best)
        return x_out
