"""Attack speed and strength against torchattacks, ART and the compute floor.

Run:  pip install --no-deps torchattacks && python bench/attacks.py [--device cuda]

Two workloads: the digits demo CNN on the 359 digits test images, and a VGG-style CNN
(4 convolutions, random weights) on random 3x32x32 inputs labelled with the model's own
predictions (clean accuracy 100%). For each, ``pgd`` (20 steps, linf) and
``autoattack-fast`` are timed against:

- the compute floor: the same number of bare forward+backward passes w.r.t. the input,
  weights frozen, no attack logic (for autoattack-fast: the per-sample forward and backward
  passes it counted, at the full-batch per-sample cost of each);
- torchattacks: ``PGD`` at the same eps, step and steps; and, at autoattack-fast's budget,
  ``MultiAttack([APGD-CE, APGD-T, FAB-T, Square])`` (torchattacks' own ``AutoAttack`` runs a
  different budget);
- ART's ``ProjectedGradientDescent`` (PyTorch estimator, used as its docs show: weights not
  frozen).

Each timing is the median (and best) of ``--repeats`` runs after one warm-up run. The table
is printed and written to ``bench/RESULTS.md`` as the section "Attacks (CPU)" or
"Attacks (GPU)"; other sections of that file are kept.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ROBUSTNESS_CACHE", str(REPO / ".cache" / "zoo"))

from resultsfile import write_section  # noqa: E402 - bench/resultsfile.py

from attacks.registry import get_attack  # noqa: E402
from robustness.core.model import ModelUnderTest, load_model  # noqa: E402

STEPS = 20


class VGGish(nn.Module):
    """Four 3x3 convolutions in two blocks, then two linear layers (2.4M parameters at width 64)."""

    def __init__(self, num_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * w * 8 * 8, 256), nn.ReLU(), nn.Linear(256, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# -- workloads ---------------------------------------------------------------------------------------


def digits_workload(device: str) -> dict[str, Any]:
    from robustness.core.data import load_data

    mut = load_model("zoo:digits-cnn", device=device)
    data = load_data("builtin:digits")
    return {
        "name": "digits CNN (151k params), 1x8x8",
        "mut": mut,
        "x": data.x.to(mut.device),
        "y": data.y.to(mut.device),
        "eps": 0.1,
        "shape": (1, 8, 8),
    }


def cnn_workload(device: str, n: int, width: int) -> dict[str, Any]:
    torch.manual_seed(0)
    net = VGGish(width=width)
    mut = ModelUnderTest(net, spec="bench:vggish", device=device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand((n, 3, 32, 32), generator=g).to(mut.device)
    with torch.no_grad():
        y = mut.predict(x)  # labels = the model's own predictions: clean accuracy 100%
    mut.validate(x)
    return {
        "name": f"VGG-ish CNN ({mut.n_parameters / 1e6:.1f}M params, random weights), 3x32x32",
        "mut": mut,
        "x": x,
        "y": y,
        # Random weights give small margins: a small eps keeps robust accuracy away from 0,
        # so pgd cannot win by stopping early.
        "eps": 0.5 / 255,
        "shape": (3, 32, 32),
    }


# -- timing ------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    fn: Callable[[], Any], device: torch.device, repeats: int, warmup: bool = True
) -> tuple[float, float, Any]:
    """(median, best, last output) of ``repeats`` runs, after one warm-up run if ``warmup``."""
    out = fn() if warmup else None
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), out


def floor_passes(mut: ModelUnderTest, x: torch.Tensor, y: torch.Tensor, passes: int) -> None:
    """``passes`` bare forward+backward passes w.r.t. the input, weights frozen."""
    with mut.evaluating(freeze=True), torch.enable_grad():
        xa = x.clone().requires_grad_(True)
        for _ in range(passes):
            loss = nn.functional.cross_entropy(mut.net(xa), y)
            (g,) = torch.autograd.grad(loss, xa)
    return g


def forward_passes(mut: ModelUnderTest, x: torch.Tensor, passes: int) -> None:
    with mut.evaluating(freeze=True), torch.no_grad():
        for _ in range(passes):
            out = mut.net(x)
    return out


def robust_acc(mut: ModelUnderTest, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    return int((mut.predict(x_adv) == y).sum()) / len(y)


# -- implementations ---------------------------------------------------------------------------------


def run_ours(name: str, wl: dict[str, Any], **params: Any):
    atk = get_attack(name, **params)
    return lambda: atk(wl["mut"], wl["x"], wl["y"], eps=wl["eps"], norm="linf", seed=0)


def run_torchattacks_pgd(wl: dict[str, Any]):
    import torchattacks

    net = wl["mut"].net.eval()
    atk = torchattacks.PGD(net, eps=wl["eps"], alpha=2.5 * wl["eps"] / STEPS, steps=STEPS, random_start=True)
    return lambda: atk(wl["x"], wl["y"])


def run_torchattacks_aa(wl: dict[str, Any], budget: dict[str, Any]):
    import torchattacks

    net = wl["mut"].net.eval()
    e, steps, nc = wl["eps"], budget["steps"], budget["n_target_classes"] + 1
    parts = [
        torchattacks.APGD(net, norm="Linf", eps=e, steps=steps, n_restarts=1, loss="ce", seed=0),
        torchattacks.APGDT(net, norm="Linf", eps=e, steps=steps, n_restarts=1, n_classes=nc, seed=0),
        torchattacks.FAB(
            net, norm="Linf", eps=e, steps=steps, n_restarts=1, multi_targeted=True, n_classes=nc
        ),
        torchattacks.Square(net, norm="Linf", eps=e, n_queries=budget["n_queries"], n_restarts=1, seed=0),
    ]
    atk = torchattacks.MultiAttack(parts)
    return lambda: atk(wl["x"], wl["y"])


def run_art_pgd(wl: dict[str, Any]):
    import numpy as np
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    mut = wl["mut"]
    clf = PyTorchClassifier(
        model=mut.net.eval(),
        loss=nn.CrossEntropyLoss(),
        input_shape=wl["shape"],
        nb_classes=int(mut.num_classes),
        clip_values=mut.bounds,
        device_type="gpu" if mut.device.type == "cuda" else "cpu",
    )
    atk = ProjectedGradientDescent(
        clf,
        norm=np.inf,
        eps=wl["eps"],
        eps_step=2.5 * wl["eps"] / STEPS,
        max_iter=STEPS,
        num_random_init=1,
        batch_size=len(wl["y"]),
        verbose=False,
    )
    x_np, y_np = wl["x"].cpu().numpy(), wl["y"].cpu().numpy()

    def go():
        np.random.seed(0)
        return torch.from_numpy(atk.generate(x_np, y=y_np)).to(mut.device)

    return go


# -- the benchmark -----------------------------------------------------------------------------------


def bench_workload(
    wl: dict[str, Any], repeats: int, skip: set[str], aa_n: int | None
) -> list[dict[str, Any]]:
    mut, x, y, dev = wl["mut"], wl["x"], wl["y"], wl["mut"].device
    n = len(y)
    rows: list[dict[str, Any]] = []

    def row(impl: str, med: float, best: float, acc: float | None, floor: float, note: str = "") -> None:
        rows.append(
            {
                "workload": wl["name"],
                "n": n,
                "eps": wl["eps"],
                "impl": impl,
                "median_s": med,
                "best_s": best,
                "ratio": med / floor,
                "robust_acc": acc,
                "note": note,
            }
        )
        acc_s = "" if acc is None else f"  robust acc {acc:.4f}"
        print(f"  {impl:<44} {med:8.3f} s (best {best:.3f})  x{med / floor:5.2f} floor{acc_s}", flush=True)

    print(f"\n{wl['name']}: n={n}, linf eps={wl['eps']:.4g}, device {dev}", flush=True)
    # PGD-20
    floor_med, floor_best, _ = timed(lambda: floor_passes(mut, x, y, STEPS), dev, repeats)
    row(f"floor: {STEPS} x fwd+bwd", floor_med, floor_best, None, floor_med)
    med, best, res = timed(run_ours("pgd", wl, steps=STEPS), dev, repeats)
    row(f"ours pgd ({STEPS} steps)", med, best, res.robust_accuracy, floor_med, "stops broken samples")
    if "torchattacks" not in skip:
        med, best, xa = timed(run_torchattacks_pgd(wl), dev, repeats)
        row(f"torchattacks PGD ({STEPS} steps)", med, best, robust_acc(mut, xa, y), floor_med)
    if "art" not in skip:
        med, best, xa = timed(run_art_pgd(wl), dev, repeats if dev.type == "cuda" else 1)
        row(f"ART ProjectedGradientDescent ({STEPS} steps)", med, best, robust_acc(mut, xa, y), floor_med)

    # autoattack-fast: floor from the passes it counted, at full-batch per-sample cost. On a CPU
    # it runs on the first aa_n samples (and once: its runs are long enough to time alone).
    if aa_n is not None and aa_n < n:
        wl = {**wl, "x": x[:aa_n], "y": y[:aa_n]}
        x, y, n = wl["x"], wl["y"], aa_n
    aa_repeats = repeats if dev.type == "cuda" else 1
    aa = get_attack("autoattack-fast")
    budget = aa.params
    med, best, res = timed(run_ours("autoattack-fast", wl), dev, aa_repeats, warmup=dev.type == "cuda")
    per_fb, _, _ = timed(lambda: floor_passes(mut, x, y, 1), dev, repeats)
    per_f, _, _ = timed(lambda: forward_passes(mut, x, 1), dev, repeats)
    aa_floor = res.n_backward / n * per_fb + max(0, res.n_forward - res.n_backward) / n * per_f
    rows.append(
        {
            "workload": wl["name"],
            "n": n,
            "eps": wl["eps"],
            "impl": f"floor: autoattack-fast's {res.n_forward} fwd / {res.n_backward} bwd sample passes",
            "median_s": aa_floor,
            "best_s": aa_floor,
            "ratio": 1.0,
            "robust_acc": None,
            "note": "",
        }
    )
    print(f"  {'floor: same passes as autoattack-fast':<44} {aa_floor:8.3f} s", flush=True)
    row("ours autoattack-fast", med, best, res.robust_accuracy, aa_floor)
    if "torchattacks" not in skip:
        med, best, xa = timed(run_torchattacks_aa(wl, budget), dev, aa_repeats, warmup=dev.type == "cuda")
        label = (
            f"torchattacks APGD/APGD-T/FAB-T/Square ({budget['steps']} it., "
            f"{budget['n_target_classes']} targets, {budget['n_queries']} q.)"
        )
        row(label, med, best, robust_acc(mut, xa, y), aa_floor)
    return rows


def machine(device: torch.device) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [
        f"CPU {cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    ]
    if device.type == "cuda":
        parts.append(f"GPU {torch.cuda.get_device_name(device)}")
    for mod, dist in (("torchattacks", "torchattacks"), ("art", "ART")):
        try:
            m = __import__(mod)
            parts.append(f"{dist} {m.__version__}")
        except ImportError:
            pass
    return "; ".join(parts)


def markdown(rows: list[dict[str, Any]], device: torch.device, repeats: int, targets: list[str]) -> str:
    title = "Attacks (GPU)" if device.type == "cuda" else "Attacks (CPU)"
    out = [
        f"## {title}",
        "",
        f"Machine: {machine(device)}. Command: `python bench/attacks.py"
        + (" --device cuda" if device.type == "cuda" else "")
        + f"` (median of {repeats} runs after a warm-up; ratio = time / compute floor; "
        f"{time.strftime('%Y-%m-%d')}).",
        "",
        "| workload | n | eps | implementation | median s | best s | x floor | robust acc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc = "" if r["robust_acc"] is None else f"{r['robust_acc']:.4f}"
        out.append(
            f"| {r['workload']} | {r['n']} | {r['eps']:.4g} | {r['impl']} | {r['median_s']:.3f} | "
            f"{r['best_s']:.3f} | {r['ratio']:.2f} | {acc} |"
        )
    out += ["", "Targets:", ""] + [f"- {t}" for t in targets] + [""]
    return "\n".join(out)


def check_targets(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for wl in dict.fromkeys(r["workload"] for r in rows):
        rs = {r["impl"].split(" (")[0]: r for r in rows if r["workload"] == wl}
        pgd = rs.get("ours pgd")
        if pgd is None:
            continue
        name = wl.split(" (")[0]
        ok = pgd["ratio"] <= 1.05
        lines.append(
            f"{name}: pgd {pgd['ratio']:.2f}x the floor (target <= 1.05): {'met' if ok else 'MISSED'}"
        )
        art = rs.get("ART ProjectedGradientDescent")
        if art:
            sp = art["median_s"] / pgd["median_s"]
            acc_ok = pgd["robust_acc"] <= art["robust_acc"]
            lines.append(
                f"{name}: pgd {sp:.2f}x faster than ART PGD (target >= 1.3): {'met' if sp >= 1.3 else 'MISSED'}; "
                f"robust acc {pgd['robust_acc']:.4f} vs {art['robust_acc']:.4f}: {'met' if acc_ok else 'MISSED'}"
            )
        ta = rs.get("torchattacks PGD")
        if ta:
            sp = ta["median_s"] / pgd["median_s"]
            acc_ok = pgd["robust_acc"] <= ta["robust_acc"]
            lines.append(
                f"{name}: pgd {sp:.2f}x torchattacks PGD's speed (target >= 1.0): {'met' if sp >= 1.0 else 'MISSED'}; "
                f"robust acc {pgd['robust_acc']:.4f} vs {ta['robust_acc']:.4f}: {'met' if acc_ok else 'MISSED'}"
            )
        aa = rs.get("ours autoattack-fast")
        taa = rs.get("torchattacks APGD/APGD-T/FAB-T/Square")
        if aa and taa:
            sp = taa["median_s"] / aa["median_s"]
            lines.append(
                f"{name}: autoattack-fast {sp:.2f}x torchattacks' components at the same budget; "
                f"robust acc {aa['robust_acc']:.4f} vs {taa['robust_acc']:.4f}"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per entry (default 3 CPU, 5 GPU)")
    ap.add_argument(
        "--cnn-batch", type=int, default=None, help="random 3x32x32 inputs (default 256 CPU, 1024 GPU)"
    )
    ap.add_argument(
        "--cnn-width",
        type=int,
        default=None,
        help="channels of the first conv block (default 64 GPU, 32 CPU)",
    )
    ap.add_argument(
        "--aa-n", type=int, default=None, help="samples for autoattack-fast (default: all on GPU, 100 on CPU)"
    )
    ap.add_argument(
        "--skip", nargs="*", default=[], choices=["torchattacks", "art"], help="peers to leave out"
    )
    ap.add_argument("--output", default=str(REPO / "bench" / "RESULTS.md"), help="results file ('' to skip)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available here", file=sys.stderr)
        return 2
    gpu = device.type == "cuda"
    repeats = args.repeats or (5 if gpu else 3)
    skip = set(args.skip)
    try:
        import torchattacks  # noqa: F401
    except ImportError:
        print("torchattacks is not installed (pip install --no-deps torchattacks): skipping it", flush=True)
        skip.add("torchattacks")
    try:
        import art  # noqa: F401
    except ImportError:
        print("ART is not installed: skipping it", flush=True)
        skip.add("art")
    if gpu:
        torch.backends.cudnn.benchmark = True
    print(machine(device), flush=True)
    t0 = time.perf_counter()
    rows = bench_workload(digits_workload(args.device), repeats, skip, args.aa_n or (None if gpu else 100))
    cnn = cnn_workload(
        args.device, args.cnn_batch or (1024 if gpu else 256), args.cnn_width or (64 if gpu else 32)
    )
    rows += bench_workload(cnn, repeats, skip, args.aa_n or (None if gpu else 64))
    targets = check_targets(rows)
    print("\n" + "\n".join(targets))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.output:
        write_section(Path(args.output), markdown(rows, device, repeats, targets))
        print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
