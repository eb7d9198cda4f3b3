"""Attacks made of other registered attacks: the AutoAttack ensemble and the EOT, BPDA and
transfer wrappers.

A composition implements :meth:`~attacks.base.Attack.perturb_attributed`: it returns data (the
candidates, which member found each, the queries of its black-box members) and keeps nothing it
found on the instance; the base class's one eps loop does the rest. Its
:meth:`~attacks.base.Attack.perturb` is that outcome's candidates, so a composition can itself
be a member or an inner attack, or craft examples for adversarial training.

A :class:`Wrapper` runs one inner attack (``attack``, ``attack_params``) through a changed view
of the model: a context of its own whose ``model`` is an average over random draws (EOT), a
straight-through composition (BPDA) or a surrogate (transfer).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from attacks.base import Attack, AttackContext, BatchOutcome
from attacks.registry import get_attack
from robustness.core.errors import AttackError
from robustness.core.model import ModelUnderTest, load_model


class Composition(Attack):
    """Base of the attacks built from other attacks; subclasses implement ``perturb_attributed``."""

    def perturb(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        return self.perturb_attributed(ctx, x, y, eps, targets).candidates


class Wrapper(Composition):
    """One inner attack of the registry (``attack``, default ``pgd``, with ``attack_params``) run
    on a context of the wrapper's own. The wrapper supports what its inner attack supports.

    Subclasses declare ``attack`` and ``attack_params`` among their :meth:`defaults` and
    implement :meth:`perturb_attributed`, usually as ``self.run_inner(their_context, ...)``.
    """

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.params["attack_params"] = dict(self.params["attack_params"] or {})
        self.inner = get_attack(self.params["attack"], **self.params["attack_params"])
        self.norms = tuple(self.inner.norms)
        self.supports_targeted = bool(self.inner.supports_targeted)
        # Models given as parameters (a surrogate, a body), on each device they were used on.
        self._placed: dict[tuple[str, str], ModelUnderTest] = {}

    def check_params(self) -> None:
        p = self.params
        if p["attack"] == self.name:
            raise AttackError(f"{self.name} cannot wrap itself", field="attack", fix="Use e.g. attack='pgd'.")
        if p["attack_params"] is not None and not isinstance(p["attack_params"], dict):
            raise AttackError(
                "attack_params must be a dict", field="attack_params", fix="E.g. {'steps': 50}."
            )

    def run_inner(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
        *,
        queries_count: bool = True,
    ) -> BatchOutcome:
        """The inner attack on ``ctx``, attributed to the wrapper. The queries its black-box
        members made count when ``ctx`` queries the target model (``queries_count``)."""
        inner = self.inner.perturb_attributed(ctx, x, y, eps, targets)
        return BatchOutcome(inner.candidates.detach(), n_queries=inner.n_queries if queries_count else 0)

    def placed_model(self, given: Any, label: str, ctx: AttackContext) -> ModelUnderTest:
        """A model given as a parameter (a surrogate, a body) on ``ctx``'s device: a ModelUnderTest,
        an ``nn.Module`` (given ``ctx``'s bounds) or a model spec, the one form a config can give."""
        key = (label, str(ctx.device))
        if key not in self._placed:
            if isinstance(given, ModelUnderTest):
                mut = given
                if mut.device != ctx.device:
                    mut = ModelUnderTest(
                        given.module,
                        spec=given.spec,
                        bounds=given.bounds,
                        mean=given.mean,
                        std=given.std,
                        device=ctx.device,
                        num_classes=given.num_classes,
                    )
            elif isinstance(given, nn.Module):
                mut = ModelUnderTest(given, spec=label, bounds=ctx.bounds, device=ctx.device)
            else:
                mut = load_model(given, bounds=ctx.bounds, device=ctx.device)
            self._placed[key] = mut
        return self._placed[key]
