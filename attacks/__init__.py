"""The attack library. Importing it registers every attack module in this folder.

Each attack is one module here holding one ``@register``-ed class; modules are found by
walking the package, so adding an attack touches no other file. Only torch is imported;
the ART bridge imports ART when an ``art:`` attack is built.
"""

import importlib
import pkgutil

from attacks.base import Attack, AttackContext, AttackResult
from attacks.registry import available, describe, get_attack, register

_SUPPORT = {"base", "composition", "registry", "losses", "steps"}
for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _SUPPORT and not _info.name.startswith("_"):
        importlib.import_module(f"attacks.{_info.name}")

__all__ = ["Attack", "AttackContext", "AttackResult", "available", "describe", "get_attack", "register"]
