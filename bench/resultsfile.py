"""bench/RESULTS.md: each benchmark owns one '## ' section and replaces only that section."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, section: str) -> None:
    """Replace the section with the same '## ' heading in ``path`` (or append it); keep the rest."""
    from robustness.core.io import atomic_write_text

    heading = section.splitlines()[0]
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == heading.strip()), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "\n".join(lines[:start] + section.rstrip("\n").splitlines() + [""] + lines[end:])
    atomic_write_text(path, new.rstrip("\n") + "\n")
