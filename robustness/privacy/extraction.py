"""Model extraction: how cheaply can a thief with query access copy the model?

The thief draws ``N`` queries from a pool of unlabelled inputs it owns, sends them to the model
and keeps what the model returns: the top-1 labels, or the whole probability vector where the
model exposes it (Tramer et al. 2016; Orekondy et al. 2019's KnockoffNets with random sampling,
Correia-Silva et al. 2018's CopycatCNN). It then trains a surrogate (by default a fresh
instance of the model's own architecture, the strongest thief) on those pairs. For each budget
the surrogate's *agreement* with the model (share of held-out inputs where both predict the same
class) and its *accuracy* are measured, giving the extraction curve.

Implementation: torch-native. The queries of all budgets are one seeded draw (a thief who asked
1,000 questions also asked the first 200), sent to the model once in batches; each budget's
surrogate starts from the same initial weights and trains with Adam on cross-entropy against the
labels or the probabilities. ART's ``CopycatCNN``/``KnockoffNets`` (see
:mod:`robustness.watermark.removal`) do the same with a NumPy round-trip per query batch and only
hard labels through their ``fit``; here the attack stays on the model's device and also covers
the probability-output case. The thief's training loop is its own, not the hardening trainer: it
needs soft targets, and a thief keeps no checkpoints or validation split.

Link to ownership: given a watermark key, every surrogate is tested for the mark
(:func:`defenses.watermark.decide`), which tells whether the mark would identify a stolen copy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional

from robustness.core.errors import UsageError

if TYPE_CHECKING:
    from defenses.watermark import WatermarkKey
    from robustness.core.data import Dataset
    from robustness.core.model import ModelUnderTest

OUTPUTS = ("labels", "probabilities")
DEFAULT_BUDGETS = (100, 250, 500, 1000)


@dataclass(frozen=True)
class ThiefRecipe:
    """How the thief trains its surrogate. ``architecture``: ``zoo:NAME`` or a factory spec;
    None: a fresh instance of the audited model's own architecture."""

    architecture: str | None = None
    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture or "the model's own (fresh weights)",
            "epochs": self.epochs,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "optimizer": "adam",
            "seed": self.seed,
        }


def check_budgets(budgets: Sequence[int], pool_size: int, *, field: str = "--queries") -> list[int]:
    """Sorted distinct budgets, each in [1, pool_size]; a :class:`UsageError` otherwise."""
    if not budgets:
        raise UsageError("no query budget given", field=field, fix="Give one or more budgets, e.g. 200 1000.")
    for b in budgets:
        if isinstance(b, bool) or int(b) != b or int(b) < 1:
            raise UsageError(
                f"query budget {b!r} is not a positive integer", field=field, fix="Use e.g. 200 1000."
            )
    too_big = [int(b) for b in budgets if int(b) > pool_size]
    if too_big:
        raise UsageError(
            f"query budget {max(too_big)} exceeds the thief's pool of {pool_size} inputs",
            field=field,
            fix=f"Use budgets of at most {pool_size}, or a larger query pool (e.g. builtin:digits:train for "
            "the digits models).",
        )
    return sorted({int(b) for b in budgets})


def split_pool(data: Dataset, eval_share: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """A seeded split of ``data``: the thief's pool, and held-out inputs to measure the copy on."""
    n_eval = max(1, round(eval_share * len(data)))
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 1))
    return data.subset(perm[n_eval:].sort().values), data.subset(perm[:n_eval].sort().values)


def _fresh_thief(model: ModelUnderTest, architecture: str | None, seed: int) -> torch.nn.Module:
    """The surrogate's untrained network, taking inputs in the model's input space."""
    import copy

    from defenses.watermark import architecture_of
    from robustness.core.model import Normalized, build_architecture

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        arch: Any = architecture or architecture_of(model)
        if arch is not None:
            net = build_architecture(arch)
            if model.mean is not None and architecture is None:  # the model's normalisation, kept inside
                net = Normalized(net, model.mean, model.std)
        else:
            net = copy.deepcopy(model.net)
            for m in net.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
    for p in net.parameters():
        p.requires_grad_(True)
    return net.to(model.device)


