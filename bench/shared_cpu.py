"""The example audit alone and beside a copy of itself, on this machine's cores.

A shared 2-core CI runner is the common case: two audits started together must each finish
in about the time of one alone (they each get a core), not spin OpenMP threads against each
other. Runs the README's main job (``robustness audit examples/digits-audit.yaml``) as a
separate process each time, with OMP_NUM_THREADS unset so that the tool's own ``threads``
choice is what is measured, and records wall and CPU time per run.

    python bench/shared_cpu.py            # alone (threads 2, as torch's default), alone (auto), two together
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(REPO))

from resultsfile import publish  # noqa: E402

CONFIG = REPO / "examples" / "digits-audit.yaml"


def start(outdir: Path, threads: str) -> tuple[subprocess.Popen, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    cmd = [sys.executable, "-m", "robustness", "audit", str(CONFIG), "-o", str(outdir), "-q", "--restart"]
    cmd += ["--threads", threads, "--format", "json", "pdf", "junit", "md"]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ), time.perf_counter()


def wait(proc: subprocess.Popen, t0: float) -> dict[str, float]:
    """Wall and CPU seconds of one finished audit process (its own rusage, not its siblings')."""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.communicate()
    if proc.returncode not in (0, 1, 3):
        raise SystemExit(f"audit failed ({proc.returncode}): {err.strip()}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "verdict_line": out.strip().splitlines()[-1],
    }


def run_together(outdirs: list[Path], threads: str) -> list[dict[str, float]]:
    started = [start(d, threads) for d in outdirs]
    return [wait(p, t0) for p, t0 in started]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md as it is")
    args = ap.parse_args()
    # Train/cache the demo model first, so that no run below includes its training.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "robustness",
            "evaluate",
            "--model",
            "zoo:digits-cnn",
            "--data",
            "builtin:digits",
        ],
        check=True,
        capture_output=True,
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        alone2 = run_together([tmp_path / "alone2"], "2")[0]
        rows.append(("alone, 2 threads (torch's default here)", [alone2]))
        alone = run_together([tmp_path / "alone"], "auto")[0]
        rows.append(("alone, threads auto", [alone]))
        pair = run_together([tmp_path / "a", tmp_path / "b"], "auto")
        rows.append(("two together, threads auto", pair))
    lines = [
        "## Shared CPUs: the example audit alone and beside a copy (bench/shared_cpu.py)",
        "",
        f"`python bench/shared_cpu.py` on {platform.machine()} CPU, {cores} cores, "
        f"torch {__import__('torch').__version__}, {time.strftime('%Y-%m-%d')}. The README's main job "
        "(`robustness audit examples/digits-audit.yaml`, AutoAttack standard, 200 digits, 3 eps), one process "
        "per run, OMP_NUM_THREADS unset; `threads auto` picks 1 thread for this model (its batch pass is "
        "far below the threshold).",
        "",
        "| runs | wall s (each) | CPU s (each) | x alone (auto) |",
        "|---|---|---|---|",
    ]
    for name, runs in rows:
        walls = " / ".join(f"{r['wall']:.1f}" for r in runs)
        cpus = " / ".join(f"{r['cpu']:.1f}" for r in runs)
        ratio = " / ".join(f"{r['wall'] / alone['wall']:.2f}" for r in runs)
        lines.append(f"| {name} | {walls} | {cpus} | {ratio} |")
    worst = max(r["wall"] for r in pair) / alone["wall"]
    lines += [
        "",
        f"Two together: the slower finished in {worst:.2f}x the time of one alone at `auto` and "
        f"{max(r['wall'] for r in pair) / alone2['wall']:.2f}x the time of one alone at 2 threads (target <= 2.2x; "
        "before the `threads` setting, one beside another took about 10x: two 2-thread runs spin OpenMP "
        "threads against each other). The price: alone on an idle machine, 2 threads finish this audit "
        f"{alone['wall'] / alone2['wall']:.2f}x faster than `auto` for {alone2['cpu'] / alone['cpu']:.2f}x the CPU "
        "time; set `threads: 2` for a dedicated machine. Verdicts: "
        + "; ".join(sorted({r["verdict_line"].rstrip(".") for _, runs in rows for r in runs}))
        + ".",
    ]
    section = "\n".join(lines) + "\n"
    publish(section, write=not args.no_write)


if __name__ == "__main__":
    main()
