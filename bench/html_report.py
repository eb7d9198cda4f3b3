"""HTML report benchmark: size and time of report.html, rendered and opened in headless Chromium.

Renders ``report.html`` from an audit folder (default: ``runs/digits-audit``, the example audit,
else the renderer fixture ``tests/reports/data``) and from a synthetic folder with many samples
(the fixture's results and examples with its samples.jsonl repeated under new ids, so the
per-sample table reaches its cap), and reports the file size, the render time (best of 3) and, where
Playwright and Chromium are installed, the time to the page's load event. The table is printed and
written as the section "HTML report (bench/html_report.py)" of bench/RESULTS.md (other sections kept).

    python bench/html_report.py [--results DIR] [--samples 10000] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the packages, not bench/attacks.py

from resultsfile import write_section  # noqa: E402 - bench/resultsfile.py

FIXTURE = ROOT / "tests" / "reports" / "data"


def render(folder: Path) -> tuple[Path, float]:
    from reports import render as render_format
    from robustness.core.schema import load_results

    results = load_results(folder)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        path = render_format(results, "html", folder / "report.html", source=folder)
        times.append(time.perf_counter() - t0)
    return path, min(times)


def synthetic(folder: Path, n: int) -> Path:
    """The fixture with ``n`` samples in samples.jsonl (its rows repeated under new ids)."""
    shutil.copytree(FIXTURE, folder)
    rows = [json.loads(line) for line in (FIXTURE / "samples.jsonl").read_text().splitlines()]
    with open(folder / "samples.jsonl", "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({**rows[i % len(rows)], "id": f"s-{i}"}) + "\n")
    return folder


def load_time(path: Path) -> float | None:
    """Seconds to the load event in headless Chromium; None without Playwright or Chromium."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path(chromium).is_file():
        return None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page()
        t0 = time.perf_counter()
        page.goto(path.resolve().as_uri(), wait_until="load")
        seconds = time.perf_counter() - t0
        browser.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=None, help="an audit output folder")
    parser.add_argument("--samples", type=int, default=10_000, help="samples of the synthetic run")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    example = args.results or next(
        (p for p in (ROOT / "runs" / "digits-audit", FIXTURE) if (p / "results.json").is_file()), FIXTURE
    )
    lines = [
        "## HTML report (bench/html_report.py)",
        "",
        f"Machine: {platform.machine()}, {platform.system()}, Python {platform.python_version()}. "
        "Render time is the best of 3; load time is headless Chromium's load event (one run).",
        "",
        "| run | samples | report.html | render | load in Chromium |",
        "|:---|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "example"
        shutil.copytree(example, work)
        runs = [(str(example.relative_to(ROOT) if example.is_relative_to(ROOT) else example), work)]
        runs.append((f"synthetic ({args.samples} samples)", synthetic(Path(tmp) / "synthetic", args.samples)))
        for name, folder in runs:
            n = sum(1 for line in (folder / "samples.jsonl").read_text().splitlines() if line.strip())
            path, seconds = render(folder)
            size = path.stat().st_size
            loaded = load_time(path)
            shown = "n/a" if loaded is None else f"{loaded:.2f} s"
            lines.append(f"| {name} | {n} | {size / 1024:.0f} KB | {seconds:.2f} s | {shown} |")
    lines += [
        "",
        "The per-sample table stops at 3,000 rows (the rest stay in samples.jsonl, as the page says), "
        "so the page stays a few MB at most whatever the number of samples.",
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_write:
        write_section(ROOT / "bench" / "RESULTS.md", section)


if __name__ == "__main__":
    main()
