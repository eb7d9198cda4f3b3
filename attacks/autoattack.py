"""AutoAttack (Croce & Hein, ICML 2020): a fixed, parameter-free ensemble of complementary attacks.

The standard version runs APGD-CE (100 iterations, 1 restart), then APGD-T (targeted DLR,
9 target classes x 100 iterations), then FAB-T (9 target classes x 100 iterations), then
Square (5000 queries, p_init 0.8). Each component runs only on the samples that all earlier
components left standing, and a sample's result is the first adversarial example found: the
per-sample worst case over the ensemble. With fewer than 10 classes the number of targets is
``num_classes - 1``.

The budgets are written once, here: :data:`STANDARD_BUDGET` and :data:`FAST_BUDGET`; the
audit's presets run the same components at the same budget as separate attacks
(:func:`separate_members`). The components are the registered attacks (``apgd-ce``,
``apgd-t``, ``fab``, ``square``), built by name, so each is the same code that runs when it is
used alone.

The ensemble is a composition: for each batch it returns the candidates and which component
found each, and the base class's eps loop carries them. Each result's ``broken_by[i]`` names
the component that broke sample ``i`` (``"clean"`` if it was misclassified before any attack,
None if it stayed robust; a sample broken at a smaller eps keeps the component that broke it
there, as its example carries over), ``members`` lists the components in order and
``robust_after`` maps each to the robust accuracy after it.

Cost: the result's counts are the sum of its members' (every member calls the same counted
model), and its ``n_queries`` counts the forward passes made by its black-box members (Square),
as when Square runs alone; the ensemble itself is white-box, so the base class would count none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from attacks.base import AttackContext, BatchOutcome
from attacks.composition import Composition
from attacks.registry import get_attack, register
from robustness.core.errors import AttackError

STANDARD_COMPONENTS = ("apgd-ce", "apgd-t", "fab", "square")
KNOWN_COMPONENTS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "square")


@dataclass(frozen=True)
class Budget:
    """AutoAttack's budget per sample: ``steps`` of APGD-CE, APGD-T and FAB-T, their
    ``n_target_classes`` and ``restarts``; Square's ``n_queries`` and ``p_init``."""

    steps: int
    n_target_classes: int
    restarts: int
    n_queries: int
    p_init: float

    def member_params(self, name: str) -> dict[str, Any]:
        """The parameters of component ``name`` at this budget (Square keeps its one restart)."""
        if name in ("apgd-ce", "apgd-dlr"):
            return {"steps": self.steps, "restarts": self.restarts}
        if name in ("apgd-t", "fab"):
            return {"steps": self.steps, "n_target_classes": self.n_target_classes, "restarts": self.restarts}
        return {"n_queries": self.n_queries, "p_init": self.p_init}


# The reference budget (Croce & Hein 2020).
STANDARD_BUDGET = Budget(steps=100, n_target_classes=9, restarts=1, n_queries=5000, p_init=0.8)
# About a tenth of it, for CI (see AutoAttackFast).
FAST_BUDGET = Budget(steps=20, n_target_classes=3, restarts=1, n_queries=500, p_init=0.8)


