"""Sanity checks of an evaluation (Carlini et al. 2019; Athalye, Carlini & Wagner 2018), as plug-ins.

A check is one file in ``robustness/audit/checks/``: a :class:`SanityCheck` subclass declaring
its ``name`` (stable: waivers use it), ``title``, ``explanation`` (why it matters, for readers
who are not attack specialists), ``measures`` (what it measures) and its ``letter`` (its place
in the documented order (a)..(i)), registered with ``@register_check``. The registry finds the
files by walking that folder; the
config's waiver names and schema, the order of the results and every report's title and
explanation come from these declarations.

A check writes only its measurement and its judgement:

- a **model check** (:class:`ModelCheck`) measures the model itself before any attack runs and
  judges at once (:meth:`ModelCheck.measure`);
- an **attack check** (:class:`AttackCheck`) measures with real attacks at each eps
  (:meth:`AttackCheck.at_eps`, after the audit's attacks, on the :class:`EpsStep`) and/or once
  after the eps loop (:meth:`SanityCheck.after_attacks`), and judges the measurements
  (:meth:`SanityCheck.judge`). Adversarial examples a check attack finds are real: it folds
  them into the ledger (:meth:`AuditRunner.attack_and_fold`), so the reported robust accuracy
  is never higher than what any attack of the run found.

A failed check means the robust accuracy cannot be trusted, whatever the gates say; it can
only be waived with a written reason. Tolerances: a check attack may break at most
``allowed(n_tested, tolerance)`` samples that the audit's attacks left standing, that is
``max(1, floor(tolerance * n_tested))`` (one stray sample is not evidence of a broken
evaluation; more is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from robustness.core.errors import ConfigError
from robustness.core.registry import Registry

if TYPE_CHECKING:
    import torch

    from robustness.audit.runner import AuditRunner


@dataclass
class CheckResult:
    """A check's own verdict: pass / fail / skip, a plain-language detail and its numbers."""

    name: str
    status: str  # pass | fail | skip
    detail: str
    measured: dict[str, Any] = field(default_factory=dict)

    def as_dict(self, waiver: str | None = None) -> dict[str, Any]:
        """The results.json entry, with the check's title and explanation; a waiver turns the
        status into 'waived' and keeps the outcome."""
        status, detail = self.status, self.detail
        if waiver is not None:
            status = "waived"
            detail = f"Waived (the check itself: {self.status}). {self.detail}"
        check = SANITY_CHECKS.get(self.name)
        return {
            "name": self.name,
            "title": check.title,
            "explanation": check.explanation,
            "status": status,
            "detail": detail,
            "waiver": waiver,
            "outcome": self.status,
            "measured": self.measured,
        }


def allowed(n_tested: int, tolerance: float) -> int:
    """How many samples a check attack may break beyond the audit's attacks."""
    return max(1, math.floor(tolerance * n_tested + 1e-9)) if n_tested > 0 else 0


def pct(k: int, n: int) -> str:
    """``k/n (p%)`` for a detail text."""
    return f"{k}/{n} ({k / n:.1%})" if n else "0/0"


@dataclass
class EpsStep:
    """What the audit's own attacks did at one eps, before the checks' attacks ran.

    ``start_alive``: the samples robust when this eps began (the ones its attacks ran on).
    ``white_box_broken``: samples the white-box attacks broke. ``black_box_tested``: samples
    still standing when the first attack that is not white-box started (None: none ran).
    ``black_box_by``: what each such attack broke. ``found``: check attack -> samples it broke
    that the audit's attacks left standing (filled by the checks, shown in the robust row).
    """

    index: int
    eps: float
    start_alive: torch.Tensor
    white_box_broken: int = 0
    black_box_tested: int | None = None
    black_box_by: dict[str, int] = field(default_factory=dict)
    found: dict[str, int] = field(default_factory=dict)


class SanityCheck:
    """Base class of every sanity check. Subclasses declare the class attributes and write
    their measurement and their judgement (see :class:`ModelCheck` and :class:`AttackCheck`).

    ``self.audit`` is the running audit (:class:`robustness.audit.runner.AuditRunner`): its
    model, data, ledger, attack stages, sampling and settings.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    explanation: ClassVar[str] = ""
    measures: ClassVar[str] = ""
    letter: ClassVar[str] = ""  # its place in the documented order (a)..(i); nothing else
    kind: ClassVar[str] = "attack"  # "model" or "attack"

    def __init__(self, audit: AuditRunner) -> None:
        self.audit = audit

    @property
    def tolerance(self) -> float:
        return float(self.audit.cfg.sanity_checks.tolerance)

    def result(self, status: str, detail: str, measured: dict[str, Any] | None = None) -> CheckResult:
        return CheckResult(self.name, status, detail, {} if measured is None else measured)

    # -- the measurement (the runner calls these) ---------------------------------------------
    def measure_model(self, *, eot_used: bool = False) -> CheckResult | None:
        """Model checks: measure and judge the model before any attack (rank 0 only)."""
        return None

    def wants_eot(self, result: CheckResult) -> bool:
        """Whether this outcome asks for the gradient attacks to be wrapped in EOT."""
        return False

    def at_eps(self, step: EpsStep) -> None:
        """Attack checks: measure at one eps, after the audit's attacks (on every rank)."""

    def after_attacks(self) -> None:
        """Attack checks: measure once after the eps loop (on every rank)."""

    def judge(self) -> CheckResult:
        """The verdict on the measurements."""
        raise NotImplementedError


class ModelCheck(SanityCheck):
    """A check of the model itself: :meth:`measure` measures and judges in one step."""

    kind: ClassVar[str] = "model"

    def __init__(self, audit: AuditRunner) -> None:
        super().__init__(audit)
        self.outcome: CheckResult | None = None

    def measure(self, *, eot_used: bool) -> CheckResult:
        raise NotImplementedError

    def measure_model(self, *, eot_used: bool = False) -> CheckResult:
        return self.measure(eot_used=eot_used)

    def judge(self) -> CheckResult:
        if self.outcome is None:
            raise RuntimeError(f"the model check {self.name!r} was not measured")
        return self.outcome


class AttackCheck(SanityCheck):
    """A check that measures with attacks; its rows (one per eps it measured) are ``per_eps``."""

    def __init__(self, audit: AuditRunner) -> None:
        super().__init__(audit)
        self.per_eps: list[dict[str, Any]] = []


SANITY_CHECKS: Registry[type[SanityCheck]] = Registry(
    "sanity check",
    package="robustness.audit.checks",
    error=ConfigError,
    field="sanity_checks.waive",
)


def register_check(cls: type[SanityCheck]) -> type[SanityCheck]:
    """Class decorator: make a sanity check part of every audit (its file calls this)."""
    for attribute in ("name", "title", "explanation", "measures"):
        if not getattr(cls, attribute, ""):
            raise ValueError(f"sanity check {cls.__name__} declares no {attribute}")
    if cls.kind not in ("model", "attack"):
        raise ValueError(f"sanity check {cls.name!r}: kind must be 'model' or 'attack', got {cls.kind!r}")
    return SANITY_CHECKS.add(cls.name, cls)


def checks_in_order() -> list[type[SanityCheck]]:
    """Every registered check in the documented order: by letter, then those without one by name."""
    return sorted(SANITY_CHECKS.items().values(), key=lambda c: (c.letter or "~", c.name))


def check_titles() -> dict[str, str]:
    """name -> title of every check, in the documented order (the config's waiver names)."""
    return {c.name: c.title for c in checks_in_order()}
