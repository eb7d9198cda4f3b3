"""Scale-out and GPU fast paths, measured.

CPU (default): the same command on 1 process and on 2 (``python -m torch.distributed.run
--standalone --nproc_per_node=2``, gloo), with the speed-up and a check that the numbers are
identical:

- ``robustness attack``: PGD-50 over the 359 digits test images at a small eps (most samples
  stay robust, so every batch costs its full budget), batch size 45 (8 batches, 4 per rank);
  speed-up of the attack's own time (process start-up is reported apart) against one process
  with one thread, and one process using both cores as a second reference;
- ``robustness audit examples/digits-audit.yaml`` (the issue's acceptance check): the results
  must hold the same numbers; wall times are reported.

GPU (``--gpu``; an estimated 3 minutes on an H100, not yet run on one): PGD-20 images per second on a ResNet-18 for
3x32x32 inputs (random weights, batch-norm statistics set on random images, labels = its own
predictions, so clean accuracy is 100%), eps chosen so that about half the samples resist
PGD-20 (early stopping would otherwise flatter the throughput), in fp32 and bf16:

- ``pgd`` as an evaluation (``Attack.__call__``: stops attacking broken samples) and with the
  full budget (``perturb_batch``: every sample all 20 steps, the same work as the others);
- torchattacks' ``PGD`` (same eps, step, steps, random start), fp32 and under bf16 autocast;
- the compute floor: 20 bare forward+backward passes w.r.t. the input, weights frozen;
- the time of a full ``autoattack`` audit (examples/digits-audit.yaml) on the digits model.

Targets: 2 CPU processes >= 1.6x one; on GPU ``pgd`` >= 0.95x the floor's throughput and bf16
``pgd`` >= 1.5x torchattacks' fp32 throughput at equal robust accuracy (within +0.5 point).
Results go to the "Scale" section of ``bench/RESULTS.md`` (other sections are kept).

Run from the repository root:  python bench/scale.py  |  PYTHONPATH=. python bench/scale.py --gpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ROBUSTNESS_CACHE", str(REPO / ".cache" / "zoo"))

RESULTS = REPO / "bench" / "RESULTS.md"
SECTION = "## Scale"
CPU_SUB = "### CPU: one process against two (gloo)"
GPU_SUB = "### GPU fast paths"


# ---------------------------------------------------------------------------------------
# Shared helpers


def _env(threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("ROBUSTNESS_CACHE", str(REPO / ".cache" / "zoo"))
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _robustness(nproc: int) -> list[str]:
    """``python -m robustness`` on one process, or under torchrun on ``nproc``."""
    if nproc == 1:
        return [sys.executable, "-m", "robustness"]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "robustness",
    ]


def _run(cmd: list[str], env: dict[str, str], timeout: float | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1, 3):
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def update_section(sub: str, body: str) -> None:
    """Replace subsection ``sub`` of the Scale section in RESULTS.md (other text is kept)."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if SECTION not in text:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n`python bench/scale.py` (CPU) and `--gpu`.\n"
    start = text.index(SECTION)
    nxt = re.search(r"^## ", text[start + len(SECTION) :], flags=re.M)
    end = start + len(SECTION) + nxt.start() if nxt else len(text)
    section = text[start:end]
    block = f"{sub}\n\n{body.strip()}\n"
    if sub in section:
        s0 = section.index(sub)
        m = re.search(r"^###? ", section[s0 + len(sub) :], flags=re.M)
        s1 = s0 + len(sub) + m.start() if m else len(section)
        section = section[:s0] + block + ("\n" if m else "") + section[s1:]
    else:
        section = section.rstrip("\n") + "\n\n" + block
    text = text[:start] + section.rstrip("\n") + "\n" + ("\n" + text[end:] if end < len(text) else "")
    RESULTS.write_text(text)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# CPU: 1 process against 2


