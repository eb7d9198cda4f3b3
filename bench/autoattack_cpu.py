"""`autoattack` against the reference AutoAttack (and torchattacks') on the CPU, per eps and per member.

Run:  pip install --no-deps pyautoattack torchattacks && python bench/autoattack_cpu.py

One process, the same model and images for every implementation, one torch thread (the
default; ``--threads``), rounds interleaved (ours, the reference, torchattacks, then again) and
the best of ``--rounds`` kept, so that a busy machine slows all of them alike:

- ``autoattack`` (standard version, the reference budget: APGD-CE 100, APGD-T 9 x 100, FAB-T
  9 x 100, Square 5000), seed 0;
- the reference: ``pyautoattack`` (Croce & Hein's code), ``version="standard"``, seed 0;
- torchattacks' ``AutoAttack(version="standard")`` (its members default to 10 iterations, so a
  smaller budget than the reference's: shown for comparison, not as a peer at the same budget);
- ``autoattack`` as it was before the channels-last probe and FAB's NumPy sort (the iterates in
  the batch's own layout, ``torch.sort`` in FAB's projection): once per eps, for the before/after
  ratio and the per-sample check against the code before the change.

Per implementation and eps: the time, the robust accuracy, and per member the time (ours and the
reference's members are timed by wrapping their entry points). Per sample, ours is compared with
the reference (robust here but broken there, and the reverse) and with the code before.

Workloads: ``zoo:digits-cnn`` on the first ``--n`` digits test images (1x8x8) and, with
``--cifar``, a small CIFAR-shaped CNN (3x32x32) trained for a few epochs on upscaled digits, with
the batch in NCHW and/or stored channels-last (``--cifar-layout``). The
section "AutoAttack on the CPU (bench/autoattack_cpu.py)" of bench/RESULTS.md is replaced.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ROBUSTNESS_CACHE", str(REPO / ".cache" / "zoo"))

from resultsfile import write_section  # noqa: E402 - bench/resultsfile.py

import attacks.apgd  # noqa: E402
import attacks.fab  # noqa: E402
import attacks.square  # noqa: E402
from attacks.layout import input_layout  # noqa: E402
from attacks.registry import get_attack  # noqa: E402
from robustness.core.data import load_data  # noqa: E402
from robustness.core.model import ModelUnderTest, load_model  # noqa: E402

HEADING = "## AutoAttack on the CPU (bench/autoattack_cpu.py)"
MEMBERS = ("apgd-ce", "apgd-t", "fab", "square")


class SmallCifarNet(nn.Module):
    """A small CNN for 3x32x32 inputs (about 0.19M parameters)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def upscaled_digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits as 3x32x32 images (bilinear upscaling, grey in every channel), NCHW."""
    data = load_data("builtin:digits" if split == "test" else "builtin:digits:train")
    x = functional.interpolate(data.x.contiguous(), size=(32, 32), mode="bilinear", align_corners=False)
    return x.clamp(0, 1).repeat(1, 3, 1, 1).contiguous(), data.y


def cifar_workload(epochs: int) -> ModelUnderTest:
    x, y = upscaled_digits("train")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = SmallCifarNet()
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(order), 64):
            idx = order[start : start + 64]
            loss = functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    return ModelUnderTest(net, spec="<small CIFAR-shaped CNN on upscaled digits>", device="cpu")


def timed_members(targets: dict[str, Any], times: dict[str, float]) -> None:
    """Wrap ``targets[name]`` (an object with ``method``) to add its wall time to ``times[name]``."""
    for name, (obj, method) in targets.items():
        inner = getattr(obj, method)

        def wrapped(*args: Any, _inner: Callable = inner, _name: str = name, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _inner(*args, **kwargs)
            finally:
                times[_name] = times.get(_name, 0.0) + time.perf_counter() - t0

        setattr(obj, method, wrapped)


def run_ours(mut: ModelUnderTest, x: torch.Tensor, y: torch.Tensor, eps: float) -> dict[str, Any]:
    attack = get_attack("autoattack")
    times: dict[str, float] = {}
    timed_members({m.name: (m, "perturb_attributed") for m in attack._attacks}, times)
    t0, c0 = time.perf_counter(), time.thread_time()
    result = attack(mut, x, y, eps=eps, seed=0)
    elapsed, cpu = time.perf_counter() - t0, time.thread_time() - c0
    return {
        "time": elapsed,
        "cpu": cpu,
        "robust": result.robust.clone(),
        "x_adv": result.x_adv,
        "members": times,
    }


def run_ours_before(mut: ModelUnderTest, x: torch.Tensor, y: torch.Tensor, eps: float) -> dict[str, Any]:
    """Ours as before the channels-last probe and FAB's NumPy sort: the iterates in the batch's own
    layout (``input_layout``), ``torch.sort`` in FAB's projection."""
    saved = {module: module.iterate_layout for module in (attacks.apgd, attacks.fab, attacks.square)}
    saved_sort = attacks.fab._sort_rows
    for module in saved:
        module.iterate_layout = lambda ctx, t: input_layout(t)
    attacks.fab._sort_rows = lambda t: t.sort(dim=1)
    try:
        return run_ours(mut, x, y, eps)
    finally:
        for module, fn in saved.items():
            module.iterate_layout = fn
        attacks.fab._sort_rows = saved_sort


