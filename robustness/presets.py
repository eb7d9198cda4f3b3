"""The names of the audit's attack presets (their budgets: ``robustness.config`` and
``attacks/autoattack.py``).

A module of its own so that the command line lists them without importing the config's
pydantic models: ``robustness --help`` stays fast.
"""

from __future__ import annotations

PRESETS: tuple[str, ...] = ("quick", "standard", "thorough", "plus", "malt")
