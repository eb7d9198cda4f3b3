"""The 15 common corruptions of Hendrycks & Dietterich (2019), in torch, at five severities.

Each corruption is one module of this folder: a :class:`~robustness.core.corruptions.base.Corruption`
subclass with its CIFAR-10-C and ImageNet-C constants, registered with ``@register_corruption``
and found by walking the folder (:data:`CORRUPTIONS`). The base class does the common work:
input checks, the mapping of the model's bounds to [0, 1], the choice of constants by image
size, seeded chunks on the input's device, and the clamp back into bounds.

They live on the ground floor because they are data transforms, like the threat model: the
audit section and the CLI use them, and so may a training objective (corruption augmentation).

    from robustness.core.corruptions import corrupt
    x_c = corrupt(x, "gaussian_noise", severity=3, seed=0)
"""

from __future__ import annotations

from robustness.core.corruptions.base import (
    CORRUPTION_ORDER,
    CORRUPTIONS,
    SEVERITIES,
    Corruption,
    constants_for,
    corrupt,
    corruption_names,
    get_corruption,
    register_corruption,
)

__all__ = [
    "CORRUPTIONS",
    "CORRUPTION_ORDER",
    "SEVERITIES",
    "Corruption",
    "constants_for",
    "corrupt",
    "corruption_names",
    "get_corruption",
    "register_corruption",
]