def cpu_attack(tmp: Path, eps: float, steps: int, batch: int) -> tuple[list[list[Any]], dict[str, Any]]:
    import numpy as np

    base = [
        "attack",
        "--model",
        "zoo:digits-cnn",
        "--data",
        "builtin:digits",
        "--device",
        "cpu",
        "--attack",
        "pgd",
        "--steps",
        str(steps),
        "--eps",
        str(eps),
        "--batch-size",
        str(batch),
        "--json",
    ]
    runs = {}
    for label, nproc, threads in (("1 process, 1 thread", 1, 1), ("2 processes, 1 thread each", 2, 1)):
        out = tmp / f"adv-{nproc}.npz"
        wall, stdout = _run(_robustness(nproc) + base + ["--save", str(out)], _env(threads))
        runs[label] = (wall, json.loads(stdout), np.load(out))
    wall, stdout = _run(_robustness(1) + base, _env(2))
    runs["1 process, 2 threads"] = (wall, json.loads(stdout), None)
    # The machine's own ceiling: two independent 1-process runs at once (no communication at all).
    # Their summed throughput against one run alone bounds what any 2-process split can reach here.
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            _robustness(1) + base,
            env=_env(1),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [json.loads(p.communicate()[0]) for p in procs]
    wall = time.perf_counter() - t0
    both = dict(outs[0])
    both["time_s"] = max(o["time_s"] for o in outs) / 2  # two workloads done in that time
    runs["ceiling: 2 independent runs at once (per workload)"] = (wall / 2, both, None)

    ref_wall, ref, ref_npz = runs["1 process, 1 thread"]
    rows = []
    same = {}
    for label, (wall, res, npz) in runs.items():
        identical = "-"
        if npz is not None:
            identical = bool(
                np.array_equal(npz["x_adv"], ref_npz["x_adv"])
                and np.array_equal(npz["adv_pred"], ref_npz["adv_pred"])
                and res["robust_accuracy"] == ref["robust_accuracy"]
                and res["n_forward"] == ref["n_forward"]
                and res["n_backward"] == ref["n_backward"]
            )
            same[label] = identical
        rows.append(
            [
                label,
                f"{res['time_s']:.2f} s",
                f"{ref['time_s'] / res['time_s']:.2f}x",
                f"{wall:.1f} s",
                f"{ref_wall / wall:.2f}x",
                f"{100 * res['robust_accuracy']:.2f}%",
                res["n_backward"],
                identical,
            ]
        )
    info = {
        "speedup": ref["time_s"] / runs["2 processes, 1 thread each"][1]["time_s"],
        "ceiling": ref["time_s"] / both["time_s"],
        "same": same,
    }
    return rows, info


def cpu_audit(tmp: Path) -> tuple[list[list[Any]], bool]:
    cfg = "examples/digits-audit.yaml"
    results = {}
    for nproc in (1, 2):
        out = tmp / f"audit-{nproc}"
        wall, _ = _run(
            _robustness(nproc) + ["audit", cfg, "-o", str(out), "--device", "cpu", "-q", "--format", "json"],
            _env(1),
        )
        results[nproc] = (
            wall,
            json.loads((out / "results.json").read_text()),
            (out / "samples.jsonl").read_text(),
        )

    def numbers(r: dict[str, Any]) -> Any:
        keep = (
            "eps",
            "n",
            "n_robust",
            "accuracy",
            "ci",
            "per_attack",
            "per_class_accuracy",
            "found_by_checks",
        )
        return (
            r["clean"],
            [{k: e[k] for k in keep} for e in r["robust"]],
            [(c["name"], c["status"], c.get("measured")) for c in r["sanity_checks"]],
            r["gates"],
            r["verdict"],
        )

    same = numbers(results[1][1]) == numbers(results[2][1]) and results[1][2] == results[2][2]
    rows = []
    for nproc, (wall, res, _) in results.items():
        acc = ", ".join(f"{e['eps']:g}: {100 * e['accuracy']:.1f}%" for e in res["robust"])
        rows.append(
            [
                f"{nproc} process{'es' if nproc > 1 else ''}",
                f"{wall:.1f} s",
                f"{res['timing']['total_s']:.1f} s",
                f"{results[1][0] / wall:.2f}x",
                acc,
                res["verdict"],
                same if nproc > 1 else "-",
            ]
        )
    return rows, same


