"""Cost per 1,000 images of auditing a ResNet-18-shaped CIFAR model on this machine's CPU.

    python bench/own_model_cost.py [--eval-images 64 320] [--attack-images 8 40] [--steps 10]

The README's "Auditing your own model" walk-through, timed: a ResNet-18 of the CIFAR shape
(3x3 stem, no max-pool, 11.2M parameters, random weights: the cost does not depend on them)
built by a factory with ``--model-arg``, 32x32 RGB images in an image folder (``folder:``),
``robustness evaluate`` (clean predictions) and ``robustness attack --attack pgd`` (``--steps``
steps, each a forward and a backward pass), each run on a few and on more images: the difference
of the wall-clock times, scaled to 1,000 images, is the cost without start-up. Prints a Markdown
section for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, bench/ is first on the path, and bench/attacks.py would hide the attacks package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet18(num_classes: int = 10) -> nn.Module:
    """ResNet-18 for 32x32 inputs (the CIFAR variant of He et al. 2016 used by most robustness papers)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)


def write_cifar(root: Path, n: int) -> None:
    """``n`` random 32x32 images as an official CIFAR-10 binary batch (``test_batch.bin``), each
    labelled with the model's own prediction: every sample is classified correctly, so the attack
    works on all of them (a misclassified sample is skipped and would make the attack look cheap)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    net = resnet18().eval()
    with torch.no_grad():
        labels = net(torch.from_numpy(pixels).float() / 255).argmax(1).numpy().astype(np.uint8)
    records = np.concatenate([labels[:, None], pixels.reshape(n, -1)], axis=1)
    root.mkdir(parents=True, exist_ok=True)
    (root / "test_batch.bin").write_bytes(records.tobytes())


def timed(argv: list[str]) -> tuple[float, dict]:
    from robustness.cli import main

    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    elapsed = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"command failed ({code}): {' '.join(argv)}")
    return elapsed, json.loads(out.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval-images", type=int, nargs=2, default=[64, 320], metavar=("FEW", "MANY"))
    ap.add_argument("--attack-images", type=int, nargs=2, default=[8, 40], metavar=("FEW", "MANY"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    # the factory spec own_model_cost:resnet18 names this script
    sys.modules.setdefault("own_model_cost", sys.modules[__name__])
    params = sum(p.numel() for p in resnet18().parameters())
    runs: dict[str, list[tuple[float, dict]]] = {"evaluate": [], "attack": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cifar-10-batches-bin"
        write_cifar(root, max(*args.eval_images, *args.attack_images))
        # threads given: 'auto' would time a probe batch (as large as the data, up to a batch) first
        model = ["--model", "own_model_cost:resnet18", "--model-arg", "num_classes=10", "--device", "cpu"]
        model += ["--threads", str(args.threads)]
        data = ["--data", f"cifar10:{root}", "--json"]
        for n in args.eval_images:
            runs["evaluate"].append(timed(["evaluate", *model, *data, "--n-examples", str(n)]))
        for n in args.attack_images:
            runs["attack"].append(
                timed(
                    ["attack", *model, *data, "--n-examples", str(n), "--attack", "pgd"]
                    + ["--eps", str(8 / 255), "--steps", str(args.steps)]
                )
            )
    # the cost of one more image (one more gradient step): the difference of two runs, so that
    # start-up (imports, model build, the thread probe) is not spread over a handful of images
    (t_few, ev_few), (t_many, ev_many) = runs["evaluate"]
    per_eval = 1000 * (t_many - t_few) / (ev_many["n"] - ev_few["n"])
    (a_few, at_few), (a_many, at_many) = runs["attack"]
    per_step = 1000 * (a_many - a_few) / max(at_many["n_backward"] - at_few["n_backward"], 1)
    print("## Auditing your own model: cost per 1,000 images (bench/own_model_cost.py)\n")
    print(
        f"`python bench/own_model_cost.py` on {platform.machine()} CPU ({os.cpu_count()} cores shared with "
        f"other work, {args.threads} threads, torch {torch.__version__}). ResNet-18 of the CIFAR shape ({params / 1e6:.1f}M parameters, "
        "random weights, built by a factory with --model-arg), random 32x32 images written as an official "
        "CIFAR-10 binary batch (`cifar10:`) and labelled with the model's own predictions (clean accuracy "
        f"{ev_many['accuracy']:.0%}, so every image is attacked). Each command runs twice, on a few and on more "
        "images; the cost per 1,000 images is the difference of the two wall-clock times (start-up excluded).\n"
    )
    print("| command | images | wall-clock | forward / backward passes (samples) |")
    print("| --- | ---: | ---: | ---: |")
    for (t, res), name in zip(runs["evaluate"], ("evaluate", "evaluate")):
        print(f"| `robustness {name}` | {res['n']} | {t:.1f} s | {res['n']} / 0 |")
    for t, res in runs["attack"]:
        print(
            f"| `robustness attack --attack pgd --steps {args.steps}` (linf 8/255) | {res['n']} | {t:.1f} s | "
            f"{res['n_forward']} / {res['n_backward']} |"
        )
    print(
        f"\nPer 1,000 images on this CPU: a clean pass (`evaluate`) {per_eval:.0f} s; one attack step (forward "
        f"and backward) {per_step:.0f} s, so PGD-{args.steps} on 1,000 images that all resist takes about "
        f"{args.steps * per_step / 60:.1f} min and a budget of thousands of passes per image (AutoAttack) hours. "
        f"Start-up: {t_few - ev_few['n'] * per_eval / 1000:.1f} s for `evaluate`."
    )


if __name__ == "__main__":
    main()
