"""The ``privacy:`` and ``extraction:`` blocks of an audit config (plain pydantic, no torch).

Reading an audit config imports this module; the attacks and the training are imported only
when a section runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MEMBERSHIP_ATTACK_NAMES = ("loss", "rmia", "lira")


class ReferenceConfig(BaseModel):
    """How the audit trains reference models when none are given (``privacy.reference``)."""

    model_config = ConfigDict(extra="forbid")

    data: str | None = Field(
        None,
        description="pool to train them on (audited samples are removed from it); default: half of the "
        "members and half of the non-members are held out of the audit as the pool",
    )
    n_models: int = Field(4, ge=1, le=64, description="how many reference models")
    architecture: str | None = Field(
        None, description="zoo:NAME or package.module:callable; default: the audited model's own"
    )
    method: str = Field("standard", description="training method (as robustness harden --method)")
    epochs: int = Field(20, ge=1, description="epochs, like the audited model's training")
    lr: float = Field(2e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    share: float = Field(0.5, gt=0, le=1, description="part of the pool each reference model trains on")
    params: dict[str, float | int | bool | str] = Field(
        default_factory=dict, description="the method's own options, e.g. {target_epsilon: 3} for dp-sgd"
    )


class PrivacyConfig(BaseModel):
    """The ``privacy:`` section: membership inference against the audited model."""

    model_config = ConfigDict(extra="forbid")

    members: str = Field(description="data spec of samples the model was trained on")
    non_members: str | None = Field(
        None, description="data spec of samples it never saw; default: the audit's data"
    )
    n_members: int | None = Field(None, ge=1, description="a seeded subset of the members")
    n_non_members: int | None = Field(None, ge=1, description="a seeded subset of the non-members")
    attacks: list[Literal["loss", "rmia", "lira"]] = Field(
        default_factory=lambda: ["loss", "rmia", "lira"],
        description="loss (Yeom et al.), rmia (offline RMIA), lira (offline LiRA, fixed variance)",
    )
    reference_models: list[str] = Field(
        default_factory=list, description="specs of models trained without the audited samples"
    )
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    max_tpr_at_fpr: dict[float, float] = Field(
        default_factory=dict,
        description="gate: FPR -> highest allowed TPR, judged on the upper end of its 95% interval "
        "(e.g. {0.001: 0.02})",
    )
    seed: int = Field(0, ge=0, description="seed of the subsets, the hold-out and the reference models")

    @field_validator("attacks")
    @classmethod
    def _some_attack(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one attack: loss, rmia or lira")
        return list(dict.fromkeys(v))

    @field_validator("max_tpr_at_fpr")
    @classmethod
    def _rates(cls, v: dict[float, float]) -> dict[float, float]:
        for fpr, tpr in v.items():
            if not 0 <= fpr < 1:
                raise ValueError(f"FPR {fpr:g} must be in [0, 1), e.g. 0.001")
            if not 0 <= tpr <= 1:
                raise ValueError(f"the TPR limit {tpr:g} at FPR {fpr:g} must be in [0, 1], e.g. 0.02")
        return v


class ExtractionConfig(BaseModel):
    """The ``extraction:`` section: a thief copies the model from its answers, per query budget."""

    model_config = ConfigDict(extra="forbid")

    data: str | None = Field(
        None,
        description="the thief's query pool; default: 80% of the audit's data (the rest measures the copy)",
    )
    eval_data: str | None = Field(
        None, description="where the copies are measured; default: the audit's data (or its other 20%)"
    )
    queries: list[int] = Field(
        default_factory=lambda: [100, 250, 500, 1000], description="query budgets (the curve's points)"
    )
    outputs: Literal["labels", "probabilities"] = Field(
        "labels", description="what the model returns to the thief"
    )
    epochs: int = Field(30, ge=1, description="the surrogate's training epochs")
    lr: float = Field(1e-3, gt=0)
    architecture: str | None = Field(
        None, description="the surrogate's architecture; default: the model's own"
    )
    watermark_key: str | None = Field(
        None, description="test each stolen copy for this watermark; default: the watermark section's key"
    )
    seed: int = Field(0, ge=0)

    @field_validator("queries")
    @classmethod
    def _budgets(cls, v: list[int]) -> list[int]:
        if not v or any(q < 1 for q in v):
            raise ValueError("give one or more positive query budgets, e.g. [200, 1000]")
        return sorted(set(v))
