"""Common corruptions benchmark: the digits model's accuracy table, and the cost of each corruption.

    python bench/corruptions.py                    # CPU: both parts
    python bench/corruptions.py --device cuda      # the same on a GPU (the table then uses the GPU too)

1. The table: ``zoo:digits-cnn`` on the 359 digits test images (1 x 8 x 8, so the CIFAR-10-C
   constants), accuracy under each of the 15 corruptions at severities 1 to 5, the mean
   corruption accuracy and the relative drop from clean, as ``robustness corruptions`` prints it.
2. The cost: seconds to corrupt a batch of 32x32 RGB images (CIFAR-10-C constants) and a batch
   of 224x224 RGB images (ImageNet-C constants) at severity 3, per corruption, on ``--device``.

Writes its own section of bench/RESULTS.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ comes first on sys.path and bench/attacks.py would shadow the attacks package.
sys.path.insert(0, str(ROOT))
from resultsfile import write_section  # noqa: E402 - bench/resultsfile.py

HEADING = "## Common corruptions (bench/corruptions.py)"


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} thread(s)"


def images(n: int, side: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(n, 3, 6, 6, generator=g)
    return (
        F.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False).clamp(0, 1).to(device)
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cost(names: list[str], x: torch.Tensor, device: torch.device) -> dict[str, float]:
    from robustness.core.corruptions import corrupt

    out = {}
    for name in names:
        corrupt(x[:2], name, 3)  # warm-up (kernels, caches)
        sync(device)
        t0 = time.perf_counter()
        corrupt(x, name, 3, seed=1)
        sync(device)
        out[name] = time.perf_counter() - t0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--small", type=int, default=256, help="32x32 images per timed batch")
    parser.add_argument("--large", type=int, default=8, help="224x224 images per timed batch")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    from robustness.core.corruptions import corruption_names
    from robustness.core.corruptions.accuracy import corruption_accuracy
    from robustness.core.data import load_data
    from robustness.core.model import load_model

    names = corruption_names()
    model = load_model("zoo:digits-cnn", device=str(device))
    data = load_data("builtin:digits")
    t0 = time.perf_counter()
    res = corruption_accuracy(model, data.x, data.y, seed=0, batch_size=512)
    table_s = time.perf_counter() - t0
    small = cost(names, images(args.small, 32, device), device)
    large = cost(names, images(args.large, 224, device), device)

    lines = [
        HEADING,
        "",
        f"`python bench/corruptions.py --device {args.device}` on {machine(device)}, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        f"**Accuracy of `zoo:digits-cnn`** on the {res['n']} digits test images (1x8x8: CIFAR-10-C constants, "
        f"seed 0), the whole table in {table_s:.1f} s:",
        "",
        "| corruption | sev 1 | sev 2 | sev 3 | sev 4 | sev 5 | mean |",
        "|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in res["corruptions"]:
        cells = " | ".join(f"{a:.3f}" for a in row["accuracy"])
        lines.append(f"| {row['name']} | {cells} | {row['mean_accuracy']:.3f} |")
    low, high = res["mean_corruption_ci"]
    lines += [
        "",
        f"Clean accuracy {res['clean_accuracy']:.3f}; mean corruption accuracy "
        f"{res['mean_corruption_accuracy']:.3f} (95% CI [{low:.3f}, {high:.3f}]); relative drop from clean "
        f"{res['relative_drop']:.3f}.",
        "",
        f"**Cost** of one call at severity 3, {args.small} images of 3x32x32 (CIFAR-10-C constants) and "
        f"{args.large} of 3x224x224 (ImageNet-C constants):",
        "",
        f"| corruption | {args.small} x 32x32 s | ms / image | {args.large} x 224x224 s | ms / image |",
        "|:---|---:|---:|---:|---:|",
    ]
    for name in names:
        lines.append(
            f"| {name} | {small[name]:.3f} | {1000 * small[name] / args.small:.2f} | {large[name]:.3f} | "
            f"{1000 * large[name] / args.large:.1f} |"
        )
    lines += [
        "",
        "Notes: the digits are 8x8, so CIFAR-10-C's pixel-sized blurs are strong on them (glass blur's "
        "pixel sweep moves strokes by whole pixels of an 8-pixel image); accuracy under the three noise "
        "corruptions falls weakly with severity because the severities of a sample share their draws. "
        "glass_blur is a loop over pixel positions (each step batched over the chunk's images), so a "
        "batch costs far less than its images one by one (64x64, severity 3, on this CPU: 2 images "
        "1.0 s, 256 images 4.3 s); shot_noise draws exact Poisson quantiles "
        "(shared across severities) rather than calling torch.poisson. Frost uses procedural textures.",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    write_section(ROOT / "bench" / "RESULTS.md", section)


if __name__ == "__main__":
    main()
