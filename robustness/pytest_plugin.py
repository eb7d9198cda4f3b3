"""pytest plugin (entry point ``pytest11``): the ``robustness_audit`` fixture and a marker.

pytest loads this module in every test run of an environment where robustness-audit is
installed, so it imports nothing heavy: torch, the attacks and the audit runner are imported
only when a test uses them. ``robustness.testing.assert_robust`` is the assertion to use in
tests; this plugin adds the fixture that runs a whole audit config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "robustness: a robustness test (an attack or an audit runs; usually slower than a unit test)",
    )


@pytest.fixture
def robustness_audit(tmp_path: Path):
    """A callable ``run(config_or_path, **overrides) -> results dict`` that runs an audit.

    ``config_or_path`` is a YAML/TOML file, a dict or an AuditConfig; ``overrides`` are the
    CLI's (``eps=``, ``n_examples=``, ``preset=``...). Outputs go to a fresh temporary
    folder unless ``output_dir`` is given, so tests never write into the working tree.
    The results a test gets are the results.json the audit wrote, read back with the one
    results loader (``robustness.testing.load_results``: the same checks as ``robustness
    report``); ``run.load(path)`` reads any other audit's results.json the same way.
    """
    from robustness.testing import load_results

    def run(config_or_path: Any, **overrides: Any) -> dict[str, Any]:
        from robustness.audit import run_audit

        overrides.setdefault("output_dir", tmp_path / "robustness-audit")
        out = run_audit(config_or_path, **overrides)
        results = out if isinstance(out, dict) else out.results
        written = Path(overrides["output_dir"]) / "results.json"
        if written.is_file() and results.get("created") is not None:
            on_disk = load_results(written)
            if on_disk.created == results["created"]:  # this run's file
                return on_disk.to_dict()
        return results

    run.load = load_results  # type: ignore[attr-defined]
    return run
