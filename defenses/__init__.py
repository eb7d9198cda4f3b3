"""Defenses: adversarial training and defensive distillation on one resumable trainer.

``Trainer(module, TrainConfig(method=...)).fit(train_data, output=DIR)`` trains with one of
the methods in :data:`METHODS` and writes a model folder that ``load_model(DIR)`` loads.
The CLI is ``robustness harden``. Importing this package is light (torch only).
"""

from defenses.config import TrainConfig
from defenses.objective import METHODS, Objective, available, get_objective_class, register_objective
from defenses.trainer import Trainer, TrainResult, train

__all__ = [
    "METHODS",
    "Objective",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "available",
    "get_objective_class",
    "register_objective",
    "train",
]
