"""The attack registry: every attack is one file and one entry here, found by name."""

from __future__ import annotations

from typing import Any

from attacks.base import Attack
from robustness.core.errors import AttackError

_REGISTRY: dict[str, type[Attack]] = {}


def register(cls: type[Attack]) -> type[Attack]:
    """Class decorator: make an attack available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"attack name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> dict[str, type[Attack]]:
    """Registered attacks by name (the ART bridge, ``art:ClassName``, is resolved on demand)."""
    import attacks  # noqa: F401 - importing the package registers the built-in attacks

    return dict(sorted(_REGISTRY.items()))


def get_attack(name: str, **params: Any) -> Attack:
    """Build the attack called ``name`` with hyper-parameters ``params``."""
    known = available()
    if not isinstance(name, str):
        raise AttackError(
            f"an attack name is a string, got {type(name).__name__}",
            field="attack",
            fix=f"Known attacks: {', '.join(known)}; or art:ClassName for any ART evasion attack.",
        )
    if name.startswith("art:"):
        from attacks.art_bridge import ARTAttack

        return ARTAttack(art_class=name[4:], **params)
    if name not in known:
        raise AttackError(
            f"unknown attack {name!r}",
            field="attack",
            fix=f"Known attacks: {', '.join(known)}; or art:ClassName for any ART evasion attack.",
        )
    return known[name](**params)


def describe() -> list[dict[str, Any]]:
    """Name, norms, kind and targeted support of every attack (for ``robustness attacks``)."""
    return [
        {
            "name": n,
            "norms": list(c.norms),
            "kind": c.kind,
            "targeted": c.supports_targeted,
            "description": c.description,
        }
        for n, c in available().items()
    ]
