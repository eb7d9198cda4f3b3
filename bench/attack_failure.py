"""Indicators of attack failure: what they say on attacks built to fail and on sound ones, and what
they cost.

Each case attacks the same digits test samples at one linf eps and prints, per reporting attack
(or member), each indicator's samples held / measured (the samples the attack failed on) and
whether it fires (robustness.audit.indicators). The cost is APGD-CE's time with the trace on
against the same call with no trace kept, best of three. Writes the '## Indicators of attack
failure (bench/attack_failure.py)' section of bench/RESULTS.md.

    python bench/attack_failure.py --n 100
"""

from __future__ import annotations

import copy
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run as a script, bench/ comes first on sys.path and bench/attacks.py would shadow the attacks package.
sys.path.insert(0, str(HERE.parent))

from resultsfile import digits_arguments, publish  # noqa: E402

EPS = 0.1


def models():
    """The digits CNN as it is, behind a 4-level input quantizer, and with its logits times 100."""
    import torch
    from torch import nn

    from robustness import load_model
    from robustness.core.model import ModelUnderTest

    class Quantized(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(torch.round(x * 3) / 3)

    class Distilled(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x) * 100.0

    plain = load_model("zoo:digits-cnn", device="cpu")
    return {
        "digits-cnn": plain,
        "digits-cnn, 4-level quantizer": ModelUnderTest(
            Quantized(copy.deepcopy(plain.module)), spec="round4", device="cpu"
        ),
        "digits-cnn, logits x100": ModelUnderTest(
            Distilled(copy.deepcopy(plain.module)), spec="T100", device="cpu"
        ),
    }


CASES = [
    ("digits-cnn", "apgd-ce", {}),
    ("digits-cnn", "autoattack", {}),
    ("digits-cnn", "pgd", {"steps": 5, "step_size": 0.002, "random_start": False}),
    ("digits-cnn", "apgd-ce", {"steps": 3, "restarts": 3}),
    ("digits-cnn, 4-level quantizer", "apgd-ce", {}),
    ("digits-cnn, logits x100", "apgd-ce", {}),
    ("digits-cnn, logits x100", "apgd-t", {}),
]


def cost(model, x, y, repeats: int = 3) -> tuple[float, float]:
    """APGD-CE's best-of-``repeats`` seconds with the trace kept and with none kept."""
    import attacks.base as base
    from attacks.registry import get_attack

    def best() -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            get_attack("apgd-ce")(model, x, y, eps=EPS, seed=0)
            times.append(time.perf_counter() - t0)
        return min(times)

    with_trace = best()
    kept = base.OptimisationTrace
    base.OptimisationTrace = lambda: None  # the counter then carries no trace: nothing is reported
    try:
        without = best()
    finally:
        base.OptimisationTrace = kept
    return with_trace, without


def main() -> None:
    args = digits_arguments(__doc__.splitlines()[0])
    import torch

    from attacks.registry import get_attack
    from robustness import load_data
    from robustness.audit.indicators import INDICATORS

    data = load_data("builtin:digits", n_examples=args.n, seed=0)
    zoo = models()
    lines = [
        "## Indicators of attack failure (bench/attack_failure.py)",
        "",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other jobs), "
        f"torch {torch.__version__}, {args.threads} thread(s); {args.n} digits test samples, linf eps {EPS:g}, "
        "seed 0. Per reporting attack (or member): samples the indicator holds for / samples the attack "
        "failed on; **bold**: it fires.",
        "",
        "| model | attack | params | robust acc | reporter | silent loss | incomplete optimisation | "
        "non-converging restarts |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = ("silent_loss", "incomplete_optimisation", "non_converging_restarts")
    for model_name, attack, params in CASES:
        res = get_attack(attack, **params)(zoo[model_name], data.x, data.y, eps=EPS, seed=0)
        shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"
        for member, counts in res.indicators.items():
            cells = []
            for name in names:
                if name not in counts:
                    cells.append("–")
                    continue
                measured, fired = counts[name]
                text = f"{fired}/{measured}"
                cells.append(f"**{text}**" if INDICATORS[name].fires(measured, fired) else text)
            lines.append(
                f"| {model_name} | {attack} | {shown} | {res.robust_accuracy:.2f} | {member} | "
                + " | ".join(cells)
                + " |"
            )
    with_trace, without = cost(zoo["digits-cnn"], data.x, data.y)
    lines += [
        "",
        f"Cost: APGD-CE (100 steps) on the {args.n} samples took {with_trace:.3f} s with the trace and "
        f"{without:.3f} s without ({(with_trace / without - 1) * 100:+.1f}%, best of 3; no extra forward "
        "or backward pass: the trace keeps three losses per sample and run on the device).",
    ]
    section = "\n".join(lines) + "\n"
    publish(section, write=not args.no_write)


if __name__ == "__main__":
    main()
