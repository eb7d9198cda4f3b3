"""The training configuration: every knob of a hardening run, validated in one place."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from robustness.core.errors import ConfigError

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "onecycle", "cyclic", "constant")
AMP_MODES = ("off", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``None`` fields take the method's default (see :meth:`resolved`).

    ``eps``/``norm``: the threat model the adversarial methods train against and the
    robust validation measures. ``steps``/``step_size``: the inner attack (pgd-at: PGD,
    trades: the KL maximisation); ``step_size`` is absolute, default ``2.5 * eps / steps``.
    ``attack_eval_mode``: craft the examples with the network in eval mode (batch-norm
    running statistics, Pang et al. 2021); off, batch-norm uses batch statistics.
    ``val_fraction``: share of the training data held out for validation (0: none).
    ``patience``: stop after this many epochs without a better validation score.
    ``select_best``: the saved model is the epoch with the best validation score (robust
    accuracy for adversarial methods) rather than the last. ``collapse_drop``: fast-at stops
    when held-out PGD accuracy falls this far below its best (catastrophic overfitting).
    """

    method: str = "standard"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    optimizer: str = "adam"
    schedule: str | None = None
    weight_decay: float = 0.0
    momentum: float = 0.9
    eps: float | None = None
    norm: str = "linf"
    steps: int | None = None
    step_size: float | None = None
    random_start: bool = True
    beta: float | None = None
    temperature: float | None = None
    attack_eval_mode: bool = True
    val_fraction: float = 0.1
    val_max: int = 512
    val_steps: int = 10
    patience: int | None = None
    select_best: bool = True
    collapse_drop: float = 0.2
    seed: int = 0
    amp: str = "off"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(
                f"unknown training option(s) {sorted(unknown)}",
                field="config",
                fix=f"Known options: {', '.join(sorted(known))}.",
            )
        return cls(**d)

    def resolved(self, bounds: tuple[float, float] = (0.0, 1.0)) -> TrainConfig:
        """Validate and fill in the method's defaults; raises :class:`ConfigError` naming the bad field."""
        from defenses.objective import get_objective_class
        from robustness.core.threat import check_eps, check_norm

        obj = get_objective_class(self.method)
        _positive_int(self.epochs, "epochs")
        _positive_int(self.batch_size, "batch_size")
        _positive_number(self.lr, "lr")
        _choice(self.optimizer, OPTIMIZERS, "optimizer")
        _choice(self.amp, AMP_MODES, "amp")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(
                f"weight_decay must be >= 0, got {self.weight_decay}",
                field="weight_decay",
                fix="Use e.g. 5e-4.",
            )
        if not 0 <= self.momentum < 1:
            raise ConfigError(
                f"momentum must be in [0, 1), got {self.momentum}", field="momentum", fix="Use 0.9."
            )
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(
                f"val_fraction must be in [0, 1), got {self.val_fraction}",
                field="val_fraction",
                fix="Use e.g. 0.1, or 0 for no validation.",
            )
        _positive_int(self.val_max, "val_max")
        _positive_int(self.val_steps, "val_steps")
        if self.patience is not None:
            _positive_int(self.patience, "patience")
        norm = check_norm(self.norm)
        eps = self.eps
        if eps is not None:
            eps = check_eps(float(eps), bounds=bounds, norm=norm)[0]
        elif obj.adversarial:
            raise ConfigError(
                f"method {self.method!r} trains against a threat model and needs eps",
                field="eps",
                fix="Give --eps, e.g. --eps 0.2 for the 8x8 digits or 0.031 for CIFAR-10 (linf, inputs in [0, 1]).",
            )
        for name in ("steps", "step_size", "beta", "temperature"):
            value = getattr(self, name)
            if value is not None and name not in obj.options:
                raise ConfigError(
                    f"{name} does not apply to method {self.method!r}",
                    field=name,
                    fix=f"Drop it; {self.method} takes: {', '.join(obj.options) or 'no method options'}.",
                )
        if self.steps is not None:
            _positive_int(self.steps, "steps")
        if self.step_size is not None:
            _positive_number(self.step_size, "step_size")
        if self.temperature is not None:
            _positive_number(self.temperature, "temperature")
        if self.beta is not None and not (math.isfinite(self.beta) and self.beta >= 0):
            raise ConfigError(f"beta must be >= 0, got {self.beta}", field="beta", fix="Use 6 (the paper's).")
        schedule = self.schedule or obj.default_schedule
        _choice(schedule, SCHEDULES, "schedule")
        if obj.needs_validation and self.val_fraction == 0:
            raise ConfigError(
                f"method {self.method!r} needs a validation split for its catastrophic-overfitting guard",
                field="val_fraction",
                fix="Keep a validation split, e.g. val_fraction 0.1 (--val-fraction).",
            )
        filled = {k: v for k, v in obj.option_defaults().items() if getattr(self, k) is None}
        return replace(self, eps=eps, norm=norm, schedule=schedule, **filled)


def _positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{name} must be an integer >= 1, got {value!r}", field=name, fix="Give a positive integer."
        )


def _positive_number(value: Any, name: str) -> None:
    try:
        ok = math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(
            f"{name} must be a finite number > 0, got {value!r}", field=name, fix="Give a positive number."
        )


def _choice(value: Any, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}", field=name, fix=f"Use one of: {', '.join(choices)}.")
