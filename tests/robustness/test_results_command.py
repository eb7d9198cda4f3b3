"""``robustness results``: many audits side by side (text, Markdown, CSV) and the trend page."""

from __future__ import annotations

import copy
import html
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from robustness.cli import main
from robustness.core.metrics import clopper_pearson

DATA = Path(__file__).resolve().parents[1] / "reports" / "data"


def _run(folder: Path, raw: dict) -> Path:
    shutil.copytree(DATA, folder)
    (folder / "results.json").write_text(json.dumps(raw))
    return folder


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    """Three audits: the fixture (oldest), a later one with another eps grid and a commit, and one
    given first on the command line but created in between."""
    base = json.loads((DATA / "results.json").read_text())
    later = copy.deepcopy(base)
    later["created"] = "2026-12-01T10:00:00Z"
    later["model"]["spec"] = "runs/at|<b>hardened</b>"
    later["environment"]["commit"] = "abc1234"
    row = later["robust"][2]
    row.update(eps=0.3, n_robust=1, accuracy=0.005, ci=list(clopper_pearson(1, 200)))
    later["threat"]["eps"] = [0.05, 0.1, 0.3]
    later["gates"] = [g for g in later["gates"] if g.get("name") != "min_robust_accuracy@0.2"]
    later["verdict"] = "pass"
    middle = copy.deepcopy(base)
    middle["created"] = "2026-11-30T08:00:00Z"
    return [
        _run(tmp_path / "middle", middle),
        _run(tmp_path / "later", later),
        _run(tmp_path / "base", base),
    ]


def test_csv_has_one_row_per_run_in_the_order_they_ran(runs, tmp_path, capsys):
    out = tmp_path / "t.csv"
    assert main(["results", *(str(r) for r in runs), "--csv", str(out)]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == [
        "run",
        "model",
        "data",
        "n",
        "commit",
        "created",
        "clean",
        "robust@0.05",
        "robust@0.1",
        "robust@0.2",
        "robust@0.3",
        "verdict",
    ]
    assert [Path(r).parent.name for r in df["run"]] == ["base", "middle", "later"]
    assert df["robust@0.05"].tolist() == [0.925] * 3 and df["clean"].tolist() == [0.995] * 3
    assert df["robust@0.2"].tolist()[:2] == [0.02, 0.02] and pd.isna(df["robust@0.2"].iloc[2])
    assert pd.isna(df["robust@0.3"].iloc[0]) and df["robust@0.3"].iloc[2] == 0.005
    assert df["verdict"].tolist() == ["fail", "fail", "pass"] and df["commit"].tolist()[2] == "abc1234"
    printed = capsys.readouterr().out
    assert "92.5%" in printed and f"wrote {out}" in printed


def test_markdown_shows_user_text_literally(runs, capsys):
    assert main(["results", str(runs[1]), str(runs[2]), "--markdown"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| run | model | data | n | commit | created | clean | robust@0.05 |")
    assert lines[1].startswith("|:---|:---|:---|---:|")
    assert len(lines) == 4 and all(line.count(" | ") == lines[0].count(" | ") for line in lines[2:])
    hardened = next(line for line in lines if "hardened" in line)
    assert "runs/at\\|&lt;b>hardened&lt;/b>" in hardened and "| 51.5% |" in hardened


def test_the_trend_page(runs, tmp_path):
    out = tmp_path / "trend.html"
    assert main(["results", *(str(r) for r in runs), "--html", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert "Robustness across runs" in page and "3 runs from 2026-11-26T21:58:18Z" in page
    urls = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page)
    assert all(u.startswith("#") for u in urls) and "<link" not in page
    tips = [html.unescape(t) for t in re.findall(r'<circle [^>]*data-tip="([^"]*)"', page)]
    # clean at 3 runs, eps 0.05 and 0.1 at 3, eps 0.2 at 2, eps 0.3 at 1
    assert len(tips) == 3 + 3 + 3 + 2 + 1
    assert any(
        t.startswith(f"#3 {runs[1] / 'results.json'} (2026-12-01T10:00:00Z): robust, linf eps 0.3")
        for t in tips
    )
    assert "&lt;b&gt;hardened&lt;/b&gt;" in page and "<b>hardened" not in page
    assert "The runs differ in their models" in page


def test_a_missing_run_is_a_usage_error(tmp_path, capsys):
    assert main(["results", str(DATA), str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "no results file at" in err and "nowhere" in err
