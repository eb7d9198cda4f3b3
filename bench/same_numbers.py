"""The example audit before and after a change of the code's structure: same numbers, no more time.

Checks out ``--before`` (a git revision) into a temporary worktree and runs the README's main job
(``robustness audit examples/digits-audit.yaml``) with that code and then with this checkout's,
one after the other in one run, on the same machine and thread setting. Writes a section of
``bench/RESULTS.md`` with both runs' clean and robust accuracy per eps and their times.

    python bench/same_numbers.py --before f2c9632
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from resultsfile import publish  # noqa: E402


def audit(code: Path, outdir: Path) -> tuple[dict, float]:
    """Run the example audit with the code in ``code``; its results and wall time."""
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    config = code / "examples" / "digits-audit.yaml"
    cmd = [sys.executable, "-m", "robustness", "audit", str(config), "-o", str(outdir), "-q", "--restart"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=code, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1, 3):
        raise SystemExit(f"audit with {code} failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads((outdir / "results.json").read_text()), wall


def numbers(results: dict) -> tuple[float, list[tuple[float, float]]]:
    return results["clean"]["accuracy"], [(row["eps"], row["accuracy"]) for row in results["robust"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="git revision of the code before the change")
    ap.add_argument("--after", default=None, help="git revision after the change (default: this checkout)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    after_rev = subprocess.run(
        ["git", "rev-parse", "--short", args.after or "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip() + ("" if args.after else " + working tree")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        trees = {"before": args.before, "after": args.after}
        code = {}
        for name, rev in trees.items():
            if rev is None:
                code[name] = REPO
                continue
            code[name] = tmp_path / name
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(code[name]), rev],
                cwd=REPO,
                check=True,
                capture_output=True,
            )
        try:
            # A warm-up: the zoo model is trained (or read from the cache) outside the timed runs.
            audit(code["after"], tmp_path / "warm")
            before, t_before = audit(code["before"], tmp_path / "out-before")
            after, t_after = audit(code["after"], tmp_path / "out-after")
        finally:
            for name, rev in trees.items():
                if rev is not None:
                    subprocess.run(
                        ["git", "worktree", "remove", "--force", str(code[name])],
                        cwd=REPO,
                        capture_output=True,
                    )
    (clean_b, rob_b), (clean_a, rob_a) = numbers(before), numbers(after)
    same = clean_b == clean_a and rob_b == rob_a
    cells = lambda rob: " / ".join(f"{acc:.3f}" for _, acc in rob)  # noqa: E731
    section = "\n".join(
        [
            "## Same numbers after restructuring (bench/same_numbers.py)",
            "",
            f"`python bench/same_numbers.py --before {args.before}"
            + (f" --after {args.after}" if args.after else "")
            + f"` on {platform.machine()} CPU, "
            f"{os.cpu_count()} cores, 1 thread, {time.strftime('%Y-%m-%d')}: the example audit "
            "(`examples/digits-audit.yaml`, AutoAttack standard, 200 digits) with the code before and after, "
            "one after the other.",
            "",
            "| code | clean | robust at eps " + " / ".join(f"{e:g}" for e, _ in rob_a) + " | wall s |",
            "|---|---|---|---|",
            f"| before ({args.before}) | {clean_b:.3f} | {cells(rob_b)} | {t_before:.1f} |",
            f"| after ({after_rev}) | {clean_a:.3f} | {cells(rob_a)} | {t_after:.1f} |",
            "",
            f"Numbers {'identical' if same else 'DIFFERENT'}; time after / before = {t_after / t_before:.2f}.",
            "",
        ]
    )
    publish(section, write=not args.no_write)
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
