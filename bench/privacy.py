"""Privacy benchmark: membership leakage of DP-SGD against standard training, and model extraction.

1. DP-SGD vs standard, on digits. The same 500 samples of the train split (seed 0) train a
   standard model (``robustness harden --method standard``, 30 epochs, Adam 2e-3, cosine) and
   DP-SGD models (``robustness harden --method dp-sgd --target-epsilon E``, 30 epochs, Adam 1e-2:
   noisy clipped gradients need a larger step). Each is attacked with the loss threshold,
   offline LiRA (fixed variance) and offline RMIA, with 4 reference models trained the same way
   (same method, epsilon and epochs: the attacker knows the recipe) on halves of the other 938
   train samples; members are the 500, non-members the 359 test samples. The table shows the
   spent (epsilon, delta) read from model.json, test accuracy, the strongest attack's AUC and
   TPR at 1% and 0.1% FPR with exact 95% intervals, and the time to train and to audit.
2. Extraction of the demo model ``zoo:digits-cnn``: a thief queries N inputs of the train split
   (labels, then probabilities) and trains a fresh DigitsCNN (30 epochs); agreement and accuracy on
   the test split, with the time per budget.

    python bench/privacy.py                       # about 9 minutes on 2 busy CPU cores
    python bench/privacy.py --epsilons 8 --no-write

Writes the section "Privacy: DP-SGD vs standard, and extraction" of bench/RESULTS.md (other
sections are kept) unless ``--no-write``.
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

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ comes first on sys.path and bench/attacks.py would shadow the attacks package.
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ROBUSTNESS_CACHE", str(ROOT / ".cache" / "zoo"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from resultsfile import write_section  # noqa: E402 - bench/resultsfile.py

HEADING = "## Privacy: DP-SGD vs standard, and extraction (bench/privacy.py)"
N_MEMBERS, EPOCHS = 500, 30


def _split(folder: Path) -> tuple[Path, Path]:
    import numpy as np
    import torch

    from robustness.core.data import load_data

    train = load_data("builtin:digits:train")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    members, rest = train.subset(perm[:N_MEMBERS].sort().values), train.subset(perm[N_MEMBERS:].sort().values)
    paths = folder / "members.npz", folder / "rest.npz"
    for path, data in zip(paths, (members, rest), strict=True):
        np.savez(path, x=data.x.numpy(), y=data.y.numpy())
    return paths


def _harden(
    folder: Path, members: Path, method: str, params: dict[str, float], lr: float
) -> tuple[Path, float]:
    out = folder / f"{method}-{'-'.join(f'{k}{v:g}' for k, v in params.items()) or 'plain'}"
    flags = [f"--{k.replace('_', '-')}={v:g}" for k, v in params.items()]
    cmd = [
        sys.executable, "-m", "robustness", "harden", "--model", "zoo:digits-cnn", "--device", "cpu",
        "--data", str(members), "--method", method, "--epochs", str(EPOCHS), "--lr", f"{lr:g}",
        "--val-fraction", "0", "--seed", "0", "--output", str(out), "--quiet", *flags,
    ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out, time.perf_counter() - t0


def dp_table(epsilons: list[float], n_references: int) -> list[dict]:
    from robustness.core.data import load_data
    from robustness.core.model import load_model
    from robustness.privacy.audit import privacy_audit
    from robustness.privacy.references import ReferenceRecipe

    test = load_data("builtin:digits")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        members, rest = _split(folder)
        runs = [("standard", {}, 2e-3)] + [("dp-sgd", {"target_epsilon": e}, 1e-2) for e in epsilons]
        for method, params, lr in runs:
            out, train_s = _harden(folder, members, method, params, lr)
            card = json.loads((out / "model.json").read_text())
            model = load_model(str(out), device="cpu")
            accuracy = float((model.predict(test.x).cpu() == test.y).float().mean())
            recipe = ReferenceRecipe(
                n_models=n_references, method=method, epochs=EPOCHS, lr=lr, params=dict(params), seed=0
            )
            t0 = time.perf_counter()
            res = privacy_audit(
                model,
                str(members),
                "builtin:digits",
                ["loss", "lira", "rmia"],
                recipe=recipe,
                reference_data=str(rest),
            )
            audit_s = time.perf_counter() - t0
            attacks = {a["attack"]: a for a in res["attacks"]}
            rows.append(
                {
                    "method": method,
                    "epsilon": card.get("epsilon"),
                    "delta": card.get("delta"),
                    "accuracy": accuracy,
                    "train_accuracy": res["accuracy"]["members"],
                    "attacks": attacks,
                    "train_s": train_s,
                    "audit_s": audit_s,
                    "n_non_members": res["n_non_members"],
                }
            )
            print(f"{method} {params}: eps {card.get('epsilon')}, acc {accuracy:.3f}, "
                  + ", ".join(f"{k} auc {a['auc']:.3f} tpr1% {a['tpr_at_fpr']['0.01']:.3f}" for k, a in attacks.items()),
                  flush=True)  # fmt: skip
    return rows


def extraction_rows(budgets: list[int]) -> dict[str, dict]:
    from robustness.core.data import load_data
    from robustness.core.model import load_model
    from robustness.privacy.extraction import extraction_curve

    model = load_model("zoo:digits-cnn", device="cpu")
    pool, test = load_data("builtin:digits:train"), load_data("builtin:digits")
    return {
        outputs: extraction_curve(model, pool, test, budgets, outputs=outputs)
        for outputs in ("labels", "probabilities")
    }


def _pct(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}%"


def _ci(ci: list[float]) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def render(dp: list[dict], ext: dict[str, dict], n_references: int, total_s: float) -> str:
    lines = [
        HEADING,
        "",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared), torch threads 1; "
        f"whole run {total_s:.0f} s.",
        "",
        f"### Membership leakage: DP-SGD against standard training ({N_MEMBERS} digits training samples, "
        f"{EPOCHS} epochs)",
        "",
        f"Members: {N_MEMBERS} samples of the digits train split; non-members: the 359 test samples. Attacks: "
        f"loss threshold, offline LiRA (fixed variance) and offline RMIA with {n_references} reference models "
        "trained by the same recipe on halves of the other 938 train samples. The TPR columns are the "
        "strongest attack's (highest TPR at 1% FPR); 359 non-members cannot resolve 0.1% FPR, so that column "
        "is read at the first false positive (0.28% FPR), which over-states rather than hides a leak.",
        "",
        "| method | epsilon (delta) | test accuracy | train accuracy | strongest attack | AUC (loss / LiRA / RMIA) "
        "| TPR @ 1% FPR [95% CI] | TPR @ 0.1% FPR* [95% CI] | train time | audit time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in dp:
        top = max(r["attacks"].values(), key=lambda a: (a["tpr_at_fpr"]["0.01"], a["auc"]))
        eps = "none (inf)" if r["epsilon"] is None else f"{r['epsilon']:.2f} ({r['delta']:g})"
        aucs = " / ".join(f"{r['attacks'][k]['auc']:.3f}" for k in ("loss", "lira", "rmia"))
        lines.append(
            f"| {r['method']} | {eps} | {_pct(r['accuracy'])} | {_pct(r['train_accuracy'])} | {top['attack']} | "
            f"{aucs} | {_pct(top['tpr_at_fpr']['0.01'])} {_ci(top['tpr_at_fpr_ci']['0.01'])} | "
            f"{_pct(top['tpr_at_fpr']['0.001'])} {_ci(top['tpr_at_fpr_ci']['0.001'])} | {r['train_s']:.0f} s | "
            f"{r['audit_s']:.0f} s |"
        )
    lines += [
        "",
        "Train time: `robustness harden` end to end (a fresh process, model folder written); audit time: the "
        f"{n_references} reference models' training plus the three attacks.",
        "",
        "### Extraction of the demo model (zoo:digits-cnn)",
        "",
        "Thief: queries drawn at random from the digits train split (1438 inputs), a fresh DigitsCNN trained "
        "30 epochs (Adam 1e-3) on the answers; agreement with the model and accuracy on the 359 test samples "
        "(model accuracy there: " + _pct(ext["labels"]["model_accuracy"]) + ").",
        "",
        "| queries | labels: agreement [95% CI] | labels: accuracy | time | probabilities: agreement [95% CI] "
        "| probabilities: accuracy | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for a, b in zip(ext["labels"]["curve"], ext["probabilities"]["curve"], strict=True):
        lines.append(
            f"| {a['queries']} | {_pct(a['agreement'])} {_ci(a['agreement_ci'])} | {_pct(a['accuracy'])} | "
            f"{a['time_s']:.1f} s | {_pct(b['agreement'])} {_ci(b['agreement_ci'])} | {_pct(b['accuracy'])} | "
            f"{b['time_s']:.1f} s |"
        )
    lines += [
        "",
        f"Whole curve: {ext['labels']['time_s']:.0f} s (labels), {ext['probabilities']['time_s']:.0f} s "
        "(probabilities), one thread.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 8.0], help="DP-SGD target epsilons")
    p.add_argument("--references", type=int, default=4, help="reference models per audited model")
    p.add_argument("--queries", nargs="+", type=int, default=[50, 100, 250, 500, 1000])
    p.add_argument("--no-write", action="store_true", help="print the section only")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ext = extraction_rows(args.queries)
    dp = dp_table(args.epsilons, args.references)
    section = render(dp, ext, args.references, time.perf_counter() - t0)
    print(section)
    if not args.no_write:
        write_section(ROOT / "bench" / "RESULTS.md", section)


if __name__ == "__main__":
    main()
