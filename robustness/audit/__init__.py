"""The audit: the runner, its per-sample ledger, and the sanity checks and sections it runs.

- :mod:`robustness.audit.runner`: :func:`run_audit` and :class:`AuditRunner` (the eps loop);
- :mod:`robustness.audit.ledger`: the per-sample ledger the eps loop folds attacks into;
- :mod:`robustness.audit.stages`: one attack over a set of samples, batched and checkpointed;
- :mod:`robustness.audit.check` and ``checks/``: the sanity checks, one file each;
- :mod:`robustness.audit.section` and ``sections/``: the optional sections (watermark), one file each.

``run_audit`` and ``AuditRunner`` are imported when first used: reading a config (which knows
the checks and sections) imports this package without torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AuditRunner", "run_audit"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from robustness.audit import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
