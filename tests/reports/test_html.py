"""report.html: everything the results hold, self-contained, escaped, and every section drawn.

These tests read the page as text (the browser tests in test_html_browser.py open it).
"""

from __future__ import annotations

import base64
import copy
import html
import io
import json
import re
import shutil
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import reports
from reports import html as html_report
from robustness.cli import main
from robustness.core import formatting
from robustness.core.schema import (
    RESULT_SECTIONS,
    CurveSeries,
    SectionCurve,
    SectionHeatmap,
    SectionImages,
    SectionNote,
    SectionResult,
    SectionTable,
    SectionView,
    parse_results,
    section,
)

DATA = Path(__file__).parent / "data"
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads((DATA / "results.json").read_text())


@pytest.fixture(scope="module")
def page(raw) -> str:
    return html_report.to_html(raw, DATA)


def _text(page: str) -> str:
    """The page's visible text, roughly: tags dropped, entities read."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def _pngs(page: str) -> list[np.ndarray]:
    from PIL import Image

    out = []
    for b64 in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page):
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            out.append(np.asarray(im))
    return out


def test_the_format_is_registered_with_its_file_and_suffixes():
    r = reports.RENDERERS.get("html")
    assert r.filename == "report.html" and reports.format_for_suffix(".html") == "html"
    assert "html" in reports.output_formats()


def test_the_page_holds_the_verdict_and_every_number_of_the_results(raw, page):
    text = _text(page)
    res = parse_results(raw)
    assert "VERDICT: FAIL" in text and res.verdict_reason in text
    assert formatting.pct(res.clean.accuracy) in text and formatting.ci(res.clean.ci) in text
    for r in res.robust:
        assert f"{formatting.pct(r.accuracy)} {formatting.ci(r.ci)} {r.n_robust}/{r.n}" in text
        for name, acc in r.per_attack.items():
            assert name in text and formatting.pct(acc) in text
    for g in res.gates:
        assert g.detail in text
    assert text.count(" PASS ") >= 3 and " FAIL " in text
    for c in res.sanity_checks:
        assert c.title in text and c.explanation in text  # explanations come from the migration of 1.0
    assert "Waived by the user, reason: No black-box attack in the quick preset" in text
    assert res.model.sha256 in text and "python tests/reports/make_fixture.py" in text


def test_the_page_is_self_contained(page):
    # No URL but the page's own anchors and data: images; nothing that would fetch.
    urls = re.findall(r"""\b(?:src|href|action|srcset|poster)\s*=\s*["']?([^"'\s>]*)""", page)
    assert urls and all(u.startswith(("#", "data:image/png;base64,")) for u in urls)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert re.findall(r"<script[^>]*>", page) == ["<script>"]
    assert "default-src 'none'" in page  # the browser refuses any fetch the page might still make


def test_the_robust_curve_points_tell_eps_accuracy_and_interval(raw, page):
    res = parse_results(raw)
    tips = re.findall(r'<circle [^>]*data-tip="([^"]*)"', page)
    for r in res.robust:
        want = (
            f"eps {formatting.eps_str(r.eps)}: robust accuracy {formatting.pct(r.accuracy)}, "
            f"95% CI {formatting.ci(r.ci)} ({r.n_robust}/{r.n})"
        )
        assert want in tips
    assert f"after pgd (cumulative), eps 0.2: {formatting.pct(res.robust[2].per_attack['pgd'])}" in tips
    # one gate mark per min_robust_accuracy gate, coloured by its outcome
    marks = re.findall(r'<line [^>]*stroke="(#[0-9a-f]+)"[^>]*class="pt"[^>]*data-tip="gate ([^"]*)"', page)
    assert [(c, t.split(":")[0]) for c, t in marks] == [
        ("#1a7f37", "min robust accuracy @ eps 0.05"),
        ("#1a7f37", "min robust accuracy @ eps 0.1"),
        ("#cf222e", "min robust accuracy @ eps 0.2"),
    ]


def test_the_gallery_shows_each_stored_example_with_clean_input_and_perturbation(page):
    with np.load(DATA / "examples.npz") as z:
        ex = {k: z[k] for k in z.files}
    cards = re.findall(r'<div class="card" data-label="(\d+)">', page)
    assert cards == [str(int(v)) for v in ex["y"]]
    images = _pngs(page)
    n_eps = len(ex["eps"])
    assert len(images) == len(ex["y"]) * (1 + 2 * n_eps)
    # the first card: clean input, then per eps the adversarial input and the perturbation (exact pixels)
    first = images[: 1 + 2 * n_eps]
    assert np.array_equal(first[0], np.round(ex["x_clean"][0, 0].astype(np.float64) * 255).astype(np.uint8))
    assert np.array_equal(first[1], np.round(ex["x_adv"][0, 0, 0].astype(np.float64) * 255).astype(np.uint8))
    diff = ex["x_adv"][0, 0, 0] - ex["x_clean"][0, 0]
    red, blue = first[2][..., 0].astype(int), first[2][..., 2].astype(int)
    assert ((diff > 0) == ((red == 255) & (blue < 255))).all()  # red where the input rose
    assert ((diff < 0) == ((blue == 255) & (red < 255))).all()  # blue where it fell
    assert f"prediction {ex['adv_pred'][0, 0]} (broken)" in page


def test_the_per_class_drill_down_lists_every_sample(page):
    rows = re.findall(r'<tr data-label="(\d+)">(.*?)</tr>', page)
    assert len(rows) == 200
    lines = [json.loads(line) for line in (DATA / "samples.jsonl").read_text().splitlines()]
    by_id = {row["id"]: row for row in lines}
    assert sorted(label for label, _ in rows) == sorted(str(r["label"]) for r in lines)
    row17 = next(cells for _, cells in rows if ">digits-17<" in cells)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row17)
    assert cells == ["digits-17", "7", "7", "robust", "robust", "fgsm", "0.2"]
    assert by_id["digits-17"]["eps"][2]["broken_by"] == "fgsm"
    row5 = next(cells for _, cells in rows if ">digits-5<" in cells)  # wrong before any attack
    assert "misclassified → 9" in row5 and ">clean<" in row5
    assert re.findall(r'<tr data-pick="(\d+)"', page) == [str(c) for c in range(10)]
    assert '<select id="class-picker">' in page


