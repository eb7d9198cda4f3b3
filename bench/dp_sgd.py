"""DP-SGD against standard training on the digits: the accuracy cost of each privacy budget, and the time.

    python bench/dp_sgd.py                         # epsilon 1, 3, 8 and standard, 20 epochs, CPU
    python bench/dp_sgd.py --epsilons 1 8 --epochs 10 --no-write

Every model trains on the whole digits train split (1438 images, no hold-out, so that a
membership audit can use the test split as non-members), the same architecture (DigitsCNN),
seed, batch size (64) and number of epochs; standard training uses the zoo recipe (Adam 2e-3,
cosine), DP-SGD Adam 1e-2 (cosine), clipping norm 1, delta 1e-5, the PRV accountant and
Poisson batches. Accuracy is on the 359 test images and on the training images (the gap is
what membership inference feeds on). The model folders are kept under ``--output`` (default
``runs/dp_sgd/``: standard, dp-eps1, ...) for the membership-inference numbers. The table is
printed and written as its own section of bench/RESULTS.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ comes first on sys.path and bench/attacks.py would shadow the attacks package.
sys.path.insert(0, str(ROOT))
from resultsfile import write_section  # noqa: E402 - bench/resultsfile.py

SECTION = "## DP-SGD against standard training (bench/dp_sgd.py)"


def accuracy(model, data) -> float:
    return float((model.predict(data.x).cpu() == data.y).float().mean())


def train(name: str, method: str, epochs: int, output: Path, train_data, **options) -> tuple[object, dict]:
    from defenses import TrainConfig, Trainer
    from robustness.zoo import DigitsCNN

    folder = output / name
    if folder.exists():
        shutil.rmtree(folder)
    torch.manual_seed(0)
    config = TrainConfig(method=method, epochs=epochs, batch_size=64, val_fraction=0.0, seed=0, **options)
    trainer = Trainer(
        DigitsCNN(), config, architecture={"factory": "zoo:digits-cnn"}, device="cpu", verbose=False
    )
    start = time.perf_counter()
    result = trainer.fit(train_data, output=folder)
    wall = time.perf_counter() - start
    return result, {"folder": folder, "wall_s": wall, "train_s": result.metrics["train_time_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 8.0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "dp_sgd")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from robustness.core.data import load_data

    train_data, test = load_data("builtin:digits:train"), load_data("builtin:digits")
    rows = []
    t0 = time.perf_counter()
    runs = [("standard", "standard", {"lr": 2e-3})] + [
        (f"dp-eps{eps:g}", "dp-sgd", {"lr": 1e-2, "params": {"target_epsilon": eps}}) for eps in args.epsilons
    ]
    for name, method, options in runs:
        result, info = train(name, method, args.epochs, args.output, train_data, **options)
        privacy = result.extra
        row = {
            "name": name,
            "epsilon": privacy.get("epsilon"),
            "noise": None,
            "test": accuracy(result.model, test),
            "train": accuracy(result.model, train_data),
            **info,
        }
        if method == "dp-sgd":
            card = json.loads((info["folder"] / "model.json").read_text())
            row["noise"] = card["training"]["privacy"]["noise_multiplier"]
        rows.append(row)
        print(
            f"{name}: epsilon {row['epsilon']}, test {row['test']:.4f}, train {row['train']:.4f}, "
            f"{row['train_s']:.1f} s",
            flush=True,
        )
    total = time.perf_counter() - t0
    load = os.getloadavg()[0]  # other jobs on the cores stretch the times
    base = rows[0]["train_s"]
    lines = [
        SECTION,
        "",
        f"`python bench/dp_sgd.py` on {platform.machine()} CPU, torch {torch.__version__}, "
        f"{args.threads} thread(s), Python {platform.python_version()}, load average {load:.1f} on "
        f"{os.cpu_count()} cores at the end; {total / 60:.1f} min in all. "
        f"DigitsCNN (151k parameters), the whole digits train split (1438 images, no hold-out), "
        f"{args.epochs} epochs, batch 64, seed 0. Standard: Adam 2e-3, cosine (the zoo recipe). DP-SGD "
        "(Opacus 1.6 through the trainer): Adam 1e-2, cosine, per-sample clipping norm 1, Poisson "
        "batches (q = 1/23), delta 1e-5, PRV accountant; the noise multiplier is the smallest that keeps "
        "the whole run within the target. Accuracy on the 359 test images and the 1438 training images; "
        "time is training only. Model folders: `runs/dp_sgd/<model>` (written by the script).",
        "",
        "| model | target epsilon | spent epsilon (delta 1e-5) | noise multiplier | test accuracy | "
        "train accuracy | train - test (points) | time (s) | x standard |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    targets = [None, *args.epsilons]
    for row, target in zip(rows, targets):
        # rounded up: a privacy budget is never shown smaller than spent
        spent = (
            "- (not private)" if row["epsilon"] is None else f"{math.ceil(row['epsilon'] * 1000) / 1000:.3f}"
        )
        noise = "-" if row["noise"] is None else f"{row['noise']:.3f}"
        lines.append(
            f"| {row['name']} | {'-' if target is None else f'{target:g}'} | {spent} | {noise} | "
            f"{row['test']:.4f} | {row['train']:.4f} | {100 * (row['train'] - row['test']):.1f} | "
            f"{row['train_s']:.1f} | {row['train_s'] / base:.2f}x |"
        )
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_write:
        write_section(ROOT / "bench" / "RESULTS.md", section)


if __name__ == "__main__":
    main()
