"""PDF layout: no heading alone at a page's foot, no short table split across pages.

The report is read back with pypdf, with positions: every text run and image of a page with
its height on the page, so "the lowest thing on the page" is a fact of the file, not of the
code that wrote it. Headings are pushed to a page's foot by inserting space before each one
as it is queued (the distance left to the foot is the parameter).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from reports import as_results, figures, pdf

pypdf = pytest.importorskip("pypdf")

DATA = Path(__file__).parent / "data"
FOOTER_PT = 40  # the footer sits 12 mm above the page's bottom edge (34 pt); nothing else is that low
HEADER_PREFIX = "Robustness audit of "


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads((DATA / "results.json").read_text())


@pytest.fixture(autouse=True)
def cached_figures(monkeypatch, results):
    """Figures drawn once per module: their pixels do not matter here, their sizes do."""
    cache: dict[str, bytes | None] = {}
    for name in ("confusion_matrix", "robust_curve", "per_class", "example_grid"):
        real = getattr(figures, name)

        def fake(*args, _real=real, _name=name, **kwargs):
            if _name not in cache:
                cache[_name] = _real(*args, **kwargs)
            return cache[_name]

        monkeypatch.setattr(figures, name, fake)


def record_headings(monkeypatch, *, room: float | None = None) -> list[str]:
    """Collect every heading text; with ``room``, first move the cursor down to ``room`` mm
    above the page's foot each time a heading is queued (where it would have been drawn)."""
    texts: list[str] = []
    for level in ("h1", "h2", "h3"):
        real = getattr(pdf._Writer, level)

        def queue(self, text, _real=real):
            texts.append(text)
            d = self.doc
            gap = d.page_break_trigger - room - d.get_y() if room is not None else 0
            if gap > 0 and not self._headings:
                d.ln(gap)
            _real(self, text)

        monkeypatch.setattr(pdf._Writer, level, queue)
    return texts


def page_items(data: bytes) -> list[list[tuple[float, str]]]:
    """Per page: (height above the bottom edge in pt, text or '<image>'), top to bottom,
    without the running header and the footer."""
    pages = []
    for page in pypdf.PdfReader(io.BytesIO(data)).pages:
        items: list[tuple[float, str]] = []

        def on_text(text, cm, tm, font, size, items=items):
            if text.strip():
                items.append((tm[4] * cm[1] + tm[5] * cm[3] + cm[5], text.strip()))

        def on_op(op, args, cm, tm, items=items):
            if op == b"Do":  # an image, placed by the current matrix: its bottom edge
                items.append((cm[5], "<image>"))

        page.extract_text(visitor_text=on_text, visitor_operand_before=on_op)
        items = [(y, t) for y, t in items if y > FOOTER_PT and not t.startswith(HEADER_PREFIX)]
        pages.append(sorted(items, key=lambda it: -it[0]))
    return pages


def assert_no_heading_at_foot(
    pages: list[list[tuple[float, str]]], headings: list[str], *, blank_ok: bool = False
) -> None:
    heads = set(headings)
    for i, items in enumerate(pages, 1):
        if blank_ok and not items:
            continue  # space the test inserted at a page's top, then the heading moved on
        assert items, f"page {i} is empty"
        lowest = items[-1][1]
        assert lowest not in heads, f"page {i} ends with the heading {lowest!r}"


def page_of(pages: list[list[tuple[float, str]]], text: str) -> set[int]:
    return {i for i, items in enumerate(pages, 1) for _, t in items if t == text}


