"""The audit reads its data the way the other commands do, and records what it read.

``data.args``/``image_size``/``image_mode`` (and their flags) reach the loader; the class names
of an image folder and the (epsilon, delta) of a DP-trained model land in results.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustness.audit import run_audit
from robustness.cli import main


def _config(outdir: Path, data: dict, model: dict) -> dict:
    return {
        "model": {"device": "cpu", **model},
        "data": {"n_examples": 9, "batch_size": 9, **data},
        "threat": {"norm": "linf", "eps": [0.05]},
        "attacks": [{"name": "pgd", "params": {"steps": 3}}],
        "sanity_checks": {"enabled": False, "reason": "only the inputs are under test"},
        "output": {"dir": str(outdir), "formats": ["json"]},
    }


def test_an_audit_of_an_image_folder_records_its_class_names(image_folder, image_models, tmp_path):
    # images of 20x16: only image_size makes them fit the 12x12 model
    root = image_folder(3, sizes=((20, 16),))
    cfg = _config(
        tmp_path / "run",
        {"spec": f"folder:{root}", "image_size": 12, "image_mode": "RGB"},
        {"spec": "rb_image_models:make", "args": {"num_classes": 3}},
    )
    res = run_audit(cfg)
    assert res["data"]["class_names"] == ["cat", "dog", "eel"]
    assert res["data"]["shape"] == [3, 12, 12] and res["data"]["n"] == 9
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["data"]["class_names"] == ["cat", "dog", "eel"]


def test_the_audit_flags_set_the_data_options(image_folder, image_models, tmp_path, capsys):
    root = image_folder(3, sizes=((20, 16),))
    config = tmp_path / "audit.yaml"
    config.write_text(
        json.dumps(_config(tmp_path / "run", {"spec": "builtin:digits"}, {"spec": "rb_image_models:make"}))
    )
    argv = ["audit", str(config), "--data", f"folder:{root}", "--model-arg", "num_classes=3", "-q"]
    assert main([*argv, "--image-size", "12", "--exit-zero"]) == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["config"]["data"]["image_size"] == 12 and res["data"]["class_names"] == ["cat", "dog", "eel"]
    # without --image-size the 20x16 images do not fit the 12x12 model: an error, exit 2
    capsys.readouterr()
    assert main([*argv, "--restart"]) == 2
    assert "robustness audit: error" in capsys.readouterr().err


def test_a_dp_trained_model_carries_its_privacy_budget_into_the_results(tmp_path, monkeypatch):
    from robustness.core import model as model_module

    real = model_module.load_model

    def with_card(*args, **kwargs):
        model = real(*args, **kwargs)
        model.metadata["card"] = {**(model.metadata.get("card") or {}), "epsilon": 2.9991, "delta": 1e-5}
        return model

    monkeypatch.setattr(model_module, "load_model", with_card)
    cfg = _config(tmp_path / "run", {"spec": "builtin:digits"}, {"spec": "zoo:digits-cnn"})
    res = run_audit({**cfg, "output": {"dir": str(tmp_path / "run"), "formats": ["json", "html", "pdf"]}})
    assert res["model"]["epsilon"] == 2.9991 and res["model"]["delta"] == 1e-5
    shown = "(3, 1e-05)-DP training (DP-SGD)"  # epsilon rounded up, never down
    assert shown in (tmp_path / "run" / "report.html").read_text()
    pypdf = pytest.importorskip("pypdf")
    pdf_text = " ".join(p.extract_text() for p in pypdf.PdfReader(str(tmp_path / "run" / "report.pdf")).pages)
    assert shown in pdf_text


def test_batch_size_auto_is_resolved_recorded_and_gives_the_numbers_of_that_size(tmp_path, capsys):
    base = _config(
        tmp_path / "fixed", {"spec": "builtin:digits", "batch_size": 256}, {"spec": "zoo:digits-cnn"}
    )
    fixed = run_audit(base)
    config = tmp_path / "audit.yaml"
    config.write_text(json.dumps({**base, "output": {"dir": str(tmp_path / "auto"), "formats": ["json"]}}))
    assert main(["audit", str(config), "--batch-size", "auto", "-q"]) == 0
    auto = json.loads((tmp_path / "auto" / "results.json").read_text())
    # on the CPU there is no out-of-memory signal to search by: 256, capped by the 9 samples, said so
    assert (
        auto["data"]["batch_size"] == 9
        and "no out-of-memory signal" in auto["data"]["batch_size_search"]["how"]
    )
    assert auto["config"]["data"]["batch_size"] == "auto"
    assert [r["n_robust"] for r in auto["robust"]] == [r["n_robust"] for r in fixed["robust"]]
    capsys.readouterr()
    with pytest.raises(SystemExit) as usage:
        main(["audit", str(config), "--batch-size", "lots"])
    assert usage.value.code == 2 and "must be auto or a positive integer" in capsys.readouterr().err
