"""The memory layout of the inputs an attack feeds the model.

An attack builds its iterates with element-wise ops on random draws and masks, and those come
out in the default (NCHW) strides whatever the layout of the batch it was given. The model does
not compute the same way on both: on the CPU a convolution keeps the layout of its input, and
PyTorch's NCHW max-pooling kernel is many times slower than its channels-last one (16x on the
digits CNN's 64x8x8 maps, which doubled the cost of a forward pass). So an attack feeds the
model its iterates in the layout of the batch it was given, the layout the caller's data (and
the clean prediction) has.
"""

from __future__ import annotations

import torch


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