def assert_short_tables_whole(pages: list[list[tuple[float, str]]], results: dict) -> None:
    """The report's short tables (at most ten rows) each lie on one page with their header."""
    gate_rows = [pdf.report_results.gate_label(g) for g in as_results(results).gates]
    tables = {
        "headline": ["95% CI (exact)", "clean"]
        + [f"robust, linf eps {pdf.formatting.eps_str(r['eps'])}" for r in results["robust"]],
        "gates": ["judged on", *gate_rows],
        "robust": ["robust accuracy", *[f"{r['n_robust']}/{r['n']}" for r in results["robust"]]],
        "attacks": ["parameters", *[a["name"] for a in results["attacks"]]],
    }
    for name, cells in tables.items():
        where = [page_of(pages, c) for c in cells]
        assert all(where), (name, cells, where)
        common = set.intersection(*where)
        assert common, f"the {name} table is split across pages: {dict(zip(cells, where))}"
    # Each per-attack table lies under its eps label, on the label's page.
    for r in results["robust"]:
        label = f"eps {pdf.formatting.eps_str(r['eps'])}"
        (p,) = page_of(pages, label)
        items = pages[p - 1]
        below = [t for y, t in items if y < next(y for y, t in items if t == label)]
        assert "queries" in below and all(a in below for a in r["per_attack"]), (label, below)


def test_fixture_report_keeps_headings_with_their_content(results, monkeypatch):
    headings = record_headings(monkeypatch)
    pages = page_items(pdf.render_pdf_bytes(results, DATA))
    assert {"Sanity checks", "Gates", "eps 0.1", "Resolved configuration"} <= set(headings)
    assert_no_heading_at_foot(pages, headings)
    assert_short_tables_whole(pages, results)


@pytest.mark.parametrize("room", [9.0, 24.0])
def test_headings_pushed_to_the_foot_move_with_their_content(results, monkeypatch, room):
    # Each heading is queued 'room' mm above the foot: enough for the heading alone (9 mm) or for
    # the heading and a line or two (24 mm), never for a whole short table after it.
    headings = record_headings(monkeypatch, room=room)
    data = pdf.render_pdf_bytes(results, DATA)
    pages = page_items(data)
    assert len(pages) > 12  # the space did push headings down, page after page
    assert_no_heading_at_foot(pages, headings, blank_ok=True)
    assert_short_tables_whole(pages, results)


def test_many_gates_and_checks_push_later_headings_down(results, monkeypatch):
    # A results file with many gate and check rows: the gates table grows past a short table,
    # the checks run over pages, and every heading after them lands somewhere new.
    res = json.loads(json.dumps(results))
    res["gates"] += [
        {
            "name": f"max_drop@{e}",
            "passed": True,
            "value": 0.0,
            "threshold": 0.02 + k / 1000,
            "judge": "point",
            "detail": "robust accuracy vs baseline: drop +0.0000 <= 0.02",
        }
        for k, e in enumerate([0.05, 0.1, 0.2] * 3)
    ]
    res["sanity_checks"] = [
        dict(c, name=f"{c['name']}_{k}") for k in range(3) for c in results["sanity_checks"]
    ]
    headings = record_headings(monkeypatch)
    pages = page_items(pdf.render_pdf_bytes(res, DATA))
    assert_no_heading_at_foot(pages, headings)
    gate_pages = [page_of(pages, pdf.report_results.gate_label(g)) for g in as_results(res).gates]
    assert all(gate_pages)  # 13 rows: long enough to split, but every row is drawn


# -- the writer alone: one document, many cursor positions ------------------------------------


@pytest.fixture
def writer(results):
    typed = as_results(results)
    doc = pdf._make_doc(typed)
    doc.add_page()
    doc.add_page()  # pages after the first carry the running header
    return pdf._Writer(doc, scratch=pdf._make_doc(typed))


def track(monkeypatch) -> dict[str, list[int]]:
    """Page numbers on which each heading and each table row start."""
    seen: dict[str, list[int]] = {"heading": [], "table_start": [], "table_end": []}
    real_h2, real_table = pdf._Writer._h2, pdf._Writer._table

    def h2(self, text):
        if self.scratch is not None:  # the real document, not the measuring copy
            seen["heading"].append(self.doc.page)
        real_h2(self, text)

    def table(self, *args):
        if self.scratch is not None:
            seen["table_start"].append(self.doc.page)
        real_table(self, *args)
        if self.scratch is not None:
            seen["table_end"].append(self.doc.page)

    monkeypatch.setattr(pdf._Writer, "_h2", h2)
    monkeypatch.setattr(pdf._Writer, "_table", table)
    return seen


