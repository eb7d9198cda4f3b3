"""Transfer attack: craft adversarial examples on a surrogate model, judge them on the target.

Black-box with respect to the target: the target only sees the final candidates (one
forward pass per sample, the base class's re-prediction). The inner attack (any attack in
the registry, ``pgd`` by default) runs on the surrogate through a context of its own. By
default (``maximize=True``) the inner attack never counts a sample as broken on the
surrogate, so every sample gets the full budget: examples that barely cross the
surrogate's boundary rarely transfer, high-loss ones often do.

``surrogate`` is a model spec (``zoo:NAME``, a file, ``package.module:callable``), a
:class:`~robustness.core.model.ModelUnderTest` or an ``nn.Module``; it is placed on the
target's device and used with the target's bounds (a spec's own normalisation is kept).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from attacks.base import AttackContext, BatchOutcome, PassCounter
from attacks.composition import Wrapper
from attacks.registry import register
from robustness.core.errors import AttackError
from robustness.core.model import ModelUnderTest


class _SurrogateContext(AttackContext):
    """The inner attack's view: the surrogate, the target's threat model and generator."""

    def __init__(self, outer: AttackContext, surrogate: ModelUnderTest, maximize: bool) -> None:
        super().__init__(
            surrogate, outer.norm, outer.generator, int(surrogate.num_classes or 0), PassCounter()
        )
        self.bounds = outer.bounds
        self._outer = outer
        self._maximize = maximize

    def is_adversarial(  # type: ignore[override]
        self, logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None
    ) -> torch.Tensor:
        if self._maximize:
            return torch.zeros(y.shape[0], dtype=torch.bool, device=y.device)
        return self._outer.is_adversarial(logits, y, targets)


def _label(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, ModelUnderTest):
        return obj.spec
    return f"<{type(obj).__name__}>"


@register
class Transfer(Wrapper):
    name = "transfer"
    norms = ("linf", "l2", "l1")
    kind = "black-box"
    supports_targeted = True
    description = "Craft on a surrogate model (any inner attack), evaluate on the target; black-box."

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"surrogate": None, "attack": "pgd", "attack_params": {}, "maximize": True}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._surrogate = self.params["surrogate"]
        # Keep params printable (results are JSON); the object itself is kept aside.
        self.params["surrogate"] = _label(self._surrogate)

    def check_params(self) -> None:
        p = self.params
        s = p["surrogate"]
        if s is None or not isinstance(s, (str, nn.Module, ModelUnderTest)):
            raise AttackError(
                "transfer needs a surrogate model" if s is None else f"cannot use {s!r} as a surrogate",
                field="surrogate",
                fix="Give surrogate= a model spec (e.g. 'zoo:digits-cnn', a file, 'package.module:callable'), "
                "a ModelUnderTest or an nn.Module, trained independently of the target.",
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
        sur = self.placed_model(self._surrogate, self.params["surrogate"], ctx)
        sur.validate(x)
        if ctx.num_classes and sur.num_classes != ctx.num_classes:
            raise AttackError(
                f"the surrogate has {sur.num_classes} classes, the target {ctx.num_classes}",
                field="surrogate",
                fix="Use a surrogate trained on the same label set.",
            )
        on_surrogate = _SurrogateContext(ctx, sur, bool(self.params["maximize"]))
        with sur.evaluating(freeze=True), torch.enable_grad():
            # The inner attack's queries go to the surrogate, not to the target.
            return self.run_inner(on_surrogate, x, y, eps, targets, queries_count=False)
