"""A section's view carries its tables and figures as data; the PDF draws every one of them.

The sections (privacy, extraction, certification, corruptions) put curves, heat-maps and image
strips in their ``view()``; the renderers draw them without knowing which section they came from.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from reports import figures, pdf
from robustness.core.schema import (
    RESULT_SECTIONS,
    CurveSeries,
    SectionCurve,
    SectionHeatmap,
    SectionImages,
    SectionResult,
    SectionTable,
    SectionView,
    parse_results,
    section,
)

DATA = Path(__file__).parent / "data"

CURVE = SectionCurve(
    "ROC",
    "false-positive rate",
    "true-positive rate",
    [
        CurveSeries(
            "attack",
            [1e-3, 1e-2, 1e-1, 1.0],
            [2e-3, 3e-2, 0.2, 1.0],
            [1e-3, 2e-2, 0.1, 1.0],
            [4e-3, 5e-2, 0.3, 1.0],
        ),
        CurveSeries("chance", [1e-3, 1.0], [1e-3, 1.0], style="dashed"),
    ],
    log_x=True,
    log_y=True,
    caption="Caption under the curve",
)
HEATMAP = SectionHeatmap(
    "Accuracy per corruption",
    ["noise", "blur"],
    ["1", "2", "3"],
    [[0.9, 0.8, None], [0.95, 0.5, 0.1]],
    "accuracy",
    row_label="corruption",
    column_label="severity",
)
IMAGES = SectionImages(
    "Examples",
    [[[0.0, 1.0], [1.0, 0.0]], [[[0.0, 0.5, 1.0]] * 3] * 3],  # a 2x2 grey image and a 3x3 colour one
    ["grey", "colour"],
)


def _png_size(png: bytes) -> tuple[int, int]:
    from PIL import Image

    assert png.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(png)) as im:
        return im.size


@pytest.mark.parametrize("figure", [CURVE, HEATMAP, IMAGES], ids=["curve", "heatmap", "images"])
def test_every_kind_of_section_figure_is_drawn(figure):
    width, height = _png_size(figures.section_figure(figure))
    assert width > 100 and height > 50


def test_an_empty_strip_of_images_is_refused():
    with pytest.raises(ValueError, match="at least one image"):
        figures.section_images(SectionImages("none", [], []))


@pytest.fixture
def figure_section():
    @section("toy_figures")
    class ToyFigures(SectionResult):
        """A section whose view has two titled tables and one figure of each kind."""

        title = "Toy figures"
        value: float | None = None

        def view(self) -> SectionView:
            return SectionView(
                title=self.title,
                label="Figures",
                summary=f"value {self.value}",
                table=SectionTable(["a", "b"], [["1", "2"]], title="First table"),
                tables=[SectionTable(["c"], [["3"]], title="Second table")],
                figures=[CURVE, HEATMAP, IMAGES],
            )

    yield ToyFigures
    RESULT_SECTIONS._items.pop("toy_figures", None)


def _pdf(res) -> tuple[str, int]:
    pypdf = pytest.importorskip("pypdf")
    reader = pypdf.PdfReader(io.BytesIO(pdf.render_pdf_bytes(res, source=DATA)))
    text = "\n".join(page.extract_text() for page in reader.pages)
    return text, sum(len(page.images) for page in reader.pages)


def test_the_pdf_draws_a_sections_tables_and_figures(figure_section):
    raw = json.loads((DATA / "results.json").read_text())
    _, images_before = _pdf(parse_results(raw))
    view = parse_results({**raw, "toy_figures": {"value": 0.5}}).sections["toy_figures"].view()
    assert [t.title for t in view.all_tables()] == ["First table", "Second table"]
    text, images_after = _pdf(parse_results({**raw, "toy_figures": {"value": 0.5}}))
    assert "Toy figures" in text and "First table" in text and "Second table" in text
    assert "Caption under the curve" in text
    assert images_after - images_before == 3