def run_cpu(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="scale-"))
    try:
        t0 = time.perf_counter()
        rows, info = cpu_attack(tmp, args.eps, args.steps, args.batch_size)
        attack_table = _table(
            [
                "run",
                "attack time",
                "speed-up",
                "wall (incl. start-up)",
                "speed-up",
                "robust acc",
                "backward passes",
                "identical to 1 process",
            ],
            rows,
        )
        print(attack_table)
        audit_table, audit_same = "", None
        if not args.skip_audit:
            arows, audit_same = cpu_audit(tmp)
            audit_table = _table(
                ["run", "wall", "audit total_s", "speed-up", "robust accuracy", "verdict", "same numbers"],
                arows,
            )
            print(audit_table)
        elapsed = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    target = "met" if info["speedup"] >= 1.6 else "NOT met"
    body = f"""`python bench/scale.py` on {platform.machine()} CPU ({os.cpu_count()} cores; load average
{load:.1f} when it ended), torch {torch.__version__}, Python {platform.python_version()}; {elapsed / 60:.1f} min.

`robustness attack --attack pgd --steps {args.steps} --eps {args.eps} --batch-size {args.batch_size}` on
`zoo:digits-cnn` and the 359 digits test images ({-(-359 // args.batch_size)} batches, each seeded
from its position, shared out as batches r, r + 2, ... per rank). Attack time is the command's own
measurement (wall clock of the attack, gathering included); start-up (Python, torch import, process
group) is in the wall column. Identical: same adversarial examples (bitwise), predictions, robust
accuracy and forward/backward counts as the 1-process run.

{attack_table}

Target 2 processes >= 1.6x one (attack time): {info["speedup"]:.2f}x, {target}. The machine's
ceiling (two independent single-process runs side by side, no communication) is
{info["ceiling"]:.2f}x: the split reaches {info["speedup"] / info["ceiling"]:.0%} of it.
"""
    if audit_table:
        body += f"""
`robustness audit examples/digits-audit.yaml` (AutoAttack standard, 200 samples, 3 eps, sanity
checks), 1 process against `python -m torch.distributed.run --standalone --nproc_per_node=2`: same
numbers (clean and robust accuracy with intervals, per-attack and per-class accuracy, sanity-check
measurements, gates, verdict, samples.jsonl): {audit_same}. The audit shares out only stages
with several batches (the sanity checks run on 64-sample draws, one batch each), so its
speed-up is below the attack's.

{audit_table}
"""
    update_section(CPU_SUB, body)
    print(f"written to {RESULTS.relative_to(REPO)} ({CPU_SUB})")


