"""The audit reads data that is not in memory batch by batch, with the numbers of the same data in memory.

An image folder is streamed (robustness.core.rows.SampleRows over a DataStream): the attack stages,
the sanity checks and the report's examples read the samples they need and the ledger keeps
per-sample scalars, so peak memory does not grow with the number of images.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from robustness.audit import run_audit
from robustness.core.data import load_data


def _config(data: str, outdir, **extra) -> dict:
    return {
        "model": {"spec": "rb_image_models:make", "device": "cpu"},
        "data": {"spec": data, "batch_size": 16},
        "threat": {"norm": "linf", "eps": [0.002, 0.02]},
        "attacks": [
            {"name": "apgd-ce", "params": {"steps": 10}},
            {"name": "square", "params": {"n_queries": 100}},
        ],
        "sanity_checks": {"sample_size": 16},
        "output": {"dir": str(outdir), "formats": ["json", "md"]},
        "seed": 0,
        **extra,
    }


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_streamed_audit_gives_the_numbers_of_the_same_data_in_memory(image_folder, image_models, tmp_path):
    root = image_folder(30)  # 90 images of 12 x 12: six batches, the last one short
    folder = load_data(f"folder:{root}")
    np.savez_compressed(
        tmp_path / "same.npz", x=folder.x.numpy(), y=folder.y.numpy(), ids=np.array(folder.ids)
    )

    streamed = run_audit(_config(f"folder:{root}", tmp_path / "streamed"))
    in_memory = run_audit(_config(str(tmp_path / "same.npz"), tmp_path / "memory"))

    assert streamed["data"]["sha256"] == in_memory["data"]["sha256"] == folder.sha256()
    assert streamed["clean"]["accuracy"] == in_memory["clean"]["accuracy"] > 0.2
    for a, b in zip(streamed["robust"], in_memory["robust"]):
        assert (a["n_robust"], a["per_attack"], a["found_by_checks"]) == (
            b["n_robust"],
            b["per_attack"],
            b["found_by_checks"],
        )
    rows = [r["n_robust"] for r in streamed["robust"]]
    assert 0 < rows[1] < rows[0], rows  # neither trivial nor empty
    assert [c["status"] for c in streamed["sanity_checks"]] == [
        c["status"] for c in in_memory["sanity_checks"]
    ]
    assert [c["measured"] for c in streamed["sanity_checks"]] == [
        c["measured"] for c in in_memory["sanity_checks"]
    ]
    assert _lines(tmp_path / "streamed" / "samples.jsonl") == _lines(tmp_path / "memory" / "samples.jsonl")
    a, b = (np.load(tmp_path / run / "examples.npz") for run in ("streamed", "memory"))
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
        assert np.array_equal(a[key], b[key]), key
    assert (a["x_adv"][-1] != a["x_clean"]).any()  # the grid shows real examples


def test_a_resumed_streamed_audit_ends_with_the_same_numbers(
    image_folder, image_models, tmp_path, monkeypatch
):
    from robustness.audit import stages

    root = image_folder(10)
    whole = run_audit(_config(f"folder:{root}", tmp_path / "whole"))

    calls = {"n": 0}
    real = stages.Stages._attack_batch

    def dies_at_the_fifth_batch(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(stages.Stages, "_attack_batch", dies_at_the_fifth_batch)
    with pytest.raises(KeyboardInterrupt):
        run_audit(_config(f"folder:{root}", tmp_path / "resumed"))
    monkeypatch.setattr(stages.Stages, "_attack_batch", real)
    resumed = run_audit(_config(f"folder:{root}", tmp_path / "resumed"))
    assert resumed["timing"]["resumed_batches"] >= 4
    assert [r["n_robust"] for r in resumed["robust"]] == [r["n_robust"] for r in whole["robust"]]
    assert _lines(tmp_path / "resumed" / "samples.jsonl") == _lines(tmp_path / "whole" / "samples.jsonl")


MEMORY_MODEL = """
import torch
from torch import nn

def make(num_classes=4):
    torch.manual_seed(0)
    return nn.Sequential(nn.AvgPool2d(16), nn.Flatten(), nn.Linear(3 * 14 * 14, num_classes))
"""

MEMORY_AUDIT = """
import sys
from robustness.audit import run_audit

config = {
    "model": {"spec": "rb_mem_model:make", "device": "cpu"},
    "data": {"spec": "folder:" + sys.argv[1], "batch_size": 16},
    "threat": {"norm": "linf", "eps": [0.01, 0.03]},
    "attacks": [{"name": "fgsm"}, {"name": "pgd", "params": {"steps": 2}}],
    "sanity_checks": {"sample_size": 8},
    "threads": 1,
    "output": {"dir": sys.argv[2], "formats": ["json", "md"]},
}
print(run_audit(config)["data"]["n"])
"""


def test_an_audit_over_1600_images_peaks_within_300_mb_of_100(jpeg_folders, peak_memory, tmp_path):
    """``run_audit`` over 1,600 RGB images of 224 x 224 (0.96 GB as floats) and over 100, with the
    sanity checks: peak memory may differ by 300 MB at most (it held every input, and every
    adversarial example, before the audit read its data batch by batch)."""
    peaks = {}
    for name, n in (("few", 100), ("many", 1600)):
        out = tmp_path / f"out-{name}"
        lines, measured = peak_memory(
            MEMORY_AUDIT, jpeg_folders(name, n), out, modules={"rb_mem_model": MEMORY_MODEL}
        )
        assert lines == [str(n)]
        peaks[name] = measured["peak_kb"]
    grown_mb = (peaks["many"] - peaks["few"]) / 1024
    assert grown_mb < 300, peaks
    # and bounded in itself (measured 0.7 to 1.0 GB): check (d)'s noise attack stacked 4,096 draws
    # of these images into one batch (2.4 GB; a 2.9 GB peak) before it capped a stack's values
    assert peaks["many"] < 1.6 * 1024 * 1024, peaks