def fit_thief(
    net: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor, recipe: ThiefRecipe
) -> torch.nn.Module:
    """Train ``net`` on ``(x, targets)``: class indices or probability rows (cross-entropy either way)."""
    gen = torch.Generator().manual_seed(recipe.seed + 1)
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    net.train()
    n = x.shape[0]
    for _ in range(recipe.epochs):
        perm = torch.randperm(n, generator=gen).to(x.device)
        for i in range(0, n, recipe.batch_size):
            idx = perm[i : i + recipe.batch_size]
            loss = functional.cross_entropy(net(x[idx]), targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _wrap(net: torch.nn.Module, model: ModelUnderTest, queries: int) -> ModelUnderTest:
    from robustness.core.model import ModelUnderTest

    return ModelUnderTest(
        net,
        spec=f"{model.spec} [stolen with {queries} queries]",
        bounds=model.bounds,
        device=model.device,
        num_classes=model.num_classes,
    )


def extraction_curve(
    model: ModelUnderTest,
    pool: Dataset,
    eval_data: Dataset,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    *,
    outputs: str = "labels",
    recipe: ThiefRecipe | None = None,
    watermark_key: WatermarkKey | str | Path | None = None,
    watermark_alpha: float | None = None,
    batch_size: int = 512,
    progress: Any = None,
) -> dict[str, Any]:
    """Steal ``model`` at each query budget; the ``extraction`` result.

    ``pool``: the thief's inputs (labels are never read); ``eval_data``: held-out inputs the copy
    is measured on. Returns ``outputs``, ``pool_size``, ``eval_n``, ``model_accuracy``,
    ``thief`` (the recipe), ``curve`` (per budget: ``queries``, ``agreement``,
    ``agreement_ci``, ``accuracy``, ``accuracy_ci``, ``time_s`` and, with a key, ``watermark``),
    ``watermark`` (the key's test on the model itself) and ``time_s``.
    """
    from robustness.core.metrics import clopper_pearson

    if outputs not in OUTPUTS:
        raise UsageError(
            f"unknown thief output {outputs!r}", field="outputs", fix=f"Use one of: {', '.join(OUTPUTS)}."
        )
    recipe = recipe or ThiefRecipe()
    budgets = check_budgets(budgets, len(pool))
    t0 = time.perf_counter()
    key = _load_key(watermark_key, model, tuple(pool.x.shape[1:])) if watermark_key is not None else None
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(recipe.seed))[: budgets[-1]]
    queries = pool.x[order].to(model.device)
    # The one round of queries: the model answers the largest budget once; smaller budgets are its prefixes.
    logits = model.logits(queries, batch_size)
    answers = logits.argmax(dim=1) if outputs == "labels" else torch.softmax(logits.double(), dim=1).float()
    ref_pred = model.predict(eval_data.x, batch_size).cpu()
    y_eval = eval_data.y.cpu()
    n_eval = len(eval_data)
    rows = []
    for budget in budgets:
        t1 = time.perf_counter()
        if progress is not None:
            progress(f"extraction: training a surrogate on {budget} queries")
        net = _fresh_thief(model, recipe.architecture, recipe.seed)
        fit_thief(net, queries[:budget], answers[:budget], recipe)
        surrogate = _wrap(net, model, budget)
        pred = surrogate.predict(eval_data.x, batch_size).cpu()
        agree, correct = int((pred == ref_pred).sum()), int((pred == y_eval).sum())
        row: dict[str, Any] = {
            "queries": budget,
            "agreement": agree / n_eval,
            "agreement_ci": list(clopper_pearson(agree, n_eval)),
            "accuracy": correct / n_eval,
            "accuracy_ci": list(clopper_pearson(correct, n_eval)),
        }
        if key is not None:
            row["watermark"] = _mark_test(surrogate, key, watermark_alpha, batch_size)
        row["time_s"] = time.perf_counter() - t1
        rows.append(row)
    model_correct = int((ref_pred == y_eval).sum())
    return {
        "outputs": outputs,
        "pool_size": len(pool),
        "eval_n": n_eval,
        "model_accuracy": model_correct / n_eval,
        "thief": recipe.to_dict(),
        "implementation": "torch-native (queries from the pool at random, as KnockoffNets' random strategy)",
        "curve": rows,
        "watermark": _mark_test(model, key, watermark_alpha, batch_size) if key is not None else None,
        "time_s": time.perf_counter() - t0,
    }


def _load_key(path: WatermarkKey | str | Path, model: ModelUnderTest, shape: tuple[int, ...]) -> WatermarkKey:
    from defenses.watermark import check_compatible, load_key

    key = load_key(path)
    check_compatible(key, model, shape)
    return key


def _mark_test(
    suspect: ModelUnderTest, key: WatermarkKey, alpha: float | None, batch_size: int
) -> dict[str, Any]:
    from defenses.watermark import DEFAULT_ALPHA, check_alpha, decide, trigger_predictions

    outcome = decide(
        trigger_predictions(suspect, key, batch_size),
        key,
        check_alpha(alpha if alpha is not None else DEFAULT_ALPHA),
    )
    return {k: outcome[k] for k in ("k", "K", "p0", "p_value", "alpha", "verified")}


def queries_for(curve: list[dict[str, Any]], agreement: float) -> int | None:
    """The smallest budget whose surrogate reached ``agreement`` (None: none did)."""
    return next((r["queries"] for r in curve if r["agreement"] >= agreement), None)