def test_without_its_companion_files_the_page_says_what_is_missing(raw, tmp_path):
    shutil.copy(DATA / "results.json", tmp_path / "results.json")
    page = html_report.to_html(raw, tmp_path)
    assert "examples.npz was not found next to results.json" in page
    assert "samples.jsonl was not found next to results.json" in page
    assert "No per-sample results" in html_report.to_html(raw, None)


def test_a_damaged_samples_file_is_named_not_a_crash(raw, tmp_path):
    shutil.copytree(DATA, tmp_path / "run")
    (tmp_path / "run" / "samples.jsonl").write_text('{"id": "a", "label": 1}\n')
    page = html_report.to_html(raw, tmp_path / "run")
    assert "could not be read" in page and "line 1 is not a sample record" in page


def test_strings_from_the_results_are_shown_literally(raw):
    res = copy.deepcopy(raw)
    res["model"]["spec"] = HOSTILE
    res["verdict_reason"] = f"</p><script>alert(1)</script> {HOSTILE}"
    res["tool_version"] = '0.1 "><svg onload=alert(1)>'
    res["attacks"][0]["name"] = HOSTILE
    res["sanity_checks"][0]["detail"] = "ctrl \x07 and a lone surrogate \ud800"
    page = html_report.to_html(res, DATA)
    page.encode("utf-8")  # writable: the lone surrogate is shown as an escape
    assert HOSTILE not in page and "<svg onload" not in page and "<script>alert" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "ctrl \\x07 and a lone surrogate \\ud800" in page
    assert re.findall(r"<script[^>]*>", page) == ["<script>"]