# ---------------------------------------------------------------------------------------
# GPU


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNet18(nn.Module):
    """ResNet-18 for 3x32x32 inputs (3x3 stem, no max-pool; 11.2M parameters)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn: Callable[[], Any], dev: torch.device) -> tuple[float, Any]:
    _sync(dev)
    t0 = time.perf_counter()
    out = fn()
    _sync(dev)
    return time.perf_counter() - t0, out


def _batches(n: int, bs: int) -> list[slice]:
    return [slice(i, min(n, i + bs)) for i in range(0, n, bs)]


def floor_run(net: nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int, steps: int, bf16: bool) -> None:
    """``steps`` bare forward+backward passes w.r.t. the input per batch (weights frozen)."""
    for sl in _batches(x.shape[0], bs):
        xb = x[sl].clone().requires_grad_(True)
        for _ in range(steps):
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = net(xb)
            loss = F.cross_entropy(logits.float(), y[sl])
            (g,) = torch.autograd.grad(loss, xb)
            xb = (xb.detach() + 1e-3 * g.sign()).requires_grad_(True)


def run_gpu(args: argparse.Namespace) -> None:
    from attacks.registry import get_attack
    from robustness.core.model import ModelUnderTest

    t_start = time.perf_counter()
    dev = torch.device(args.device)  # cpu only to check this script without a GPU (tiny --n)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--gpu needs CUDA")
    name = (
        torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{platform.machine()} CPU (script check)"
    )
    torch.backends.cudnn.benchmark = True  # autotuned convolutions (during the warm-up runs), for every row
    torch.manual_seed(0)
    n, bs, steps = args.n, args.gpu_batch_size, 20
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.rand(n, 3, 32, 32, device=dev, generator=g)
    net = ResNet18().to(dev)
    # Batch-norm statistics from random images (cumulative average), then eval mode and frozen.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    net.train()
    with torch.no_grad():
        for sl in _batches(n, bs):
            net(x[sl])
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        y = torch.cat([net(x[sl]).argmax(1) for sl in _batches(n, bs)])
    n_params = sum(p.numel() for p in net.parameters())

    def mut(precision: str) -> ModelUnderTest:
        m = ModelUnderTest(net, spec="bench:resnet18", device=dev, precision=precision, channels_last=True)
        m.validate(x[:8])
        return m

    m32, m16 = mut("fp32"), mut("bf16")
    pgd = get_attack("pgd", steps=steps)
    # eps: about half the samples resist PGD-20 in fp32 (a grid on 512 samples).
    eps = args.gpu_eps
    if eps is None:
        best = None
        for e in (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0):
            ra = pgd(m32, x[:512], y[:512], eps=e / 255, batch_size=bs).robust_accuracy
            if best is None or abs(ra - 0.5) < abs(best[1] - 0.5):
                best = (e / 255, ra)
        eps = best[0]

    rows: list[list[Any]] = []
    speed: dict[str, float] = {}
    acc: dict[str, float] = {}

    def record(label: str, secs: float, robust: float | None, note: str = "") -> None:
        speed[label] = n / secs
        if robust is not None:
            acc[label] = robust
        rows.append(
            [
                label,
                f"{n / secs:,.0f}",
                f"{secs:.2f}",
                "-" if robust is None else f"{100 * robust:.2f}%",
                note,
            ]
        )

    def measure(
        label: str, fn: Callable[[], Any], robust_of: Callable[[Any], float] | None, note: str = ""
    ) -> None:
        _timed(fn, dev)  # a warm-up run keeps cuDNN autotuning and allocator growth out of the timing
        secs, out = _timed(fn, dev)
        record(label, secs, robust_of(out) if robust_of else None, note)

    cl = net.to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    measure("floor fp32 (20 fwd+bwd)", lambda: floor_run(cl, xc, y, bs, steps, False), None)
    measure("floor bf16 (20 fwd+bwd)", lambda: floor_run(cl, xc, y, bs, steps, True), None)
    measure(
        "pgd fp32 (evaluation)",
        lambda: pgd(m32, x, y, eps=eps, batch_size=bs),
        lambda r: r.robust_accuracy,
        "stops attacking broken samples",
    )
    measure(
        "pgd bf16 (evaluation)", lambda: pgd(m16, x, y, eps=eps, batch_size=bs), lambda r: r.robust_accuracy
    )

    def full(m: ModelUnderTest) -> Callable[[], float]:
        def go() -> float:
            robust = 0
            for i, sl in enumerate(_batches(n, bs)):
                xa = pgd.perturb_batch(m, x[sl], y[sl], eps=eps, seed=i)
                with torch.no_grad():
                    robust += int((m(xa).argmax(1) == y[sl]).sum())
            return robust / n

        return go

    measure("pgd fp32 (full budget)", full(m32), lambda r: r, "every sample all 20 steps")
    measure("pgd bf16 (full budget)", full(m16), lambda r: r)
    ta_note = ""
    try:
        import torchattacks

        class _BF16(nn.Module):
            def __init__(self, inner: nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, z: torch.Tensor) -> torch.Tensor:
                with torch.autocast(z.device.type, dtype=torch.bfloat16):
                    return self.inner(z).float()

        def ta_run(model: nn.Module) -> Callable[[], float]:
            atk = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)

            def go() -> float:
                robust = 0
                for sl in _batches(n, bs):
                    xa = atk(xc[sl], y[sl])
                    with torch.no_grad():
                        robust += int((model(xa).argmax(1) == y[sl]).sum())
                return robust / n

            return go

        measure("torchattacks PGD fp32", ta_run(cl), lambda r: r)
        measure("torchattacks PGD bf16 autocast", ta_run(_BF16(cl)), lambda r: r)
    except ImportError:
        ta_note = "torchattacks is not installed (pip install --no-deps torchattacks): no comparison."
    if args.compile:
        mc = ModelUnderTest(
            net, spec="bench:resnet18", device=dev, precision="bf16", channels_last=True, compile=True
        )
        measure(
            "pgd bf16 + torch.compile (evaluation)",
            lambda: pgd(mc, x, y, eps=eps, batch_size=bs),
            lambda r: r.robust_accuracy,
        )
    table = _table(["run", "images/s", "time (s)", "robust acc", "note"], rows)
    print(table)

    # A full autoattack audit of the digits model.
    audit_line = ""
    if not args.skip_audit:
        out = Path(tempfile.mkdtemp(prefix="scale-audit-"))
        try:
            wall, _ = _run(
                _robustness(1)
                + [
                    "audit",
                    "examples/digits-audit.yaml",
                    "-o",
                    str(out),
                    "--device",
                    dev.type,
                    "-q",
                    "--format",
                    "json",
                ],
                _env(),
                timeout=args.audit_timeout,
            )
            res = json.loads((out / "results.json").read_text())
            accs = ", ".join(f"eps {e['eps']:g}: {100 * e['accuracy']:.1f}%" for e in res["robust"])
            audit_line = (
                f"Full `autoattack` audit (`examples/digits-audit.yaml`: AutoAttack standard, 200 samples, 3 eps, "
                f"sanity checks) on {name}: {wall:.1f} s wall including start-up (audit total_s "
                f"{res['timing']['total_s']:.1f}, attacks {res['timing']['attacks_s']:.1f} s, checks "
                f"{res['timing']['checks_s']:.1f} s); robust accuracy {accs}; verdict {res['verdict']}."
            )
        except subprocess.TimeoutExpired:
            audit_line = (
                f"Full `autoattack` audit: did not finish within {args.audit_timeout:.0f} s (stopped)."
            )
        finally:
            shutil.rmtree(out, ignore_errors=True)
        print(audit_line)

    def ratio(a: str, b: str) -> float:
        return speed[a] / speed[b] if a in speed and b in speed else float("nan")

    lines = [
        f"pgd fp32 (evaluation) / floor fp32: {ratio('pgd fp32 (evaluation)', 'floor fp32 (20 fwd+bwd)'):.2f}x; "
        f"full budget: {ratio('pgd fp32 (full budget)', 'floor fp32 (20 fwd+bwd)'):.2f}x (target >= 0.95x)",
        f"pgd bf16 (evaluation) / floor bf16: {ratio('pgd bf16 (evaluation)', 'floor bf16 (20 fwd+bwd)'):.2f}x; "
        f"full budget: {ratio('pgd bf16 (full budget)', 'floor bf16 (20 fwd+bwd)'):.2f}x",
    ]
    if "torchattacks PGD fp32" in speed:
        ta = acc["torchattacks PGD fp32"]
        for lab in ("pgd bf16 (evaluation)", "pgd bf16 (full budget)"):
            d = 100 * (acc[lab] - ta)
            lines.append(
                f"{lab} / torchattacks fp32: {ratio(lab, 'torchattacks PGD fp32'):.2f}x (target >= 1.5x); robust "
                f"accuracy {100 * acc[lab]:.2f}% vs {100 * ta:.2f}% ({d:+.2f} points; target <= +0.5)"
            )
    elif ta_note:
        lines.append(ta_note)
    for line in lines:
        print(line)
    elapsed = time.perf_counter() - t_start
    body = f"""`PYTHONPATH=. python bench/scale.py --gpu` on **{name}**, torch {torch.__version__}, CUDA
{torch.version.cuda}; {elapsed / 60:.1f} min. ResNet-18 for 3x32x32 ({n_params / 1e6:.1f}M parameters,
random weights, batch-norm statistics from random images), {n} random images labelled with its own
predictions, batch {bs}, channels_last; linf eps {eps * 255:.3g}/255 (about half resist PGD-20), step
2.5 eps / 20, random start. Throughput = images / time of the whole run after one warm-up run.
cuDNN TF32 is PyTorch's default for fp32 convolutions (the same for every row).

