"""summary.md and the GitHub step summary."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from reports import markdown, render_all

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads((DATA / "results.json").read_text())


def test_summary_table_has_every_eps_with_ci_and_gates(results):
    md = markdown.to_markdown(results)
    assert md.startswith("## ❌ Robustness audit: **FAIL**")
    assert results["verdict_reason"] in md
    rows = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| ") and "%" in ln}
    rows.pop("eps")  # the header
    assert set(rows) == {"0 (clean)", "0.05", "0.1", "0.2"}
    assert (
        "| 51.5% | [44.3%, 58.6%] | 103/200 | ✅ min robust accuracy ≥ 0.250 (value 0.443) |" in rows["0.1"]
    )
    assert "| 2.0% | [0.5%, 5.0%] | 4/200 | ❌ min robust accuracy ≥ 0.100 (value 0.005) |" in rows["0.2"]
    assert "99.5%" in rows["0 (clean)"] and "✅ min clean accuracy ≥ 0.900" in rows["0 (clean)"]
    assert "**Sanity checks:** 7 passed, 0 failed, 0 skipped, 1 waived." in md
    assert "`black_box_not_stronger`: waived, reason: No black-box attack" in md
    assert "Failed sanity checks" not in md


def test_footer_names_the_device_and_precision(results):
    assert ", cpu, fp32, " in markdown.to_markdown(results).splitlines()[-1]
    res = copy.deepcopy(results)
    res["environment"].update(device="cuda:0", precision="bf16")
    assert ", cuda:0, bf16, " in markdown.to_markdown(res).splitlines()[-1]


def test_failed_checks_and_other_gates_are_listed(results):
    res = copy.deepcopy(results)
    res["verdict"] = "unreliable"
    c = res["sanity_checks"][2]
    c.update(status="fail", detail="At eps 0.5 PGD leaves 40% | of samples\ncorrect.")
    res["gates"].append(
        {"name": "max_drop@0.1", "passed": False, "value": 0.07, "threshold": 0.02, "judge": "point"}
    )
    md = markdown.to_markdown(res)
    assert md.startswith("## ⚠️ Robustness audit: **UNRELIABLE**")
    assert f"- ❌ **{c['title']}** (`{c['name']}`): At eps 0.5 PGD leaves 40% \\| of samples correct." in md
    # max_drop is an upper limit, shown with ≤ in the eps row.
    assert "❌ max drop ≤ 0.020 (value 0.070)" in md


def test_render_all_appends_to_github_step_summary(tmp_path, monkeypatch, results):
    summary = tmp_path / "step_summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    written = render_all(results, tmp_path / "out", ["md"])
    text = summary.read_text()
    assert text.startswith("# earlier step\n")  # appended, never overwritten
    assert text.count("Robustness audit: **FAIL**") == 1
    assert Path(written["md"]).read_text() == markdown.to_markdown(results)
    # Also when only other formats are asked for: the CI summary is what GitHub shows.
    render_all(results, tmp_path / "out2", ["junit"])
    assert summary.read_text().count("Robustness audit: **FAIL**") == 2
