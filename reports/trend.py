"""The trend page: robustness across many audits, one self-contained HTML file.

``robustness results RESULTS... --html FILE`` writes it. What it shows (the runs table, the
accuracy of every run with its interval) arrives as a
:class:`~robustness.core.schema.SectionView`, built by :func:`robustness.tables.trend_view`;
this module draws it in the report's own style (:mod:`reports.html`: inline SVG, inline script,
no network request). It is not an audit format, so it registers no renderer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from reports import html as html_page

if TYPE_CHECKING:
    from robustness.core.schema import SectionView


def to_trend_html(view: SectionView, point_names: list[str] | None = None) -> str:
    """The page; ``point_names`` name each run on its hovered points."""
    header = f"<h1>{html_page.esc(view.title)}</h1>"
    return html_page.page(
        view.title, header, [("trend", view.label, html_page.section_body(view, point_names))]
    )


def write_trend(view: SectionView, path: str | Path, point_names: list[str] | None = None) -> Path:
    """Write the trend page atomically."""
    from robustness.core.io import atomic_write_text

    return atomic_write_text(path, to_trend_html(view, point_names))
