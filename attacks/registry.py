"""The attack registry: every attack is one file and one entry here, found by name.

:data:`ATTACKS` is a :class:`robustness.core.registry.Registry`: its first lookup imports every
module of the ``attacks`` folder (each registers its class with :func:`register`) and the
``robustness.plugins`` entry points. ``art:ClassName`` is not in it: the ART bridge is built on
demand for any ART evasion attack.
"""

from __future__ import annotations

from typing import Any

from attacks.base import Attack
from robustness.core.errors import AttackError
from robustness.core.registry import Registry

ATTACKS: Registry[type[Attack]] = Registry(
    "attack", package="attacks", entry_points="robustness.plugins", error=AttackError, field="attack"
)
ART_PREFIX = "art:"
ART_HINT = "Or art:ClassName for any ART evasion attack."


def register(cls: type[Attack]) -> type[Attack]:
    """Class decorator: make an attack available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    return ATTACKS.add(cls.name, cls)


def available() -> dict[str, type[Attack]]:
    """Registered attacks by name (the ART bridge, ``art:ClassName``, is resolved on demand)."""
    return ATTACKS.items()


def get_attack(name: str, **params: Any) -> Attack:
    """Build the attack called ``name`` with hyper-parameters ``params``."""
    if not isinstance(name, str):
        raise AttackError(
            f"an attack name is a string, got {type(name).__name__}",
            field="attack",
            fix=f"Known: {', '.join(ATTACKS.names())}. {ART_HINT}",
        )
    if name.startswith(ART_PREFIX):
        from attacks.art_bridge import ARTAttack

        return ARTAttack(art_class=name[len(ART_PREFIX) :], **params)
    if name not in ATTACKS:
        unknown = ATTACKS.unknown(name)
        raise AttackError(unknown.message, field=unknown.field, fix=f"{unknown.fix} {ART_HINT}")
    return ATTACKS.get(name)(**params)


def describe() -> list[dict[str, Any]]:
    """Name, norms, kind and targeted support of every attack (for ``robustness attacks``)."""
    return [
        {
            "name": name,
            "norms": list(cls.norms),
            "kind": cls.kind,
            "targeted": cls.supports_targeted,
            "description": cls.description,
        }
        for name, cls in available().items()
    ]
