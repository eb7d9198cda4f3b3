"""The ensemble's cost record is the sum of its members': Square's queries included."""

from __future__ import annotations

import pytest

from attacks.registry import available, get_attack

pytestmark = pytest.mark.skipif("square" not in available(), reason="square not registered")

# A budget small enough for a few seconds on two cores; Square still runs on what APGD leaves.
FAST = {"steps": 5, "n_target_classes": 2, "n_queries": 40}


@pytest.fixture(scope="module")
def few(digits_test):
    return digits_test.subset(range(24))


def test_autoattack_fast_counts_squares_queries(digits_model, few):
    # The first eps is small enough that APGD leaves samples standing for Square to query.
    atk = get_attack("autoattack-fast", **FAST)
    results = atk(digits_model, few.x, few.y, eps=[0.05, 0.1], seed=0)
    for res in results:
        reached_square = res.robust_after["fab"] > 0
        assert (res.n_queries > 0) == reached_square, (res.eps, res.n_queries, res.robust_after)
        # Queries are forward passes of the one counted model: never more than all of them.
        assert res.n_queries <= res.n_forward
    assert results[0].n_queries > 0  # the fixture must exercise Square


def test_queries_equal_square_run_alone_on_the_same_samples(digits_model, few):
    # With Square as the only member, the ensemble's queries are Square's own forward passes.
    # Square alone also counts the re-prediction of every sample (one pass each), which the
    # ensemble's base class counts as a plain forward pass.
    only = get_attack("autoattack", components=["square"], n_queries=FAST["n_queries"])
    alone = get_attack("square", n_queries=FAST["n_queries"])
    r_ens = only(digits_model, few.x, few.y, eps=0.05, seed=0)
    r_sq = alone(digits_model, few.x, few.y, eps=0.05, seed=0)
    ens_checks = int((r_ens.clean_pred == r_ens.y).sum())  # the ensemble's own success check
    assert r_ens.n_queries == r_sq.n_queries - r_sq.n
    assert r_ens.n_forward == r_sq.n_forward + ens_checks
    assert r_ens.n_queries > 0 and r_ens.n_backward == 0


def test_white_box_members_add_no_queries(digits_model, few):
    atk = get_attack("autoattack-fast", **FAST, components=["apgd-ce", "apgd-t"])
    res = atk(digits_model, few.x, few.y, eps=0.1, seed=0)
    assert res.n_queries == 0 and res.n_backward > 0
