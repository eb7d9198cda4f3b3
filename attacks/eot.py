"""Expectation over Transformation (Athalye, Engstrom, Ilyas & Kwok 2018) for randomized models.

Wraps any attack in the registry (``attack``, ``attack_params``): the inner attack runs
unchanged on a context whose ``model(x)`` is the mean of ``eot_samples`` logits, i.e. of
``eot_samples`` independent random forward passes, so its gradients and losses are
expectations over the model's randomness. A sample counts as broken for the inner attack
only when at least ``min_success`` of the draws of that call are adversarial (default: all
of them), so it keeps pushing until the example is adversarial for most random draws, not
for one lucky draw; the base class then judges the result on a fresh forward pass.

The model's randomness (``torch.rand*`` inside its forward) is seeded from the attack's
generator for the duration, so a run is reproducible given the seed. ``stack=True`` puts
all draws into one forward pass (faster; valid only when the model draws its randomness
per sample, not once per call).
"""

from __future__ import annotations

from typing import Any

import torch

from attacks.base import AttackContext, BatchOutcome
from attacks.composition import Wrapper
from attacks.registry import register
from robustness.core.errors import AttackError


class _EOTContext(AttackContext):
    """The outer context, with ``model`` averaged over random draws."""

    def __init__(self, outer: AttackContext, samples: int, min_success: float, stack: bool) -> None:
        super().__init__(outer.mut, outer.norm, outer.generator, outer.num_classes, outer._counter)
        self._outer = outer
        self._samples = samples
        self._min_success = min_success
        self._stack = stack
        # The latest call's mean logits and per-draw predictions.
        self._last_mean: torch.Tensor | None = None
        self._last_draw_preds: torch.Tensor | None = None

    def model(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        k = self._samples
        if self._stack:
            draws = self._outer.model(x.repeat(k, *([1] * (x.dim() - 1)))).view(k, n, -1)
        else:
            draws = torch.stack([self._outer.model(x) for _ in range(k)])
        mean = draws.mean(dim=0)
        self._last_mean, self._last_draw_preds = mean, draws.detach().argmax(dim=2)
        return mean

    def is_adversarial(  # type: ignore[override]
        self, logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None
    ) -> torch.Tensor:
        hit = self._outer.is_adversarial(logits, y, targets)
        mean, preds = self._last_mean, self._last_draw_preds
        # Logits straight from the latest call (the same storage): also ask most draws to agree.
        if mean is not None and logits.data_ptr() == mean.data_ptr() and logits.shape == mean.shape:
            per_draw = preds == targets if targets is not None else preds != y
            hit = hit & (per_draw.float().mean(dim=0) >= self._min_success - 1e-9)
        return hit


@register
class EOT(Wrapper):
    name = "eot"
    norms = ("linf", "l2", "l1")
    supports_targeted = True
    description = "Expectation over Transformation: any inner attack on logits averaged over random draws."

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"attack": "pgd", "attack_params": {}, "eot_samples": 20, "min_success": 1.0, "stack": False}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.kind = self.inner.kind

    def check_params(self) -> None:
        p = self.params
        if int(p["eot_samples"]) < 1:
            raise AttackError(
                f"eot_samples must be >= 1, got {p['eot_samples']}", field="eot_samples", fix="Use e.g. 20."
            )
        if not 0 < float(p["min_success"]) <= 1:
            raise AttackError(
                f"min_success must be in (0, 1], got {p['min_success']}", field="min_success", fix="Use 1.0."
            )
        super().check_params()

    def perturb_attributed(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> BatchOutcome:
        p = self.params
        averaged = _EOTContext(ctx, int(p["eot_samples"]), float(p["min_success"]), bool(p["stack"]))
        # Seed the model's own randomness (global RNG) from the attack's generator, and leave the
        # caller's global RNG as it was.
        seed = int(torch.randint(0, 2**62, (1,), device=ctx.device, generator=ctx.generator))
        devices = [ctx.device] if ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return self.run_inner(averaged, x, y, eps, targets)
