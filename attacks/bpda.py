"""Backward Pass Differentiable Approximation (Athalye, Carlini & Wagner 2018).

For a model that applies a non-differentiable (or gradient-masking) preprocessing step
before a network, e.g. input quantisation or JPEG compression: the wrapped attack (any
attack in the registry, ``pgd`` by default) sees ``body(preprocess(x))`` computed exactly in
the forward pass, with the backward pass of ``preprocess`` replaced by a differentiable
approximation ``g`` (the straight-through estimator ``g(x) = x`` by default):
``g(x) + (preprocess(x) - g(x)).detach()``.

How the model is split into preprocessing and body, first match wins:

1. ``preprocess`` and ``model_body`` given: ``preprocess`` is a callable (or a
   ``'package.module:callable'`` spec) applied to the model's input ``x``; ``model_body`` is
   the network that the model applies to ``preprocess(x)`` (a model spec, an ``nn.Module``
   or a ``ModelUnderTest``, whose own normalisation is kept);
2. the model's module has attributes ``.preprocess`` and ``.body`` (its forward being
   ``body(preprocess(z))``, ``z`` the input after the model's mean/std normalisation);
   ``preprocess`` or ``model_body`` given explicitly replace the matching attribute.

Otherwise the attack stops with an error saying what to give. Before attacking, it checks
on the first batch that the split reproduces the model's logits (``check=True``), so a wrong
``model_body`` cannot silently produce a weak attack; success is always judged by the base
class on the real model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from attacks.base import AttackContext, BatchOutcome
from attacks.composition import Wrapper
from attacks.registry import register
from robustness.core.errors import AttackError
from robustness.core.model import ModelUnderTest, import_object

Fn = Callable[[torch.Tensor], torch.Tensor]


def _label(obj: Any) -> str | None:
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, ModelUnderTest):
        return obj.spec
    name = getattr(obj, "__qualname__", None) or type(obj).__name__
    return f"{getattr(obj, '__module__', '?')}:{name}"


def _callable(obj: Any, field: str) -> Fn:
    fn = import_object(obj, field=field) if isinstance(obj, str) else obj
    if not callable(fn):
        raise AttackError(
            f"{field} must be callable, got {type(fn).__name__}",
            field=field,
            fix="Give a function x -> x or a 'package.module:callable' spec.",
        )
    return fn


class _BPDAContext(AttackContext):
    """The outer context with ``model`` replaced by the straight-through composition."""

    def __init__(self, outer: AttackContext, forward: Fn) -> None:
        super().__init__(outer.mut, outer.norm, outer.generator, outer.num_classes, outer._counter)
        self._outer = outer
        self._forward = forward

    def model(self, x: torch.Tensor) -> torch.Tensor:
        out = self._forward(x)
        n = int(x.shape[0])
        counter = self._counter
        counter.forward += n
        if out.requires_grad:

            def _count(grad: torch.Tensor) -> None:
                counter.backward += n

            out.register_hook(_count)
        return out.float()

    def is_adversarial(  # type: ignore[override]
        self, logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None
    ) -> torch.Tensor:
        return self._outer.is_adversarial(logits, y, targets)


@register
class BPDA(Wrapper):
    name = "bpda"
    norms = ("linf", "l2", "l1")
    supports_targeted = True
    description = (
        "Any inner attack through a straight-through (or given) approximation of a preprocessing step."
    )

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {
            "attack": "pgd",
            "attack_params": {},
            "preprocess": None,
            "model_body": None,
            "backward": "identity",
            "check": True,
        }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        self._pre = None if p["preprocess"] is None else _callable(p["preprocess"], "preprocess")
        self._backward = None if p["backward"] == "identity" else _callable(p["backward"], "backward")
        # The body object is kept aside; params keep printable labels (results are JSON).
        self._body = p["model_body"]
        for key in ("preprocess", "model_body", "backward"):
            p[key] = _label(p[key])

    def check_params(self) -> None:
        super().check_params()
        p = self.params
        b = p["model_body"]
        if b is not None and not isinstance(b, (str, nn.Module, ModelUnderTest)):
            raise AttackError(
                f"cannot use {type(b).__name__} as model_body",
                field="model_body",
                fix="Give a model spec, an nn.Module or a ModelUnderTest.",
            )

    # -- the split ------------------------------------------------------------------------------
    def _split(self, ctx: AttackContext) -> Fn:
        """The exact forward of the model as normalise -> preprocess -> body, with BPDA's backward."""
        mut = ctx.mut
        module = mut.module
        pre = self._pre if self._pre is not None else getattr(module, "preprocess", None)
        if self._body is not None:
            body: Fn = self._body_on(ctx).net
            normalize: Fn = _identity
        elif hasattr(module, "body") and callable(module.body):
            body = module.body
            normalize = _normalizer(mut)
        else:
            body = None  # type: ignore[assignment]
        if pre is None or body is None or not callable(pre):
            raise AttackError(
                "bpda needs the model split into its preprocessing step and the network after it",
                field="preprocess" if pre is None else "model_body",
                fix="Give preprocess= (a function x -> x or 'package.module:callable') and model_body= "
                "(the network the model applies after preprocessing: a spec, nn.Module or ModelUnderTest), "
                "or use a model whose module has .preprocess and .body attributes.",
            )
        approx = self._backward

        def forward(x: torch.Tensor) -> torch.Tensor:
            z = normalize(x)
            with torch.no_grad():
                exact = pre(z)
            if exact.shape != z.shape and approx is None:
                raise AttackError(
                    f"preprocess changes the shape {tuple(z.shape)} -> {tuple(exact.shape)}; the identity "
                    "backward pass needs the same shape",
                    field="backward",
                    fix="Give backward= a differentiable approximation of preprocess.",
                )
            g = z if approx is None else approx(z)
            return body(g + (exact - g).detach())

        return forward

    def _body_on(self, ctx: AttackContext) -> ModelUnderTest:
        return self.placed_model(self._body, self.params["model_body"] or "<body>", ctx)

    def _check(self, ctx: AttackContext, forward: Fn, x: torch.Tensor) -> None:
        with torch.no_grad():
            real = ctx.model(x)
            ours = forward(x).float()
        if ours.shape != real.shape:
            raise AttackError(
                f"model_body(preprocess(x)) has shape {tuple(ours.shape)}, the model {tuple(real.shape)}",
                field="model_body",
                fix="Give the network that the model applies after preprocessing.",
            )
        gap = float((ours - real).abs().max()) if real.numel() else 0.0
        scale = 1.0 + float(real.abs().max()) if real.numel() else 1.0
        if gap > 1e-3 * scale:
            raise AttackError(
                f"model_body(preprocess(x)) does not reproduce the model's logits (max difference {gap:.3g})",
                field="model_body",
                fix="Give the preprocessing and the network the model really applies; for a randomized "
                "preprocessing set check=False and wrap the attack in eot.",
            )

    def perturb_attributed(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> BatchOutcome:
        forward = self._split(ctx)
        body = self._body_on(ctx) if self._body is not None else None
        if self.params["check"]:
            self._check(ctx, forward, x)
        straight_through = _BPDAContext(ctx, forward)
        if body is not None and body is not ctx.mut:
            with body.evaluating(freeze=True):
                return self.run_inner(straight_through, x, y, eps, targets)
        return self.run_inner(straight_through, x, y, eps, targets)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _normalizer(mut: ModelUnderTest) -> Fn:
    if mut.mean is None:
        return _identity
    shape = (1, -1, 1, 1)
    mean = torch.as_tensor(mut.mean, device=mut.device).reshape(shape)
    std = torch.as_tensor(mut.std, device=mut.device).reshape(shape)

    def normalize(x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return (x - mean.reshape(1, -1)) / std.reshape(1, -1)
        return (x - mean) / std

    return normalize
