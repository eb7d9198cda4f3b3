"""AutoAttack (Croce & Hein, ICML 2020): a fixed, parameter-free ensemble of complementary attacks.

The standard version runs APGD-CE (100 iterations, 1 restart), then APGD-T (targeted DLR,
9 target classes x 100 iterations), then FAB-T (9 target classes x 100 iterations), then
Square (5000 queries, p_init 0.8). Each component runs only on the samples that all earlier
components left standing, and a sample's result is the first adversarial example found: the
per-sample worst case over the ensemble. With fewer than 10 classes the number of targets is
``num_classes - 1``.

The components are the registered attacks (``apgd-ce``, ``apgd-t``, ``fab``, ``square``),
built by name, so each is the same code that runs when it is used alone.

After a call, ``attack.breakdown`` holds one entry per eps: ``{"eps", "broken_by",
"robust_after"}``, where ``broken_by[i]`` names the component that broke sample ``i``
(``"clean"`` if it was misclassified before any attack, ``None`` if it stayed robust; a sample
broken at a smaller eps keeps the component that broke it there, as its example carries over)
and ``robust_after`` maps each component, in order, to the robust accuracy after it.

Cost: the result's counts are the sum of its members' (every member calls the same counted
model), and its ``n_queries`` counts the forward passes made by its black-box members (Square),
as when Square runs alone; the ensemble itself is white-box, so the base class would count none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from attacks.base import Attack, AttackContext, AttackResult
from attacks.registry import get_attack, register
from robustness.core.errors import AttackError

STANDARD_COMPONENTS = ("apgd-ce", "apgd-t", "fab", "square")
KNOWN_COMPONENTS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "square")


@register
class AutoAttack(Attack):
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

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {
            "steps": 100,
            "n_target_classes": 9,
            "restarts": 1,
            "n_queries": 5000,
            "p_init": 0.8,
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
        self.breakdown: list[dict[str, Any]] = []
        self._records: list[tuple[float, torch.Tensor]] = []
        self._queries: list[tuple[float, int]] = []

    def _component_params(self, name: str) -> dict[str, Any]:
        p = self.params
        if name in ("apgd-ce", "apgd-dlr"):
            return {"steps": p["steps"], "restarts": p["restarts"]}
        if name in ("apgd-t", "fab"):
            return {"steps": p["steps"], "restarts": p["restarts"], "n_target_classes": p["n_target_classes"]}
        return {"n_queries": p["n_queries"], "p_init": p["p_init"]}

    @property
    def components(self) -> list[str]:
        return list(self.params["components"])

    def perturb(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        if ctx.norm not in self.norms:  # pragma: no cover - the base class checks the norm first
            raise AttackError(f"autoattack does not support {ctx.norm}", field="norm", fix="Use linf or l2.")
        x_out = x.clone()
        by = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
        todo = torch.arange(x.shape[0], device=x.device)
        queries = 0
        for ci, atk in enumerate(self._attacks):
            if todo.numel() == 0:
                break
            if atk.norms and ctx.norm not in atk.norms:
                continue
            xs, ys, es = x[todo], y[todo], eps[todo]
            # The context's counter is shared by every member; its forward passes during a
            # black-box member are that member's queries.
            before = ctx._counter.forward
            cand = ctx.project(atk.perturb(ctx, xs, ys, es, None).detach(), xs, es)
            if atk.kind == "black-box":
                queries += ctx._counter.forward - before
            with torch.no_grad():
                hit = ctx.is_adversarial(ctx.model(cand), ys, None)
            x_out[todo[hit]] = cand[hit]
            by[todo[hit]] = ci
            todo = todo[~hit]
        e = float(eps[0]) if eps.numel() else 0.0
        self._records.append((e, by))
        self._queries.append((e, queries))
        return x_out

    def __call__(self, model: Any, x: torch.Tensor, y: torch.Tensor, **kwargs: Any):  # type: ignore[override]
        self._records = []
        self._queries = []
        out = super().__call__(model, x, y, **kwargs)
        dist = kwargs.get("dist")
        if dist is not None and dist.enabled:
            # Each rank recorded its own batches (r, r + world, ...): put everyone's back in batch order.
            parts = dist.all_gather_object(([(e, by.cpu()) for e, by in self._records], self._queries))
            self._records = _interleave([recs for recs, _ in parts])
            self._queries = [q for _, qs in parts for q in qs]
        results = out if isinstance(out, list) else [out]
        self._count_queries(results)
        self.breakdown = self._breakdown(results)
        return out

    def _count_queries(self, results: Sequence[AttackResult]) -> None:
        """Add the black-box members' queries to each eps's result (see the module docstring)."""
        for res in results:
            key = _eps_key(res.eps)
            res.n_queries += sum(q for e, q in self._queries if _eps_key(e) == key)

    def _breakdown(self, results: Sequence[AttackResult]) -> list[dict[str, Any]]:
        """Rebuild who broke which sample from the per-batch records (the base class attacks,
        per eps in ascending order, the samples not yet broken, in index order, batch by batch)."""
        names = self.components
        by_eps: dict[float, list[torch.Tensor]] = {}
        for e, rec in self._records:
            by_eps.setdefault(e, []).append(rec.cpu())
        out: list[dict[str, Any]] = []
        prev: list[str | None] | None = None
        for res in results:
            y = res.y.cpu()
            success = res.success.cpu()
            if prev is None:
                already = res.clean_pred.cpu() != y
                labels: list[str | None] = ["clean" if a else None for a in already.tolist()]
            else:
                already = torch.tensor([p is not None for p in prev], dtype=torch.bool)
                labels = list(prev)
            todo = (~already).nonzero().flatten().tolist()
            recs = by_eps.get(_eps_key(res.eps), [])
            comp = torch.cat(recs).tolist() if recs else []
            for j, i in enumerate(todo):
                if bool(success[i]):
                    c = comp[j] if j < len(comp) else -1
                    labels[i] = names[c] if c >= 0 else "unattributed"
            n = len(labels)
            robust_after = {}
            for ci, name in enumerate(names):
                gone = {"clean", *names[: ci + 1]}
                robust_after[name] = sum(lab not in gone for lab in labels) / n if n else 0.0
            out.append({"eps": res.eps, "broken_by": labels, "robust_after": robust_after})
            prev = labels
        return out


def _eps_key(e: float) -> float:
    """An eps as ``perturb`` saw it (a float32 tensor entry), to match records to results."""
    return float(torch.tensor(e, dtype=torch.float32))


def _interleave(parts: list[list[tuple[float, torch.Tensor]]]) -> list[tuple[float, torch.Tensor]]:
    """Per eps (in order), rank r's k-th record is batch r + k * world: merge in batch order."""
    eps_order = list(dict.fromkeys(e for part in parts for e, _ in part))
    out = []
    for e in eps_order:
        per_rank = [[rec for rec in part if rec[0] == e] for part in parts]
        for k in range(max(len(r) for r in per_rank)):
            out += [r[k] for r in per_rank if k < len(r)]
    return out


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

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {**AutoAttack.defaults(), "steps": 20, "n_target_classes": 3, "n_queries": 500}
