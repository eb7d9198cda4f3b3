"""render_all and `robustness report`: isolated renderers, atomic writes, results.json untouched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import reports
from reports import junit, markdown
from robustness.cli import main
from robustness.core.io import sha256_file

DATA = Path(__file__).parent / "data"


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A copy of the fixture audit folder, as the runner leaves it."""
    d = tmp_path / "run"
    shutil.copytree(DATA, d)
    return d


def test_render_all_writes_each_format_and_leaves_results_alone(run_dir, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    before = sha256_file(run_dir / "results.json")
    results = json.loads((run_dir / "results.json").read_text())
    errors: dict[str, str] = {}
    written = reports.render_all(results, run_dir, ["json", "junit", "markdown", "junit"], errors=errors)
    assert errors == {}
    assert written == {"junit": str(run_dir / "junit.xml"), "md": str(run_dir / "summary.md")}
    assert (run_dir / "junit.xml").read_text() == junit.to_xml(results)
    assert sha256_file(run_dir / "results.json") == before
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "examples.npz",
        "junit.xml",
        "results.json",
        "samples.jsonl",
        "summary.md",
    ]


def test_a_failing_renderer_costs_only_its_own_file(run_dir, monkeypatch, capsys):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    results = json.loads((run_dir / "results.json").read_text())
    (run_dir / "summary.md").write_text("previous summary\n")
    before = sha256_file(run_dir / "results.json")

    def broken(*a, **k):
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(markdown, "to_markdown", broken)
    errors: dict[str, str] = {}
    written = reports.render_all(results, run_dir, ["md", "junit", "latex"], errors=errors)
    assert list(written) == ["junit"]
    assert errors["md"] == "RuntimeError: renderer bug"
    assert "unknown report format 'latex'" in errors["latex"]
    assert "the md report could not be written (RuntimeError: renderer bug)" in capsys.readouterr().err
    # The earlier summary survives intact, no temporary files are left, results.json is untouched.
    assert (run_dir / "summary.md").read_text() == "previous summary\n"
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]
    assert sha256_file(run_dir / "results.json") == before


def test_cli_report_renders_from_results_alone(run_dir, tmp_path, capsys):
    out = tmp_path / "elsewhere" / "summary.md"
    assert main(["report", str(run_dir / "results.json"), "-o", str(out)]) == 0
    assert out.read_text().startswith("## ❌ Robustness audit: **FAIL**")
    assert main(["report", str(run_dir), "--format", "junit"]) == 0
    assert (run_dir / "junit.xml").is_file()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "missing.json")]) == 2
    assert "no results file at" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"hello": 1}')
    assert main(["report", str(tmp_path / "bad.json")]) == 2
    assert "not an audit results object" in capsys.readouterr().err
    assert main(["report", str(run_dir), "-o", str(run_dir / "results.json"), "--format", "md"]) == 2
