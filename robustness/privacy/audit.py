"""The privacy and extraction audits from specs: what ``robustness privacy``/``extract`` and the
audit sections run.

:func:`privacy_audit` loads the member and non-member sets, arranges the reference models (given
specs, or trained from a recipe on a pool that excludes every audited sample: the given reference
data, else half of the members and non-members held out of the audit) and runs the membership
attacks. :func:`extraction_audit` sets up the thief's pool and the held-out inputs and runs
:func:`robustness.privacy.extraction.extraction_curve`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from robustness.core.errors import ConfigError
from robustness.privacy.roc import DEFAULT_FPRS

if TYPE_CHECKING:
    from robustness.core.data import Dataset
    from robustness.core.model import ModelUnderTest
    from robustness.privacy.references import ReferenceRecipe

HOLDOUT_NOTE = "held out of the audit: half of the members and half of the non-members (seeded)"


def _load(spec: str | Dataset, model: ModelUnderTest, n: int | None, seed: int, field: str) -> Dataset:
    from robustness.core.data import load_data
    from robustness.core.errors import RobustnessError

    try:
        return load_data(spec, n_examples=n, seed=seed, bounds=model.bounds, model_outputs=model.num_classes)
    except RobustnessError as exc:
        raise type(exc)(exc.message, field=field, fix=exc.fix) from None


def _halves(data: Dataset, seed: int) -> tuple[Dataset, Dataset]:
    import torch

    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 3))
    half = len(data) // 2
    return data.subset(perm[half:].sort().values), data.subset(perm[:half].sort().values)


def privacy_audit(
    model: ModelUnderTest,
    members: str | Dataset,
    non_members: str | Dataset,
    attacks: Sequence[str] = ("loss",),
    *,
    reference_models: Sequence[str] = (),
    recipe: ReferenceRecipe | None = None,
    reference_data: str | Dataset | None = None,
    n_members: int | None = None,
    n_non_members: int | None = None,
    fprs: Sequence[float] = DEFAULT_FPRS,
    seed: int = 0,
    field_prefix: str = "",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Membership inference on ``model``: the ``privacy`` result (see
    :func:`robustness.privacy.membership.audit_membership`), with the specs, ``strongest`` and
    ``leak_detected`` added."""
    import time

    from robustness.privacy.membership import MEMBERSHIP_ATTACKS, audit_membership, strongest
    from robustness.privacy.references import (
        ReferenceRecipe,
        exclude_samples,
        load_references,
        row_digests,
        train_references,
    )

    t0 = time.perf_counter()
    for name in attacks:
        MEMBERSHIP_ATTACKS.get(name)  # unknown names fail here, before any work
    m = _load(members, model, n_members, seed, f"{field_prefix}members")
    n = _load(non_members, model, n_non_members, seed + 1, f"{field_prefix}non_members")
    both = set(row_digests(m)) & set(row_digests(n))
    if both:
        raise ConfigError(
            f"{len(both)} samples are both members and non-members",
            field=f"{field_prefix}non_members",
            fix="Give non-members the model never saw (e.g. the test split when the members are the train split).",
        )
    needs_refs = any(MEMBERSHIP_ATTACKS.get(a).needs_references for a in attacks)
    refs = None
    if needs_refs and reference_models:
        refs = load_references(list(reference_models), model, field=f"{field_prefix}reference_models")
    elif needs_refs:
        recipe = recipe or ReferenceRecipe(seed=seed)
        if reference_data is not None:
            pool = exclude_samples(
                _load(reference_data, model, None, seed, f"{field_prefix}reference.data"), m, n
            )
            note = f"{getattr(reference_data, 'spec', reference_data)} without the audited samples"
        else:
            if len(m) < 4 or len(n) < 4:
                raise ConfigError(
                    f"{len(m)} members and {len(n)} non-members are too few to hold half out for reference models",
                    field=f"{field_prefix}reference.data",
                    fix="Give reference data (a pool the audit excludes the audited samples from) or reference models.",
                )
            import torch

            from robustness.core.data import Dataset

            m, m_out = _halves(m, seed)
            n, n_out = _halves(n, seed + 1)
            pool = Dataset(
                torch.cat([m_out.x, n_out.x]),
                torch.cat([m_out.y, n_out.y]),
                [*m_out.ids, *n_out.ids],
                "reference pool",
                model.num_classes,
            )
            pool = exclude_samples(pool, m, n)
            note = HOLDOUT_NOTE
        refs = train_references(recipe, model, pool, pool_note=note, progress=progress)
    fprs = sorted({float(f) for f in fprs}, reverse=True)
    result = audit_membership(model, m, n, list(attacks), refs, fprs=fprs)
    top = strongest(result["attacks"])
    return {
        "members": str(getattr(members, "spec", members)),
        "non_members": str(getattr(non_members, "spec", non_members)),
        **result,
        "strongest": top["attack"],
        "leak_detected": any(a["leak_detected"] for a in result["attacks"]),
        "time_s": time.perf_counter() - t0,
    }


def extraction_audit(
    model: ModelUnderTest,
    data: str | Dataset,
    budgets: Sequence[int],
    *,
    eval_data: str | Dataset | None = None,
    outputs: str = "labels",
    epochs: int = 30,
    lr: float = 1e-3,
    architecture: str | None = None,
    watermark_key: str | None = None,
    watermark_alpha: float | None = None,
    seed: int = 0,
    clip_budgets: bool = False,
    field_prefix: str = "",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Steal ``model`` from the pool ``data``; measured on ``eval_data`` (default: a held-out 20% of
    ``data``). ``clip_budgets``: drop budgets larger than the pool (listed under
    ``skipped_queries``) instead of refusing them."""
    from robustness.privacy.extraction import ThiefRecipe, extraction_curve, split_pool

    pool = _load(data, model, None, seed, f"{field_prefix}data")
    if eval_data is None:
        pool, held_out = split_pool(pool, seed=seed)
        eval_note = f"20% of {pool.spec} held out of the pool (seeded)"
    else:
        held_out = _load(eval_data, model, None, seed, f"{field_prefix}eval_data")
        eval_note = str(getattr(eval_data, "spec", eval_data))
    skipped = [int(b) for b in budgets if int(b) > len(pool)] if clip_budgets else []
    budgets = [int(b) for b in budgets if int(b) not in skipped]
    if not budgets:
        raise ConfigError(
            f"every query budget exceeds the thief's pool of {len(pool)} inputs",
            field=f"{field_prefix}queries",
            fix="Give smaller budgets or a larger pool (extraction.data).",
        )
    recipe = ThiefRecipe(architecture=architecture, epochs=epochs, lr=lr, seed=seed)
    result = extraction_curve(
        model,
        pool,
        held_out,
        budgets,
        outputs=outputs,
        recipe=recipe,
        watermark_key=watermark_key,
        watermark_alpha=watermark_alpha,
        progress=progress,
    )
    return {
        "data": str(getattr(data, "spec", data)),
        "eval": eval_note,
        **result,
        **({"skipped_queries": skipped} if skipped else {}),
    }
