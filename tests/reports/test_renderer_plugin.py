"""A renderer is one file: registered with ``reports.renderer``, it is found in the config schema's
output formats, the CLI's ``--format`` choices, ``robustness report`` and ``render_all``."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

import reports
from robustness.cli import build_parser, main
from robustness.config import json_schema, parse_config
from robustness.core.io import atomic_write_text
from robustness.core.schema import AuditResults, load_results

DATA = Path(__file__).parent / "data"


@pytest.fixture
def toy():
    """A toy renderer, registered through the same call a file in reports/ makes."""
    seen: list[object] = []

    @reports.renderer("toy", "toy.txt", aliases=("plaything",), suffixes=(".toy",), order=99)
    def write(results: AuditResults, path: Path, *, source: Path | None = None) -> Path:
        seen.append(results)
        gates = ", ".join(f"{g.kind}@{g.eps} {g.comparator} {g.threshold}" for g in results.gates)
        return atomic_write_text(path, f"{results.verdict}: {gates}\n")

    yield seen
    reports.RENDERERS._items.pop("toy", None)


def format_choices(command: str) -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command]
    return list(next(a for a in parser._actions if a.dest in ("formats", "format")).choices)


def test_the_builtin_formats_come_from_the_registry():
    assert reports.default_formats() == ["json", "pdf", "html", "junit", "md"]
    assert {r.name: r.filename for r in reports.renderers() if r.default} == {
        "pdf": "report.pdf",
        "html": "report.html",
        "junit": "junit.xml",
        "md": "summary.md",
    }
    assert format_choices("audit") == reports.output_formats()
    assert format_choices("report") == reports.output_formats()[1:]
    assert reports.canonical_format("markdown") == "md" and reports.format_for_suffix(".xml") == "junit"


def test_a_toy_renderer_is_found_everywhere(toy, tmp_path, capsys):
    # the config: its schema, its default and its validation
    enum = json_schema()["$defs"]["OutputSection"]["properties"]["formats"]["items"]["enum"]
    assert enum == [*reports.output_formats()[:-1], "toy"] and enum[:5] == [
        "json",
        "pdf",
        "html",
        "junit",
        "md",
    ]
    cfg = {"model": {"spec": "zoo:digits-cnn"}, "data": {"spec": "builtin:digits"}, "threat": {"eps": [0.1]}}
    assert parse_config(cfg).output.formats[-1] == "toy"
    assert parse_config({**cfg, "output": {"formats": ["json", "toy"]}}).output.formats == ["json", "toy"]
    # the command line
    assert "toy" in format_choices("audit") and "toy" in format_choices("report")
    run = tmp_path / "run"
    shutil.copytree(DATA, run)
    assert main(["report", str(run), "--format", "toy"]) == 0
    assert (run / "toy.txt").read_text().startswith("fail: min_clean_accuracy@None >= 0.9")
    assert main(["report", str(run / "results.json"), "-o", str(tmp_path / "x.toy")]) == 0
    assert (tmp_path / "x.toy").is_file()
    capsys.readouterr()
    # render_all, next to the others; the renderer gets the typed (migrated) result
    errors: dict[str, str] = {}
    written = reports.render_all(
        load_results(run), tmp_path / "all", ["json", "plaything", "md"], errors=errors
    )
    assert errors == {} and list(written) == ["toy", "md"]
    assert (tmp_path / "all" / "toy.txt").read_text() == (run / "toy.txt").read_text()
    assert all(isinstance(r, AuditResults) for r in toy)
    assert "min_robust_accuracy@0.2 >= 0.1" in (run / "toy.txt").read_text()


def test_an_unknown_format_names_the_known_ones(capsys):
    with pytest.raises(Exception) as exc:
        reports.canonical_format("latex")
    assert "unknown report format 'latex'" in str(exc.value) and "pdf" in str(exc.value)


def test_an_export_renderer_is_written_only_when_asked_for():
    @reports.renderer("toy-export", "export.json", default=False)
    def write(results: AuditResults, path: Path, *, source: Path | None = None) -> Path:
        return atomic_write_text(path, "{}")

    try:
        cfg = {
            "model": {"spec": "zoo:digits-cnn"},
            "data": {"spec": "builtin:digits"},
            "threat": {"eps": [0.1]},
        }
        assert "toy-export" in reports.output_formats() and "toy-export" in format_choices("audit")
        assert "toy-export" not in parse_config(cfg).output.formats
        asked = {**cfg, "output": {"formats": ["json", "toy-export"]}}
        assert parse_config(asked).output.formats == ["json", "toy-export"]
    finally:
        reports.RENDERERS._items.pop("toy-export", None)
