"""Strength: our attacks find at least as many adversarial examples as the public implementations.

All numbers are on the 359 digits test images and the demo CNN. A robust accuracy that is
too high is the worst bug this product can have, so every comparison is one-sided with a
tolerance of half a point (under two samples here).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from attacks.registry import available, get_attack

TOL = 0.005
STEPS = 20
# eps per norm for the comparisons: the middle of the digits curve (robust accuracy ~0.5).
EPS = {"linf": 0.1, "l2": 0.5}  # mid-curve (robust accuracy ~0.5), where attack strength shows


def robust_accuracy(model, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    return int((model.predict(x_adv).cpu() == y).sum()) / len(y)


def ours(name: str, model, data, norm: str, eps, **params):
    return get_attack(name, **params)(model, data.x, data.y, eps=eps, norm=norm, seed=0)


def torchattacks_pgd(model, data, norm: str, eps: float, random_start: bool) -> float:
    torchattacks = pytest.importorskip("torchattacks")
    torch.manual_seed(0)
    # Peers may leave gradients in the weights: keep the shared model clean.
    net = copy.deepcopy(model.net).eval()
    alpha = 2.5 * eps / STEPS
    cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    atk = cls(net, eps=eps, alpha=alpha, steps=STEPS, random_start=random_start)
    return robust_accuracy(model, atk(data.x, data.y), data.y)


def art_pgd(model, data, norm: str, eps: float, random_start: bool) -> float:
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    net = copy.deepcopy(model.net).eval()  # ART's loss_gradient calls backward() into the weights
    clf = PyTorchClassifier(
        model=net,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(data.x.shape[1:]),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    np.random.seed(0)  # ART draws its random start from numpy's global RNG
    atk = ProjectedGradientDescent(
        clf,
        norm=np.inf if norm == "linf" else 2,
        eps=eps,
        eps_step=2.5 * eps / STEPS,
        max_iter=STEPS,
        num_random_init=int(random_start),
        batch_size=512,
        verbose=False,
    )
    x_adv = torch.from_numpy(atk.generate(data.x.numpy(), y=data.y.numpy()))
    return robust_accuracy(model, x_adv, data.y)


PEERS = {"torchattacks": torchattacks_pgd, "art": art_pgd}


@pytest.fixture(scope="module")
def peer_pgd(digits_model, digits_test):
    """A peer's PGD robust accuracy by (peer, norm, random_start), computed once."""
    cache: dict[tuple[str, str, bool], float] = {}

    def get(peer: str, norm: str, random_start: bool) -> float:
        key = (peer, norm, random_start)
        if key not in cache:
            cache[key] = PEERS[peer](digits_model, digits_test, norm, EPS[norm], random_start)
        return cache[key]

    return get


@pytest.fixture(scope="module")
def ours_at_budget(digits_model, digits_test):
    """Our robust accuracy at STEPS steps by (attack, norm, extra params), computed once."""
    cache: dict[tuple, float] = {}

    def get(name: str, norm: str, **params) -> float:
        key = (name, norm, tuple(sorted(params.items())))
        if key not in cache:
            res = ours(name, digits_model, digits_test, norm, EPS[norm], steps=STEPS, **params)
            cache[key] = res.robust_accuracy
        return cache[key]

    return get


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("peer", ["torchattacks", "art"])
def test_pgd_not_weaker_than_peers_pgd(peer, norm, ours_at_budget, peer_pgd):
    """The same algorithm without random start: deterministic, so the comparison is exact.

    (With random starts, one run of the same algorithm differs by +-2 samples between seeds
    here; ours only adds stopping at the first adversarial iterate, which can only help.)
    """
    theirs = peer_pgd(peer, norm, False)
    mine = ours_at_budget("pgd", norm, random_start=False)
    assert mine <= theirs + TOL, f"pgd {norm}: ours {mine:.4f} vs {peer} PGD {theirs:.4f}"


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("peer", ["torchattacks", "art"])
def test_apgd_ce_not_weaker_than_peers_pgd(peer, norm, ours_at_budget, peer_pgd):
    """apgd-ce with its defaults against the stronger of the peer's PGD with and without random start."""
    theirs = min(peer_pgd(peer, norm, True), peer_pgd(peer, norm, False))
    mine = ours_at_budget("apgd-ce", norm)
    assert mine <= theirs + TOL, f"apgd-ce {norm}: ours {mine:.4f} vs {peer} PGD {theirs:.4f}"


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_ce_not_weaker_than_pgd(norm, ours_at_budget):
    apgd = ours_at_budget("apgd-ce", norm)
    pgd = min(ours_at_budget("pgd", norm), ours_at_budget("pgd", norm, random_start=False))
    assert apgd <= pgd + TOL, f"{norm}: apgd-ce {apgd:.4f} vs pgd {pgd:.4f} at {STEPS} steps"


