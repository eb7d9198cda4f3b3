"""Built-in models, trained on first use from data that ships with scikit-learn.

Nothing is downloaded: each zoo model is trained deterministically the first time it is
asked for, cached in the user cache folder (``ROBUSTNESS_CACHE`` overrides) with its
SHA-256 beside it, and re-verified before every use; a corrupt or tampered cache file is
rebuilt, never trusted.

The models are entries of :data:`ZOO` and the architectures that plug-ins add (no trained
weights) entries of :data:`ARCHITECTURES`, both registries of the one kind
(:class:`robustness.core.registry.Registry`): plug-ins found through the ``robustness.plugins``
entry points add theirs with :func:`register` and :func:`register_architecture`. The module
registers ``zoo:`` with the model loader (:class:`ZooScheme`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustness.core.errors import ModelError
from robustness.core.io import atomic_write_json, sha256_file
from robustness.core.model import MODEL_SCHEMES, call_module_factory
from robustness.core.registry import Registry

CACHE_VERSION = 1


class DigitsCNN(nn.Module):
    """A small CNN for 1x8x8 digits (about 151k parameters)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def digits_cnn() -> DigitsCNN:
    """Factory for the digits architecture (usable as 'robustness.zoo:digits_cnn')."""
    return DigitsCNN()


def train_digits_cnn(seed: int = 0, epochs: int = 20) -> nn.Module:
    """Train :class:`DigitsCNN` on the digits train split, deterministically on CPU.

    Standard training with the project's trainer (:mod:`defenses.trainer`): Adam 2e-3,
    cosine schedule, batch 64, all of the train split (no validation hold-out).
    """
    from defenses import TrainConfig

    config = TrainConfig(
        method="standard",
        epochs=epochs,
        batch_size=64,
        lr=2e-3,
        optimizer="adam",
        schedule="cosine",
        val_fraction=0.0,
        seed=seed,
    )
    return _train_on_digits(config, "zoo:digits-cnn")


def train_digits_cnn_pgdat(seed: int = 0, epochs: int = 30) -> nn.Module:
    """:class:`DigitsCNN` hardened with PGD adversarial training (Madry et al.) at linf eps 0.2.

    PGD with 10 steps of 0.05 (2.5 eps / steps) and a random start, Adam 2e-3 with a cosine
    schedule, batch 64; 10% of the train split held out to pick the epoch with the best
    PGD-10 robust accuracy. Deterministic on CPU.
    """
    from defenses import TrainConfig

    config = TrainConfig(
        method="pgd-at",
        eps=0.2,
        norm="linf",
        steps=10,
        epochs=epochs,
        batch_size=64,
        lr=2e-3,
        optimizer="adam",
        schedule="cosine",
        val_fraction=0.1,
        seed=seed,
    )
    return _train_on_digits(config, "zoo:digits-cnn-pgdat")


def _train_on_digits(config: Any, factory: str) -> nn.Module:
    from defenses import Trainer
    from robustness.core.data import load_data

    torch.manual_seed(config.seed)  # the initial weights
    module = DigitsCNN()
    trainer = Trainer(module, config, architecture={"factory": factory}, device="cpu", verbose=False)
    return trainer.fit(load_data("builtin:digits:train")).module.eval()


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    architecture: Callable[[], nn.Module]
    train: Callable[[], nn.Module]
    bounds: tuple[float, float] = (0.0, 1.0)
    num_classes: int = 10
    data: str = "builtin:digits"


ZOO: Registry[ZooEntry] = Registry(
    "zoo model", entry_points="robustness.plugins", error=ModelError, field="model"
)
# Architectures only (no trained weights), added by plug-ins with register_architecture.
ARCHITECTURES: Registry[Callable[..., nn.Module]] = Registry(
    "architecture", entry_points="robustness.plugins", error=ModelError, field="model"
)


def register(entry: ZooEntry) -> ZooEntry:
    """Add a trained model: ``zoo:NAME`` then loads it, and model folders may name its architecture."""
    return ZOO.add(entry.name, entry)


