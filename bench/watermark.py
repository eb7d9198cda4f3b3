"""Watermark benchmark: embedding cost, false positives, and survival under removal attacks.

On the digits demo: the demo model ``zoo:digits-cnn`` is marked with several independent keys
(``robustness watermark embed`` defaults: K=100 uniform-noise triggers, 8 epochs of fine-tuning
through the trainer). For each key it records the clean-accuracy cost on the test split, then
derives the surrogates of the survival test and verifies each (alpha 1e-6, max-class-share p0).
The attacker is strong: it fine-tunes and extracts with the digits *training* split, and every
surrogate is scored on the test split. A removal counts only if the surrogate loses at most 5
points of accuracy (Lukas et al. 2022). Unmarked models trained with other seeds give the
false-positive check. The table is printed and written as the section "Watermark survival" of
bench/RESULTS.md (other sections are kept).

    python bench/watermark.py            # about 5 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ comes first on sys.path and bench/attacks.py would shadow the attacks package.
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ROBUSTNESS_CACHE", str(ROOT / ".cache" / "zoo"))

from resultsfile import write_section  # noqa: E402 - bench/resultsfile.py

SURROGATES = [
    "finetune",  # share=0.5 of the attacker data, 10 epochs, Adam 1e-3
    "finetune:share=1,epochs=20,lr=2e-3",
    "prune-30",
    "prune-50",
    "prune-70",
    "quantize-int8",
    "extract-copycat",  # 1000 queries, 30 epochs
    "extract-knockoff",  # 1000 queries (random sampling), 30 epochs
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--keys", type=int, nargs="+", default=[7, 1234, 99], help="key seeds (default 7 1234 99)"
    )
    ap.add_argument("--unmarked", type=int, default=5, help="unmarked models for the false-positive check")
    ap.add_argument("--unmarked-epochs", type=int, default=10, help="training epochs of each unmarked model")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for this tiny model)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from defenses.watermark import WatermarkKey, embed_watermark, verify
    from robustness.core.data import load_data
    from robustness.core.model import load_model
    from robustness.watermark import survival_table
    from robustness.zoo import train_digits_cnn

    t_start = time.perf_counter()
    model = load_model("zoo:digits-cnn", device="cpu")
    train, test = load_data("builtin:digits:train"), load_data("builtin:digits")
    base_acc = float((model.predict(test.x).cpu() == test.y).float().mean())
    embeds, tables = [], []
    for seed in args.keys:
        key = WatermarkKey.create(input_shape=(1, 8, 8), bounds=(0, 1), num_classes=10, seed=seed)
        t0 = time.perf_counter()
        res = embed_watermark(model, train, key=key, val_data=test)
        embeds.append({"seed": seed, "time_s": time.perf_counter() - t0, **res.report})
        rows = survival_table(res.model, key, test, SURROGATES, attack_data=train, seed=seed)
        tables.append((res, rows))
        print(f"key {seed}: cost {100 * res.report['clean_accuracy_cost']:.2f} points", file=sys.stderr)
        for r in rows:
            print(
                f"  {r['name']:<16} acc {r['clean_accuracy']:.4f} agree {r['agreement']:.3f} "
                f"k {r['k']:>3}/{r['K']} p {r['p_value']:.2e} survived {r['survived']} removed {r['removed']}",
                file=sys.stderr,
            )

    fp = []
    marked0, key0 = tables[0][0].model, tables[0][0].key
    unmarked = []
    for s in range(args.unmarked):
        u = load_model(train_digits_cnn(seed=100 + s, epochs=args.unmarked_epochs), device="cpu")
        unmarked.append(u)
        v = verify(u, key0)
        fp.append({"seed": 100 + s, "acc": float((u.predict(test.x).cpu() == test.y).float().mean()), **v})
    with_refs = verify(marked0, key0, reference_models=unmarked)
    elapsed = time.perf_counter() - t_start

    section = markdown(base_acc, embeds, tables, fp, with_refs, args, elapsed)
    print(section)
    if not args.no_write:
        write_section(ROOT / "bench" / "RESULTS.md", section)
    return 0


def markdown(base_acc, embeds, tables, fp, with_refs, args, elapsed) -> str:
    import torch

    from robustness.watermark import parse_surrogate

    n_keys = len(embeds)
    lines = [
        "## Watermark survival",
        "",
        f"`python bench/watermark.py` on {platform.machine()} CPU, torch {torch.__version__}, "
        f"{args.threads} thread(s); {elapsed / 60:.1f} min. Demo model `zoo:digits-cnn` "
        f"(test accuracy {base_acc:.4f}, n=359), marked with {n_keys} independent keys "
        f"(seeds {', '.join(str(e['seed']) for e in embeds)}; K=100 uniform-noise triggers, random labels). "
        "Verification: exact one-sided binomial test, p0 = max-class-share (>= 1/10), alpha = 1e-6.",
        "",
        "Embedding (fine-tuning through the trainer, method standard, 8 epochs, Adam 2e-3 cosine, 35% triggers "
        "per batch):",
        "",
        "| key seed | trigger accuracy | test accuracy after | cost (points) | p-value | time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for e in embeds:
        lines.append(
            f"| {e['seed']} | {e['after']['trigger_accuracy']:.2f} | {e['after']['clean_accuracy']:.4f} | "
            f"{100 * e['clean_accuracy_cost']:.2f} | {e['verification']['p_value']:.1e} | {e['time_s']:.1f} |"
        )
    lines += [
        "",
        f"Survival: the attacker fine-tunes and extracts with the digits training split (n=1438); every surrogate "
        f"is scored on the test split. Per surrogate, means over the {n_keys} keys; k and survival per key. "
        "A removal counts only if the surrogate loses at most 5 points of test accuracy (Lukas et al. 2022).",
        "",
        "| surrogate | attack parameters | test accuracy | accuracy cost (points) | agreement with marked | "
        "k of 100 (per key) | largest p-value | survived | removal counts |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, spec in enumerate(SURROGATES):
        rows = [t[1][i] for t in tables]
        params = parse_surrogate(spec).params
        desc = ", ".join(f"{k}={v:g}" for k, v in params.items()) or "-"
        if rows[0]["name"].startswith("extract"):
            desc = f"{rows[0]['params']['queries']} queries, {params['epochs']} epochs, fresh DigitsCNN thief"
        if rows[0]["name"] == "quantize-int8":
            desc = "dynamic int8, Linear layers"

        def mean(field: str, rows=rows) -> float:
            return sum(r[field] for r in rows) / len(rows)

        lines.append(
            f"| {rows[0]['name']} | {desc} | {mean('clean_accuracy'):.4f} | {100 * mean('accuracy_drop'):.2f} | "
            f"{mean('agreement'):.3f} | {' / '.join(str(r['k']) for r in rows)} | "
            f"{max(r['p_value'] for r in rows):.1e} | {sum(r['survived'] for r in rows)}/{len(rows)} | "
            f"{sum(r['removed'] for r in rows)}/{len(rows)} |"
        )
    removed = sorted({t[1][i]["name"] for t in tables for i in range(len(SURROGATES)) if t[1][i]["removed"]})
    lines += [
        "",
        "Removed the mark (by the Lukas criterion): " + (", ".join(removed) if removed else "none") + ".",
        "",
        f"False positives: {len(fp)} unmarked DigitsCNNs (seeds {fp[0]['seed']}..{fp[-1]['seed']}, "
        f"{args.unmarked_epochs} epochs, test accuracy {min(f['acc'] for f in fp):.3f}-{max(f['acc'] for f in fp):.3f}) "
        f"against key {embeds[0]['seed']}: k = {', '.join(str(f['k']) for f in fp)}; p0 = "
        f"{', '.join(format(f['p0'], '.2f') for f in fp)}; smallest p-value {min(f['p_value'] for f in fp):.2f}; "
        f"verified {sum(f['verified'] for f in fp)}/{len(fp)}. As reference models they set p0 = "
        f"{with_refs['p0']:.3f} for the marked model, which still verifies (p = {with_refs['p_value']:.1e}); "
        f"leave-one-out false-positive rate {with_refs['false_positive_rate']:.2f}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
