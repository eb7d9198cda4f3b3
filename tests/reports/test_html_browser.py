"""report.html in a real browser: headless Chromium driven by Playwright's Python API.

The page of a small real audit (``robustness audit CONFIG --format html json``) must show the
verdict and the numbers of its results.json, log no console error, and request nothing but
itself; sorting, filtering, the class picker and the curve's tooltips must work.
Skipped, with the reason, where Playwright or Chromium is not installed (``.ci/run`` installs
Chromium with apt-get where it can).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from robustness.core import formatting

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)

CONFIG = """
model: {spec: "zoo:digits-cnn", device: cpu}
data: {spec: "builtin:digits", n_examples: 30, batch_size: 16}
threat: {norm: linf, eps: [0.05, 0.15]}
attacks:
  - {name: pgd, params: {steps: 10}}
  - {name: square, params: {n_queries: 200}}
sanity_checks: {sample_size: 8}
gates: {min_clean_accuracy: 0.8, min_robust_accuracy: {0.05: 0.5}}
output: {formats: [json]}
seed: 0
"""


def _chromium() -> str | None:
    for candidate in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    path = _chromium()
    if path is None:
        pytest.skip("no Chromium found (install Debian's chromium package: apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=path, headless=True)
        except Exception as exc:  # a broken install: say why, do not fail the suite
            pytest.skip(f"Chromium at {path} does not start headless: {exc}")
        yield b
        b.close()


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> Path:
    """A small real audit written by the CLI with ``--format html json``."""
    from robustness.cli import main

    root = tmp_path_factory.mktemp("html-audit")
    config = root / "audit.yaml"
    config.write_text(CONFIG)
    out = root / "out"
    code = main(["audit", str(config), "-o", str(out), "--format", "html", "json", "--progress", "off", "-q"])
    assert code in (0, 1, 3)  # pass, a gate failed, unreliable: all write the report
    assert (out / "report.html").is_file() and not (out / "report.pdf").exists()
    return out


class Opened:
    """A page opened from a file, with everything it logged and asked for."""

    def __init__(self, browser, path: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1200, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        url = path.resolve().as_uri()

        def route(r):  # every request but the file itself is refused and recorded
            if r.request.url == url:
                r.continue_()
            else:
                self.requests.append(r.request.url)
                r.abort()

        self.page.route("**/*", route)
        self.page.on(
            "console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None
        )
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        self.page.wait_for_load_state("load")

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def opened(browser, audited):
    o = Opened(browser, audited / "report.html")
    yield o
    o.close()


def test_the_page_shows_the_verdict_and_numbers_of_results_json(opened, audited):
    results = json.loads((audited / "results.json").read_text())
    page = opened.page
    assert page.inner_text("#verdict") == f"VERDICT: {results['verdict'].upper()}"
    assert results["verdict_reason"] in page.inner_text("#summary")
    headline = page.inner_text(".headline table")
    assert (
        f"{formatting.pct(results['clean']['accuracy'])}\t{formatting.ci(results['clean']['ci'])}" in headline
    )
    for row in results["robust"]:
        line = f"{formatting.pct(row['accuracy'])}\t{formatting.ci(row['ci'])}\t{row['n_robust']}/{row['n']}"
        assert line in headline
    assert opened.errors == [] and opened.requests == []


def test_no_console_error_and_no_request_but_the_file(opened):
    # Everything has been drawn (images decoded from data: URIs) without a single fetch.
    assert opened.page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert opened.page.evaluate("document.images.length") > 0
    assert opened.errors == [] and opened.requests == []


def test_tooltips_sorting_filtering_and_the_class_picker(opened, audited):
    results = json.loads((audited / "results.json").read_text())
    page = opened.page
    first = results["robust"][0]
    point = page.locator(f'circle.pt[data-tip^="eps {formatting.eps_str(first["eps"])}: robust accuracy"]')
    point.hover()
    tip = page.inner_text("#tip")
    assert f"robust accuracy {formatting.pct(first['accuracy'])}, 95% CI {formatting.ci(first['ci'])}" in tip

    # The per-attack table sorts by time, both ways.
    costs = page.locator("#robust .tbl").nth(1)
    heading = costs.locator("th", has_text="time")
    heading.click()
    times = costs.locator("tbody tr td:nth-child(6)").evaluate_all(
        "cs => cs.map(c => parseFloat(c.dataset.sort))"
    )
    assert times == sorted(times) and len(times) == 2 * len(results["robust"])
    heading.click()
    again = costs.locator("tbody tr td:nth-child(6)").evaluate_all(
        "cs => cs.map(c => parseFloat(c.dataset.sort))"
    )
    assert again == sorted(times, reverse=True)

    # The class picker keeps the samples of one true class, in the table and the gallery.
    samples = [json.loads(line) for line in (audited / "samples.jsonl").read_text().splitlines()]
    label = str(samples[0]["label"])
    page.select_option("#class-picker", label)
    visible = page.locator("tr[data-label]:visible")
    assert visible.count() == sum(1 for s in samples if str(s["label"]) == label)
    assert set(visible.evaluate_all("rs => rs.map(r => r.dataset.label)")) == {label}
    assert (
        page.locator(".card[data-label]:visible").count()
        == page.locator(f'.card[data-label="{label}"]').count()
    )

    # The filter box narrows further: one sample by its id.
    page.fill("#classes input.filter", samples[0]["id"])
    assert page.locator("tr[data-label]:visible").count() == 1
    page.fill("#classes input.filter", "")
    page.select_option("#class-picker", "")
    assert page.locator("tr[data-label]:visible").count() == len(samples)
    assert opened.errors == [] and opened.requests == []


def test_a_screenshot_of_the_report(opened, tmp_path):
    shot = tmp_path / "report.png"
    opened.page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_a_request_the_page_would_make_is_caught(browser, tmp_path):
    """The harness itself: a page that fetches something is seen doing it (so the tests above can fail)."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<html><body><img src="http://example.invalid/x.png"><script>console.error("boom")</script>'
    )
    o = Opened(browser, bad)
    try:
        assert o.requests == ["http://example.invalid/x.png"] and "boom" in o.errors
    finally:
        o.close()