@pytest.fixture
def drawing_section():
    """A section whose view uses every part of a SectionView."""

    @section("toy_drawing")
    class ToyDrawing(SectionResult):
        title: ClassVar[str] = "Toy: every figure"
        rate: float = 0.25

        def view(self) -> SectionView:
            return SectionView(
                title=self.title,
                label="Toy",
                summary=f"rate {self.rate}",
                pairs=[("rate", f"{self.rate:.2f}"), ("owner", HOSTILE)],
                table=SectionTable(["attack", "tpr"], [["loss", "0.10"], ["lira", "0.31"]]),
                tables=[SectionTable(["k"], [["v"]], title="Second table")],
                figures=[
                    SectionCurve(
                        "ROC",
                        "false-positive rate",
                        "true-positive rate",
                        [
                            CurveSeries("lira", [0.0, 0.001, 0.01, 1.0], [0.0, 0.02, 0.1, 1.0], style="line"),
                            CurveSeries("chance", [0.001, 1.0], [0.001, 1.0], style="dashed"),
                        ],
                        log_x=True,
                        log_y=True,
                        caption="log-log ROC",
                    ),
                    SectionCurve(
                        "Certified accuracy",
                        "radius",
                        "accuracy",
                        [
                            CurveSeries(
                                "sigma 0.25",
                                [0.0, 0.25, 0.5],
                                [0.8, 0.6, 0.4],
                                [0.7, 0.5, 0.3],
                                [0.9, 0.7, 0.5],
                            )
                        ],
                    ),
                    SectionHeatmap(
                        "Corruptions",
                        ["fog", "snow"],
                        ["1", "2"],
                        [[0.9, 0.5], [None, 0.1]],
                        "accuracy",
                        row_label="corruption",
                        column_label="severity",
                    ),
                    SectionImages(
                        "Examples", [[[0.0, 1.0], [0.5, 0.25]], [[[1, 0, 0]] * 3] * 2], ["grey", "red"]
                    ),
                ],
                notes=[SectionNote("a body note"), SectionNote("a caption note", "caption")],
            )

    yield ToyDrawing
    RESULT_SECTIONS._items.pop("toy_drawing", None)


def test_a_section_appears_with_all_it_describes(drawing_section, raw):
    page = html_report.to_html({**raw, "toy_drawing": {"rate": 0.25}}, DATA)
    text = _text(page)
    assert '<section id="section-toy_drawing"><h2>Toy: every figure</h2>' in page
    assert 'href="#section-toy_drawing"' in page
    assert "rate 0.25" in text and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert (
        "lira 0.31" in text and "Second table" in text and "a body note" in text and "a caption note" in text
    )
    # the log-log ROC drops the points at 0 (not drawable on a log axis) and keeps the rest
    roc = page[page.index('aria-label="ROC"') :]
    roc = roc[: roc.index("</svg>")]
    assert len(re.findall(r"<circle ", roc)) == 3 + 2
    assert "lira: false-positive rate 0.001, true-positive rate 0.02" in roc
    cert = page[page.index('aria-label="Certified accuracy"') :]
    assert "<polygon" in cert[: cert.index("</svg>")]  # the interval band
    assert "sigma 0.25: radius 0.25, accuracy 0.6, interval [0.5, 0.7]" in cert
    heat = page[page.index("<h4>Corruptions</h4>") :]
    assert 'title="corruption fog, severity 2: accuracy 50.0%"' in heat and ">n/a</td>" in heat
    images = _pngs(page[page.index("<h4>Examples</h4>") :])
    assert np.array_equal(images[0], np.array([[0, 255], [128, 64]], dtype=np.uint8))
    assert (
        images[1].shape == (2, 3, 3) and (images[1][..., 0] == 255).all() and (images[1][..., 1] == 0).all()
    )


def test_png_uri_round_trips_exact_pixels():
    rng = np.random.default_rng(0)
    rgb = rng.random((5, 7, 3))
    (back,) = _pngs(f'<img src="{html_report.png_uri(rgb)}">')
    assert np.array_equal(back, np.round(rgb * 255).astype(np.uint8))


def test_cli_report_writes_html_from_the_results_alone(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(DATA, run)
    out = tmp_path / "out" / "report.html"
    assert main(["report", str(run / "results.json"), "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert "VERDICT: FAIL" in page and page.count('<div class="card"') == 8
    assert main(["report", str(run), "--format", "html"]) == 0
    assert (run / "report.html").read_text(encoding="utf-8") == page  # the same results, the same page
