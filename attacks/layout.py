"""The memory layout of the inputs an attack feeds the model.

An attack builds its iterates with element-wise ops on random draws and masks, and those come
out in the default (NCHW) strides whatever the layout of the batch it was given. The model does
not compute the same way on both: on the CPU a convolution keeps the layout of its input, and
PyTorch's NCHW max-pooling kernel is many times slower than its channels-last one (16x on the
digits CNN's 64x8x8 maps, which doubled the cost of a forward pass; 3x for a whole forward pass
of a small CIFAR-shaped CNN). So an attack feeds the model its iterates in one layout,
:func:`iterate_layout`: the batch's own when it is channels-last; on the CPU, channels-last for
an NCHW image batch too when the model computes the same on it (a probe, once per context and
input shape); else the batch's own.

The probe runs a few samples of the batch through the model in both layouts, forward and
backward (the input gradient of the summed logits), and takes channels-last only when it raises
nothing and both the logits and the gradient agree within float tolerance. A model that
``.view()``s an activation raises on a channels-last input and keeps NCHW; so does a randomized
model whose draws depend on the layout. The probe's passes are not counted as the attack's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from attacks.base import AttackContext

# Samples of the batch the probe runs (both layouts, forward and backward).
PROBE_SAMPLES = 4


def _channels_last_strides(shape: torch.Size) -> tuple[int, ...]:
    _, c, h, w = shape
    return (h * w * c, 1, w * c, c)


def input_layout(x: torch.Tensor) -> torch.memory_format:
    """The memory format of a batch: channels-last when its strides are those, else contiguous."""
    if x.dim() == 4 and x.shape[0] > 0 and x.stride() == _channels_last_strides(x.shape):
        return torch.channels_last
    return torch.contiguous_format


def in_layout(t: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """``t`` (same values) in ``layout``; itself when it already is. Differentiable."""
    if layout is not torch.channels_last or t.dim() != 4:
        return t
    if t.stride() == _channels_last_strides(t.shape):
        return t
    # .contiguous(memory_format=...) keeps a one-channel tensor's NCHW strides (it counts as
    # channels-last already), which the convolution still reads as NCHW.
    return torch.empty_like(t, memory_format=torch.channels_last).copy_(t)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or not bool(torch.isfinite(a).all()) or not bool(torch.isfinite(b).all()):
        return False
    scale = float(b.abs().max()) if b.numel() else 0.0
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5 * (1.0 + scale)))


def _logits_and_grad(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    xr = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xr)
        (grad,) = torch.autograd.grad(logits.float().sum(), xr)
    return logits.detach().float(), grad.detach()


def computes_same_channels_last(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> bool:
    """True if ``model`` (a callable giving logits) gives ``x`` in channels-last the same logits and
    input gradient as in NCHW, within float tolerance, and raises nothing. The random state is
    left as it was, and both layouts see the same random state (a randomized model that draws
    the same way in both passes)."""
    nchw = x.contiguous()
    cl = in_layout(nchw, torch.channels_last)
    try:
        with torch.random.fork_rng(devices=[]):
            state = torch.random.get_rng_state()
            ref_logits, ref_grad = _logits_and_grad(model, nchw)
            torch.random.set_rng_state(state)
            logits, grad = _logits_and_grad(model, cl)
    except Exception:  # noqa: BLE001 - any failure in channels-last means: keep NCHW
        return False
    return _close(logits, ref_logits) and _close(grad, ref_grad)


def iterate_layout(ctx: AttackContext, x: torch.Tensor) -> torch.memory_format:
    """The layout in which the attack on context ``ctx`` feeds the model the iterates of batch ``x``.

    The batch's own layout when it is channels-last, not a 4-d image batch, or not on the CPU.
    An NCHW image batch on the CPU runs channels-last if :func:`computes_same_channels_last` says
    the model computes the same on it; decided once per context and input shape (``ctx.layouts``),
    on the first :data:`PROBE_SAMPLES` samples, through ``ctx.model`` (the same wrappers as the
    attack's) and not counted as the attack's passes.
    """
    own = input_layout(x)
    if own is torch.channels_last or x.dim() != 4 or x.shape[0] == 0 or x.device.type != "cpu":
        return own
    key = (tuple(x.shape[1:]), x.dtype)
    if key not in ctx.layouts:
        with ctx.uncounted():
            same = computes_same_channels_last(ctx.model, x[:PROBE_SAMPLES].detach())
        ctx.layouts[key] = torch.channels_last if same else own
    return ctx.layouts[key]
