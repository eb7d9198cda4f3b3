"""robustness-audit: adversarial robustness audits for PyTorch classifiers.

The package import is deliberately light (no torch, no ART) because the pytest plugin
loads it in every test run of the environment; the public API is imported lazily.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "robustness.core.model",
    "ModelUnderTest": "robustness.core.model",
    "load_data": "robustness.core.data",
    "Dataset": "robustness.core.data",
    "ThreatModel": "robustness.core.threat",
    "RobustnessError": "robustness.core.errors",
    # results.json with its pandas tables (.robust, .samples, .attacks); pandas loads on first use
    "load_results": "robustness.tables",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'robustness' has no attribute {name!r}")
