"""Embedding a trigger-set (backdoor) watermark, after Adi et al. 2018.

A secret key regenerates K abstract trigger images with random labels
(:class:`defenses.watermark.key.WatermarkKey`). The model is fine-tuned through the defenses
trainer (method ``standard``) on its clean training data mixed with the trigger set, the
triggers oversampled so that about ``trigger_share`` of every batch are triggers, until it
labels the triggers as assigned. The marked model is written as a model folder whose card
(``model.json``) carries a ``watermark`` entry with the key's SHA-256 commitment; the key
itself stays with the owner.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from defenses.config import TrainConfig
from defenses.trainer import Trainer
from defenses.watermark.key import DEFAULT_N_TRIGGERS, KEY_FORMAT_VERSION, SCHEME, WatermarkKey
from defenses.watermark.ownership import DEFAULT_ALPHA, verify
from robustness.core.data import Dataset
from robustness.core.errors import ConfigError
from robustness.core.io import atomic_write_json
from robustness.core.model import MODEL_CARD, ModelUnderTest

# Fine-tuning defaults measured on the digits demo (see bench/watermark.py): all triggers
# learned in 3-5 epochs; a cosine schedule over 8 lets clean accuracy recover afterwards.
DEFAULT_EPOCHS = 8
DEFAULT_LR = 2e-3
DEFAULT_TRIGGER_SHARE = 0.35
DEFAULT_MIN_TRIGGER_ACCURACY = 1.0
MAX_CLEAN_ACCURACY_COST = 0.01


@dataclass
class EmbedResult:
    """The marked model, its key, and what embedding achieved."""

    model: ModelUnderTest
    key: WatermarkKey
    report: dict[str, Any]
    output: Path | None = None
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """All triggers learned (to ``min_trigger_accuracy``), verified, and within the accuracy budget."""
        return bool(self.report["ok"])


def trigger_training_set(
    clean: Dataset, key: WatermarkKey, trigger_share: float = DEFAULT_TRIGGER_SHARE
) -> Dataset:
    """Clean data plus the trigger set repeated so that triggers are ~``trigger_share`` of the samples.

    Shuffled batches then hold triggers in proportion, which is Adi et al.'s mixing of trigger
    batches into clean batches expressed as a data set, so any trainer method can use it.
    """
    if not 0 < trigger_share < 1:
        raise ConfigError(
            f"trigger_share must be in (0, 1), got {trigger_share}",
            field="trigger_share",
            fix="Use e.g. 0.35 (about a third of each batch are triggers).",
        )
    xt, yt = key.trigger_tensors()
    repeats = max(1, math.ceil(trigger_share * len(clean) / ((1 - trigger_share) * key.n_triggers)))
    x = torch.cat([clean.x.cpu(), xt.repeat(repeats, *([1] * (xt.dim() - 1)))])
    y = torch.cat([clean.y.cpu(), yt.repeat(repeats)])
    ids = list(clean.ids) + [f"trigger-{r}-{i}" for r in range(repeats) for i in range(key.n_triggers)]
    return Dataset(
        x,
        y,
        ids,
        spec=f"{clean.spec}+watermark-triggers(x{repeats})",
        num_classes=clean.num_classes,
        meta={"trigger_repeats": repeats, "n_clean": len(clean)},
    )


def _accuracy(model: ModelUnderTest, data: Dataset) -> float:
    return float((model.predict(data.x, 512).cpu() == data.y).float().mean())


def _trigger_accuracy(model: ModelUnderTest, key: WatermarkKey) -> float:
    xt, yt = key.trigger_tensors()
    return float((model.predict(xt, 512).cpu() == yt).float().mean())


def embed_watermark(
    model: ModelUnderTest,
    data: Dataset,
    *,
    key: WatermarkKey | None = None,
    n_triggers: int = DEFAULT_N_TRIGGERS,
    seed: int | None = None,
    epochs: int = DEFAULT_EPOCHS,
    lr: float = DEFAULT_LR,
    trigger_share: float = DEFAULT_TRIGGER_SHARE,
    batch_size: int = 64,
    val_data: Dataset | None = None,
    output: str | Path | None = None,
    resume: bool = False,
    min_trigger_accuracy: float = DEFAULT_MIN_TRIGGER_ACCURACY,
    alpha: float = DEFAULT_ALPHA,
    train_seed: int = 0,
    verbose: bool = False,
) -> EmbedResult:
    """Fine-tune a copy of ``model`` on ``data`` mixed with a new (or given) key's trigger set.

    ``seed`` is the secret key seed (``None``: drawn from the OS). ``val_data`` measures the
    clean-accuracy cost before and after (default: ``data`` itself, which flatters both).
    With ``output``, the trainer checkpoints there and writes the model folder, and the card
    gets a ``watermark`` entry. The input model is not modified.
    """
    x0 = data.x[:1]
    model.validate(x0)
    if key is None:
        key = WatermarkKey.create(
            input_shape=tuple(data.x.shape[1:]),
            bounds=model.bounds,
            num_classes=int(model.num_classes),
            n_triggers=n_triggers,
            seed=seed,
            created={"model": model.spec, "model_sha256": model.sha256(), "data": data.spec},
        )
    elif tuple(data.x.shape[1:]) != key.input_shape:
        raise ConfigError(
            f"the key was made for inputs of shape {list(key.input_shape)}, the data has {list(data.x.shape[1:])}",
            field="key",
            fix="Create a new key for this data (leave key out).",
        )
    val = val_data if val_data is not None else data
    before = {"clean_accuracy": _accuracy(model, val), "trigger_accuracy": _trigger_accuracy(model, key)}

    train_set = trigger_training_set(data, key, trigger_share)
    config = TrainConfig(
        method="standard",
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer="adam",
        schedule="cosine",
        val_fraction=0.0,
        # The best-validation epoch could be one before the triggers are learned: keep the last.
        select_best=False,
        seed=train_seed,
    )
    trainer = Trainer(
        copy.deepcopy(model.module),
        config,
        architecture=architecture_of(model),
        bounds=tuple(model.bounds),
        mean=model.mean,
        std=model.std,
        num_classes=model.num_classes,
        device=model.device,
        verbose=verbose,
    )
    result = trainer.fit(train_set, val=val_data, output=output, resume=resume)
    marked = result.model
    marked.spec = str(output) if output is not None else f"{model.spec} [watermarked]"
    if architecture_of(model) is not None:
        marked.metadata["architecture"] = architecture_of(model)
    after = {"clean_accuracy": _accuracy(marked, val), "trigger_accuracy": _trigger_accuracy(marked, key)}
    check = verify(marked, key, alpha=alpha)
    cost = before["clean_accuracy"] - after["clean_accuracy"]
    report = {
        "scheme": SCHEME,
        "key_sha256": key.commitment(),
        "key_format_version": KEY_FORMAT_VERSION,
        "n_triggers": key.n_triggers,
        "input_shape": list(key.input_shape),
        "trigger_share": trigger_share,
        "trigger_repeats": train_set.meta["trigger_repeats"],
        "epochs": epochs,
        "lr": lr,
        "accuracy_data": val.spec,
        "before": before,
        "after": after,
        "clean_accuracy_cost": cost,
        "max_clean_accuracy_cost": MAX_CLEAN_ACCURACY_COST,
        "verification": {k: check[k] for k in ("k", "K", "p0", "p0_method", "p_value", "alpha", "verified")},
        "ok": bool(
            after["trigger_accuracy"] >= min_trigger_accuracy
            and check["verified"]
            and cost <= MAX_CLEAN_ACCURACY_COST
        ),
    }
    if output is not None:
        add_card_entry(Path(output), report)
    return EmbedResult(marked, key, report, Path(output) if output is not None else None, result.log)


def add_card_entry(folder: Path, report: dict[str, Any]) -> None:
    """Add the ``watermark`` entry (the key's commitment, never the key) to the folder's model card."""
    path = folder / MODEL_CARD
    card = json.loads(path.read_text())
    card["watermark"] = {
        "scheme": report["scheme"],
        "key_sha256": report["key_sha256"],
        "commitment": "sha256 of the key file's canonical JSON (sorted keys, no whitespace)",
        "key_format_version": report["key_format_version"],
        "n_triggers": report["n_triggers"],
        "input_shape": report["input_shape"],
        "trigger_accuracy": report["after"]["trigger_accuracy"],
        "clean_accuracy_before": report["before"]["clean_accuracy"],
        "clean_accuracy_after": report["after"]["clean_accuracy"],
        "accuracy_data": report["accuracy_data"],
    }
    atomic_write_json(path, card)


def architecture_of(model: ModelUnderTest) -> dict[str, Any] | None:
    """The rebuildable architecture of a model (zoo, model folder or factory spec), if known."""
    meta = model.metadata or {}
    if isinstance(meta.get("architecture"), dict):
        return dict(meta["architecture"])
    card = meta.get("card")
    if isinstance(card, dict) and isinstance(card.get("architecture"), dict):
        return dict(card["architecture"])
    spec = str(model.spec)
    if ":" in spec and not spec.startswith(("zoo:", "<")) and not Path(spec).exists():
        return {"factory": spec, "kwargs": {}}
    return None
