"""The audit's watermark section: its config block, the survival table, and its results.

``watermark:`` in an audit config (:class:`WatermarkConfig`) names a key; the audit verifies the
model against it (:func:`defenses.watermark.verify`) and derives each removal surrogate
(:mod:`robustness.watermark.removal`) to verify it again (:func:`survival_table`).
:func:`watermark_section` is the ``watermark`` key of ``results.json``. The audit runs it as a
section plug-in, :mod:`robustness.audit.sections.watermark`, which also adds its gate.

Reading the config block imports no torch: the defenses are imported when the section runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from robustness.core.errors import ConfigError
from robustness.watermark.removal import (
    DEFAULT_SURROGATES,
    REMOVAL_MAX_ACCURACY_DROP,
    make_surrogate,
    parse_surrogate,
)

if TYPE_CHECKING:
    import torch

    from defenses.watermark import WatermarkKey
    from robustness.core.data import Dataset
    from robustness.core.model import ModelUnderTest

# The ownership test's default level, defenses.watermark.DEFAULT_ALPHA (a test keeps the two
# equal); written out so that reading a config does not import the defenses (and torch).
CONFIG_DEFAULT_ALPHA = 1e-6


def _accuracy_and_agreement(
    surrogate: ModelUnderTest, data: Dataset, reference_pred: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    pred = surrogate.predict(data.x, batch_size).cpu()
    return float((pred == data.y).float().mean()), float((pred == reference_pred).float().mean())


def split_attack_data(data: Dataset, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Half of ``data`` for the attacker's training, the other half to evaluate on (seeded)."""
    import torch

    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    half = len(data) // 2
    return data.subset(perm[:half].sort().values), data.subset(perm[half:].sort().values)


def survival_table(
    model: ModelUnderTest,
    key: WatermarkKey | str | Path,
    data: Dataset,
    surrogates: Sequence[str] = DEFAULT_SURROGATES,
    *,
    attack_data: Dataset | None = None,
    alpha: float = CONFIG_DEFAULT_ALPHA,
    reference_p0: float | None = None,
    seed: int = 0,
    batch_size: int = 512,
) -> list[dict[str, Any]]:
    """Derive each surrogate of the marked ``model`` and verify the watermark on it.

    ``data`` is the clean evaluation data; the attacker trains on ``attack_data`` (fine-tuning,
    extraction queries). Rows: ``name``, ``clean_accuracy``, ``accuracy_drop`` (original minus
    surrogate, on ``data``), ``agreement`` (share of ``data`` where the surrogate predicts as the
    original), ``k``, ``K``, ``p0``, ``p_value``, ``verified``, ``survived`` (= verified),
    ``removed`` (not verified and at most 5 points of accuracy lost, the Lukas et al. criterion),
    ``params`` and ``time_s``.
    """
    import time

    from defenses.watermark import check_alpha, check_compatible, decide, load_key, trigger_predictions

    key = load_key(key)
    alpha = check_alpha(alpha)
    specs = [parse_surrogate(s) for s in surrogates]
    check_compatible(key, model, tuple(data.x.shape[1:]))
    attack_data = data if attack_data is None else attack_data
    original_pred = model.predict(data.x, batch_size).cpu()
    original_acc = float((original_pred == data.y).float().mean())
    rows = []
    for i, spec in enumerate(specs):
        t0 = time.perf_counter()
        surrogate, params = make_surrogate(model, spec, attack_data, seed=seed + i)
        acc, agreement = _accuracy_and_agreement(surrogate, data, original_pred, batch_size)
        outcome = decide(trigger_predictions(surrogate, key, batch_size), key, alpha, reference_p0)
        drop = original_acc - acc
        rows.append(
            {
                "name": spec.name,
                "clean_accuracy": acc,
                "accuracy_drop": drop,
                "agreement": agreement,
                "k": outcome["k"],
                "K": outcome["K"],
                "p0": outcome["p0"],
                "p_value": outcome["p_value"],
                "verified": outcome["verified"],
                "survived": outcome["verified"],
                "removed": (not outcome["verified"]) and drop <= REMOVAL_MAX_ACCURACY_DROP,
                "params": params,
                "time_s": time.perf_counter() - t0,
            }
        )
    return rows


def watermark_section(
    model: ModelUnderTest,
    key_path: WatermarkKey | str | Path,
    data: Dataset,
    alpha: float = CONFIG_DEFAULT_ALPHA,
    surrogates: Sequence[str] = DEFAULT_SURROGATES,
    reference_models: Sequence[Any] = (),
    *,
    attack_data: Dataset | None = None,
    seed: int = 0,
    batch_size: int = 512,
) -> dict[str, Any]:
    """The ``watermark`` key of ``results.json``: verification of ``model`` plus the survival table.

    Without ``attack_data`` the audit data is split in two (seeded): the attacker trains on one
    half, and clean accuracy and agreement are measured on the other, so no surrogate is scored
    on the data it was trained on.
    """
    from defenses.watermark import SCHEME, check_compatible, load_key, verify

    key = load_key(key_path)
    check_compatible(key, model, tuple(data.x.shape[1:]))
    v = verify(model, key, alpha=alpha, reference_models=reference_models, batch_size=batch_size)
    if attack_data is None and surrogates:
        attack_data, eval_data = split_attack_data(data, seed)
        data_note = f"audit data split in two (seed {seed}): attacker half n={len(attack_data)}"
    else:
        eval_data = data
        data_note = "separate attacker data" if attack_data is not None else None
    acc = float((model.predict(eval_data.x, batch_size).cpu() == eval_data.y).float().mean())
    rows = survival_table(
        model,
        key,
        eval_data,
        surrogates,
        attack_data=attack_data,
        alpha=alpha,
        reference_p0=v.get("reference_p0"),
        seed=seed,
        batch_size=batch_size,
    )
    return {
        "scheme": SCHEME,
        "key_sha256": v["key_sha256"],
        "k": v["k"],
        "K": v["K"],
        "p0": v["p0"],
        "p0_method": v["p0_method"],
        "p_value": v["p_value"],
        "match_rate_ci": v["match_rate_ci"],
        "alpha": v["alpha"],
        "verified": v["verified"],
        "false_positive_rate": v["false_positive_rate"],
        "references": v.get("references", []),
        "clean_accuracy": acc,
        "eval_n": len(eval_data),
        "attack_data": data_note,
        "removal_max_accuracy_drop": REMOVAL_MAX_ACCURACY_DROP,
        "surrogates": rows,
    }


# ---------------------------------------------------------------------------------------
# The audit config block


class WatermarkConfig(BaseModel):
    """The ``watermark:`` section of an audit config."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="path to the key file written by 'robustness watermark embed'")
    alpha: float = Field(
        CONFIG_DEFAULT_ALPHA, gt=0, lt=1, description="significance level of the ownership test"
    )
    surrogates: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SURROGATES),
        description="removal attacks to test survival against (see parse_surrogate); [] to skip",
    )
    reference_models: list[str] = Field(
        default_factory=list, description="specs of independently trained, unmarked models (null calibration)"
    )
    attack_data: str | None = Field(
        None, description="data spec the attacker trains on; default: half of the audit data"
    )
    seed: int = Field(0, ge=0, description="seed of the surrogates' training and of the data split")

    @field_validator("surrogates")
    @classmethod
    def _known_surrogates(cls, v: list[str]) -> list[str]:
        for s in v:
            try:
                parse_surrogate(s)
            except ConfigError as exc:
                raise ValueError(exc.message + ". " + (exc.fix or "")) from None
        return v
