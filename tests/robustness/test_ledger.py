"""The per-sample ledger: fold, carry to the next eps, samples.jsonl rows, the report's examples."""

from __future__ import annotations

import json

import torch

from robustness.audit.ledger import Ledger
from robustness.audit.stages import StageOutcome

IDS = ["s0", "s1", "s2", "s3", "s4"]


def outcome(
    idx: list[int], success: list[bool], x: torch.Tensor, pred: int = 9, norm: float = 0.1
) -> StageOutcome:
    """An attack's outcome on ``idx``: the successful ones moved to ``x + 1`` and predicted ``pred``."""
    index = torch.tensor(idx, dtype=torch.long)
    ok = torch.tensor(success, dtype=torch.bool)
    return StageOutcome(
        idx=index,
        success=ok,
        adv_pred=torch.full((len(idx),), pred, dtype=torch.long),
        pnorm=torch.full((len(idx),), norm),
        x_succ=x[index[ok]] + 1,
        n_forward=0,
        n_backward=0,
        n_queries=0,
        time_s=0.0,
        resumed=False,
    )


def test_fold_carry_rows_and_examples():
    x = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1)
    y = torch.tensor([0, 1, 2, 3, 4])
    clean_pred = torch.tensor([0, 1, 2, 3, 0])  # sample 4 is misclassified
    ledger = Ledger(y, clean_pred, n_eps=2, sample_shape=(1, 1, 1))
    assert ledger.standing().tolist() == [0, 1, 2, 3] and ledger.n_robust() == 4

    # eps 0: the first attack breaks 1; the second claims 1 again (kept by the first) and breaks 2
    assert ledger.fold(outcome([0, 1, 2, 3], [False, True, False, False], x, norm=0.1), "pgd") == 1
    assert ledger.fold(outcome([0, 2, 3], [False, True, False], x, pred=7, norm=0.2), "square") == 1
    assert ledger.fold(outcome([1], [True], x, norm=0.5), "check:fgsm") == 0  # already broken
    assert ledger.broken_by() == [None, "pgd", "square", None, None]
    ledger.close_eps()

    # eps 1: the broken ones carry over; a check attack breaks 3
    assert ledger.standing().tolist() == [0, 3]
    assert ledger.fold(outcome([0, 3], [False, True], x, norm=0.3), "check:fgsm") == 1
    ledger.close_eps()

    rows = [json.loads(line) for line in ledger.sample_lines(IDS, [0.1, 0.2])]
    assert [[e["robust"] for e in r["eps"]] for r in rows] == [
        [True, True],
        [False, False],
        [False, False],
        [True, False],
        [False, False],
    ]
    assert [[e["broken_by"] for e in r["eps"]] for r in rows] == [
        [None, None],
        ["pgd", "pgd"],
        ["square", "square"],
        [None, "check:fgsm"],
        [None, None],  # misclassified: no attack broke it
    ]
    norms = [[round(e["perturbation_norm"], 6) for e in r["eps"]] for r in rows]
    assert norms == [[0.0, 0.0], [0.1, 0.1], [0.2, 0.2], [0.0, 0.3], [0.0, 0.0]]
    # the prediction on each sample's example at each eps; the clean one until it broke
    assert [[e["adv_pred"] for e in r["eps"]] for r in rows] == [[0, 0], [9, 9], [7, 7], [3, 9], [0, 0]]

    examples = ledger.examples(x, IDS, [0.1, 0.2])
    order = examples["ids"].tolist()
    assert order[:3] == ["s1", "s2", "s3"]  # broken first, smallest eps first
    at = {sid: i for i, sid in enumerate(order)}
    # sample s3 broke at the second eps: clean at the first, its example at the second
    assert examples["x_adv"][:, at["s3"]].flatten().tolist() == [3.0, 4.0]
    assert examples["adv_pred"][:, at["s3"]].tolist() == [3, 9]
    assert examples["adv_pred"][:, at["s2"]].tolist() == [7, 7]
    assert examples["adv_pred"][:, at["s0"]].tolist() == [0, 0]
