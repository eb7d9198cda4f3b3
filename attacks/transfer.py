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

from attacks.base import Attack, AttackContext, _Counter
from attacks.registry import get_attack, register
from robustness.core.errors import AttackError
from robustness.core.model import ModelUnderTest, load_model


class _SurrogateContext(AttackContext):
    """The inner attack's view: the surrogate, the target's threat model and generator."""

    def __init__(self, outer: AttackContext, surrogate: ModelUnderTest, maximize: bool) -> None:
        super().__init__(surrogate, outer.norm, outer.generator, int(surrogate.num_classes or 0), _Counter())
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
class Transfer(Attack):
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
        self.params["attack_params"] = dict(self.params["attack_params"] or {})
        self.inner = get_attack(self.params["attack"], **self.params["attack_params"])
        # What the inner attack supports decides what the transfer supports.
        self.norms = tuple(self.inner.norms)
        self.supports_targeted = bool(self.inner.supports_targeted)
        self._loaded: dict[str, ModelUnderTest] = {}

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
        if p["attack"] == self.name:
            raise AttackError("transfer cannot wrap itself", field="attack", fix="Use e.g. attack='pgd'.")
        if p["attack_params"] is not None and not isinstance(p["attack_params"], dict):
            raise AttackError(
                "attack_params must be a dict", field="attack_params", fix="E.g. {'steps': 50}."
            )

    def _surrogate_on(self, ctx: AttackContext) -> ModelUnderTest:
        key = str(ctx.device)
        if key not in self._loaded:
            s = self._surrogate
            if isinstance(s, ModelUnderTest):
                mut = s
                if mut.device != ctx.device:
                    mut = ModelUnderTest(
                        s.module,
                        spec=s.spec,
                        bounds=s.bounds,
                        mean=s.mean,
                        std=s.std,
                        device=ctx.device,
                        num_classes=s.num_classes,
                    )
            elif isinstance(s, nn.Module):
                mut = ModelUnderTest(s, spec=_label(s), bounds=ctx.bounds, device=ctx.device)
            else:
                mut = load_model(s, bounds=ctx.bounds, device=ctx.device)
            self._loaded[key] = mut
        return self._loaded[key]

    def perturb(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        sur = self._surrogate_on(ctx)
        sur.validate(x)
        if ctx.num_classes and sur.num_classes != ctx.num_classes:
            raise AttackError(
                f"the surrogate has {sur.num_classes} classes, the target {ctx.num_classes}",
                field="surrogate",
                fix="Use a surrogate trained on the same label set.",
            )
        inner_ctx = _SurrogateContext(ctx, sur, bool(self.params["maximize"]))
        with sur.evaluating(freeze=True), torch.enable_grad():
            cand = self.inner.perturb(inner_ctx, x, y, eps, targets)
        return cand.detach()
