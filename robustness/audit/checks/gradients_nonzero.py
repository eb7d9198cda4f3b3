"""(f) Input gradients are finite and non-zero.

Margin-loss input gradients at a sample of correctly classified points and at random points of
the smallest eps ball around them, and the cross-entropy gradient at the points.
"""

from __future__ import annotations

from typing import Any

from robustness.audit.check import CheckResult, ModelCheck, register_check

ZERO_GRAD = 1e-10  # largest |d margin / d x| entry below which a gradient counts as zero
ZERO_GRAD_MAX_FRACTION = 0.1


@register_check
class GradientsNonzero(ModelCheck):
    name = "gradients_nonzero"
    letter = "f"
    title = "Input gradients are finite and non-zero"
    explanation = (
        "Gradient attacks need finite, non-zero input gradients. Zero or NaN gradients make them "
        "silently fail while the model is not robust at all."
    )
    measures = "input gradients at sampled clean points and at random points near them"

    def measure(self, *, eot_used: bool) -> CheckResult:
        import torch

        from robustness.checkpoint import derive_seed
        from robustness.core.threat import clip_to_ball_and_bounds, random_in_ball

        audit = self.audit
        chosen = audit.model_sample()
        x, y = audit.x[chosen], audit.y[chosen]
        generator = torch.Generator().manual_seed(derive_seed(audit.cfg.seed, "near"))
        smallest = float(min(audit.eps_grid))
        near = clip_to_ball_and_bounds(
            x + random_in_ball(x, audit.norm, smallest, generator),
            x,
            audit.norm,
            smallest,
            audit.model.bounds,
        )
        return measure(audit.model, x, y, near)


def _margin(logits: Any, y: Any) -> Any:
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return other - z_y


def _input_grads(model: Any, x: Any, y: Any, loss: str) -> Any:
    import torch

    x = x.clone().to(model.device).requires_grad_(True)
    logits = model(x).float()
    labels = y.to(model.device)
    value = (
        _margin(logits, labels)
        if loss == "margin"
        else torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    )
    (grad,) = torch.autograd.grad(value.sum(), x)
    return grad.detach().flatten(1)


def measure(model: Any, x: Any, y: Any, x_near: Any) -> CheckResult:
    """Margin-loss input gradients at ``x`` and at random points ``x_near`` of the smallest ball."""
    import torch

    name = GradientsNonzero.name
    with torch.enable_grad(), model.evaluating(freeze=True):
        g_clean = _input_grads(model, x, y, "margin")
        g_near = _input_grads(model, x_near, y, "margin")
        g_ce = _input_grads(model, x, y, "ce")
    n = int(x.shape[0])
    nonfinite = int((~torch.isfinite(g_clean).all(1)).sum() + (~torch.isfinite(g_near).all(1)).sum())
    zero_clean = int((g_clean.abs().amax(1) < ZERO_GRAD).sum())
    zero_near = int((g_near.abs().amax(1) < ZERO_GRAD).sum())
    zero_ce = int((g_ce.abs().amax(1) < ZERO_GRAD).sum())
    measured = {
        "n": n,
        "nonfinite": nonfinite,
        "zero_at_clean": zero_clean,
        "zero_near_clean": zero_near,
        "zero_cross_entropy": zero_ce,
        "median_grad_l1": float(g_clean.abs().sum(1).median()) if n else 0.0,
    }
    text = (
        f"Of {n} sampled inputs, the margin-loss gradient was zero at {zero_clean} clean points and at "
        f"{zero_near} random points near them; {nonfinite} gradients were NaN or infinite."
    )
    if zero_ce > ZERO_GRAD_MAX_FRACTION * n:
        text += (
            f" The cross-entropy gradient vanished at {zero_ce} points: the logits are so large that the "
            "softmax saturates (as in defensive distillation); scale-invariant losses (DLR, margin) are needed "
            "and the standard attacks use them."
        )
    if nonfinite:
        return CheckResult(
            name, "fail", text + " Gradient attacks cannot work with NaN/infinite gradients.", measured
        )
    if zero_clean > ZERO_GRAD_MAX_FRACTION * n or zero_near > ZERO_GRAD_MAX_FRACTION * n:
        return CheckResult(
            name,
            "fail",
            text + " Zero gradients mean gradient attacks get no signal (a non-differentiable step such as "
            "rounding or thresholding, or saturated outputs): use BPDA for such steps.",
            measured,
        )
    return CheckResult(name, "pass", text, measured)
