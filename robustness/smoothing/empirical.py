"""The empirical side of the bracket: an attack on the smoothed classifier ``g``.

At each eps (ascending) the samples ``g`` still classifies correctly are attacked through the
soft smoothed model (:mod:`~robustness.smoothing.soft`) with an attack of the registry wrapped
in ``eot`` (expectation over the noise), each sample given the full budget, and each restart
judged on its own. A sample counts as broken when ``g``'s Monte Carlo vote (``votes`` fresh
draws) at the adversarial example is not its label; broken at one eps, it stays broken at every
larger one (the example lies in the larger ball too). The share left standing is an upper bound
on ``g``'s robust accuracy, up to the error of the vote.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from robustness.core.errors import ConfigError
from robustness.smoothing.classifier import SmoothedClassifier
from robustness.smoothing.soft import soft_smoothed_model

DEFAULT_ATTACK = "pgd"
DEFAULT_ATTACK_PARAMS: dict[str, Any] = {"steps": 20, "loss": "ce"}


@dataclass
class AttackSettings:
    """How ``g`` is attacked: the inner attack and how many noise draws each step averages
    (``noise_samples`` per forward pass times ``eot_samples`` passes), the restarts, and the
    draws of the vote that judges each adversarial example."""

    attack: str = DEFAULT_ATTACK
    attack_params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_ATTACK_PARAMS))
    noise_samples: int = 8
    eot_samples: int = 4
    restarts: int = 1
    votes: int = 1000

    def check(self) -> None:
        for name in ("noise_samples", "eot_samples", "restarts", "votes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"{name} must be an integer >= 1, got {value!r}", field=name, fix="Use the default."
                )

    def describe(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "attack_params": dict(self.attack_params),
            "noise_samples": self.noise_samples,
            "eot_samples": self.eot_samples,
            "restarts": self.restarts,
            "votes": self.votes,
        }


@dataclass
class EmpiricalResult:
    """Per eps (ascending) and sample: still classified correctly by ``g`` after the attack."""

    eps: list[float]
    robust: torch.Tensor  # (E, N) bool, on the CPU
    clean_correct: torch.Tensor  # (N,) bool: g's vote at the clean input is the label
    time_s: float

    def accuracy(self) -> list[float]:
        n = max(int(self.robust.shape[1]), 1)
        return [float(row.sum()) / n for row in self.robust]


def _vote(smoothed: SmoothedClassifier, x: torch.Tensor, votes: int, ids: list[int]) -> torch.Tensor:
    return smoothed.counts(x, votes, stage="judge", index=ids).argmax(dim=1).cpu()


def attack_smoothed(
    smoothed: SmoothedClassifier,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float],
    settings: AttackSettings | None = None,
    *,
    seed: int = 0,
    index: Sequence[int] | None = None,
) -> EmpiricalResult:
    """Attack ``g`` in the l2 balls of radii ``eps``; see the module docstring."""
    from attacks.registry import get_attack

    settings = settings or AttackSettings()
    settings.check()
    t0 = time.perf_counter()
    base = smoothed.model
    n = int(x.shape[0])
    ids = list(range(n)) if index is None else [int(i) for i in index]
    y = y.cpu().long()
    grid = sorted(float(e) for e in eps)
    attack = get_attack(
        "eot",
        attack=settings.attack,
        attack_params=dict(settings.attack_params),
        eot_samples=settings.eot_samples,
    )
    soft = soft_smoothed_model(base, smoothed.sigma, settings.noise_samples)
    clean_correct = _vote(smoothed, x, settings.votes, ids) == y
    standing = clean_correct.clone()
    rows = []
    # Images per attack batch: each forward pass holds noise_samples copies of each.
    per_batch = max(1, smoothed.batch_size // settings.noise_samples)
    with base.evaluating(freeze=True):
        for i, e in enumerate(grid):
            for r in range(settings.restarts):
                todo = standing.nonzero().flatten()
                for b, start in enumerate(range(0, todo.numel(), per_batch)):
                    idx = todo[start : start + per_batch]
                    x_adv = attack.perturb_batch(
                        soft,
                        x[idx],
                        y[idx],
                        eps=e,
                        norm="l2",
                        seed=seed * 1_000_003 + (i * 1009 + r) * 10_007 + b,
                    )
                    pred = _vote(smoothed, x_adv, settings.votes, [ids[j] for j in idx.tolist()])
                    standing[idx[pred != y[idx]]] = False
            rows.append(standing.clone())
    robust = torch.stack(rows) if rows else torch.zeros(0, n, dtype=torch.bool)
    return EmpiricalResult(grid, robust, clean_correct, time.perf_counter() - t0)