def run_reference(mut: ModelUnderTest, x: torch.Tensor, y: torch.Tensor, eps: float) -> dict[str, Any]:
    from pyautoattack import AutoAttack

    net = mut.net.eval()
    reference = AutoAttack(net, norm="Linf", eps=eps, version="standard", seed=0, device="cpu")
    reference.verbose = False
    times: dict[str, float] = {}
    timed_members(
        {
            "apgd-ce": (reference.apgd, "perturb"),
            "apgd-t": (reference.apgd_targeted, "perturb"),
            "fab": (reference.fab, "perturb"),
            "square": (reference.square, "perturb"),
        },
        times,
    )
    t0, c0 = time.perf_counter(), time.thread_time()
    # The reference views its inputs (.view), which a channels-last batch refuses: it gets NCHW.
    x_adv, _ = reference.run_standard_evaluation(x.contiguous(), y.clone(), batch_size=len(y))
    elapsed, cpu = time.perf_counter() - t0, time.thread_time() - c0
    with torch.no_grad():
        robust = net(x_adv).argmax(dim=1) == y
    return {"time": elapsed, "cpu": cpu, "robust": robust, "members": times}


def run_torchattacks(mut: ModelUnderTest, x: torch.Tensor, y: torch.Tensor, eps: float) -> dict[str, Any]:
    import torchattacks

    net = mut.net.eval()
    attack = torchattacks.AutoAttack(net, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
    t0, c0 = time.perf_counter(), time.thread_time()
    x_adv = attack(x.contiguous(), y.clone())
    elapsed, cpu = time.perf_counter() - t0, time.thread_time() - c0
    with torch.no_grad():
        robust = net(x_adv).argmax(dim=1) == y
    return {"time": elapsed, "cpu": cpu, "robust": robust, "members": {}}


RUNNERS = {"ours": run_ours, "reference": run_reference, "torchattacks": run_torchattacks}


def bench_workload(
    label: str, mut: ModelUnderTest, x: torch.Tensor, y: torch.Tensor, eps_list: list[float], rounds: int
) -> tuple[list[str], list[str], list[str]]:
    rows, member_rows, notes = [], [], []
    for eps in eps_list:
        best: dict[str, dict[str, Any]] = {}
        best_cpu: dict[str, float] = {}
        for r in range(rounds):
            for name, runner in RUNNERS.items():
                out = runner(mut, x, y, eps)
                print(
                    f"{label} eps {eps} round {r} {name}: {out['time']:.1f} s (CPU {out['cpu']:.1f} s), "
                    f"robust {out['robust'].float().mean():.3f}",
                    flush=True,
                )
                best_cpu[name] = min(best_cpu.get(name, float("inf")), out["cpu"])
                if name not in best or out["time"] < best[name]["time"]:
                    best[name] = out
                elif not torch.equal(out["robust"], best[name]["robust"]) and name != "torchattacks":
                    notes.append(f"{label}, eps {eps}: {name}'s robust samples changed between rounds")
        slow = run_ours_before(mut, x, y, eps)
        print(f"{label} eps {eps} ours before: {slow['time']:.1f} s", flush=True)
        ours, ref = best["ours"], best["reference"]
        best_cpu["ours before this change"] = slow["cpu"]
        n = len(y)
        for name, out in (*best.items(), ("ours before this change", slow)):
            ratio = out["time"] / ref["time"]
            cpu_ratio = best_cpu[name] / best_cpu["reference"]
            rows.append(
                f"| {label} | {n} | {eps} | {name} | {out['time']:.1f} | {ratio:.2f}x | {best_cpu[name]:.1f} | "
                f"{cpu_ratio:.2f}x | {out['robust'].float().mean():.3f} |"
            )
        more_robust = int((ours["robust"] & ~ref["robust"]).sum())
        less_robust = int((~ours["robust"] & ref["robust"]).sum())
        vs_slow = int((ours["robust"] & ~slow["robust"]).sum())
        notes.append(
            f"{label}, eps {eps}: ours {ours['time'] / ref['time']:.2f}x the reference's time "
            f"({'met' if ours['time'] <= 0.5 * ref['time'] else 'MISSED'} against <= 0.5x; CPU time "
            f"{best_cpu['ours'] / best_cpu['reference']:.2f}x, "
            f"{'met' if best_cpu['ours'] <= 0.5 * best_cpu['reference'] else 'MISSED'}), "
            f"{ours['time'] / slow['time']:.2f}x the code before's; robust accuracy {ours['robust'].float().mean():.3f} "
            f"vs {ref['robust'].float().mean():.3f} "
            f"({'met' if ours['robust'].sum() <= ref['robust'].sum() else 'MISSED'}: no higher); per sample, "
            f"{more_robust} robust here but broken by the reference, {less_robust} the reverse; "
            f"{vs_slow} robust here but broken by the code before "
            f"(identical masks: {bool(torch.equal(ours['robust'], slow['robust']))}; adversarial examples "
            f"differ by at most {float((ours['x_adv'] - slow['x_adv']).abs().max()):.1e})"
        )
        for member in MEMBERS:
            member_rows.append(
                f"| {label} | {eps} | {member} | {ref['members'].get(member, 0.0):.1f} | "
                f"{slow['members'].get(member, 0.0):.1f} | {ours['members'].get(member, 0.0):.1f} | "
                f"{ours['members'].get(member, 0.0) / max(ref['members'].get(member, 1e-9), 1e-9):.2f}x |"
            )
    return rows, member_rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="test images (the first n)")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.05, 0.1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cifar", action="store_true", help="also the small CIFAR-shaped CNN")
    parser.add_argument("--cifar-eps", type=float, nargs="+", default=[0.03])
    parser.add_argument(
        "--cifar-n", type=int, default=0, help="images of the CIFAR-shaped workload (default: --n)"
    )
    parser.add_argument("--only-cifar", action="store_true", help="the CIFAR-shaped workload only")
    parser.add_argument("--cifar-layout", choices=("both", "nchw", "channels-last"), default="nchw")
    parser.add_argument(
        "--cifar-rounds", type=int, default=0, help="rounds of the CIFAR-shaped workload (default: --rounds)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()

    workloads = []
    if not args.only_cifar:
        digits = load_data("builtin:digits")
        workloads.append(("digits CNN (zoo:digits-cnn), 1x8x8", load_model("zoo:digits-cnn", device="cpu"),
                          digits.x[: args.n], digits.y[: args.n], args.eps))  # fmt: skip
    if args.cifar or args.only_cifar:
        x, y = upscaled_digits("test")
        mut = cifar_workload(epochs=3)
        n = args.cifar_n or args.n
        if args.cifar_layout in ("both", "nchw"):
            workloads.append(("small CNN (0.19M), 3x32x32, NCHW batch", mut, x[:n], y[:n], args.cifar_eps))
        if args.cifar_layout in ("both", "channels-last"):
            # The same images stored channels-last (the peers get them in NCHW: they .view() the inputs).
            x_cl = x[:n].contiguous(memory_format=torch.channels_last)
            workloads.append(
                ("small CNN (0.19M), 3x32x32, channels-last batch", mut, x_cl, y[:n], args.cifar_eps)
            )

    rows, member_rows, notes = [], [], []
    for label, mut, x, y, eps_list in workloads:
        rounds = (args.cifar_rounds or args.rounds) if label.startswith("small CNN") else args.rounds
        r, m, n = bench_workload(label, mut, x, y, eps_list, rounds)
        rows += r
        member_rows += m
        notes += n

    import pyautoattack
    import torchattacks

    minutes = (time.perf_counter() - t_start) / 60
    section = "\n".join(
        [
            HEADING,
            "",
            f"`python {' '.join(sys.argv)}` "
            f"on {platform.machine()} CPU, torch {torch.__version__}, {args.threads} thread(s), pyautoattack "
            f"{getattr(pyautoattack, '__version__', '0.2.0')}, torchattacks {torchattacks.__version__}; {minutes:.1f} min "
            "on 2 cores shared with other jobs. Linf, standard version, seed 0; every implementation on the "
            "same images in one process, rounds interleaved, the best of the rounds kept. Ratio: time / the "
            "reference's time. CPU time: the thread's (time.thread_time), best round, less sensitive to "
            "the other jobs on the cores than the wall time.",
            "",
            "| workload | n | eps | implementation | time (s) | x reference | CPU time (s) | x reference (CPU) "
            "| robust acc |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Per member (seconds; the best round of ours and of the reference; the code before's one run):",
            "",
            "| workload | eps | member | reference | ours before | ours | ours / reference |",
            "|---|---|---|---|---|---|---|",
            *member_rows,
            "",
            *[f"- {note}" for note in notes],
            "",
        ]
    )
    print(section)
    if not args.no_write:
        write_section(REPO / "bench" / "RESULTS.md", section)


if __name__ == "__main__":
    main()