ROWS3 = [
    ["clean", "99.5%", "[97.2%, 100.0%]"],
    ["eps 0.1", "51.5%", "[44.3%, 58.6%]"],
    ["eps 0.2", "2.0%", "x"],
]


def test_heading_and_three_row_table_never_part(writer, monkeypatch):
    seen = track(monkeypatch)
    d = writer.doc
    # Every 2 mm over the last 60 mm of a page: heading and table on one page, table whole.
    for room in range(2, 62, 2):
        d.add_page()
        d.set_y(d.page_break_trigger - room)
        writer.h2("Headline numbers")
        writer.table(["accuracy", "point", "CI"], ROWS3, (60, 40, 78))
    assert len(seen["heading"]) == 30
    assert seen["heading"] == seen["table_start"] == seen["table_end"]
    # With room for everything, nothing moves.
    d.add_page()
    page = d.page
    writer.h2("Headline numbers")
    writer.table(["accuracy", "point", "CI"], ROWS3, (60, 40, 78))
    assert seen["heading"][-1] == seen["table_end"][-1] == page


def test_long_table_may_split_but_keeps_its_first_rows_with_the_heading(writer, monkeypatch):
    seen = track(monkeypatch)
    d = writer.doc
    rows = [[f"row {i}", "1", "2"] for i in range(40)]
    d.add_page()
    d.set_y(d.page_break_trigger - 60)  # room for the heading and several rows, not for 40
    writer.h2("Long table")
    writer.table(["a", "b", "c"], rows, (60, 40, 78))
    assert seen["heading"] == seen["table_start"] and seen["table_end"][0] == seen["heading"][0] + 1
    d.add_page()
    d.set_y(d.page_break_trigger - 12)  # room for the heading only: both move
    page = d.page
    writer.h2("Long table")
    writer.table(["a", "b", "c"], rows, (60, 40, 78))
    assert seen["heading"][1] == seen["table_start"][1] == page + 1


def test_heading_stays_before_a_long_paragraph_when_its_first_lines_fit(writer, monkeypatch):
    seen = track(monkeypatch)
    d = writer.doc
    text = "A long explanation of what the numbers mean. " * 50  # about 20 lines, 100 mm
    d.add_page()
    page = d.page
    d.set_y(d.page_break_trigger - 40)
    writer.h2("Notes")
    writer.p(text)
    assert seen["heading"] == [page]  # 40 mm hold the heading and the paragraph's first lines
    assert d.page == page + 1  # and the paragraph went on over the break
    d.add_page()
    page = d.page
    d.set_y(d.page_break_trigger - 12)  # the heading alone would fit, its first lines would not
    writer.h2("Notes")
    writer.p(text)
    assert seen["heading"][1] == page + 1


def test_a_block_taller_than_a_page_at_the_top_of_a_page_is_drawn_in_place(writer, monkeypatch):
    seen = track(monkeypatch)
    d = writer.doc
    d.add_page()
    start = d.page
    writer.h2("Appendix")
    writer.kv([(f"key {i}", "value " * 12) for i in range(90)])  # kept whole when it fits; it does not
    # No blank page before it (it could not fit on any page): it starts where it was asked to.
    assert seen["heading"] == [start]
    assert d.page > start


def test_a_table_row_taller_than_a_page_is_cut_not_a_crash(writer):
    # fpdf2 refuses a row taller than a page; a results string (a parameter, a name) can be
    # that long, and must not cost the whole report.
    d = writer.doc
    writer.table(["attack", "parameters"], [["pgd", "eps=" + "9" * 40000]], (40, 138))
    assert d.page == 2  # cut to a few lines, it fits where it was asked for
