"""Removal attacks on a watermark: the surrogates of the survival test (Lukas et al. 2022).

Each surrogate is derived from the marked model by an attacker who wants to keep its function
and lose the mark: fine-tuning all layers on the attacker's own clean data, global magnitude
pruning of the conv and linear weights, dynamic int8 quantization, and extraction (a fresh copy
of the architecture trained on the victim's labels for its queries, through ART's CopycatCNN or
KnockoffNets). Every surrogate that trains does so through the project's one trainer
(:class:`defenses.trainer.Trainer`, method ``standard``): :func:`train_on_labels`.

A removal only counts when the surrogate keeps its usefulness: at most
:data:`REMOVAL_MAX_ACCURACY_DROP` of clean accuracy lost. Torch, the trainer and ART are imported
only when a surrogate is made, so that reading an audit config stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from robustness.core.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import torch

    from robustness.core.data import Dataset
    from robustness.core.model import ModelUnderTest

# Lukas et al. 2022 count a removal only if the surrogate loses at most 5 points of accuracy.
REMOVAL_MAX_ACCURACY_DROP = 0.05
DEFAULT_SURROGATES = ("finetune", "prune-30", "prune-50", "prune-70", "quantize-int8", "extract-copycat")
# The attacker's training: plain cross-entropy, Adam at a constant rate, batches of 64.
ATTACKER_BATCH_SIZE = 64
EXTRACTION_LR = 1e-3


@dataclass(frozen=True)
class SurrogateSpec:
    """A removal attack: ``kind`` plus parameters, written ``kind[:key=value,...]``."""

    kind: str
    params: dict[str, float | int]
    name: str


_SURROGATE_DEFAULTS: dict[str, dict[str, float | int]] = {
    # Fine-tune all layers (Lukas et al.'s FTAL) on half of the attacker's clean data.
    "finetune": {"share": 0.5, "epochs": 10, "lr": 1e-3},
    "prune": {"amount": 0.5},
    "quantize-int8": {},
    # Extraction: a fresh copy of the architecture trained on the victim's labels for `budget` queries.
    "extract-copycat": {"budget": 1000, "epochs": 30},
    "extract-knockoff": {"budget": 1000, "epochs": 30},
}


def parse_surrogate(spec: str) -> SurrogateSpec:
    """``finetune``, ``finetune:share=0.2,epochs=5``, ``prune-30``, ``quantize-int8``,
    ``extract-copycat``, ``extract-copycat:budget=500``, ``extract-knockoff``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"bad surrogate {spec!r}", field="watermark.surrogates", fix=_SURROGATE_FIX)
    head, _, tail = spec.strip().partition(":")
    params: dict[str, float | int] = {}
    kind = head
    if head.startswith("prune-"):
        kind = "prune"
        try:
            params["amount"] = int(head[6:]) / 100
        except ValueError:
            raise ConfigError(
                f"bad pruning amount in {spec!r}", field="watermark.surrogates", fix=_SURROGATE_FIX
            ) from None
    if kind not in _SURROGATE_DEFAULTS:
        raise ConfigError(f"unknown surrogate {head!r}", field="watermark.surrogates", fix=_SURROGATE_FIX)
    merged: dict[str, float | int] = {**_SURROGATE_DEFAULTS[kind], **params}
    for item in filter(None, tail.split(",")):
        name, eq, value = item.partition("=")
        if not eq or name.strip() not in _SURROGATE_DEFAULTS[kind]:
            raise ConfigError(
                f"unknown parameter {name.strip()!r} for surrogate {kind!r}",
                field="watermark.surrogates",
                fix=f"{kind} takes {sorted(_SURROGATE_DEFAULTS[kind]) or 'no parameters'}.",
            )
        default = _SURROGATE_DEFAULTS[kind][name.strip()]
        try:
            merged[name.strip()] = type(default)(float(value)) if isinstance(default, int) else float(value)
        except ValueError:
            raise ConfigError(
                f"{name.strip()}={value!r} is not a number", field="watermark.surrogates", fix=_SURROGATE_FIX
            ) from None
    amount = merged.get("amount")
    if kind == "prune" and not 0 < float(amount) < 1:  # type: ignore[arg-type]
        raise ConfigError(f"pruning amount must be in (0, 1) in {spec!r}", field="watermark.surrogates")
    if kind == "finetune" and not 0 < float(merged["share"]) <= 1:
        raise ConfigError(f"share must be in (0, 1] in {spec!r}", field="watermark.surrogates")
    for positive in ("epochs", "budget", "lr"):
        if positive in merged and float(merged[positive]) <= 0:
            raise ConfigError(f"{positive} must be > 0 in {spec!r}", field="watermark.surrogates")
    # The name shows the parameters that differ from the defaults, so two variants stay apart in a table.
    name = f"prune-{round(float(amount) * 100)}" if kind == "prune" else kind
    changed = [
        f"{k}={merged[k]:g}" for k, v in _SURROGATE_DEFAULTS[kind].items() if merged[k] != v and k != "amount"
    ]
    if changed:
        name += ":" + ",".join(changed)
    return SurrogateSpec(kind, merged, name)


