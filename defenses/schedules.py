"""Optimisers and learning-rate schedules for the trainer."""

from __future__ import annotations

import math

import torch
from torch import nn

from defenses.config import TrainConfig


def build_optimizer(module: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum, or Adam (L2 weight decay, as ``torch.optim.Adam``)."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        from robustness.core.errors import ModelError

        raise ModelError(
            "the model has no trainable parameters (every parameter has requires_grad=False)",
            field="model",
            fix="Unfreeze the layers to train (p.requires_grad_(True)) before hardening or embedding.",
        )
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def per_step(schedule: str) -> bool:
    """Whether the scheduler steps after every batch (else after every epoch)."""
    return schedule in ("onecycle", "cyclic")


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """``cosine``: cosine annealing to 0 over the epochs, stepped per epoch.
    ``onecycle``: linear warm-up over the first 30% of the steps to ``lr``, then cosine decay to 0.
    ``cyclic``: triangular, 0 -> ``lr`` at the middle of training -> 0, linear, per step (Wong et al.).
    ``constant``: ``lr`` throughout.
    """
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "onecycle":

        def factor(step: int) -> float:
            warm = 0.3 * total
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1.0, total - warm)))

    elif config.schedule == "cyclic":

        def factor(step: int) -> float:
            half = total / 2
            return (step + 1) / half if step < half else max(0.0, (total - step - 1) / half)

    else:

        def factor(step: int) -> float:
            return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
