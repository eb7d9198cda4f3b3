"""The typed results of the optional audit sections, one file each.

Each module defines a :class:`~robustness.core.schema.SectionResult` for one top-level key of
``results.json`` and registers it with ``@section("key")``; the results loader finds them by
walking this folder. A new section's result is one new file here: its fields, the numbers it
refuses, and what every renderer shows of it.
"""