_SURROGATE_FIX = (
    "Use finetune[:share=S,epochs=E,lr=L], prune-NN (percent of conv+linear weights), quantize-int8, "
    "extract-copycat[:budget=Q,epochs=E] or extract-knockoff[:budget=Q,epochs=E]."
)


def _copy_net(model: ModelUnderTest) -> torch.nn.Module:
    import copy

    # The normalised net: surrogates then take inputs in input space, like the original.
    return copy.deepcopy(model.net)


def _wrap(net: torch.nn.Module, model: ModelUnderTest, name: str, device: Any = None) -> ModelUnderTest:
    from robustness.core.model import ModelUnderTest

    return ModelUnderTest(
        net.eval(),
        spec=f"{model.spec} [{name}]",
        bounds=model.bounds,
        device=device if device is not None else model.device,
        num_classes=model.num_classes,
    )


def _fresh_architecture(model: ModelUnderTest) -> torch.nn.Module:
    """An untrained module of the same architecture (normalisation kept), for a thief."""
    import copy

    from defenses.watermark import architecture_of
    from robustness.core.model import Normalized, build_architecture

    arch = architecture_of(model)
    if arch is not None:
        net = build_architecture(arch)
        if model.mean is not None:
            net = Normalized(net, model.mean, model.std)
        return net
    net = copy.deepcopy(model.net)
    for m in net.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    for prm in net.parameters():  # the copy inherits frozen flags from an audit in progress
        prm.requires_grad_(True)
    return net


def train_on_labels(
    net: torch.nn.Module,
    data: Dataset,
    *,
    epochs: int,
    lr: float,
    seed: int,
    model: ModelUnderTest,
    batch_size: int = ATTACKER_BATCH_SIZE,
) -> None:
    """The attacker's training: cross-entropy on ``data`` (Adam, constant ``lr``), in place.

    ``net`` takes inputs in the input space of the marked ``model`` (its normalisation inside)
    and trains on ``model``'s device through the project's trainer, method ``standard``: no
    validation split, the last epoch kept. It runs in this process alone, even within a
    ``torchrun`` audit (the watermark section runs on rank 0 only).
    """
    from defenses.config import TrainConfig
    from defenses.trainer import Trainer
    from robustness.core.distributed import SINGLE

    config = TrainConfig(
        method="standard",
        epochs=int(epochs),
        batch_size=int(batch_size),
        lr=float(lr),
        optimizer="adam",
        schedule="constant",
        val_fraction=0.0,
        select_best=False,
        seed=int(seed),
    )
    trainer = Trainer(
        net,
        config,
        bounds=tuple(model.bounds),
        num_classes=model.num_classes,
        device=model.device,
        verbose=False,
        dist=SINGLE,
    )
    trainer.fit(data)
    net.eval()


def make_surrogate(
    model: ModelUnderTest, spec: SurrogateSpec, attack_data: Dataset, *, seed: int = 0
) -> tuple[ModelUnderTest, dict[str, Any]]:
    """Derive one surrogate of ``model``; returns it and the stated attack parameters."""
    import torch

    p = spec.params
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec.kind == "finetune":
            n = max(1, round(float(p["share"]) * len(attack_data)))
            idx = torch.randperm(len(attack_data), generator=torch.Generator().manual_seed(seed))[:n]
            net = _copy_net(model)
            for prm in net.parameters():
                prm.requires_grad_(True)
            train_on_labels(
                net,
                attack_data.subset(idx),
                epochs=int(p["epochs"]),
                lr=float(p["lr"]),
                seed=seed,
                model=model,
            )
            details = {**p, "n_samples": n, "layers": "all", "optimizer": "adam"}
            return _wrap(net, model, spec.name), details
        if spec.kind == "prune":
            from torch.nn.utils import prune

            net = _copy_net(model)
            targets = [
                (m, "weight")
                for m in net.modules()
                if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear))
            ]
            if not targets:
                raise ModelError(
                    "the model has no Conv or Linear layers to prune",
                    field="watermark.surrogates",
                    fix="Drop the prune-* surrogates for this model.",
                )
            prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=float(p["amount"]))
            for m, name in targets:
                prune.remove(m, name)
            return _wrap(net, model, spec.name), {
                "amount": float(p["amount"]),
                "scope": "global, conv+linear",
            }
        if spec.kind == "quantize-int8":
            import warnings

            net = _copy_net(model).cpu().eval()
            with warnings.catch_warnings():  # torch.ao.quantization's deprecation notice; still the eager API
                warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
                from torch.ao.quantization import quantize_dynamic

                qnet = quantize_dynamic(net, {torch.nn.Linear}, dtype=torch.qint8)
            return _wrap(qnet, model, spec.name, device="cpu"), {"layers": "Linear", "dtype": "qint8"}
        if spec.kind in ("extract-copycat", "extract-knockoff"):
            return _extract(model, spec, attack_data, seed=seed)
    raise ConfigError(f"unknown surrogate {spec.kind!r}", field="watermark.surrogates", fix=_SURROGATE_FIX)


