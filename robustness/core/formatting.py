"""Numbers as the reports print them: percentages, intervals, eps values, durations.

On the ground floor because both the renderers (``reports/``) and the results sections that
describe themselves to them (:mod:`robustness.core.sections`) print numbers the same way.
"""

from __future__ import annotations

import math
from typing import Any


def pct(v: Any, digits: int = 1) -> str:
    """0.925 -> '92.5%'; None/NaN -> 'n/a'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{100 * float(v):.{digits}f}%"


def ci(interval: Any, digits: int = 1) -> str:
    """[0.88, 0.96] -> '[88.0%, 96.0%]'."""
    if not interval or len(interval) != 2:
        return "n/a"
    return f"[{pct(interval[0], digits)}, {pct(interval[1], digits)}]"


def num(v: Any) -> str:
    """A gate value or threshold: fractions as numbers with 3 decimals, ints as ints."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def eps_str(e: Any) -> str:
    """Eps as written in the config (0.1), and as a fraction of 255 when it is one (8/255)."""
    e = float(e)
    k = e * 255
    s = f"{e:g}"
    if abs(k - round(k)) < 1e-6 and round(k) > 0 and len(s) > 5:
        s += f" ({round(k)}/255)"
    return s


def seconds(t: Any) -> str:
    if t is None:
        return "n/a"
    t = float(t)
    if t < 60:
        return f"{t:.2f} s"
    m, s = divmod(int(round(t)), 60)
    return f"{m} min {s} s"
