"""Streaming: data read batch by batch (memory-mapped .npz, folders with and without reader
processes), ``evaluate`` and ``attack`` holding only the batches in flight."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robustness.cli import main
from robustness.core.data import load_data, open_data
from robustness.core.errors import DataError
from robustness.core.stream import ArrayStream, MapStream, TensorStream


def test_uncompressed_npz_is_memory_mapped_and_read_like_the_loaded_one(tmp_path, digits_test):
    x, y = digits_test.x.numpy(), digits_test.y.numpy()
    np.savez(tmp_path / "plain.npz", x=x, y=y, ids=np.array(digits_test.ids))
    np.savez_compressed(tmp_path / "packed.npz", x=x, y=y)
    plain = open_data(str(tmp_path / "plain.npz"), n_examples=50, seed=4)
    assert isinstance(plain, ArrayStream) and isinstance(plain.x, np.memmap)
    assert isinstance(open_data(str(tmp_path / "packed.npz")), TensorStream)
    loaded = load_data(str(tmp_path / "packed.npz"), n_examples=50, seed=4)
    batches = list(plain.batches(16))
    assert [b.x.shape[0] for b in batches] == [16, 16, 16, 2]
    assert torch.equal(torch.cat([b.x for b in batches]), loaded.x)
    assert torch.equal(torch.cat([b.y for b in batches]), loaded.y)
    assert plain.ids == [digits_test.ids[int(i)] for i in loaded.ids]
    # load_data of the memory-mapped file gives the same Dataset
    assert torch.equal(load_data(str(tmp_path / "plain.npz"), n_examples=50, seed=4).x, loaded.x)


def test_memory_mapped_npz_is_checked_before_any_work(tmp_path):
    x = np.full((40, 1, 4, 4), 0.5, dtype=np.float32)
    x[33, 0, 1, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.zeros(40, dtype=np.int64))
    with pytest.raises(DataError, match=r"1 inputs contain NaN or inf \(first: sample 33\)"):
        open_data(str(tmp_path / "nan.npz"))
    x[33, 0, 1, 1] = 1.5
    np.savez(tmp_path / "big.npz", x=x, y=np.zeros(40, dtype=np.int64))
    with pytest.raises(DataError, match=r"outside the model's bounds \[0, 1\] \(first: sample 33\)"):
        open_data(str(tmp_path / "big.npz"))


def test_label_beyond_the_model_is_found_in_the_batch_that_holds_it(image_folder):
    root = image_folder(2, classes=("a", "b", "c", "d"))
    stream = open_data(f"folder:{root}").expect(bounds=(0, 1), model_outputs=3)
    batches = stream.batches(3)
    assert next(batches).y.tolist() == [0, 0, 1]
    next(batches)
    with pytest.raises(Exception, match="the model has 3 outputs but the labels go up to 3"):
        next(batches)


def test_reader_processes_give_the_same_batches(image_folder):
    root = image_folder(6)
    inline = open_data(f"folder:{root}", workers=0)
    readers = open_data(f"folder:{root}", workers=2)
    assert isinstance(readers, MapStream)
    a, b = list(inline.batches(5)), list(readers.batches(5))
    assert [x.number for x in b] == [0, 1, 2, 3]
    assert all(torch.equal(p.x, q.x) and torch.equal(p.y, q.y) and p.ids == q.ids for p, q in zip(a, b))
    # a rank's share: only its batches are read
    assert [x.number for x in readers.batches(5, numbers=[1, 3])] == [1, 3]


def test_evaluate_in_batches_equals_evaluate_in_one(digits_model, digits_test):
    from robustness.cli.evaluate import evaluate

    whole = evaluate(digits_model, digits_test, batch_size=512)
    streamed = evaluate(digits_model, open_data("builtin:digits"), batch_size=37)
    assert streamed == whole and whole["n"] == 359


def test_attack_in_batches_observes_every_sample(tmp_path, capsys, digits_model):
    """Four batches of 25: every sample attacked once, the rows summed exactly, --save written
    batch by batch with the same ids, examples and predictions as a direct check computes."""
    path = tmp_path / "adv.npz"
    argv = ["attack", "--model", "zoo:digits-cnn", "--data", "builtin:digits", "--device", "cpu"]
    argv += ["--attack", "pgd", "--steps", "5", "--eps", "0.05", "0.15", "--n-examples", "100"]
    assert main([*argv, "--batch-size", "25", "--save", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["n"] for r in rows] == [100, 100] and rows[0]["batch_size"] == 25
    clean = load_data("builtin:digits", n_examples=100, seed=0)
    with np.load(path) as z:
        x_adv, adv_pred, ids, y = z["x_adv"], z["adv_pred"], z["ids"], z["y"]
    assert ids.tolist() == clean.ids and y.tolist() == clean.y.tolist()
    for i, eps in enumerate((0.05, 0.15)):
        pred = digits_model.predict(torch.from_numpy(x_adv[i])).numpy()
        assert np.array_equal(pred, adv_pred[i])
        assert rows[i]["robust_accuracy"] == float((pred == y).mean())
        assert np.abs(x_adv[i] - clean.x.numpy()).max() <= eps + 1e-6
    assert rows[1]["robust_accuracy"] <= rows[0]["robust_accuracy"] < rows[0]["clean_accuracy"]
    assert rows[0]["n_backward"] > 0 and not list(tmp_path.glob(".adv.npz.*"))
    # one batch holding all the data gives exactly the attack of the whole set
    from attacks.registry import get_attack

    direct = get_attack("pgd", steps=5)(digits_model, clean.x, clean.y, eps=[0.05, 0.15], seed=0)
    assert main([*argv, "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert [r["robust_accuracy"] for r in whole] == [r.robust_accuracy for r in direct]


MEMORY_RUN = """
import sys
from robustness.cli import main

assert main(["attack", "--model", "rb_mem_model:make", "--data", "folder:" + sys.argv[1], "--attack", "fgsm",
             "--eps", "0.03", "--batch-size", "16", "--device", "cpu", "--threads", "1", "--json"]) == 0
"""

MEMORY_MODEL = """
from torch import nn

def make(num_classes=4):
    return nn.Sequential(nn.AvgPool2d(16), nn.Flatten(), nn.Linear(3 * 14 * 14, num_classes))
"""


def test_attack_over_1600_images_peaks_within_300_mb_of_100(jpeg_folders, peak_memory):
    """``robustness attack`` over 1,600 RGB images of 224 x 224 (0.96 GB as floats) and over 100:
    peak memory (RSS of the process and of any reader process) may differ by 300 MB at most.
    Batches of 16 keep the run short on two shared cores."""
    peaks = {}
    for name, n in (("few", 100), ("many", 1600)):
        lines, peaks[name] = peak_memory(
            MEMORY_RUN, jpeg_folders(name, n), modules={"rb_mem_model": MEMORY_MODEL}
        )
        assert json.loads("\n".join(lines))["n"] == n
    grown_mb = (peaks["many"]["peak_kb"] - peaks["few"]["peak_kb"]) / 1024
    readers_mb = (peaks["many"]["children_kb"] - peaks["few"]["children_kb"]) / 1024
    assert grown_mb < 300, peaks
    assert readers_mb < 300, peaks
