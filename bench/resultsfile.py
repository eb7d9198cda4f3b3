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


RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def publish(section: str, *, write: bool = True) -> None:
    """Print a benchmark's section and, unless ``write`` is False (``--no-write``), put it in
    bench/RESULTS.md."""
    print(section)
    if write:
        write_section(RESULTS, section)


def digits_arguments(description: str):  # noqa: ANN201 - an argparse.Namespace
    """The flags of the digits benchmarks (``--n``, ``--threads``, ``--no-write``), parsed, with the
    thread count applied (before torch is first imported where the caller has not yet)."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--n", type=int, default=100, help="digits test samples (default 100)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    return args
