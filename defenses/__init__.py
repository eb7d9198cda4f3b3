"""Defenses: adversarial training and defensive distillation on one resumable trainer.

``Trainer(module, TrainConfig(method=...)).fit(train_data, output=DIR)`` trains with one of
the methods of :func:`available` (one file each in ``defenses/objectives/``) and writes a model
folder that ``load_model(DIR)`` loads. The CLI is ``robustness harden``. Importing this package
is light (torch only); the methods are imported on the first lookup of one.
"""

from typing import Any

from defenses.config import TrainConfig
from defenses.objective import (
    HyperParameter,
    Objective,
    available,
    describe,
    get_objective_class,
    register_objective,
)
from defenses.trainer import Trainer, TrainResult, train

__all__ = [
    "METHODS",
    "HyperParameter",
    "Objective",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "available",
    "describe",
    "get_objective_class",
    "register_objective",
    "train",
]


def __getattr__(name: str) -> Any:
    # METHODS: the names of the training methods, read from the registry when asked for.
    if name == "METHODS":
        return tuple(available())
    raise AttributeError(f"module 'defenses' has no attribute {name!r}")
