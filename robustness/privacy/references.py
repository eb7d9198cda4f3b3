"""Reference models for the strong membership attacks: given as specs, or trained from a recipe.

RMIA and LiRA compare the audited model's output on a sample with what models *not* trained on
that sample output there. In the offline setting (no model is trained per target sample) those
reference models must never have seen an audited sample: either the user gives them
(``--reference-models SPEC ...``: independently trained models of the same task), or the audit
trains them with the project's trainer from a :class:`ReferenceRecipe` on a *pool* of data from
which every audited sample (member or non-member) has been removed, compared by content.

Each trained reference model sees a seeded random half of the pool (Carlini et al. 2022; ML
Privacy Meter), so the models differ and each pool sample is known to be in some of them and out
of the others: that knowledge lets RMIA tune its one constant on a reference model
(:func:`robustness.privacy.membership.tune_rmia_a`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from robustness.core.errors import ConfigError

if TYPE_CHECKING:
    from robustness.core.data import Dataset
    from robustness.core.model import ModelUnderTest


@dataclass(frozen=True)
class ReferenceRecipe:
    """How to train the reference models: like the audited model was trained, if known.

    ``architecture``: ``zoo:NAME`` or ``package.module:callable``; None: the audited model's own
    (from its model card or spec). ``share``: the part of the pool each model trains on.
    """

    n_models: int = 4
    architecture: str | None = None
    method: str = "standard"
    epochs: int = 20
    lr: float = 2e-3
    batch_size: int = 64
    optimizer: str = "adam"
    schedule: str = "cosine"
    share: float = 0.5
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    def check(self, field_prefix: str = "reference") -> None:
        if self.n_models < 1:
            raise ConfigError(
                f"{self.n_models} reference models asked for",
                field=f"{field_prefix}.n_models",
                fix="Train at least 1 (2 or more lets RMIA tune its constant; 4 is the default).",
            )
        if not 0 < self.share <= 1:
            raise ConfigError(
                f"share must be in (0, 1], got {self.share}",
                field=f"{field_prefix}.share",
                fix="Use 0.5: each reference model trains on half of the pool.",
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReferenceModels:
    """The reference models and what is known about them.

    ``pool`` and ``trained_on`` (bool ``[n_models, len(pool)]``) only for trained ones: which
    pool samples each model was trained on.
    """

    models: list[ModelUnderTest]
    info: dict[str, Any]
    pool: Dataset | None = None
    trained_on: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.models)


def load_references(
    specs: list[str], like: ModelUnderTest, *, field: str = "--reference-models"
) -> ReferenceModels:
    """Reference models from specs, on the audited model's device, checked to fit its outputs."""
    from robustness.core.errors import ModelError
    from robustness.core.model import load_model

    models = []
    for i, spec in enumerate(specs):
        ref = load_model(spec, bounds=like.bounds, device=like.device)
        if like.num_classes is not None and ref.num_classes not in (None, like.num_classes):
            raise ModelError(
                f"reference model {spec} has {ref.num_classes} classes, the audited model {like.num_classes}",
                field=f"{field}.{i}" if not field.startswith("--") else field,
                fix="Give reference models of the same task (same classes) as the audited model.",
            )
        models.append(ref)
    return ReferenceModels(models, {"source": "given", "n_models": len(models), "specs": list(specs)})


def row_digests(data: Dataset) -> list[bytes]:
    """One digest per sample of its input's exact bytes: how a sample is recognised across specs."""
    x = data.x.detach().cpu().contiguous().float()
    return [hashlib.blake2b(row.numpy().tobytes(), digest_size=16).digest() for row in x]


def exclude_samples(pool: Dataset, *audited: Dataset) -> Dataset:
    """``pool`` without any sample whose input equals an audited one."""
    seen = set()
    for d in audited:
        seen.update(row_digests(d))
    keep = [i for i, h in enumerate(row_digests(pool)) if h not in seen]
    return pool.subset(keep)


def _fresh_module(like: ModelUnderTest, architecture: str | None) -> torch.nn.Module:
    """An untrained module of the recipe's architecture (default: the audited model's)."""
    import copy

    from defenses.watermark import architecture_of
    from robustness.core.model import build_architecture

    arch: Any = architecture or architecture_of(like)
    if arch is not None:
        return build_architecture(arch)
    module = copy.deepcopy(like.module)
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    for p in module.parameters():  # the copy inherits frozen flags from an audit in progress
        p.requires_grad_(True)
    return module


def train_references(
    recipe: ReferenceRecipe,
    like: ModelUnderTest,
    pool: Dataset,
    *,
    pool_note: str,
    progress: Any = None,
) -> ReferenceModels:
    """Train ``recipe.n_models`` reference models on seeded halves of ``pool`` with the trainer.

    ``pool`` must hold no audited sample (see :func:`exclude_samples`); ``pool_note`` says where
    it came from, for the report.
    """
    import time

    from defenses.config import TrainConfig
    from defenses.trainer import Trainer
    from robustness.core.distributed import SINGLE

    recipe.check()
    n_train = max(1, round(recipe.share * len(pool)))
    if len(pool) < 2 or n_train < 2:
        raise ConfigError(
            f"the reference pool holds {len(pool)} samples once the audited ones are removed",
            field="reference.data",
            fix="Give reference data that is not audited (e.g. a held-out part of the population), or "
            "reference models trained without the audited samples.",
        )
    models, trained_on, t0 = (
        [],
        torch.zeros(recipe.n_models, len(pool), dtype=torch.bool),
        time.perf_counter(),
    )
    for i in range(recipe.n_models):
        seed = recipe.seed + i
        pick = torch.randperm(len(pool), generator=torch.Generator().manual_seed(10_007 + seed))[:n_train]
        trained_on[i, pick] = True
        config = TrainConfig(
            method=recipe.method,
            epochs=recipe.epochs,
            batch_size=recipe.batch_size,
            lr=recipe.lr,
            optimizer=recipe.optimizer,
            schedule=recipe.schedule,
            val_fraction=0.0,
            select_best=False,
            seed=seed,
            params=dict(recipe.params),
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the initial weights
            module = _fresh_module(like, recipe.architecture)
        if progress is not None:
            progress(f"training reference model {i + 1}/{recipe.n_models} on {n_train} pool samples")
        try:
            trainer = Trainer(
                module,
                config,
                bounds=tuple(like.bounds),
                mean=like.mean,
                std=like.std,
                num_classes=like.num_classes,
                device=like.device,
                verbose=False,
                dist=SINGLE,
            )
            models.append(trainer.fit(pool.subset(pick.sort().values)).model)
        except ConfigError as exc:  # the recipe's method or options, named as the reference recipe's
            raise ConfigError(
                f"training the reference models: {exc.message}",
                field=f"reference.{exc.field}" if exc.field else "reference",
                fix="Reference models are trained by the recipe's method (--reference-method, privacy.reference."
                "method) with its options (--reference-param KEY=VALUE, privacy.reference.params); methods that "
                "train against a threat model are not supported as reference recipes.",
            ) from None
    info = {
        "source": "trained",
        "n_models": recipe.n_models,
        "recipe": recipe.to_dict(),
        "pool": pool_note,
        "pool_size": len(pool),
        "train_size": n_train,
        "time_s": time.perf_counter() - t0,
    }
    return ReferenceModels(models, info, pool, trained_on)
