"""Shared fixtures: one trained digits model and the digits test data per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Reuse the zoo cache between local runs; CI starts from a clean clone and trains once.
os.environ.setdefault("ROBUSTNESS_CACHE", str(REPO / ".cache" / "zoo"))
# The test models are tiny: one thread is as fast as two on an idle runner and avoids
# catastrophic oversubscription (measured 5x slower) when anything else shares the cores.
# Set in the environment so subprocesses (CLI, kill -9 and torchrun tests) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _shared_model_untouched(request: pytest.FixtureRequest):
    """Fail the test that changes the shared model's weights, frozen flags or gradients.

    Every test shares one ``digits_model``; a test that trains it, leaves it frozen, or leaves
    gradients in it would silently change the numbers of the tests after it.
    """
    if "digits_model" not in request.fixturenames:
        yield
        return
    model = request.getfixturevalue("digits_model")
    before = (model.sha256(), [p.requires_grad for p in model.module.parameters()])
    yield
    after = (model.sha256(), [p.requires_grad for p in model.module.parameters()])
    grads = [p.grad is not None for p in model.module.parameters()]
    assert after == before and not any(grads), (
        "this test changed the shared digits_model (weights, requires_grad or .grad); work on a copy"
    )


@pytest.fixture(scope="session")
def digits_model():
    """``zoo:digits-cnn`` on the CPU (trained on first use, then cached)."""
    from robustness.core.model import load_model

    return load_model("zoo:digits-cnn", device="cpu")


@pytest.fixture(scope="session")
def digits_test():
    """The digits test split (359 samples)."""
    from robustness.core.data import load_data

    return load_data("builtin:digits")


@pytest.fixture(scope="session")
def digits_small(digits_test):
    """100 test samples: enough for attack tests to show real differences, fast on 2 cores."""
    return digits_test.subset(range(100))