def test_pgd_finds_the_calibrated_curve(digits_model, digits_test):
    """Calibration (PGD-50): about 0.90 / 0.56 / 0.02 / 0.00 at eps 0.05 / 0.1 / 0.2 / 0.3; PGD-20 gets there too."""
    res = ours("pgd", digits_model, digits_test, "linf", [0.05, 0.1, 0.2, 0.3])
    acc = [r.robust_accuracy for r in res]
    assert acc[0] <= 0.93 and acc[1] <= 0.58 and acc[2] <= 0.04 and acc[3] == 0.0, acc
    assert all(b <= a for a, b in zip(acc, acc[1:])), acc


@pytest.mark.parametrize(
    ("name", "params"),
    [("pgd", {"random_start": False}), ("apgd-ce", {}), ("apgd-t", {"n_target_classes": 3})],
)
def test_bf16_forward_passes_do_not_weaken_attacks(name, params, digits_model, digits_test):
    """--precision bf16 (autocast forward, fp32 attack arithmetic) finds as much as fp32 (+0.5 point).

    Measured on the CPU: pgd 0.5432 / 0.5432, apgd-ce 0.5432 / 0.5432, apgd-t 0.5348 / 0.5348
    (fp32 / bf16) at linf 0.1. Success is judged by the model at the audited precision: APGD's
    first adversarial points sit at the bf16 decision boundary, and about 2 points of them are
    not adversarial in fp32 (which is why results record the precision). The CUDA variant is in
    tests/robustness/test_distributed.py.
    """
    from robustness.core.model import ModelUnderTest

    bf16 = ModelUnderTest(digits_model.module, spec="zoo:digits-cnn", device="cpu", precision="bf16")
    fp32 = ours(name, digits_model, digits_test, "linf", EPS["linf"], steps=STEPS, **params)
    low = ours(name, bf16, digits_test, "linf", EPS["linf"], steps=STEPS, **params)
    assert low.x_adv.dtype == torch.float32
    assert low.clean_accuracy >= fp32.clean_accuracy - TOL
    assert low.robust_accuracy <= fp32.robust_accuracy + TOL, (low.robust_accuracy, fp32.robust_accuracy)


@pytest.mark.parametrize("name", ["pgd", "apgd-ce"])
def test_larger_eps_never_higher_in_independent_runs(name, digits_model, digits_test):
    accs = [
        ours(name, digits_model, digits_test, "linf", e, steps=STEPS).robust_accuracy
        for e in (0.03, 0.07, 0.15, 0.3)
    ]
    assert all(b <= a for a, b in zip(accs, accs[1:])), accs
    assert accs[0] > accs[-1]


def _present(*names: str) -> list:
    have = available()
    return [
        pytest.param(n, marks=pytest.mark.skipif(n not in have, reason=f"{n} not registered yet"))
        for n in names
    ]


CURVE_EPS = [0.02, 0.05, 0.1, 0.2]


@pytest.fixture(scope="module")
def aa_fast_curve(digits_model, digits_small):
    if "autoattack-fast" not in available():
        pytest.skip("autoattack-fast not registered yet")
    return ours("autoattack-fast", digits_model, digits_small, "linf", CURVE_EPS)


@pytest.fixture(scope="module")
def aa_fast_single(digits_model, digits_small):
    if "autoattack-fast" not in available():
        pytest.skip("autoattack-fast not registered yet")
    return ours("autoattack-fast", digits_model, digits_small, "linf", 0.1)


def test_autoattack_fast_curve_is_monotone(aa_fast_curve):
    accs = [r.robust_accuracy for r in aa_fast_curve]
    assert all(b <= a for a, b in zip(accs, accs[1:])), accs
    assert accs[0] > accs[-1]


@pytest.mark.parametrize(
    "part,params",
    [
        ("apgd-ce", {"steps": 20}),
        ("apgd-t", {"steps": 20, "n_target_classes": 3}),
        ("fab", {"steps": 20, "n_target_classes": 3}),
        ("square", {"n_queries": 500}),
    ],
)
def test_autoattack_fast_not_weaker_than_its_parts(part, params, aa_fast_single, digits_model, digits_small):
    """Each part alone, at autoattack-fast's budget for it, on the same 100 samples at eps 0.1."""
    from attacks.registry import get_attack as build

    aa = build("autoattack-fast")
    assert part in aa.components
    # The budget given to the part here is the one the ensemble gives it.
    assert {k: v for k, v in aa._component_params(part).items() if k in params} == params
    # One eps and the same seed as the part alone: the ensemble's first stage then draws the
    # same random numbers as apgd-ce alone (in a curve each eps gets its own draws).
    mine = aa_fast_single.robust_accuracy
    theirs = ours(part, digits_model, digits_small, "linf", 0.1, **params).robust_accuracy
    assert mine <= theirs + TOL, f"autoattack-fast {mine:.4f} vs {part} alone {theirs:.4f}"


@pytest.mark.parametrize("name", _present("pgd", "apgd-ce", "apgd-dlr", "autoattack-fast"))
def test_eps_one_breaks_everything(name, digits_model, digits_test):
    """At eps = 1 (linf, inputs in [0, 1]) any image is reachable: robust accuracy must be 0."""
    res = ours(name, digits_model, digits_test, "linf", 1.0)
    assert res.robust_accuracy == 0.0, f"{name}: {int(res.robust.sum())} samples survived eps=1"
