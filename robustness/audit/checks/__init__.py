"""The sanity checks, one file each (see :mod:`robustness.audit.check`).

Each module defines one :class:`~robustness.audit.check.SanityCheck` subclass registered with
``@register_check``; the registry finds them by walking this folder. A new check is one new
file here.
"""
