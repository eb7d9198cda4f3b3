"""The per-batch training objective: the one thing that differs between hardening methods.

The trainer owns the loop (data order, optimiser, schedule, checkpoints, validation); an
objective turns one batch into a loss. Each method is one module in this package holding one
``@register_objective`` class, looked up by name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from robustness.core.errors import ConfigError

if TYPE_CHECKING:
    from defenses.config import TrainConfig
    from defenses.trainer import Trainer
    from robustness.core.model import ModelUnderTest

# The built-in methods, in the order the CLI lists them, and the module that defines each.
BUILTIN = {
    "standard": "defenses.standard",
    "pgd-at": "defenses.pgd_at",
    "trades": "defenses.trades",
    "fast-at": "defenses.fast_at",
    "distillation": "defenses.distillation",
}
METHODS = tuple(BUILTIN)
# Objectives that other methods use internally (not listed as methods).
_HELPERS = {"distillation-teacher": "defenses.distillation"}

_REGISTRY: dict[str, type[Objective]] = {}


class Objective:
    """Base class. Subclasses set the class attributes and implement :meth:`loss`.

    ``adversarial``: trains against the threat model (needs eps; the best epoch is picked on
    robust validation accuracy). ``options``: the method's own options among ``steps``,
    ``step_size``, ``beta``, ``temperature`` (others are rejected). ``needs_validation`` and
    ``guards_collapse``: the catastrophic-overfitting guard of fast adversarial training.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    adversarial: ClassVar[bool] = False
    options: ClassVar[tuple[str, ...]] = ()
    default_schedule: ClassVar[str] = "cosine"
    needs_validation: ClassVar[bool] = False
    guards_collapse: ClassVar[bool] = False
    listed: ClassVar[bool] = True  # False for helpers such as the distillation teacher

    def __init__(self, config: TrainConfig, model: ModelUnderTest, generator: torch.Generator) -> None:
        self.config = config
        self.model = model
        self.generator = generator  # all the objective's randomness; its state is checkpointed

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """Defaults of the method's options (``None`` fields of the config get these)."""
        return {}

    def prepare(self, trainer: Trainer) -> None:
        """Work before the first epoch (distillation trains its teacher here)."""

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch loss (scalar, differentiable w.r.t. the weights) and the logits it trained on."""
        raise NotImplementedError

    def card(self) -> dict[str, Any]:
        """What the model card records about the method beyond the config."""
        return {"method": self.name, "description": self.description}

    def default_step_size(self) -> float:
        """2.5 eps / steps (Madry et al.), unless the config gives one."""
        c = self.config
        return float(c.step_size) if c.step_size is not None else 2.5 * float(c.eps) / int(c.steps)


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Class decorator: make a training method available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def get_objective_class(name: str) -> type[Objective]:
    """The objective class of method ``name``; a :class:`ConfigError` lists the known ones."""
    module = BUILTIN.get(name) or _HELPERS.get(name)
    if module and name not in _REGISTRY:
        importlib.import_module(module)
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown training method {name!r}",
            field="method",
            fix=f"Use one of: {', '.join(available())}.",
        )
    return _REGISTRY[name]


def available() -> list[str]:
    """Names of the training methods (built-in first)."""
    for module in BUILTIN.values():
        importlib.import_module(module)
    return [n for n in dict.fromkeys([*METHODS, *_REGISTRY]) if _REGISTRY[n].listed]
