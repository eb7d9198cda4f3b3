"""Audit sections as plug-ins: optional parts of an audit, each with its own config block and result.

A section is one file in ``robustness/audit/sections/``: an :class:`AuditSection` subclass
registered with ``@register_section`` that declares

- ``name``: its key, both in the audit config (``watermark:``) and in ``results.json``;
- ``config``: the pydantic model of its config block (validated with the rest of the config;
  the config's JSON Schema shows it), and ``description``, one line for that schema;
- ``result``: its typed result, a :class:`robustness.core.schema.SectionResult` registered on the
  results schema (``@section(name)``; in ``robustness/core/sections/`` when the readers of
  results files that never run an audit must type it too), which every renderer shows
  through its ``view()``;

and writes :meth:`AuditSection.run` (the ``results.json`` entry, after the attacks), and where
needed :meth:`AuditSection.check_config` and :meth:`AuditSection.check_inputs` (the start-up
checks of ``robustness validate``) and :meth:`AuditSection.gates` (the gates it adds). The
registry finds the files by walking that folder (a plug-in package registers its own with the
same call when imported).

Reading the config imports this module and every section file: they import no torch at
module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from robustness.core.errors import ConfigError
from robustness.core.registry import Registry

if TYPE_CHECKING:
    from robustness.audit.runner import AuditRunner
    from robustness.config import AuditConfig
    from robustness.core.schema import SectionResult


class AuditSection:
    """Base class of the audit sections; ``self.audit`` is the running audit, ``self.block`` the
    section's validated config block."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config: ClassVar[type[BaseModel]]
    result: ClassVar[type[SectionResult] | None] = None
    # Runs on rank 0 only under torchrun (every rank gets its result).
    main_only: ClassVar[bool] = True

    def __init__(self, audit: AuditRunner, block: BaseModel) -> None:
        self.audit = audit
        self.block = block

    @classmethod
    def check_config(cls, block: Any, cfg: AuditConfig) -> None:
        """Checks beyond the schema that need no model or data (files it names exist)."""

    @classmethod
    def check_inputs(cls, block: Any, cfg: AuditConfig) -> None:
        """The model and data specs it names can be loaded (``robustness validate``)."""

    def run(self) -> dict[str, Any]:
        """The section's entry of results.json."""
        raise NotImplementedError

    def gates(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        """Gates the section adds (``robustness.gates.gate`` entries), judged on its result."""
        return []


AUDIT_SECTIONS: Registry[type[AuditSection]] = Registry(
    "audit section",
    package="robustness.audit.sections",
    error=ConfigError,
)


def register_section(cls: type[AuditSection]) -> type[AuditSection]:
    """Class decorator: make an audit section available under its ``name`` (its file calls this)."""
    if not cls.name or not cls.name.isidentifier():
        raise ValueError(f"audit section {cls.__name__} needs a name that is an identifier")
    if not isinstance(getattr(cls, "config", None), type) or not issubclass(cls.config, BaseModel):
        raise ValueError(f"audit section {cls.name!r} declares no config model (a pydantic BaseModel)")
    if cls.result is not None:
        from robustness.core.schema import RESULT_SECTIONS

        if cls.name not in RESULT_SECTIONS:
            RESULT_SECTIONS.add(cls.name, cls.result)
    return AUDIT_SECTIONS.add(cls.name, cls)


def section_blocks(cfg: Any) -> dict[str, Any]:
    """Section name -> its config block, for the sections this config turns on."""
    return {
        name: getattr(cfg, name) for name in AUDIT_SECTIONS.names() if getattr(cfg, name, None) is not None
    }


def run_sections(audit: AuditRunner) -> tuple[dict[str, dict[str, Any] | None], list[dict[str, Any]]]:
    """Run every section the config turns on: name -> results entry (None for a section it does
    not turn on), and the gates the sections add, in registry order."""
    results: dict[str, dict[str, Any] | None] = {}
    gates: list[dict[str, Any]] = []
    for name, cls in AUDIT_SECTIONS.items().items():
        block = getattr(audit.cfg, name, None)
        if block is None:
            results[name] = None
            continue
        section = cls(audit, block)
        result = audit.dist.main_only(section.run) if cls.main_only else section.run()
        results[name] = result
        gates += section.gates(result)
    return results, gates
