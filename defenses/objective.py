"""The per-batch training objective: the one thing that differs between hardening methods.

The trainer owns the loop (data order, optimiser, schedule, checkpoints, validation); an
objective turns one batch into a loss. Each method is one file in ``defenses/objectives/``
holding one ``@register_objective`` class that declares its name, description and
hyper-parameters (:class:`HyperParameter`: default, type, range, help). The registry finds
the files by walking that folder (and plug-ins through the ``robustness.plugins`` entry
points); the configuration validates hyper-parameters from the declarations and
``robustness harden`` builds its ``--method`` choices and per-method flags from them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from defenses.config import HYPERPARAMETER_FIELDS, TRAINER_OPTIONS
from robustness.core.errors import ConfigError
from robustness.core.registry import Registry

if TYPE_CHECKING:
    from defenses.config import TrainConfig
    from defenses.trainer import Trainer
    from robustness.core.model import ModelUnderTest

# The types a hyper-parameter may have (a command-line flag and a config value each).
PARAM_TYPES = (int, float, bool, str)
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclass(frozen=True)
class HyperParameter:
    """One hyper-parameter of a training objective.

    ``default``: its value when none is given; ``None`` when the objective derives it (a step
    size from eps). ``type``: int, float, bool or str. ``help``: one line for ``--help``.
    ``minimum``: the smallest allowed number, excluded itself with ``exclusive``. ``choices``:
    the allowed strings. ``fix``: what to tell a user who gave a bad value.
    """

    default: Any
    type: type
    help: str
    minimum: float | None = None
    exclusive: bool = False
    choices: tuple[str, ...] | None = None
    fix: str | None = None

    def check(self, name: str, value: Any) -> None:
        """Raise :class:`ConfigError` (field: ``name``) unless ``value`` is of the type and in range."""
        if self.type is bool:
            if not isinstance(value, bool):
                raise ConfigError(
                    f"{name} must be true or false, got {value!r}", field=name, fix="Give true or false."
                )
        elif self.type is int:
            low = self._bound()
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Integral)
                or not self._in_range(value)
            ):
                raise ConfigError(
                    f"{name} must be an integer{low}, got {value!r}",
                    field=name,
                    fix=self.fix or f"Give an integer{low}.",
                )
        elif self.type is float:
            low = self._bound()
            number = not isinstance(value, bool) and isinstance(value, numbers.Real)
            if not (number and math.isfinite(value) and self._in_range(value)):
                raise ConfigError(
                    f"{name} must be a finite number{low}, got {value!r}",
                    field=name,
                    fix=self.fix or f"Give a finite number{low}.",
                )
        elif not isinstance(value, str) or (self.choices is not None and value not in self.choices):
            options = f"one of: {', '.join(self.choices)}" if self.choices else "a string"
            raise ConfigError(
                f"{name} must be {options}, got {value!r}", field=name, fix=self.fix or f"Give {options}."
            )

    def parse(self, name: str, text: str) -> Any:
        """The value of a command-line string (``--param name=text``), checked."""
        try:
            if self.type is bool:
                if text.lower() not in (*_TRUE, *_FALSE):
                    raise ValueError(text)
                value: Any = text.lower() in _TRUE
            else:
                value = self.type(text)
        except ValueError:
            kind = {bool: "true or false", int: "an integer", float: "a number"}.get(self.type, "a string")
            raise ConfigError(
                f"{name} must be {kind}, got {text!r}", field=name, fix=f"Give {kind}."
            ) from None
        self.check(name, value)
        return value

    def _bound(self) -> str:
        """`` > 0``, `` >= 1`` or nothing, for the messages."""
        if self.minimum is None:
            return ""
        return f" {'>' if self.exclusive else '>='} {self.minimum:g}"

    def _in_range(self, value: float) -> bool:
        if self.minimum is None:
            return True
        return value > self.minimum if self.exclusive else value >= self.minimum


class Objective:
    """Base class. Subclasses set the class attributes and implement :meth:`loss`.

    ``hyperparameters``: the method's own options by name (see :class:`HyperParameter`); their
    values, the given ones or the defaults, are ``self.params``. ``adversarial``: trains
    against the threat model (needs eps; the best epoch is picked on robust validation
    accuracy). ``needs_validation`` and ``guards_collapse``: the catastrophic-overfitting guard
    of fast adversarial training. ``listed``: False for helpers that other methods train with
    (a distillation teacher), left out of the command line's method list.
    ``selection_metric``: a key of the epoch's validation row (added by :meth:`validation`)
    that picks the best epoch before clean accuracy. ``keeps_last_epoch``: the saved model is
    always the last epoch (a private method: choosing an epoch on data outside its guarantee
    would leak that data).

    Beyond :meth:`loss`, a method may take over parts of the loop through the hooks below
    (plain training needs none): the batches of an epoch, the optimiser, its own validation
    numbers, a per-epoch log entry, state that a resumed run must continue, and the model card.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    hyperparameters: ClassVar[dict[str, HyperParameter]] = {}
    adversarial: ClassVar[bool] = False
    default_schedule: ClassVar[str] = "cosine"
    needs_validation: ClassVar[bool] = False
    guards_collapse: ClassVar[bool] = False
    listed: ClassVar[bool] = True
    selection_metric: ClassVar[str | None] = None
    keeps_last_epoch: ClassVar[bool] = False

    def __init__(self, config: TrainConfig, model: ModelUnderTest, generator: torch.Generator) -> None:
        self.config = config
        self.model = model
        self.generator = generator  # all the objective's randomness; its state is checkpointed
        self.params = config.method_params()

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Hyper-parameters and their defaults (``None``: derived by the objective)."""
        return {name: param.default for name, param in cls.hyperparameters.items()}

    @classmethod
    def param_types(cls) -> dict[str, type]:
        """The type of each hyper-parameter."""
        return {name: param.type for name, param in cls.hyperparameters.items()}

    @classmethod
    def check_run(cls, config: TrainConfig, model: ModelUnderTest, n_train: int, world_size: int) -> None:
        """Refuse a model, data size or launch this method cannot train (before anything is written)."""

    def prepare(self, trainer: Trainer) -> None:
        """Work before the first epoch (distillation trains its teacher here)."""

    def batches(self, n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """The index batches of one epoch: a seeded permutation of the ``n`` samples, cut in order."""
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            yield perm[start : start + batch_size]

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """The optimiser the loop steps (a private method clips and noises the gradients here)."""
        return optimizer

    def validation(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> dict[str, Any]:
        """The method's own validation numbers for the epoch's log row (beyond clean and PGD accuracy)."""
        return {}

    def epoch_end(self) -> dict[str, Any]:
        """Entries for the epoch's log row once its last step is taken (e.g. the privacy spent)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs beyond weights, optimiser and generators (saved in every checkpoint)."""
        return {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Continue from :meth:`state_dict` of the checkpoint (``None``: it holds none)."""

    def close(self) -> None:
        """Undo what :meth:`prepare` attached to the model (hooks), whether training ended or failed."""

    def card_fields(self) -> dict[str, Any]:
        """Top-level entries of the model card (``epsilon`` and ``delta`` of a private run)."""
        return {}

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch loss (scalar, differentiable w.r.t. the weights) and the logits it trained on."""
        raise NotImplementedError

    def card(self) -> dict[str, Any]:
        """What the model card records about the method beyond the config."""
        return {"method": self.name, "description": self.description}

    def default_step_size(self) -> float:
        """2.5 eps / steps (Madry et al.), unless a step size is given."""
        if self.params.get("step_size") is not None:
            return float(self.params["step_size"])
        return 2.5 * float(self.config.eps) / int(self.params["steps"])


OBJECTIVES: Registry[type[Objective]] = Registry(
    "training method",
    package="defenses.objectives",
    entry_points="robustness.plugins",
    error=ConfigError,
    field="method",
)


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Class decorator: make a training method available by its ``name`` (its file calls this)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    for name, param in cls.hyperparameters.items():
        _check_declaration(cls, name, param)
    return OBJECTIVES.add(cls.name, cls)


def get_objective_class(name: str) -> type[Objective]:
    """The objective class of method ``name``; a :class:`ConfigError` lists the known ones."""
    return OBJECTIVES.get(name)


def available() -> list[str]:
    """Names of the training methods (helpers such as the distillation teacher left out)."""
    return [name for name, cls in OBJECTIVES.items().items() if cls.listed]


def describe() -> list[dict[str, Any]]:
    """Name, description, kind and hyper-parameters of every listed method."""
    return [
        {
            "name": name,
            "description": cls.description,
            "adversarial": cls.adversarial,
            "hyperparameters": {
                key: {"default": param.default, "type": param.type.__name__, "help": param.help}
                for key, param in cls.hyperparameters.items()
            },
        }
        for name, cls in OBJECTIVES.items().items()
        if cls.listed
    ]


def _check_declaration(cls: type[Objective], name: str, param: Any) -> None:
    """A mistake in an objective's declaration is the objective author's: ValueError at import."""
    where = f"hyper-parameter {name!r} of training method {cls.name!r}"
    if not isinstance(param, HyperParameter):
        raise ValueError(f"{where} must be declared as a HyperParameter, got {type(param).__name__}")
    if not name.isidentifier():
        raise ValueError(
            f"{where}: the name must be a Python identifier (it becomes --{name.replace('_', '-')})"
        )
    if name in TRAINER_OPTIONS:
        raise ValueError(f"{where}: {name!r} is an option of the trainer itself; choose another name")
    if param.type not in PARAM_TYPES:
        raise ValueError(f"{where}: the type must be one of int, float, bool, str, got {param.type!r}")
    if name in HYPERPARAMETER_FIELDS and param.type is not HYPERPARAMETER_FIELDS[name]:
        expected = HYPERPARAMETER_FIELDS[name].__name__
        raise ValueError(f"{where}: {name!r} is a {expected} wherever it is used; declare it as {expected}")
    if param.default is not None:
        if type(param.default) is not param.type:
            raise ValueError(f"{where}: its default {param.default!r} is not a {param.type.__name__}")
        try:
            param.check(name, param.default)
        except ConfigError as exc:
            raise ValueError(f"{where}: its default does not pass its own check ({exc.message})") from None
