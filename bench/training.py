"""Training benchmark: epoch time of each hardening method relative to ``standard``, the robust
accuracy each reaches, and ART's PGD adversarial trainer on the same architecture and data.

    python bench/training.py                  # digits CNN, 10 epochs per method, CPU
    python bench/training.py --epochs 30 --device cuda

Epoch times count training only (validation excluded), for ours and for ART. Robust accuracy
is on the 359 digits test images at linf eps 0.2 under PGD-50 and ``autoattack-fast``.
ART's ``AdversarialTrainerMadryPGD`` runs with the same initial weights, optimiser (Adam 2e-3,
constant rate: ART has no schedule), batch size and PGD budget (10 steps of 0.05, one
random start); ours is run twice: with the same constant rate (the like-for-like row) and with
its default cosine schedule. The table is printed and written as a section of bench/RESULTS.md
(other sections are kept).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ comes first on sys.path and bench/attacks.py would shadow the attacks package.
sys.path.insert(0, str(ROOT))
from resultsfile import write_section  # noqa: E402 - bench/resultsfile.py

SECTION = "## Training: hardening methods and ART (bench/training.py)"
EPS = 0.2


def evaluate(model, test) -> dict[str, float]:
    from attacks.registry import available, get_attack

    out = {"clean": float((model.predict(test.x).cpu() == test.y).float().mean())}
    out["pgd50"] = get_attack("pgd", steps=50)(model, test.x, test.y, eps=EPS, seed=0).robust_accuracy
    if "autoattack-fast" in available():
        out["aa_fast"] = get_attack("autoattack-fast")(model, test.x, test.y, eps=EPS, seed=0).robust_accuracy
    return out


def ours(method: str, epochs: int, device: str, train, **options) -> tuple[object, float]:
    from defenses import TrainConfig, Trainer
    from robustness.zoo import DigitsCNN

    torch.manual_seed(0)
    cfg = TrainConfig(method=method, epochs=epochs, seed=0, **options)
    trainer = Trainer(
        DigitsCNN(), cfg, architecture={"factory": "zoo:digits-cnn"}, device=device, verbose=False
    )
    result = trainer.fit(train)
    # The first epoch carries one-off start-up costs; drop it when there are more.
    times = [r["epoch_time_s"] for r in result.log]
    times = times[1:] if len(times) > 1 else times
    return result.model, sum(times) / len(times)


def art_pgd_at(epochs: int, device: str, train) -> tuple[object, float]:
    import numpy as np
    from art.defences.trainer import AdversarialTrainerMadryPGD
    from art.estimators.classification import PyTorchClassifier

    from robustness.core.model import ModelUnderTest
    from robustness.zoo import DigitsCNN

    torch.manual_seed(0)
    net = DigitsCNN()
    clf = PyTorchClassifier(
        model=net,
        loss=torch.nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(net.parameters(), lr=2e-3),
        input_shape=(1, 8, 8),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="gpu" if device.startswith("cuda") else "cpu",
    )
    trainer = AdversarialTrainerMadryPGD(
        clf, nb_epochs=epochs, batch_size=64, eps=EPS, eps_step=0.05, max_iter=10, num_random_init=1
    )
    x = train.x.numpy().astype(np.float32)
    y = train.y.numpy()
    t0 = time.perf_counter()
    trainer.fit(x, y)
    per_epoch = (time.perf_counter() - t0) / epochs
    return ModelUnderTest(clf.model, device=device), per_epoch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps", type=int, default=10, help="PGD / TRADES inner steps (k)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-art", action="store_true")
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from robustness.core.data import load_data

    # Ours hold out 10% of the train split for validation; ART trains on the same 90%.
    train_full = load_data("builtin:digits:train")
    perm = torch.randperm(len(train_full), generator=torch.Generator().manual_seed(7))
    train = train_full.subset(perm[int(round(0.1 * len(train_full))) :].sort().values)
    test = load_data("builtin:digits")
    k, e = args.steps, args.epochs
    runs = [
        ("standard", "standard", {"val_fraction": 0.0}),
        (f"pgd-at (k={k})", "pgd-at", {"eps": EPS, "steps": k, "val_fraction": 0.0}),
        (
            f"pgd-at (k={k}, constant lr, as ART)",
            "pgd-at",
            {"eps": EPS, "steps": k, "val_fraction": 0.0, "schedule": "constant"},
        ),
        (f"trades (k={k})", "trades", {"eps": EPS, "steps": k, "val_fraction": 0.0}),
        ("fast-at", "fast-at", {"eps": EPS}),
    ]
    rows = []
    for label, method, options in runs:
        t0 = time.perf_counter()
        model, epoch_s = ours(method, e, args.device, train, **options)
        metrics = evaluate(model, test)
        rows.append({"name": label, "epoch_s": epoch_s, **metrics})
        print(f"{label:40s} epoch {epoch_s:.3f}s  {metrics}  ({time.perf_counter() - t0:.0f}s)", flush=True)
    if not args.no_art:
        model, epoch_s = art_pgd_at(e, args.device, train)
        metrics = evaluate(model, test)
        rows.append({"name": f"ART AdversarialTrainerMadryPGD (k={k})", "epoch_s": epoch_s, **metrics})
        print(f"{'ART':40s} epoch {epoch_s:.3f}s  {metrics}", flush=True)

    base = rows[0]["epoch_s"]
    table = render(rows, base, args, k)
    print(table)
    if not args.no_write:
        write_section(ROOT / "bench" / "RESULTS.md", table)
    return 0


def render(rows: list[dict], base: float, args: argparse.Namespace, k: int) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    cpu = platform.processor() or platform.machine()
    dev = args.device
    if dev.startswith("cuda") and torch.cuda.is_available():
        dev = torch.cuda.get_device_name(0)
    lines = [
        SECTION,
        "",
        f"Digits CNN (151k parameters), {args.epochs} epochs, batch 64, Adam 2e-3, train split less a 10% hold-out "
        f"(1293 images); linf eps {EPS}; robust accuracy on the 359 test images. Device: {dev} "
        f"({cpu}, {torch.get_num_threads()} threads), torch {torch.__version__}, Python {platform.python_version()}. "
        "Epoch time counts training only (mean over epochs 2..N).",
        "",
        "| method | epoch time | x standard | target | clean | PGD-50 | autoattack-fast |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    targets = {"fast-at": "<= 2.5x"}
    for r in rows:
        ratio = r["epoch_s"] / base
        target = targets.get(r["name"], "")
        if r["name"].startswith("pgd-at"):
            target = f"<= {k + 1.5:g}x"
        if r["name"].startswith("ART"):
            target = "reference"
        lines.append(
            f"| {r['name']} | {r['epoch_s']:.3f} s | {ratio:.2f}x | {target} | {pct(r['clean'])} | "
            f"{pct(r['pgd50'])} | {pct(r.get('aa_fast'))} |"
        )
    art = next((r for r in rows if r["name"].startswith("ART")), None)
    same = next((r for r in rows if "as ART" in r["name"]), None)
    if art and same:
        lines += [
            "",
            f"Ours vs ART at the same settings: {art['epoch_s'] / same['epoch_s']:.2f}x faster per epoch; robust accuracy "
            f"(autoattack-fast) {pct(same.get('aa_fast'))} vs {pct(art.get('aa_fast'))}, PGD-50 {pct(same['pgd50'])} vs "
            f"{pct(art['pgd50'])}.",
        ]
    lines.append("")
    lines.append(f"Command: `python bench/training.py {' '.join(sys.argv[1:])}`".rstrip())
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
