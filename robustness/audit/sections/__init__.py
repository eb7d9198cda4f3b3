"""The audit sections, one file each (see :mod:`robustness.audit.section`).

Each module defines one :class:`~robustness.audit.section.AuditSection` subclass registered with
``@register_section``; the registry finds them by walking this folder. A new section is one new
file here.
"""
