"""robustbench.json: the leaderboard's fields, filled honestly from the typed result."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from reports import default_formats, output_formats, render_all, robustbench

DATA = Path(__file__).parent / "data"
FIELDS = {
    "link",
    "name",
    "authors",
    "additional_data",
    "number_forward_passes",
    "dataset",
    "venue",
    "architecture",
    "threat_model",
    "eps",
    "clean_acc",
    "reported",
    "external",
    "autoattack_acc",
    "footnote",
    "unreliable",
}


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads((DATA / "results.json").read_text())


def test_fields_of_the_fixture_audit(results, tmp_path):
    written = render_all(results, tmp_path, ["robustbench"])
    entry = json.loads(Path(written["robustbench"]).read_text())
    assert set(entry) == FIELDS
    # No leaderboard eps in the grid (0.05, 0.1, 0.2): the largest, at its robust accuracy.
    assert entry["eps"] == "0.2" and entry["autoattack_acc"] == "2.00" and entry["clean_acc"] == "99.50"
    assert entry["threat_model"] == "Linf" and entry["name"] == "zoo:digits-cnn"
    assert entry["number_forward_passes"] == 1 and entry["dataset"] == "builtin:digits"
    # fgsm + pgd is not AutoAttack, and a waived check makes the entry unreliable.
    assert "not the standard AutoAttack" in entry["footnote"] and "on 200 samples" in entry["footnote"]
    assert entry["unreliable"] is True and "black_box_not_stronger" in entry["footnote"]
    # An export written on request only, not by every audit.
    assert "robustbench" in output_formats() and "robustbench" not in default_formats()


def test_leaderboard_eps_standard_attacks_and_randomized(results):
    res = copy.deepcopy(results)
    res["threat"]["eps"] = [4 / 255, 8 / 255, 0.1]
    for row, eps in zip(res["robust"], res["threat"]["eps"]):
        row["eps"] = eps
    res["attacks"] = [{"name": n, "attack": n} for n in ("apgd-ce", "apgd-t", "fab", "square")]
    for check in res["sanity_checks"]:
        check["status"] = "pass"
    res["verdict"] = "pass"
    res["data"]["spec"] = "cifar10:/data/cifar"
    entry = robustbench.to_robustbench(res)
    assert entry["eps"] == "8/255" and entry["autoattack_acc"] == "51.50"
    assert entry["dataset"] == "cifar10" and entry["unreliable"] is False
    assert "not the standard AutoAttack" not in entry["footnote"]
    res["eot_used"] = True
    res["config"]["eot_samples"] = 20
    entry = robustbench.to_robustbench(res)
    assert entry["unreliable"] is True and entry["number_forward_passes"] == 20
    assert "majority vote" in entry["footnote"]


def test_eps_text():
    assert robustbench.eps_text(8 / 255, "linf") == "8/255"
    assert robustbench.eps_text(0.2, "linf") == "0.2"
    assert robustbench.eps_text(0.5, "l2") == "0.5"
    assert robustbench.leaderboard_eps("l2", [0.25, 0.5, 1.0]) == 0.5