def register_architecture(name: str, factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Let model folders name ``zoo:NAME`` for ``factory`` without ``--trust-model``.

    For plug-ins: a folder's ``model.json`` comes from whoever sent the folder, so it may only name
    code the user already runs. Registering is the user's (or the plug-in's) act of trust in
    ``factory``; the folder then names the short name, and its ``kwargs`` are passed to it.
    """
    if not isinstance(name, str) or not name or ":" in name or name != name.strip():
        raise ValueError(f"architecture name must be a non-empty string without ':', got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory for {name!r} must be callable, got {type(factory).__name__}")
    if name in ZOO or (name in ARCHITECTURES and ARCHITECTURES.get(name) is not factory):
        raise ValueError(f"the architecture name {name!r} is already taken")
    return ARCHITECTURES.add(name, factory)


register(
    ZooEntry(
        "digits-cnn",
        "Small CNN (151k params) trained normally on the 8x8 digits; ~98% test accuracy.",
        digits_cnn,
        train_digits_cnn,
    )
)
register(
    ZooEntry(
        "digits-cnn-pgdat",
        "The same CNN hardened by PGD adversarial training (Madry et al.) at linf eps 0.2; built by defenses.",
        digits_cnn,
        train_digits_cnn_pgdat,
    )
)


def cache_dir() -> Path:
    env = os.environ.get("ROBUSTNESS_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "robustness-audit"


def entry(name: str) -> ZooEntry:
    """The zoo model called ``name``; the registry's error lists the known ones as ``zoo:NAME``."""
    if name in ZOO:
        return ZOO.get(name)
    unknown, names = ZOO.unknown(name), ZOO.names()
    example = f", e.g. zoo:{names[0]}" if names else ""
    archs = ARCHITECTURES.names()
    also = f" Architectures only (no weights): {', '.join(archs)}." if archs else ""
    raise ModelError(
        unknown.message,
        field=unknown.field,
        fix=f"{unknown.fix} Name one as zoo:NAME{example} (see 'robustness models').{also}",
    )


def builtin_factory_paths() -> set[str]:
    """``module:qualname`` of every built-in or registered architecture's factory.

    A folder written by ``robustness harden --model robustness.zoo:digits_cnn`` names the factory
    by its import path; it is the same code as ``zoo:digits-cnn``, so it is as safe to call.
    """
    factories = [e.architecture for e in ZOO.items().values()] + list(ARCHITECTURES.items().values())
    paths = set()
    for f in factories:
        module, qualname = getattr(f, "__module__", None), getattr(f, "__qualname__", None)
        if module and qualname and "<" not in qualname:  # not a lambda or a local function
            paths.add(f"{module}:{qualname}")
    return paths


def architecture(name: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """A fresh, untrained instance of a zoo model's (or a registered) architecture."""
    factory = ARCHITECTURES.get(name) if name in ARCHITECTURES else entry(name).architecture
    return call_module_factory(
        factory,
        kwargs,
        label=f"the architecture zoo:{name}",
        fix="Check the kwargs in model.json against the architecture's factory.",
        type_fix="Register a factory that returns an nn.Module.",
    )


class ZooScheme:
    """``zoo:NAME`` for the model loader (:data:`robustness.core.model.MODEL_SCHEMES`)."""

    def load(self, name: str) -> tuple[nn.Module, dict[str, Any]]:
        return load(name)

    def architecture(self, name: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
        return architecture(name, kwargs)

    def names(self) -> list[str]:
        return sorted({*ZOO, *ARCHITECTURES})

    def check(self, name: str) -> None:
        """Refuse an unknown trained model without loading (or training) it."""
        entry(name)

    def factory_paths(self) -> set[str]:
        return builtin_factory_paths()


MODEL_SCHEMES.add("zoo", ZooScheme())


def load(name: str) -> tuple[nn.Module, dict[str, Any]]:
    """The trained zoo model and its metadata, from the verified cache (training it if needed)."""
    from safetensors.torch import load_file, save_file

    e = entry(name)
    folder = cache_dir()
    weights = folder / f"{name}.v{CACHE_VERSION}.safetensors"
    record = folder / f"{name}.v{CACHE_VERSION}.json"
    module = e.architecture()
    if weights.exists() and record.exists():
        try:
            expected = json.loads(record.read_text())["sha256"]
            if sha256_file(weights) != expected:
                raise ValueError("hash mismatch")
            module.load_state_dict(load_file(str(weights)))
            return module.eval(), _meta(e, weights)
        except Exception as exc:  # noqa: BLE001 - any problem with the cache means rebuild
            warnings.warn(
                f"zoo:{name}: cached weights at {weights} failed verification ({exc}); rebuilding.",
                stacklevel=2,
            )
    folder.mkdir(parents=True, exist_ok=True)
    trained = e.train()
    state = {k: v.detach().cpu().contiguous() for k, v in trained.state_dict().items()}
    tmp = weights.with_name(f".{weights.name}.{os.getpid()}.tmp")
    save_file(state, str(tmp))
    os.replace(tmp, weights)
    atomic_write_json(record, {"name": name, "sha256": sha256_file(weights), "cache_version": CACHE_VERSION})
    module.load_state_dict(state)
    return module.eval(), _meta(e, weights)


def _meta(e: ZooEntry, weights: Path) -> dict[str, Any]:
    return {
        "bounds": e.bounds,
        "num_classes": e.num_classes,
        "zoo": e.name,
        "weights_file": str(weights),
        "architecture": {"factory": f"zoo:{e.name}"},
        "data": e.data,
    }