{table}

{chr(10).join("- " + line for line in lines)}

{audit_line}
"""
    if args.no_write:
        return
    update_section(GPU_SUB, body)
    print(f"written to {RESULTS.relative_to(REPO)} ({GPU_SUB}); {elapsed:.0f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpu", action="store_true", help="the GPU benchmark (needs CUDA)")
    p.add_argument("--eps", type=float, default=0.03, help="CPU attack eps (default 0.03)")
    p.add_argument("--steps", type=int, default=50, help="CPU attack steps (default 50)")
    p.add_argument("--batch-size", type=int, default=45, help="CPU attack batch size (default 45)")
    p.add_argument("--skip-audit", action="store_true", help="leave out the audit runs")
    p.add_argument("--n", type=int, default=4096, help="GPU images (default 4096)")
    p.add_argument("--gpu-batch-size", type=int, default=512, help="GPU batch size (default 512)")
    p.add_argument("--gpu-eps", type=float, help="GPU eps (default: calibrated to ~50%% robust)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (adds about a minute)")
    p.add_argument("--audit-timeout", type=float, default=120.0, help="GPU audit time limit in s")
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = p.parse_args()
    if args.gpu:
        run_gpu(args)
    else:
        run_cpu(args)


if __name__ == "__main__":
    main()
