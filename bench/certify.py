"""Randomized smoothing benchmark: CERTIFY's speed against ART, and the digits model's certificates.

    python bench/certify.py                        # CPU: speed vs ART, then the sigma x radius table
    python bench/certify.py --device cuda --only speed

1. Speed: the same base model, n0 = 100 and the same n, certified by
   ``robustness.smoothing.SmoothedClassifier.certify`` (torch noise on the model's device, many
   images per forward pass when n is small, ``--batch-size`` passes per round) and by ART's
   ``PyTorchRandomizedSmoothing.certify`` (numpy noise for all n copies of one image, one image
   at a time) at its default batch size of 32 and at ours. Both count the same forward passes;
   the certified accuracies are printed side by side (different draws, so they agree only up to
   Monte Carlo error).
2. The table: digits CNNs hardened with ``robustness harden --method gaussian --sigma S`` (one
   per sigma, cached under runs/bench-certify/), certified on the digits test images at n0 = 100,
   n = ``--n``, alpha = 0.001: certified accuracy at each l2 radius; and, for sigma 0.25, the
   bracket (certified beside the EOT attack on the smoothed classifier) on ``--bracket-images``.

Each part writes its own section of bench/RESULTS.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ comes first on sys.path and bench/attacks.py would shadow the attacks package.
sys.path.insert(0, str(ROOT))
from resultsfile import write_section  # noqa: E402 - bench/resultsfile.py

RADII = (0.0, 0.25, 0.5, 0.75, 1.0)
ALPHA = 0.001
N0 = 100


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} thread(s)"


def hardened(sigma: float, epochs: int) -> Path:
    """A digits CNN trained by ``robustness harden --method gaussian --sigma S`` (cached)."""
    out = ROOT / "runs" / "bench-certify" / f"gaussian-{sigma:g}"
    if not (out / "model.json").exists():
        cmd = [sys.executable, "-m", "robustness", "harden", "--model", "zoo:digits-cnn", "--data"]
        cmd += [
            "builtin:digits:train",
            "--method",
            "gaussian",
            "--sigma",
            str(sigma),
            "--epochs",
            str(epochs),
        ]
        cmd += ["--output", str(out), "--device", "cpu"]
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return out


def ours(model, x, sigma: float, n: int, batch_size: int | None):
    from robustness.smoothing.classifier import SmoothedClassifier

    smoothed = SmoothedClassifier(model, sigma, batch_size=batch_size, seed=0)
    smoothed.certify(x[:2], N0, min(n, 1000), ALPHA)  # warm-up
    sync(model.device)
    t0 = time.perf_counter()
    certs = smoothed.certify(x, N0, n, ALPHA)
    sync(model.device)
    return time.perf_counter() - t0, certs.prediction.numpy(), np.nan_to_num(certs.radius.numpy(), nan=0.0)


def statsmodels_stand_in() -> None:
    """ART's certify imports ``statsmodels.stats.proportion.proportion_confint`` for its bound, once
    per image; where statsmodels is not installed, give it the same function from scipy (its
    ``method="beta"`` is the Clopper-Pearson interval). The bound costs nothing beside the draws."""
    try:
        import statsmodels.stats.proportion  # noqa: F401
    except ImportError:
        import types

        from scipy.stats import beta

        def proportion_confint(count, nobs, alpha=0.05, method="beta"):
            assert method == "beta"
            low = beta.ppf(alpha / 2, count, nobs - count + 1) if count > 0 else 0.0
            high = beta.ppf(1 - alpha / 2, count + 1, nobs - count) if count < nobs else 1.0
            return low, high

        for name in ("statsmodels", "statsmodels.stats", "statsmodels.stats.proportion"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["statsmodels.stats.proportion"].proportion_confint = proportion_confint


@torch.no_grad()
def floor(model, x, n: int, batch_size: int):
    """The compute floor: the same forward passes on ready-made inputs, no noise, no counting."""
    passes = x.shape[0] * (N0 + n)
    inputs = x[:1].to(model.device).expand(batch_size, *x.shape[1:]).contiguous()
    sync(model.device)
    t0 = time.perf_counter()
    with model.evaluating():
        for start in range(0, passes, batch_size):
            model(inputs[: min(batch_size, passes - start)])
    sync(model.device)
    return time.perf_counter() - t0, None, None


def art(model, x, sigma: float, n: int, batch_size: int, device: str):
    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    statsmodels_stand_in()

    classifier = PyTorchRandomizedSmoothing(
        model=model.net,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=int(model.num_classes),
        clip_values=tuple(model.bounds),
        sample_size=N0,
        scale=sigma,
        alpha=ALPHA,
        device_type="gpu" if device.startswith("cuda") else "cpu",
    )
    xs = x.numpy().astype(np.float32)
    classifier.certify(xs[:2], n=min(n, 1000), batch_size=batch_size)  # warm-up
    t0 = time.perf_counter()
    prediction, radius = classifier.certify(xs, n=n, batch_size=batch_size)
    return time.perf_counter() - t0, prediction, radius


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def certified(prediction: np.ndarray, radius: np.ndarray, y: np.ndarray, r: float) -> float:
    return float(np.mean((prediction == y) & (prediction >= 0) & (radius >= r)))


def speed(args, model_dir: Path) -> str:
    from robustness.core.data import load_data
    from robustness.core.model import load_model

    model = load_model(str(model_dir), device=args.device)
    data = load_data("builtin:digits").subset(range(args.speed_images))
    model.validate(data.x)
    y = data.y.numpy()
    ours_batch = args.batch_size or (10_000 if args.device.startswith("cuda") else 256)
    runs = [
        ("robustness-audit", ours_batch, lambda: ours(model, data.x, 0.25, args.n, args.batch_size)),
        *[
            (
                "ART 1.20 PyTorchRandomizedSmoothing",
                b,
                lambda b=b: art(model, data.x, 0.25, args.n, b, args.device),
            )
            for b in (32, ours_batch)
        ],
        ("forward passes alone (the floor)", ours_batch, lambda: floor(model, data.x, args.n, ours_batch)),
    ]
    # Interleaved repeats, best time of each: the CPUs are shared, and the load comes and goes.
    best: dict[int, tuple] = {}
    for _ in range(args.repeats):
        for i, (_, _, run) in enumerate(runs):
            t, p, r = run()
            if i not in best or t < best[i][0]:
                best[i] = (t, p, r)
    rows = [(name, batch, *best[i]) for i, (name, batch, _) in enumerate(runs)]
    base = rows[0][2]
    lines = [
        f"## Certify speed against ART ({'GPU' if args.device.startswith('cuda') else 'CPU'}, bench/certify.py)",
        "",
        f"Machine: {machine(args.device)}; torch {torch.__version__}. Digits CNN (151k parameters, 1x8x8 inputs) "
        f"hardened with `--method gaussian --sigma 0.25`; {args.speed_images} test images, n0 = {N0}, "
        f"n = {args.n}, alpha = {ALPHA} (the same {args.speed_images * (N0 + args.n):,} forward passes for each); "
        f"best of {args.repeats} interleaved runs.",
        "",
        "| implementation | batch | time (s) | images/s | ours faster by | certified acc. r=0 / 0.25 / 0.5 |",
        "|---|---|---|---|---|---|",
    ]
    for name, batch, t, p, r in rows:
        acc = (
            ""
            if p is None
            else " / ".join(f"{certified(p, r, y, radius):.3f}" for radius in (0.0, 0.25, 0.5))
        )
        lines.append(
            f"| {name} | {batch} | {t:.2f} | {args.speed_images / t:.2f} | {t / base:.2f}x | {acc} |"
        )
    lines += [
        "",
        "ART draws the noise in numpy on the CPU for all n copies of an image at once and certifies one "
        "image at a time; ours draws it with torch on the model's device, in rounds of at most `batch` "
        "forward passes. Different draws: the certified accuracies agree up to Monte Carlo error. "
        "The floor is the time of the same number of forward passes alone: on a CPU the model is "
        "nearly all of the cost, so no implementation can be much faster than it.",
        "",
    ]
    return "\n".join(lines)


def table(args, model_dirs: dict[float, Path]) -> str:
    from robustness.core.data import load_data
    from robustness.core.model import load_model
    from robustness.smoothing import bounds
    from robustness.smoothing.bracket import bracket_rows
    from robustness.smoothing.classifier import SmoothedClassifier
    from robustness.smoothing.empirical import AttackSettings, attack_smoothed

    data = load_data("builtin:digits")
    if args.images < len(data):
        data = data.subset(range(args.images))
    lines = [
        "## Certified accuracy of the digits model (bench/certify.py)",
        "",
        f"Machine: {machine(args.device)}. Digits CNN hardened with `robustness harden --method gaussian "
        f"--sigma S --epochs {args.epochs}`; CERTIFY on {len(data)} digits test images, n0 = {N0}, "
        f"n = {args.n:,}, alpha = {ALPHA}. Certified accuracy at each l2 radius (inputs in [0, 1], 64 pixels); "
        "abstentions count as wrong. 'base clean' is the base model's accuracy on clean inputs. "
        f"Times at {args.batch_size or 'the default number of'} forward passes per round.",
        "",
        "| sigma | base clean | "
        + " | ".join(f"r = {r:g}" for r in RADII)
        + " | abstain | largest radius | time (s) |",
        "|---|---|" + "---|" * len(RADII) + "---|---|---|",
    ]
    bracket_text: list[str] = []
    for sigma, folder in model_dirs.items():
        model = load_model(str(folder), device=args.device)
        model.validate(data.x)
        clean = float((model.predict(data.x).cpu() == data.y).float().mean())
        smoothed = SmoothedClassifier(model, sigma, batch_size=args.batch_size, seed=0)
        t0 = time.perf_counter()
        certs = smoothed.certify(data.x, N0, args.n, ALPHA)
        elapsed = time.perf_counter() - t0
        acc = certs.certified_accuracy(data.y, RADII)
        lines.append(
            f"| {sigma:g} | {clean:.3f} | "
            + " | ".join(f"{a:.3f}" for a in acc)
            + f" | {float(certs.abstained.float().mean()):.3f} | {bounds.max_certifiable_radius(sigma, args.n, ALPHA):.3f}"
            f" | {elapsed:.0f} |"
        )
        print(lines[-1], flush=True)
        if sigma == 0.25 and args.bracket_images:
            k = min(args.bracket_images, len(data))
            sub = data.subset(range(k))
            part = SmoothedClassifier(model, sigma, batch_size=args.batch_size, seed=0)
            certs_k = part.certify(sub.x, N0, args.n, ALPHA)
            settings = AttackSettings()
            t0 = time.perf_counter()
            empirical = attack_smoothed(part, sub.x, sub.y, [0.25, 0.5, 0.75], settings)
            attack_s = time.perf_counter() - t0
            rows = bracket_rows(certs_k, empirical, sub.y, settings.restarts, settings.votes)
            bracket_text = [
                "",
                f"The bracket for sigma 0.25 on the first {k} images: certified accuracy (lower bound) beside "
                f"the accuracy of the smoothed classifier under PGD-20 (CE) with EOT over the noise "
                f"({settings.noise_samples} x {settings.eot_samples} draws per step), each example judged by a "
                f"{settings.votes}-draw vote (upper bound); {attack_s:.0f} s for the attack.",
                "",
                "| l2 eps | certified | attacked (EOT) | certified but broken (Monte Carlo allows) |",
                "|---|---|---|---|",
            ]
            bracket_text += [
                f"| {r['eps']:g} | {r['certified_accuracy']:.3f} | {r['empirical_accuracy']:.3f} | "
                f"{r['contradictions']} ({r['contradictions_allowed']}) |"
                for r in rows
            ]
    lines += [
        "",
        "For comparison, Cohen et al. (2019) report for a CIFAR-10 ResNet-110 at sigma 0.25: 0.60 / 0.43 / "
        "0.27 / 0 at r = 0.25 / 0.5 / 0.75 / 1.0 (n = 100,000, where the largest certifiable radius is 0.95).",
        *bracket_text,
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--n", type=int, default=10_000, help="CERTIFY's n (default 10000)")
    p.add_argument("--speed-images", type=int, default=20)
    p.add_argument("--images", type=int, default=359, help="images in the table (default: all 359)")
    p.add_argument("--bracket-images", type=int, default=100)
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.12, 0.25, 0.5])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=None, help="ours: forward passes per round")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="speed: best of this many interleaved runs")
    p.add_argument("--only", choices=("speed", "table"))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("ROBUSTNESS_CACHE", str(ROOT / ".cache" / "zoo"))
    results = ROOT / "bench" / "RESULTS.md"
    model_dirs = {s: hardened(s, args.epochs) for s in (args.sigmas if args.only != "speed" else [0.25])}
    if 0.25 not in model_dirs:
        model_dirs[0.25] = hardened(0.25, args.epochs)
    if args.only != "table":
        text = speed(args, model_dirs[0.25])
        print(text, flush=True)
        if not args.no_write:
            write_section(results, text)
    if args.only != "speed":
        text = table(args, {s: model_dirs[s] for s in args.sigmas})
        print(text, flush=True)
        if not args.no_write:
            write_section(results, text)


if __name__ == "__main__":
    main()
