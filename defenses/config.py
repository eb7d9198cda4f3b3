"""The training configuration: every knob of a hardening run, validated in one place."""

from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from robustness.core.errors import ConfigError

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "onecycle", "cyclic", "constant")
AMP_MODES = ("off", "bf16", "fp16")

# Marks the fields that hold hyper-parameters of the methods rather than options of the trainer.
_HYPERPARAMETER = {"hyperparameter": True}


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``None`` fields take the method's default (see :meth:`resolved`).

    ``eps``/``norm``: the threat model the adversarial methods train against and the
    robust validation measures. ``steps``, ``step_size``, ``beta`` and ``temperature`` are
    hyper-parameters of the methods that declare them (``defenses/objectives/``), kept as
    fields of their own; any other method's hyper-parameters go in ``params`` (name: value).
    Each is checked against the method's declaration, and a method's defaults fill in the
    ones not given. ``attack_eval_mode``: craft the examples with the network in eval mode (batch-norm
    running statistics, Pang et al. 2021); off, batch-norm uses batch statistics.
    ``val_fraction``: share of the training data held out for validation (0: none).
    ``patience``: stop after this many epochs without a better validation score.
    ``select_best``: the saved model is the epoch with the best validation score (robust
    accuracy for adversarial methods) rather than the last. ``collapse_drop``: a method that
    guards against catastrophic overfitting (fast adversarial training) stops when held-out PGD
    accuracy falls this far below its best.
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
    steps: int | None = field(default=None, metadata=_HYPERPARAMETER)
    step_size: float | None = field(default=None, metadata=_HYPERPARAMETER)
    random_start: bool = True
    beta: float | None = field(default=None, metadata=_HYPERPARAMETER)
    temperature: float | None = field(default=None, metadata=_HYPERPARAMETER)
    attack_eval_mode: bool = True
    val_fraction: float = 0.1
    val_max: int = 512
    val_steps: int = 10
    patience: int | None = None
    select_best: bool = True
    collapse_drop: float = 0.2
    seed: int = 0
    amp: str = "off"
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # No "params" key while it is empty (every built-in method): the run identities and model
        # cards written before it existed stay the same, and such runs resume.
        values = asdict(self)
        if not values["params"]:
            del values["params"]
        return values

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
        given = self._given_params()
        declared = obj.hyperparameters
        for name in given:
            if name not in declared:
                raise ConfigError(
                    f"{name} does not apply to method {self.method!r}",
                    field=name,
                    fix=f"Drop it; {self.method} takes: {', '.join(declared) or 'no method options'}.",
                )
        for name, value in given.items():
            declared[name].check(name, value)
        schedule = self.schedule or obj.default_schedule
        _choice(schedule, SCHEDULES, "schedule")
        if obj.needs_validation and self.val_fraction == 0:
            raise ConfigError(
                f"method {self.method!r} needs a validation split for its catastrophic-overfitting guard",
                field="val_fraction",
                fix="Keep a validation split, e.g. val_fraction 0.1 (--val-fraction).",
            )
        values = {name: param.default for name, param in declared.items() if param.default is not None}
        values.update(given)
        own_fields = {name: values.pop(name, None) for name in HYPERPARAMETER_FIELDS}
        return replace(self, eps=eps, norm=norm, schedule=schedule, params=values, **own_fields)

    def method_params(self) -> dict[str, Any]:
        """The method's hyper-parameters: the values given, else its declared defaults."""
        from defenses.objective import get_objective_class

        given = self._given_params()
        return {
            name: given.get(name, param.default)
            for name, param in get_objective_class(self.method).hyperparameters.items()
        }

    def _given_params(self) -> dict[str, Any]:
        """Every hyper-parameter given, from its own field or from ``params``."""
        if not isinstance(self.params, dict):
            raise ConfigError(
                f"params must be a mapping of hyper-parameter names to values, got {type(self.params).__name__}",
                field="params",
                fix="Give e.g. params={'name': value}.",
            )
        given = {
            name: getattr(self, name) for name in HYPERPARAMETER_FIELDS if getattr(self, name) is not None
        }
        for name, value in self.params.items():
            if name in given:
                raise ConfigError(
                    f"{name} given twice (as a field and in params)", field=name, fix="Give it once."
                )
            if name in TRAINER_OPTIONS:
                raise ConfigError(
                    f"{name} is an option of the trainer, not a hyper-parameter of the method",
                    field=f"params.{name}",
                    fix=f"Give it as {name}=... of its own.",
                )
            given[name] = value
        return given


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


def _field_types() -> dict[str, type]:
    """The type of each hyper-parameter field (``int | None`` -> int)."""
    hints = typing.get_type_hints(TrainConfig)
    types = {}
    for option in fields(TrainConfig):
        if option.metadata.get("hyperparameter"):
            (types[option.name],) = (
                kind for kind in typing.get_args(hints[option.name]) if kind is not type(None)
            )
    return types


# Hyper-parameters of the methods that are fields of their own (Python API, run identity, flags).
HYPERPARAMETER_FIELDS: dict[str, type] = _field_types()
# The trainer's own options: no method may declare a hyper-parameter of these names.
TRAINER_OPTIONS: frozenset[str] = frozenset(option.name for option in fields(TrainConfig)) - set(
    HYPERPARAMETER_FIELDS
)
