"""Indicators of attack failure (Pintor et al., NeurIPS 2022): read off the attacks' own runs.

They fire on attacks built to fail (a loss that cannot move behind an input quantizer, a PGD
starved of steps and step size, restarts that still break samples) and stay quiet on the digits
model under a normal budget; an audit records them per attack, check (j) judges them, and a
resumed audit reports the same ones.
"""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from attacks.registry import get_attack
from attacks.trace import INCOMPLETE_OPTIMISATION, NON_CONVERGING_RESTARTS, SILENT_LOSS
from robustness.audit.indicators import INDICATORS, UNREACHABLE, IndicatorBook
from robustness.audit.runner import run_audit
from robustness.checkpoint import FOLDER, batch_indicators, batch_problem
from robustness.core.model import ModelUnderTest
from robustness.core.schema import ResultsError, parse_results

EPS = 0.1


class Quantized(nn.Module):
    """Inputs rounded to 4 levels before the network: the input gradient is zero almost everywhere."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * 3) / 3)


def fires(counts: list[int], name: str) -> bool:
    return INDICATORS[name].fires(*counts)


def test_quiet_on_the_digits_model_with_a_normal_budget(digits_model, digits_small):
    res = get_attack("apgd-ce")(digits_model, digits_small.x, digits_small.y, eps=EPS)
    counts = res.indicators["apgd-ce"]
    n_failed = int((res.robust & (res.clean_pred == res.y)).sum())
    assert n_failed > 20  # the ones it failed on: the indicators' population
    assert counts[SILENT_LOSS][0] == counts[INCOMPLETE_OPTIMISATION][0] == n_failed
    assert counts[INCOMPLETE_OPTIMISATION][1] == 0  # APGD's halved steps have converged by step 100
    assert counts[SILENT_LOSS][1] <= 2  # a saturated cross-entropy at most on a very confident sample
    assert not fires(counts[SILENT_LOSS], SILENT_LOSS)
    assert NON_CONVERGING_RESTARTS not in counts  # one restart: nothing to compare


def test_silent_loss_fires_behind_an_input_quantizer(digits_model, digits_small):
    quantized = ModelUnderTest(Quantized(copy.deepcopy(digits_model.module)), spec="round4", device="cpu")
    res = get_attack("apgd-ce", steps=10)(quantized, digits_small.x, digits_small.y, eps=EPS)
    measured, silent = res.indicators["apgd-ce"][SILENT_LOSS]
    assert measured > 20 and silent == measured  # zero gradients: the loss never moved
    assert fires([measured, silent], SILENT_LOSS)


def test_incomplete_optimisation_fires_on_a_starved_pgd(digits_model, digits_small):
    # Five steps of 0.002 from the clean point: the loss climbs at the same pace to the end.
    starved = get_attack("pgd", steps=5, step_size=0.002, random_start=False)
    res = starved(digits_model, digits_small.x, digits_small.y, eps=EPS)
    measured, incomplete = res.indicators["pgd"][INCOMPLETE_OPTIMISATION]
    assert measured == int((res.robust & (res.clean_pred == res.y)).sum()) > 80
    assert incomplete >= 0.75 * measured and fires([measured, incomplete], INCOMPLETE_OPTIMISATION)
    # A loss that never moved is not one still rising: the two never hold for the same sample.
    assert incomplete + res.indicators["pgd"][SILENT_LOSS][1] <= measured


def test_non_converging_restarts_count_what_the_last_restart_broke(digits_model, digits_small):
    x, y = digits_small.x, digits_small.y
    n_robust = {}
    for restarts in (2, 3):
        res = get_attack("apgd-ce", steps=2, restarts=restarts)(digits_model, x, y, eps=EPS)
        n_robust[restarts] = int(res.robust.sum())
        if restarts == 3:
            measured, fired = res.indicators["apgd-ce"][NON_CONVERGING_RESTARTS]
    # The first two restarts are the same runs (one generator): the third broke exactly the difference.
    assert measured == n_robust[2] and fired == n_robust[2] - n_robust[3]
    assert fired > 0


def test_members_of_a_composition_report_under_their_own_names(digits_model, digits_small):
    ensemble = get_attack("autoattack-fast")
    res = ensemble(digits_model, digits_small.x[:40], digits_small.y[:40], eps=EPS)
    assert {"apgd-ce", "apgd-t"} <= set(res.indicators)
    assert res.indicators["apgd-t"][SILENT_LOSS][0] <= res.indicators["apgd-ce"][SILENT_LOSS][0]


def audit_config(outdir, attacks) -> dict:
    return {
        "model": {"spec": "zoo:digits-cnn", "device": "cpu"},
        "data": {"spec": "builtin:digits", "n_examples": 40, "batch_size": 20},
        "threat": {"norm": "linf", "eps": [0.05, EPS]},
        "attacks": attacks,
        "sanity_checks": {"sample_size": 8},
        "output": {"dir": str(outdir), "formats": ["json"]},
    }


def check(res: dict, name: str = "attack_failure") -> dict:
    return next(c for c in res["sanity_checks"] if c["name"] == name)


@pytest.fixture(scope="module")
def normal_audit(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("normal")
    return outdir, run_audit(audit_config(outdir, [{"name": "apgd-ce", "params": {"steps": 50}}]))


def test_an_audit_records_the_indicators_per_attack_and_the_check_passes(normal_audit):
    _, res = normal_audit
    (record,) = res["attacks"]
    by_name = {i["name"]: i for i in record["indicators"]}
    assert set(by_name) == {SILENT_LOSS, INCOMPLETE_OPTIMISATION, UNREACHABLE}
    silent = by_name[SILENT_LOSS]
    assert [r["eps"] for r in silent["per_eps"]] == [0.05, EPS] and silent["member"] is None
    # Measured on the samples the attack failed on: those still robust after it, at each eps.
    assert [r["n_measured"] for r in silent["per_eps"]] == [
        round(row["per_attack"]["apgd-ce"] * row["n"]) for row in res["robust"]
    ]
    assert not any(i["fired"] for i in record["indicators"])
    unreachable = by_name[UNREACHABLE]
    large = check(res, "large_eps_breaks_all")["measured"]
    assert unreachable["n_measured"] == large["n_tested"] and unreachable["n_fired"] == large["n_robust"]
    assert check(res)["status"] == "pass", check(res)["detail"]


def test_a_starved_attack_fails_the_check(tmp_path):
    starved = {"name": "pgd", "params": {"steps": 4, "step_size": 0.002, "random_start": False}}
    res = run_audit(audit_config(tmp_path, [starved]))
    outcome = check(res)
    assert outcome["status"] == "fail" and "incomplete optimisation" in outcome["detail"]
    assert INCOMPLETE_OPTIMISATION in {f["name"] for f in outcome["measured"]["uncovered"]}
    assert res["verdict"] == "unreliable"
    (record,) = res["attacks"]
    assert next(i for i in record["indicators"] if i["name"] == INCOMPLETE_OPTIMISATION)["fired"] is True


def test_a_later_quiet_attack_covers_an_indicator_that_fired():
    # APGD-CE blinded by a saturated softmax on 30 of 40 samples, then APGD-T's DLR loss works.
    book = IndicatorBook()
    blinded = {"apgd-ce": {SILENT_LOSS: [40, 30], INCOMPLETE_OPTIMISATION: [40, 0]}}
    working = {"apgd-t": {SILENT_LOSS: [12, 0], INCOMPLETE_OPTIMISATION: [12, 1]}}
    book.add("apgd-ce", EPS, blinded, attack="apgd-ce")
    book.add("apgd-t", EPS, working, attack="apgd-t")
    uncovered, covered, n = book.judged(["apgd-ce", "apgd-t"])
    assert uncovered == [] and n == 2
    assert [(c["attack"], c["name"], c["n_fired"], c["covered_by"]) for c in covered] == [
        ("apgd-ce", SILENT_LOSS, 30, "apgd-t")
    ]
    # The other way round nothing comes after the blinded attack: its failures stand.
    uncovered, covered, _ = book.judged(["apgd-t", "apgd-ce"])
    assert [(u["attack"], u["name"]) for u in uncovered] == [("apgd-ce", SILENT_LOSS)] and covered == []
    # Inside a composition the members are judged in their run order, under the ensemble's label.
    ensemble = IndicatorBook()
    ensemble.add(
        "autoattack", EPS, {**working, **blinded}, attack="autoattack", members=("apgd-ce", "apgd-t")
    )
    assert [r["member"] for r in ensemble.records("autoattack")][::2] == ["apgd-ce", "apgd-t"]
    assert ensemble.judged(["autoattack"])[1][0]["covered_by"] == "autoattack (apgd-t)"


def test_resume_gives_the_same_indicators(normal_audit, tmp_path):
    outdir, res = normal_audit
    # The finished run's checkpoint, as an interrupted run would have left it: half its batches gone.
    shutil.copytree(outdir / FOLDER, tmp_path / FOLDER)
    meta = tmp_path / FOLDER / "fingerprint.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "complete": False}))
    batches = sorted((tmp_path / FOLDER).glob("*.npz"))
    for path in batches[::2]:
        path.unlink()
    for path in batches[1::2]:
        with np.load(path, allow_pickle=False) as f:
            rec = {k: f[k] for k in f.files}
        assert batch_problem(rec) is None and isinstance(batch_indicators(rec), dict)
    again = run_audit(audit_config(tmp_path, [{"name": "apgd-ce", "params": {"steps": 50}}]))
    assert again["timing"]["resumed_batches"] == len(batches[1::2]) > 0
    assert again["attacks"] == res["attacks"]
    assert check(again) == check(res)


def test_a_checkpoint_batch_with_bad_indicators_is_refused():
    rec = {
        "idx": np.arange(2),
        "success": np.array([True, False]),
        "adv_pred": np.array([1, 0]),
        "pnorm": np.zeros(2, dtype=np.float32),
        "x_adv": np.zeros((1, 1, 8, 8), dtype=np.float32),
        "cost": np.zeros(3, dtype=np.int64),
        "time_s": np.array(0.1),
        "indicators": np.array(json.dumps({"pgd": {SILENT_LOSS: [1, 0]}})),
    }
    assert batch_problem(rec, (1, 8, 8)) is None
    rec["indicators"] = np.array(json.dumps({"pgd": {SILENT_LOSS: [1, 2]}}))
    assert "indicators" in batch_problem(rec, (1, 8, 8))


def test_results_refuse_an_indicator_held_by_more_samples_than_measured(normal_audit):
    _, res = normal_audit
    assert parse_results(res).attacks[0].indicators[0].n_measured > 0
    forged = json.loads(json.dumps(res))
    forged["attacks"][0]["indicators"][0]["n_fired"] = forged["attacks"][0]["indicators"][0]["n_measured"] + 1
    with pytest.raises(ResultsError, match=r"attacks\[0\]\.indicators\[0\]"):
        parse_results(forged)


def test_the_reports_show_the_indicators(normal_audit, tmp_path):
    import pypdf

    from reports.html import to_html
    from reports.markdown import to_markdown
    from reports.pdf import render as render_pdf

    _, res = normal_audit
    assert "**Indicators of attack failure:** none fired (1 attack(s) measured)." in to_markdown(res)
    fired = json.loads(json.dumps(res))
    silent = fired["attacks"][0]["indicators"][0]
    silent["n_fired"] = silent["per_eps"][0]["n_fired"] = silent["per_eps"][0]["n_measured"]
    silent["fired"] = silent["per_eps"][0]["fired"] = True
    n = silent["n_fired"]
    assert f"apgd-ce`: Silent loss on {n}/{silent['n_measured']} samples" in to_markdown(fired)
    page = to_html(fired)
    assert '<th scope="col">failure indicators</th>' in page and ">1 fired<" in page
    assert "Indicators of attack failure</h3>" in page and ">FIRED<" in page
    path = render_pdf(fired, tmp_path / "report.pdf")
    text = " ".join(p.extract_text() for p in pypdf.PdfReader(str(path)).pages)
    assert "Indicators of attack failure" in text and "1 FIRED" in text and "FIRED" in text
