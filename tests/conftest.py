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


@pytest.fixture(scope="session")
def noisy_digits_model():
    """The digits CNN trained on inputs plus Gaussian noise of sigma 0.25 (Cohen et al.'s base
    classifier for randomized smoothing at that sigma; ~98% clean); about 3 s, on the CPU."""
    import torch
    from torch.nn import functional

    from robustness.core.data import load_data
    from robustness.core.model import ModelUnderTest
    from robustness.zoo import digits_cnn

    train = load_data("builtin:digits:train")
    with torch.random.fork_rng():  # the initialisation draws from the global generator
        torch.manual_seed(0)
        net = digits_cnn()
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(12):
        order = torch.randperm(len(train), generator=gen)
        for start in range(0, len(order), 64):
            idx = order[start : start + 64]
            noisy = train.x[idx] + 0.25 * torch.randn(train.x[idx].shape, generator=gen)
            loss = functional.cross_entropy(net(noisy), train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    return ModelUnderTest(net, spec="<digits cnn, gaussian sigma 0.25>", device="cpu")


# -- image folders and factory modules (data tests) ----------------------------------------------

IMAGE_MODELS = '''
import torch
from torch import nn


def make(num_classes=3, channels=3, side=12):
    """A fixed linear classifier of channels x side x side images."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, num_classes))


def pooled(num_classes=3):
    """Any image size: average-pooled to 4 x 4, then linear."""
    torch.manual_seed(0)
    return nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, num_classes))
'''


@pytest.fixture
def image_folder(tmp_path):
    """Write ``folder:`` data: ``image_folder(per_class, sizes=..., classes=..., suffix=...)`` makes one
    sub-folder per class of random images (cycling through ``sizes``, each (width, height)) and
    returns the root."""
    import numpy as np
    from PIL import Image

    def write(
        per_class: int = 4,
        *,
        sizes: tuple[tuple[int, int], ...] = ((12, 12),),
        classes: tuple[str, ...] = ("cat", "dog", "eel"),
        suffix: str = ".png",
        root_name: str = "images",
        seed: int = 0,
    ) -> Path:
        rng = np.random.default_rng(seed)
        root = tmp_path / root_name
        for name in classes:
            (root / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                w, h = sizes[i % len(sizes)]
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / name / f"img{i:03d}{suffix}")
        return root

    return write


@pytest.fixture
def image_models(tmp_path, monkeypatch):
    """An importable module ``rb_image_models`` of model factories (``make``, ``pooled``)."""
    (tmp_path / "rb_image_models.py").write_text(IMAGE_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import rb_image_models

    return importlib.reload(rb_image_models)


# -- peak memory of a run (streaming tests) ---------------------------------------------------

_PRINT_PEAK = (
    "import json as _json, resource as _resource\n"
    "print(_json.dumps({'peak_kb': _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss,\n"
    "                   'children_kb': _resource.getrusage(_resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)


@pytest.fixture
def peak_memory(tmp_path):
    """``run(code, *argv, modules={name: source})``: run the script ``code`` in a fresh Python
    process (``sys.argv[1:]`` = ``argv``) with ``modules`` importable; it must exit 0. Returns its
    output lines and its peak memory: ``(lines, {"peak_kb": ..., "children_kb": ...})``, the
    maximum resident size of the process and of any child (a reader process)."""
    import json
    import subprocess
    import sys
    import textwrap

    def run(code: str, *argv: object, modules: dict[str, str] | None = None, timeout: int = 600):
        for name, source in (modules or {}).items():
            (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        script = tmp_path / "peak_memory_run.py"
        script.write_text(textwrap.dedent(code) + "\n" + _PRINT_PEAK)
        path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
        done = subprocess.run(
            [sys.executable, str(script), *map(str, argv)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": path},
            timeout=timeout,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        lines = done.stdout.strip().splitlines()
        return lines[:-1], json.loads(lines[-1])

    return run


@pytest.fixture
def jpeg_folders(tmp_path):
    """``make(name, n)``: a ``folder:`` root of ``n`` RGB JPEGs of 224 x 224 in four classes (a, b,
    c, d): 8 small files hard-linked many times, so that decoding, not disk, is what a run costs."""
    import numpy as np
    from PIL import Image

    tiles = []
    for k in range(8):
        yy, xx = np.mgrid[0:224, 0:224]
        pixels = np.stack([(xx + 30 * k) % 256, (yy * 2 + k) % 256, ((xx + yy) // 2) % 256], -1)
        tiles.append(tmp_path / f"tile{k}.jpg")
        Image.fromarray(pixels.astype(np.uint8)).save(tiles[-1], quality=80)

    def make(name: str, n: int) -> Path:
        root = tmp_path / name
        for c in "abcd":
            (root / c).mkdir(parents=True)
        for i in range(n):
            os.link(tiles[i % 8], root / "abcd"[i % 4] / f"{i:05d}.jpg")
        return root

    return make
