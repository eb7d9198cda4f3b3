"""MALT against AutoAttack: robust accuracy and time at the same eps on the digits models.

The target (issue: evaluation strength): ``malt`` reports a robust accuracy no higher than the
standard ``autoattack`` ensemble at the same eps, in at most half its time. Runs both on the same
samples, one after the other, and writes the '## MALT against AutoAttack' section of
bench/RESULTS.md with the machine named.

    python bench/malt.py --n 100
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run as a script, bench/ comes first on sys.path and bench/attacks.py would shadow the attacks package.
sys.path.insert(0, str(HERE.parent))

from resultsfile import digits_arguments, publish  # noqa: E402

CASES = [("zoo:digits-cnn", 0.05), ("zoo:digits-cnn", 0.1), ("zoo:digits-cnn-pgdat", 0.2)]


def run(model_spec: str, eps: float, n: int) -> list[dict]:
    from attacks.registry import get_attack
    from robustness import load_data, load_model

    model = load_model(model_spec, device="cpu")
    data = load_data("builtin:digits", n_examples=n, seed=0)
    rows = []
    results = {}
    for name in ("autoattack", "malt"):
        t0 = time.perf_counter()
        res = get_attack(name)(model, data.x, data.y, eps=eps, seed=0)
        wall = time.perf_counter() - t0
        results[name] = res
        rows.append(
            {
                "model": model_spec,
                "eps": eps,
                "attack": name,
                "robust": res.robust_accuracy,
                "time_s": wall,
                "n_backward": res.n_backward,
                "n_forward": res.n_forward,
            }
        )
    missed = int((results["autoattack"].success & ~results["malt"].success).sum())
    rows[-1]["missed"] = missed
    return rows


def main() -> None:
    args = digits_arguments(__doc__.splitlines()[0])
    import torch

    rows = [row for spec, eps in CASES for row in run(spec, eps, args.n)]
    lines = [
        "## MALT against AutoAttack (bench/malt.py)",
        "",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other jobs), "
        f"torch {torch.__version__}, {args.threads} thread(s); {args.n} digits test samples, linf, seed 0. "
        "`autoattack`: APGD-CE 100, APGD-T 9x100, FAB-T 9x100, Square 5000. `malt`: targeted APGD 100 "
        "steps x 2 restarts on the 3 classes MALT ranks closest. 'missed': samples AutoAttack broke that MALT did not.",
        "",
        "| model | eps | attack | robust acc | time (s) | backward passes | forward passes | missed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['eps']:g} | {r['attack']} | {r['robust']:.3f} | {r['time_s']:.1f} | "
            f"{r['n_backward']} | {r['n_forward']} | {r.get('missed', '')} |"
        )
    pairs = [rows[i : i + 2] for i in range(0, len(rows), 2)]
    ok = all(m["robust"] <= a["robust"] and m["time_s"] <= 0.5 * a["time_s"] for a, m in pairs)
    ratios = ", ".join(f"{a['time_s'] / max(m['time_s'], 1e-9):.1f}x" for a, m in pairs)
    lines += [
        "",
        f"Target (robust accuracy no higher than autoattack, in at most half its time): "
        f"{'met' if ok else 'NOT met'} in every case; speed-up {ratios}.",
    ]
    section = "\n".join(lines) + "\n"
    publish(section, write=not args.no_write)


if __name__ == "__main__":
    main()
