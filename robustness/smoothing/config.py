"""The ``certify:`` block of an audit config: randomized smoothing of the audited model.

Plain pydantic, no torch: reading a config imports it. The defaults are the paper's CERTIFY
(Cohen et al. 2019: n0 = 100, n = 100,000, alpha = 0.001); sigma has no default, since it must
be the noise the model was trained with.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from robustness.config import Seed


class CertifyConfig(BaseModel):
    """The ``certify:`` section of an audit config (an l2 audit)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    sigma: Annotated[float, Field(gt=0)] = Field(
        description="noise level of the smoothed classifier, in input units (the model's training noise)"
    )
    n0: Annotated[int, Field(ge=1)] = Field(100, description="draws that pick the class")
    n: Annotated[int, Field(ge=1)] = Field(100_000, description="draws that bound its probability")
    alpha: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.001, description="failure probability per certificate"
    )
    n_examples: Annotated[int, Field(ge=1)] | None = Field(
        None, description="certify only the first N samples of the audit's data (default: all)"
    )
    batch_size: Annotated[int, Field(ge=1)] | None = Field(
        None, description="forward passes per round (default: 10000 on a GPU, 256 on a CPU)"
    )
    seed: Seed | None = Field(
        None, description="seed of the noise and the attack (default: the audit's seed)"
    )
    attack: str = Field("pgd", description="the attack on the smoothed classifier, run inside eot")
    attack_params: dict[str, Any] = Field(
        default_factory=lambda: {"steps": 20, "loss": "ce"}, description="parameters of that attack"
    )
    noise_samples: Annotated[int, Field(ge=1)] = Field(
        8, description="noise draws per forward pass of the attack"
    )
    eot_samples: Annotated[int, Field(ge=1)] = Field(4, description="forward passes averaged per attack step")
    restarts: Annotated[int, Field(ge=1)] = Field(1, description="attack restarts, each judged on its own")
    votes: Annotated[int, Field(ge=1)] = Field(
        1000, description="draws of the vote that judges an adversarial example"
    )
    min_certified_accuracy: dict[float, Annotated[float, Field(ge=0, le=1)]] | None = Field(
        None, description="eps -> least certified accuracy at that radius (a gate; eps from threat.eps)"
    )