def _extract(
    model: ModelUnderTest, spec: SurrogateSpec, attack_data: Dataset, *, seed: int
) -> tuple[ModelUnderTest, dict[str, Any]]:
    """Model extraction through ART: the thief sees only the victim's labels on its queries.

    ART chooses the queries and labels them with the victim; the thief it then fits is trained
    by :func:`train_on_labels` (see :func:`_thief_classifier`).
    """
    import torch
    from art.estimators.classification import PyTorchClassifier

    budget = min(int(spec.params["budget"]), len(attack_data))
    epochs = int(spec.params["epochs"])
    shape = tuple(attack_data.x.shape[1:])
    device_type = "gpu" if model.device.type == "cuda" else "cpu"
    x = attack_data.x.cpu().numpy()
    state = np.random.get_state()  # ART samples queries with NumPy's global generator
    np.random.seed(seed % 2**32)
    try:
        with model.evaluating():  # ART's predict() calls .eval(); this restores the victim's mode after
            victim = PyTorchClassifier(
                model=model.net,
                loss=torch.nn.CrossEntropyLoss(),
                input_shape=shape,
                nb_classes=int(model.num_classes),
                clip_values=tuple(model.bounds),
                device_type=device_type,
            )
            thief = _thief_classifier(
                _fresh_architecture(model), model, shape=shape, device_type=device_type, seed=seed
            )
            if spec.kind == "extract-copycat":
                from art.attacks.extraction import CopycatCNN

                attack = CopycatCNN(
                    victim,
                    batch_size_fit=ATTACKER_BATCH_SIZE,
                    batch_size_query=256,
                    nb_epochs=epochs,
                    nb_stolen=budget,
                )
                attack.extract(x, thieved_classifier=thief)
            else:
                from art.attacks.extraction import KnockoffNets

                attack = KnockoffNets(
                    victim,
                    batch_size_fit=ATTACKER_BATCH_SIZE,
                    batch_size_query=256,
                    nb_epochs=epochs,
                    nb_stolen=budget,
                    sampling_strategy="random",
                )
                attack.extract(x, thieved_classifier=thief)
    finally:
        np.random.set_state(state)
    thief_net = thief.model.eval()
    for prm in thief_net.parameters():
        prm.requires_grad_(False)
    details = {
        "queries": budget,
        "epochs": epochs,
        "thief": "fresh instance of the victim's architecture",
        "labels": "victim's top-1 labels",
        "tool": f"ART {'CopycatCNN' if spec.kind == 'extract-copycat' else 'KnockoffNets (random)'}",
    }
    return _wrap(thief_net, model, spec.name), details


def _thief_classifier(
    net: torch.nn.Module, model: ModelUnderTest, *, shape: tuple[int, ...], device_type: str, seed: int
) -> Any:
    """ART's view of the thief ``net``, whose ``fit`` trains through :func:`train_on_labels`.

    ART's extraction attacks call ``fit(x, y, batch_size, nb_epochs)`` with the victim's labels
    one-hot (top-1 labels: ``use_probability`` stays off), so ART decides what is queried and
    the project's trainer does the training.
    """
    import torch
    from art.estimators.classification import PyTorchClassifier

    from robustness.core.data import Dataset

    class TrainerFittedClassifier(PyTorchClassifier):
        def fit(
            self,
            x: np.ndarray,
            y: np.ndarray,
            batch_size: int = ATTACKER_BATCH_SIZE,
            nb_epochs: int = 10,
            **kwargs: Any,
        ) -> None:
            labels = np.argmax(y, axis=1) if y.ndim == 2 else y
            queries = Dataset(
                torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                torch.from_numpy(np.asarray(labels, dtype=np.int64)),
                [f"query-{i}" for i in range(len(labels))],
                spec="extraction queries labelled by the victim",
                num_classes=int(model.num_classes),
            )
            train_on_labels(
                self.model,
                queries,
                epochs=int(nb_epochs),
                lr=EXTRACTION_LR,
                seed=seed,
                model=model,
                batch_size=int(batch_size),
            )

    return TrainerFittedClassifier(
        model=net,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=shape,
        nb_classes=int(model.num_classes),
        clip_values=tuple(model.bounds),
        device_type=device_type,
    )