def separate_members(
    budget: Budget = STANDARD_BUDGET, restarts: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """The standard components as separate attacks, ``[{"name", "params"}]`` in run order, each
    with its restart count: the budget's, or ``restarts[name]`` (Square's included)."""
    restarts = restarts or {}
    out = []
    for name in STANDARD_COMPONENTS:
        params = budget.member_params(name)
        params["restarts"] = restarts.get(name, budget.restarts)
        out.append({"name": name, "params": params})
    return out


def plus_members(budget: Budget = STANDARD_BUDGET) -> list[dict[str, Any]]:
    """AutoAttack's ``plus`` version as separate attacks, in run order: APGD-CE and APGD-DLR with
    5 restarts, FAB with 5 restarts, Square, then APGD-T and FAB-T with the budget's restarts.

    This library's FAB is the targeted version (FAB-T over the top-9 classes), so "FAB with 5
    restarts" runs as FAB-T x 9 targets x 5 restarts, which also covers plus's FAB-T at 1 restart;
    it is listed once.
    """
    plus_restarts = 5
    return [
        {"name": "apgd-ce", "params": {**budget.member_params("apgd-ce"), "restarts": plus_restarts}},
        {"name": "apgd-dlr", "params": {**budget.member_params("apgd-dlr"), "restarts": plus_restarts}},
        {"name": "fab", "params": {**budget.member_params("fab"), "restarts": plus_restarts}},
        {"name": "square", "params": budget.member_params("square")},
        {"name": "apgd-t", "params": budget.member_params("apgd-t")},
    ]


def malt_members(budget: Budget = STANDARD_BUDGET, n_target_classes: int = 3) -> list[dict[str, Any]]:
    """The standard components with MALT (targeted APGD on the ``n_target_classes`` classes a
    linearisation ranks closest, Melamed et al. 2024) in place of APGD-T's fixed top-9 targets."""
    out = []
    for member in separate_members(budget):
        if member["name"] == "apgd-t":
            params = {**member["params"], "n_target_classes": n_target_classes}
            member = {"name": "malt", "params": params}
        out.append(member)
    return out


@register
class AutoAttack(Composition):
    """The standard AutoAttack ensemble at the reference budget (linf and l2).

    Parameters: ``steps`` (iterations of APGD-CE, APGD-T and FAB-T, 100), ``n_target_classes``
    (targets of APGD-T and FAB-T, 9), ``restarts`` (of the iterative components, 1),
    ``n_queries`` and ``p_init`` (Square: 5000, 0.8), and ``components`` (the ordered list of
    attacks to run; the standard four by default; a subset gives AutoAttack's "custom"
    version and should be reported as such).
    """

    name = "autoattack"
    norms = ("linf", "l2")
    supports_targeted = False
    description = (
        "Standard AutoAttack (Croce & Hein 2020): APGD-CE 100 it. -> APGD-T 9x100 -> FAB-T 9x100 -> "
        "Square 5000 queries, each on the samples still robust; per-sample worst case."
    )
    # The defaults of the budget parameters.
    budget: ClassVar[Budget] = STANDARD_BUDGET

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        budget = cls.budget
        return {
            "steps": budget.steps,
            "n_target_classes": budget.n_target_classes,
            "restarts": budget.restarts,
            "n_queries": budget.n_queries,
            "p_init": budget.p_init,
            "components": list(STANDARD_COMPONENTS),
        }

    def check_params(self) -> None:
        comps = self.params["components"]
        if isinstance(comps, str):
            comps = [c.strip() for c in comps.split(",") if c.strip()]
        comps = list(comps)
        bad = [c for c in comps if c not in KNOWN_COMPONENTS]
        if not comps or bad or len(set(comps)) != len(comps):
            raise AttackError(
                f"components must be a non-empty list of distinct attacks from {list(KNOWN_COMPONENTS)}, "
                f"got {self.params['components']!r}",
                field="components",
                fix=f"Leave it out for the standard ensemble {list(STANDARD_COMPONENTS)}.",
            )
        self.params["components"] = comps
        # Building the components validates their parameters now, not halfway through a run.
        self._attacks = [get_attack(c, **self._component_params(c)) for c in comps]

    def _component_params(self, name: str) -> dict[str, Any]:
        budget = Budget(**{field.name: self.params[field.name] for field in fields(Budget)})
        return budget.member_params(name)

    @property
    def components(self) -> list[str]:
        return list(self.params["components"])

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self.params["components"])

    def perturb_attributed(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> BatchOutcome:
        """Each component on what the earlier ones left standing; the first hit per sample counts."""
        if ctx.norm not in self.norms:  # pragma: no cover - the base class checks the norm first
            raise AttackError(f"autoattack does not support {ctx.norm}", field="norm", fix="Use linf or l2.")
        x_out = x.clone()
        found_by = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
        standing = torch.arange(x.shape[0], device=x.device)
        queries = 0
        for index, member in enumerate(self._attacks):
            if standing.numel() == 0:
                break
            if member.norms and ctx.norm not in member.norms:
                continue
            xs, ys, es = x[standing], y[standing], eps[standing]
            # Every member calls the same counted model: its forward passes during a black-box
            # member are that member's queries.
            before = ctx.n_forward
            outcome = member.perturb_attributed(ctx, xs, ys, es, None)
            cand = ctx.project(outcome.candidates.detach(), xs, es)
            queries += outcome.n_queries + (ctx.n_forward - before if member.kind == "black-box" else 0)
            # By the majority of ctx.votes predictions: on a randomized model one lucky draw must
            # not take a sample away from the members after this one.
            hit = ctx.judge(cand, ys, None)
            x_out[standing[hit]] = cand[hit]
            found_by[standing[hit]] = index
            standing = standing[~hit]
        return BatchOutcome(x_out, found_by, queries)


@register
class AutoAttackFast(AutoAttack):
    """AutoAttack at a reduced budget for CI: the same four components, in the same order.

    APGD-CE 20 iterations; APGD-T 3 targets x 20 iterations; FAB-T 3 targets x 20 iterations;
    Square 500 queries (p_init 0.8); 1 restart each: about a tenth of the standard budget per
    sample (640 gradient steps and 500 queries instead of 1900 and 5000). The three most likely
    wrong classes carry almost all of APGD-T's and FAB-T's successes, and APGD's checkpoints
    scale with the budget. On the digits demo model it matches the standard ensemble's robust
    accuracy within a point, but that is a property of that model: it is a screening budget,
    and a number that is published or gated on in a release should come from ``autoattack``.
    """

    name = "autoattack-fast"
    description = (
        "AutoAttack at a CI budget: APGD-CE 20 it. -> APGD-T 3x20 -> FAB-T 3x20 -> Square 500 queries; "
        "screening only, use 'autoattack' for reported numbers."
    )
    budget = FAST_BUDGET
