"""Fast gradient sign method (Goodfellow et al. 2015): one step of size eps from the clean input.

It is PGD with one step, no random start and step size eps, so it shares PGD's code.
"""

from __future__ import annotations

from typing import Any

from attacks.pgd import PGD
from attacks.registry import register


@register
class FGSM(PGD):
    name = "fgsm"
    description = "Single gradient step of size eps (Goodfellow et al. 2015); a baseline, not an evaluation."

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {**PGD.defaults(), "steps": 1, "random_start": False, "rel_step_size": 1.0}
