"""The soft smoothed classifier: what an attack on ``g`` differentiates through.

``g`` itself is a vote and has no gradient. Salman et al. (2019, SmoothAdv) attack its soft
version instead, the base model's softmax averaged over Gaussian noise; :class:`SoftSmoothed`
returns the log of that average over ``samples`` fresh draws per call, as logits (its argmax is
the soft vote). Its noise comes from torch's global generator, which the ``eot`` attack seeds
from its own, so an attack on it is reproducible.
"""

from __future__ import annotations

import torch
from torch import nn

from robustness.core.model import ModelUnderTest


class SoftSmoothed(nn.Module):
    """``log mean_j softmax(f(x + sigma * e_j))`` over ``samples`` draws ``e_j ~ N(0, I)``.

    ``base`` is kept as a plain attribute, not a sub-module: its modes and frozen weights are
    the caller's (:meth:`ModelUnderTest.evaluating` on the base model around the attack).
    """

    def __init__(self, base: ModelUnderTest, sigma: float, samples: int) -> None:
        super().__init__()
        self.__dict__["base"] = base
        self.sigma = float(sigma)
        self.samples = int(samples)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, m = x.shape[0], self.samples
        noise = torch.randn((b * m, *x.shape[1:]), device=x.device, dtype=x.dtype)
        noisy = x.repeat_interleave(m, dim=0) + self.sigma * noise
        probs = torch.softmax(self.base(noisy).float(), dim=1).view(b, m, -1).mean(dim=1)
        return probs.clamp_min(1e-12).log()


def soft_smoothed_model(base: ModelUnderTest, sigma: float, samples: int) -> ModelUnderTest:
    """The soft smoothed classifier of ``base`` as a model the attacks accept."""
    return ModelUnderTest(
        SoftSmoothed(base, sigma, samples),
        spec=f"soft-smoothed({base.spec}, sigma={sigma:g})",
        bounds=base.bounds,
        device=base.device,
        num_classes=base.num_classes,
    )
