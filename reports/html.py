"""report.html: the interactive audit report, one self-contained file to explore in a browser.

Everything the PDF shows (verdict, headline numbers, gates, scope, system, clean metrics, robust
accuracy with its curve and per-attack costs, per-class accuracy, adversarial examples, sanity
checks, every audit section, the appendix), plus what paper cannot do: tables sort (click a
heading) and filter (type in the box above them), the curves show eps, accuracy and interval on
hover, the adversarial examples are a gallery with the clean input, every eps's example, the
perturbation and the predictions, and a class picker drills every per-sample view down to one
true class (the samples come from samples.jsonl, the images from examples.npz).

The page is one file that makes no network request: the stylesheet, the script, the figures
(SVG written here) and the images (PNG data URIs encoded here) are all inline, so it opens from
a CI artefact, an e-mail or an air-gapped machine alike. Every string from the results is
escaped; the script reads nothing but the page itself.

Sections describe themselves (:meth:`~robustness.core.schema.SectionResult.view`): their pairs,
tables, figures (curves, heat maps, image strips) and notes are drawn here without knowing the
section, so a new section appears without a change to this file.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reports import as_results, renderer
from reports import results as report_results
from robustness.core import formatting

if TYPE_CHECKING:
    import numpy as np

    from robustness.core.schema import (
        AttackRecord,
        AuditResults,
        CheckOutcome,
        SectionCurve,
        SectionHeatmap,
        SectionImages,
        SectionTable,
        SectionView,
    )

VERDICT_COLOUR = {"pass": "#1a7f37", "fail": "#cf222e", "unreliable": "#bc4c00"}
VERDICT_MEANING = {
    "pass": "All gates hold and no sanity check failed (waived checks are listed with their reasons).",
    "fail": "At least one gate failed: the model does not meet the robustness requirement it was audited against.",
    "unreliable": (
        "A sanity check failed and was not waived: the attacks may not have been strong enough on this "
        "model, so the robust accuracy below may be too high and must not be trusted, whatever the gates say."
    ),
}
STATUS_CLASS = {"pass": "ok", "fail": "bad", "skip": "muted", "waived": "warn"}
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
# The per-sample table stops here (the page stays small and fast); the rest is in samples.jsonl.
MAX_SAMPLE_ROWS = 3000

# -- text ---------------------------------------------------------------------------------------

# Control characters and lone surrogates (valid in JSON, not in UTF-8) are shown as escapes.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def esc(value: Any) -> str:
    """Text from the results, shown literally: HTML-escaped, the unprintable written as escapes."""
    s = "" if value is None else str(value)
    s = _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), s)
    return html.escape(s, quote=True)


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _num(v: float) -> str:
    """A number on an axis or in a tooltip: short, exact enough."""
    return f"{v:.4g}"


# -- tables -------------------------------------------------------------------------------------


@dataclass
class Cell:
    """A table cell with more than text: a numeric sort key, a CSS class, a tooltip."""

    text: str
    sort: float | None = None
    cls: str = ""
    tip: str = ""


def table(
    header: list[str],
    rows: list[list[Any]],
    *,
    row_attrs: list[dict[str, str]] | None = None,
    caption: str = "",
    filterable: bool | None = None,
    cls: str = "",
) -> str:
    """A sortable table (click a heading), with a filter box when it has more than a few rows."""
    filterable = len(rows) > 8 if filterable is None else filterable
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in header)
    body = []
    for i, row in enumerate(rows):
        attrs = "".join(f' {k}="{esc(v)}"' for k, v in (row_attrs[i] if row_attrs else {}).items())
        cells = []
        for c in row:
            if isinstance(c, Cell):
                extra = (
                    f' data-sort="{float(c.sort)!r}"' if c.sort is not None and math.isfinite(c.sort) else ""
                )
                extra += f' class="{esc(c.cls)}"' if c.cls else ""
                extra += f' title="{esc(c.tip)}"' if c.tip else ""
                cells.append(f"<td{extra}>{esc(c.text)}</td>")
            else:
                cells.append(f"<td>{esc(c)}</td>")
        body.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    box = (
        '<div class="tools"><input type="search" class="filter" placeholder="filter rows" '
        f'aria-label="filter rows"><span class="count">{len(rows)} rows</span></div>'
        if filterable
        else ""
    )
    cap = f'<p class="caption">{esc(caption)}</p>' if caption else ""
    return (
        f'<div class="tbl {esc(cls)}">{box}<div class="scroll{" long" if len(rows) > 25 else ""}">'
        f'<table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{cap}</div>"
    )


def pairs_list(pairs: list[tuple[str, Any]]) -> str:
    """Key-value pairs as a definition list."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc('n/a' if v is None else v)}</dd>" for k, v in pairs)
    return f'<dl class="kv">{items}</dl>'


def section_table(t: SectionTable) -> str:
    title = f"<h4>{esc(t.title)}</h4>" if t.title else ""
    return title + table(list(t.header), [list(r) for r in t.rows])


# -- charts (hand-written SVG) -------------------------------------------------------------------

W, H = 640, 330
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 62, 18, 12, 46


@dataclass
class Line:
    """One series of a chart; ``tips`` (one per point) is what hovering a point shows."""

    name: str
    xs: list[float]
    ys: list[float]
    lower: list[float] | None = None
    upper: list[float] | None = None
    style: str = "line"  # line, dashed, points
    tips: list[str] | None = None
    colour: str | None = None


@dataclass
class Mark:
    """A short horizontal tick at (x, y): a gate's threshold."""

    x: float
    y: float
    colour: str
    tip: str


@dataclass
class Chart:
    title: str
    x_label: str
    y_label: str
    lines: list[Line]
    log_x: bool = False
    log_y: bool = False
    marks: list[Mark] = field(default_factory=list)
    y_range: tuple[float, float] | None = None
    x_from_zero: bool = False
    caption: str = ""
    legend_extra: list[tuple[str, str]] = field(default_factory=list)  # (colour, text)


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _ticks(a: float, b: float, log: bool, whole: bool = False) -> list[float]:
    """Tick positions in data units for the (transformed) range [a, b]; ``whole``: integers only."""
    if log:
        lo, hi = math.floor(a + 1e-9), math.ceil(b - 1e-9)
        step = max(1, (hi - lo) // 6)
        return [10.0**k for k in range(lo, hi + 1, step) if a - 1e-9 <= k <= b + 1e-9]
    raw = (b - a) / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if whole:
        step = max(1.0, math.ceil(step))
    start = math.ceil(a / step - 1e-9) * step
    out, k = [], 0
    while start + k * step <= b + step * 1e-9:
        out.append(float(f"{start + k * step:.10g}"))
        k += 1
    return out


def _span(values: list[float], log: bool) -> tuple[float, float]:
    t = [math.log10(v) for v in values] if log else values
    a, b = min(t), max(t)
    if b - a < 1e-12:
        a, b = (a - 1, b + 1) if log else (a - 0.5, b + 0.5)
    return a, b


def svg_chart(c: Chart) -> str:
    """The chart as an inline SVG, its legend and caption; points show their tip on hover."""

    def usable(v: Any, log: bool) -> bool:
        return _finite(v) and (not log or v > 0)

    xs = [x for ln in c.lines for x in ln.xs if usable(x, c.log_x)] + [m.x for m in c.marks]
    ys = [
        y for ln in c.lines for y in [*ln.ys, *(ln.lower or []), *(ln.upper or [])] if usable(y, c.log_y)
    ] + [m.y for m in c.marks]
    if not xs or not ys:
        return f'<figure class="chart"><h4>{esc(c.title)}</h4><p class="note">No points to draw.</p></figure>'
    if c.x_from_zero and not c.log_x:
        xs.append(0.0)
    xa, xb = _span(xs, c.log_x)
    if c.y_range is not None:
        ya, yb = c.y_range
    elif not c.log_y and min(ys) >= 0 and max(ys) <= 1:
        ya, yb = 0.0, 1.0
    else:
        ya, yb = _span(ys, c.log_y)
        if not c.log_y:
            pad = (yb - ya) * 0.05
            ya, yb = ya - pad, yb + pad
    pw, ph = W - MARGIN_L - MARGIN_R, H - MARGIN_T - MARGIN_B

    def sx(v: float) -> float:
        t = math.log10(v) if c.log_x else v
        return MARGIN_L + (t - xa) / (xb - xa) * pw

    def sy(v: float) -> float:
        t = math.log10(v) if c.log_y else v
        return MARGIN_T + ph - (t - ya) / (yb - ya) * ph

    parts = [
        f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{esc(c.title)}">',
        f'<rect x="{MARGIN_L}" y="{MARGIN_T}" width="{pw}" height="{ph}" class="plot"/>',
    ]
    whole = all(float(x).is_integer() for x in xs)  # run numbers, counts: no tick between two
    for v in _ticks(xa, xb, c.log_x, whole and not c.log_x):
        x = sx(v)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{MARGIN_T}" y2="{MARGIN_T + ph}" class="grid"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{MARGIN_T + ph + 15}" class="tick" text-anchor="middle">{_num(v)}</text>'
        )
    for v in _ticks(ya, yb, c.log_y):
        y = sy(v)
        parts.append(f'<line x1="{MARGIN_L}" x2="{MARGIN_L + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(
            f'<text x="{MARGIN_L - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_num(v)}</text>'
        )
    parts.append(
        f'<text x="{MARGIN_L + pw / 2:.1f}" y="{H - 8}" class="axis" text-anchor="middle">{esc(c.x_label)}</text>'
        f'<text transform="translate(14 {MARGIN_T + ph / 2:.1f}) rotate(-90)" class="axis" '
        f'text-anchor="middle">{esc(c.y_label)}</text>'
    )
    legend, drawn = [], []
    for i, ln in enumerate(c.lines):
        colour = ln.colour or PALETTE[i % len(PALETTE)]
        shapes, points = _draw_line(c, ln, colour, sx, sy, usable)
        if shapes or points:
            drawn.append((shapes, points))
            dashed = " dashed" if ln.style == "dashed" else ""
            legend.append(
                f'<li><span class="sw{dashed}" style="border-color:{colour}"></span>{esc(ln.name)}</li>'
            )
    # The first series (the headline) is drawn last, on top; every point above every line, so that
    # hovering always finds it.
    parts += [shape for shapes, _ in reversed(drawn) for shape in shapes]
    points = [pt for _, pts in reversed(drawn) for pt in pts]
    for m in c.marks:
        x, y = sx(m.x), sy(m.y)
        points.append(
            f'<line x1="{x - 11:.1f}" x2="{x + 11:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{m.colour}" '
            f'stroke-width="4" class="pt" tabindex="0" data-tip="{esc(m.tip)}"><title>{esc(m.tip)}</title></line>'
        )
    parts.extend(points)  # on top of every line, so that hovering always finds them
    parts.append("</svg>")
    legend += [
        f'<li><span class="sw mark" style="border-color:{colour}"></span>{esc(text)}</li>'
        for colour, text in c.legend_extra
    ]
    cap = f'<figcaption class="caption">{esc(c.caption)}</figcaption>' if c.caption else ""
    return (
        f'<figure class="chart"><h4>{esc(c.title)}</h4>{"".join(parts)}'
        f'<ul class="legend">{"".join(legend)}</ul>{cap}</figure>'
    )


def _draw_line(c: Chart, ln: Line, colour: str, sx: Any, sy: Any, usable: Any) -> tuple[list[str], list[str]]:
    """The band and line of one series, and its points (each with its tip)."""
    keep = [
        k
        for k in range(min(len(ln.xs), len(ln.ys)))
        if usable(ln.xs[k], c.log_x) and usable(ln.ys[k], c.log_y)
    ]
    if not keep:
        return [], []
    shapes, points = [], []
    band = [
        k
        for k in keep
        if ln.lower is not None
        and ln.upper is not None
        and k < len(ln.lower)
        and k < len(ln.upper)
        and usable(ln.lower[k], c.log_y)
        and usable(ln.upper[k], c.log_y)
    ]
    if len(band) > 1:
        up = " ".join(f"{sx(ln.xs[k]):.1f},{sy(ln.upper[k]):.1f}" for k in band)
        down = " ".join(f"{sx(ln.xs[k]):.1f},{sy(ln.lower[k]):.1f}" for k in reversed(band))
        shapes.append(f'<polygon points="{up} {down}" fill="{colour}" fill-opacity="0.16" stroke="none"/>')
    if ln.style != "points" and len(keep) > 1:
        dash = ' stroke-dasharray="6 4"' if ln.style == "dashed" else ""
        path = " ".join(f"{sx(ln.xs[k]):.1f},{sy(ln.ys[k]):.1f}" for k in keep)
        shapes.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
    for k in keep:
        tip = ln.tips[k] if ln.tips and k < len(ln.tips) else _default_tip(c, ln, k)
        points.append(
            f'<circle cx="{sx(ln.xs[k]):.1f}" cy="{sy(ln.ys[k]):.1f}" r="4" fill="{colour}" '
            f'class="pt" tabindex="0" data-tip="{esc(tip)}"><title>{esc(tip)}</title></circle>'
        )
    return shapes, points


def _default_tip(c: Chart, ln: Line, k: int) -> str:
    tip = f"{ln.name}: {c.x_label} {_num(ln.xs[k])}, {c.y_label} {_num(ln.ys[k])}"
    if ln.lower is not None and ln.upper is not None and k < len(ln.lower) and k < len(ln.upper):
        if _finite(ln.lower[k]) and _finite(ln.upper[k]):
            tip += f", interval [{_num(ln.lower[k])}, {_num(ln.upper[k])}]"
    return tip


def curve_chart(curve: SectionCurve, point_names: list[str] | None = None) -> str:
    """A section's :class:`SectionCurve`; ``point_names`` (one per x) lead each point's tip."""
    lines = []
    for s in curve.series:
        ln = Line(s.name, list(s.x), list(s.y), s.lower, s.upper, s.style)
        if point_names:
            ln.tips = [
                f"{point_names[k]}: " + _default_tip(Chart("", curve.x_label, curve.y_label, []), ln, k)
                if k < len(point_names)
                else _default_tip(Chart("", curve.x_label, curve.y_label, []), ln, k)
                for k in range(len(ln.xs))
            ]
        lines.append(ln)
    return svg_chart(
        Chart(
            curve.title, curve.x_label, curve.y_label, lines, curve.log_x, curve.log_y, caption=curve.caption
        )
    )


# -- heat maps (coloured tables) -----------------------------------------------------------------


def _mix(stops: list[tuple[float, tuple[int, int, int]]], t: float) -> tuple[int, int, int]:
    t = min(1.0, max(0.0, t))
    for (t0, c0), (t1, c1) in zip(stops, stops[1:]):
        if t <= t1:
            f = (t - t0) / ((t1 - t0) or 1.0)
            return tuple(round(a + (b - a) * f) for a, b in zip(c0, c1))  # type: ignore[return-value]
    return stops[-1][1]


RED_YELLOW_GREEN = [(0.0, (215, 48, 39)), (0.5, (254, 224, 139)), (1.0, (26, 152, 80))]
BLUES = [(0.0, (247, 251, 255)), (1.0, (8, 81, 156))]


def _cell_style(rgb: tuple[int, int, int]) -> str:
    luminance = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) / 255
    text = "#fff" if luminance < 0.5 else "#111"
    return f"background:rgb{rgb};color:{text}"


def heat_table(
    title: str,
    rows: list[str],
    columns: list[str],
    values: list[list[float | None]],
    *,
    show: Any,
    lo: float = 0.0,
    hi: float = 1.0,
    stops: list[tuple[float, tuple[int, int, int]]] = RED_YELLOW_GREEN,
    row_label: str = "",
    column_label: str = "",
    value_label: str = "",
    caption: str = "",
    row_attrs: list[dict[str, str]] | None = None,
) -> str:
    """A table of numbers drawn as colours; ``show`` formats a value for its cell."""
    corner = esc(row_label) + (f" \\ {esc(column_label)}" if column_label else "")
    head = f'<th scope="col">{corner}</th>' + "".join(f'<th scope="col">{esc(c)}</th>' for c in columns)
    body = []
    for i, name in enumerate(rows):
        attrs = "".join(f' {k}="{esc(v)}"' for k, v in (row_attrs[i] if row_attrs else {}).items())
        cells = []
        for j, col in enumerate(columns):
            v = values[i][j] if i < len(values) and j < len(values[i]) else None
            tip = f"{row_label or 'row'} {name}, {column_label or 'column'} {col}: {value_label} "
            if not _finite(v):
                cells.append(f'<td class="na" title="{esc(tip + "not measured")}">n/a</td>')
                continue
            rgb = _mix(stops, (v - lo) / ((hi - lo) or 1.0))
            cells.append(
                f'<td style="{_cell_style(rgb)}" data-sort="{float(v)!r}" title="{esc(tip + show(v))}">{esc(show(v))}</td>'
            )
        body.append(f'<tr{attrs}><th scope="row">{esc(name)}</th>{"".join(cells)}</tr>')
    cap = f'<figcaption class="caption">{esc(caption)}</figcaption>' if caption else ""
    return (
        f'<figure class="heat"><h4>{esc(title)}</h4><table class="heat sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{cap}</figure>"
    )


def section_heatmap(hm: SectionHeatmap) -> str:
    """A section's heat map; values on a [0, 1] scale are shown as percentages (as in the PDF)."""
    as_pct = hm.lo == 0.0 and hm.hi == 1.0
    return heat_table(
        hm.title,
        list(hm.rows),
        list(hm.columns),
        hm.values,
        show=(lambda v: formatting.pct(v)) if as_pct else _num,
        lo=hm.lo,
        hi=hm.hi,
        row_label=hm.row_label,
        column_label=hm.column_label,
        value_label=hm.value_label,
        caption=hm.caption,
    )


# -- images (PNG data URIs) -------------------------------------------------------------------


def png_uri(image: np.ndarray) -> str:
    """An ``H x W`` (grey) or ``H x W x 3`` image with values in [0, 1] as a PNG data URI.

    Encoded here (zlib and the PNG chunk layout): a few lines instead of a dependency, and
    exactly the pixels given.
    """
    import numpy as np

    a = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64)), 0.0, 1.0)
    a = np.round(a * 255).astype(np.uint8)
    h, w = a.shape[:2]
    colour_type = 2 if a.ndim == 3 else 0
    raw = b"".join(b"\x00" + a[i].tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _as_image(value: Any) -> np.ndarray | None:
    """``H x W`` or ``H x W x C`` in [0, 1] as an array to encode; None for any other shape."""
    import numpy as np

    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3):
        return a if a.size and a.shape[0] <= 4096 and a.shape[1] <= 4096 else None
    return None


def img_tag(image: np.ndarray, alt: str) -> str:
    # Small inputs are scaled up with crisp pixels; large ones shown at most 192 px wide.
    width = int(min(192, max(64, 3 * image.shape[1])))
    return f'<img src="{png_uri(image)}" alt="{esc(alt)}" width="{width}" class="px">'


def section_images(imgs: SectionImages) -> str:
    tiles = []
    for i, value in enumerate(imgs.images):
        caption = imgs.captions[i] if i < len(imgs.captions) else ""
        a = _as_image(value)
        body = (
            img_tag(a, caption) if a is not None else '<p class="note">(not an H x W or H x W x C image)</p>'
        )
        tiles.append(f'<figure class="tile">{body}<figcaption>{esc(caption)}</figcaption></figure>')
    cap = f'<p class="caption">{esc(imgs.caption)}</p>' if imgs.caption else ""
    return f'<div class="strip-wrap"><h4>{esc(imgs.title)}</h4><div class="strip">{"".join(tiles)}</div>{cap}</div>'


# -- sections as they describe themselves --------------------------------------------------------


def section_body(view: SectionView, point_names: list[str] | None = None) -> str:
    """A :class:`SectionView`: its pairs, tables, figures and notes, in that order."""
    from robustness.core.schema import SectionCurve, SectionHeatmap, SectionImages

    out = []
    if view.summary:
        out.append(f'<p class="summary">{esc(view.summary)}</p>')
    if view.pairs:
        out.append(pairs_list(list(view.pairs)))
    out += [section_table(t) for t in view.all_tables()]
    for fig in view.figures:
        if isinstance(fig, SectionCurve):
            out.append(curve_chart(fig, point_names))
        elif isinstance(fig, SectionHeatmap):
            out.append(section_heatmap(fig))
        elif isinstance(fig, SectionImages):
            out.append(section_images(fig))
    for note in view.notes:
        out.append(f'<p class="{"caption" if note.style == "caption" else "note"}">{esc(note.text)}</p>')
    return "\n".join(out)


# -- the page -------------------------------------------------------------------------------------

STYLE = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--bg2:#f6f8fa}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);margin:0}
header.top{position:sticky;top:0;background:#fff;border-bottom:1px solid var(--line);padding:6px 20px;z-index:5}
header.top nav a{margin-right:12px;color:#0969da;text-decoration:none;white-space:nowrap;font-size:13px}
main{max-width:1100px;margin:0 auto;padding:8px 20px 60px}
h1{font-size:24px;margin:16px 0 2px}h2{font-size:19px;border-bottom:1px solid var(--line);padding-bottom:4px;
margin-top:34px}h3{font-size:15px;margin:18px 0 6px}h4{font-size:13px;margin:14px 0 6px}
.sub{color:var(--muted)}
.verdict{color:#fff;font-size:34px;font-weight:700;text-align:center;padding:14px;border-radius:6px;margin:12px 0}
.reason{font-weight:600;font-size:16px}
dl.kv{display:grid;grid-template-columns:minmax(160px,max-content) 1fr;gap:3px 16px;margin:8px 0}
dl.kv dt{font-weight:600}dl.kv dd{margin:0;overflow-wrap:anywhere}
.tbl{margin:8px 0 14px}.scroll{overflow-x:auto}.scroll.long{max-height:560px;overflow-y:auto}
.scroll.long thead th{position:sticky;top:0;z-index:1}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top;overflow-wrap:break-word}
thead th{background:var(--bg2);cursor:pointer;user-select:none;white-space:nowrap}
thead th[aria-sort=ascending]::after{content:" \\25B2";font-size:10px}
thead th[aria-sort=descending]::after{content:" \\25BC";font-size:10px}
.tools{margin:4px 0}.tools input{padding:3px 6px;width:240px}.count{color:var(--muted);margin-left:10px;font-size:12px}
.ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}.warn{color:var(--warn);font-weight:600}
.muted{color:var(--muted)}.na{color:var(--muted);background:#eee}
.caption{color:var(--muted);font-size:12px}.note{margin:6px 0}.summary{font-weight:600}
figure{margin:10px 0}figure.chart svg{max-width:100%;height:auto}
svg .plot{fill:#fff;stroke:var(--line)}svg .grid{stroke:#eaeef2}svg .tick{font-size:11px;fill:var(--muted)}
svg .axis{font-size:12px;fill:var(--fg)}svg .pt{cursor:pointer}svg circle.pt:hover,svg circle.pt:focus{r:6}
ul.legend{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px}
.sw{display:inline-block;width:22px;border-top:3px solid;vertical-align:middle;margin-right:5px}
.sw.dashed{border-top-style:dashed}.sw.mark{width:12px;border-top-width:4px}
table.heat td{text-align:center;min-width:46px}
#tip{position:absolute;display:none;background:#1f2328;color:#fff;padding:4px 8px;border-radius:4px;font-size:12px;
pointer-events:none;z-index:10;max-width:360px}
.check{border-left:4px solid var(--line);padding:4px 10px;margin:10px 0}
.check.pass{border-color:var(--ok)}.check.fail{border-color:var(--bad)}.check.waived{border-color:var(--warn)}
.check .status{display:inline-block;min-width:70px;font-weight:700}
.gallery{display:flex;flex-direction:column;gap:10px}
.card{border:1px solid var(--line);border-radius:6px;padding:6px 10px}
.strip{display:flex;flex-wrap:wrap;gap:8px}figure.tile{margin:0;text-align:center;font-size:11px}
figure.tile figcaption{max-width:192px}.card .strip{flex-wrap:nowrap;overflow-x:auto;gap:14px}
.group{display:flex;gap:6px;flex-direction:row;align-items:flex-start;position:relative;padding-top:18px}
.group h5{position:absolute;top:0;left:0;margin:0;font-size:12px;white-space:nowrap}
img.px{image-rendering:pixelated;image-rendering:crisp-edges;border:1px solid var(--line);display:block;margin:auto}
.picker{background:var(--bg2);border:1px solid var(--line);padding:6px 10px;border-radius:6px;margin:8px 0}
tr[data-pick]{cursor:pointer}tr.picked th,tr.picked td{outline:2px solid #0969da}
pre{background:var(--bg2);padding:10px;overflow-x:auto;font-size:12px}
@media print{header.top,.tools,.picker{display:none}}
"""

# Sorting, filtering, the class picker and the tooltips. It reads only the page itself.
SCRIPT = """
(function () {
  "use strict";
  function each(list, fn) { Array.prototype.forEach.call(list, fn); }
  function sortKey(cell) {
    if (!cell) { return { num: null, text: "" }; }
    var text = cell.textContent.trim();
    var given = cell.getAttribute("data-sort");
    if (given !== null && given !== "") { return { num: parseFloat(given), text: text }; }
    var t = text.replace(/[,%\\s]/g, "");
    var isNum = /^[-+]?(\\d+\\.?\\d*|\\.\\d+)(e[-+]?\\d+)?$/i.test(t);
    return { num: isNum ? parseFloat(t) : null, text: text };
  }
  function sortBy(table, col, th) {
    var asc = th.getAttribute("aria-sort") !== "ascending";
    each(th.parentNode.cells, function (c) { c.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var body = table.tBodies[0];
    if (!body) { return; }
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (r, i) { return { row: r, i: i, k: sortKey(r.cells[col]) }; });
    keyed.sort(function (a, b) {
      var c;
      if (a.k.num !== null && b.k.num !== null) { c = a.k.num - b.k.num; }
      else if (a.k.num !== null) { c = -1; }
      else if (b.k.num !== null) { c = 1; }
      else { c = a.k.text.localeCompare(b.k.text, undefined, { numeric: true }); }
      return (asc ? c : -c) || a.i - b.i;
    });
    keyed.forEach(function (e) { body.appendChild(e.row); });
  }
  each(document.querySelectorAll("table.sortable"), function (table) {
    if (!table.tHead || !table.tHead.rows.length) { return; }
    each(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.title = "sort by this column";
      th.addEventListener("click", function () { sortBy(table, col, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sortBy(table, col, th); } });
    });
  });
  // A row is shown when the filter text and the class picker both allow it.
  function refresh(box) {
    var table = box.querySelector("table");
    if (!table || !table.tBodies[0]) { return; }
    var shown = 0, rows = table.tBodies[0].rows;
    each(rows, function (r) {
      var ok = r.getAttribute("data-text-ok") !== "0" && r.getAttribute("data-class-ok") !== "0";
      r.hidden = !ok;
      if (ok) { shown += 1; }
    });
    var count = box.querySelector(".count");
    if (count) { count.textContent = shown === rows.length ? rows.length + " rows" : shown + " of " + rows.length + " rows"; }
  }
  each(document.querySelectorAll(".tbl"), function (box) {
    var input = box.querySelector("input.filter");
    if (!input) { return; }
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase();
      var table = box.querySelector("table");
      each(table.tBodies[0].rows, function (r) {
        r.setAttribute("data-text-ok", !q || r.textContent.toLowerCase().indexOf(q) >= 0 ? "1" : "0");
      });
      refresh(box);
    });
  });
  var picker = document.getElementById("class-picker");
  function pick(value) {
    if (!picker) { return; }
    picker.value = value;
    each(document.querySelectorAll("[data-label]"), function (el) {
      var ok = value === "" || el.getAttribute("data-label") === value;
      if (el.tagName === "TR") { el.setAttribute("data-class-ok", ok ? "1" : "0"); } else { el.hidden = !ok; }
    });
    each(document.querySelectorAll("tr[data-pick]"), function (r) {
      r.classList.toggle("picked", value !== "" && r.getAttribute("data-pick") === value);
    });
    each(document.querySelectorAll(".tbl"), refresh);
    var shown = document.getElementById("gallery-count");
    if (shown) {
      var n = 0;
      each(document.querySelectorAll(".card[data-label]"), function (c) { if (!c.hidden) { n += 1; } });
      shown.textContent = n + " shown";
    }
  }
  if (picker) { picker.addEventListener("change", function () { pick(picker.value); }); }
  each(document.querySelectorAll("tr[data-pick]"), function (r) {
    r.addEventListener("click", function () {
      var v = r.getAttribute("data-pick");
      pick(picker && picker.value === v ? "" : v);
    });
  });
  var tip = document.getElementById("tip");
  function show(e) {
    var t = e.target;
    if (!tip || !t.getAttribute || !t.getAttribute("data-tip")) { return; }
    tip.textContent = t.getAttribute("data-tip");
    tip.style.display = "block";
    var box = t.getBoundingClientRect();
    tip.style.left = (window.scrollX + box.left + box.width / 2 + 10) + "px";
    tip.style.top = (window.scrollY + box.top - 34) + "px";
  }
  function hide() { if (tip) { tip.style.display = "none"; } }
  document.addEventListener("mouseover", show);
  document.addEventListener("focusin", show);
  document.addEventListener("mouseout", hide);
  document.addEventListener("focusout", hide);
})();
"""


def page(title: str, header: str, parts: list[tuple[str, str, str]]) -> str:
    """A whole self-contained page: ``parts`` are (anchor, heading, body HTML) with a link each."""
    nav = " ".join(f'<a href="#{esc(a)}">{esc(h)}</a>' for a, h, _ in parts)  # spaces: the links wrap
    body = "\n".join(f'<section id="{esc(a)}"><h2>{esc(h)}</h2>\n{b}\n</section>' for a, h, b in parts)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # Nothing may be fetched: no source but the page itself and its data: images.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n"
        f'<body><header class="top"><nav>{nav}</nav></header><main>\n{header}\n{body}\n</main>'
        f'<div id="tip" role="tooltip"></div><script>{SCRIPT}</script></body></html>\n'
    )


# -- the audit's parts --------------------------------------------------------------------------


def _head(res: AuditResults) -> str:
    model = res.model.spec if res.model else None
    data = res.data.spec if res.data else None
    colour = VERDICT_COLOUR.get(res.verdict, "#3c3c3c")
    return (
        "<h1>Adversarial robustness audit</h1>"
        f'<p class="sub">Model <code>{esc(_or(model, "?"))}</code> on <code>{esc(_or(data, "?"))}</code>, '
        f"created {esc(_or(res.created, '?'))}</p>"
        f'<div class="verdict" id="verdict" style="background:{colour}">VERDICT: {esc(res.verdict.upper())}</div>'
    )


def _summary(res: AuditResults) -> str:
    out = [
        f'<p class="reason">{esc(res.verdict_reason or "")}</p>',
        f"<p>{esc(VERDICT_MEANING.get(res.verdict, 'This verdict is unknown to this version: treat it as a failure.'))}</p>",
        "<h3>Headline numbers</h3>",
    ]
    clean = res.clean
    norm = res.threat.norm if res.threat else None
    rows = [
        [
            "clean",
            Cell(formatting.pct(clean.accuracy), clean.accuracy),
            formatting.ci(clean.ci),
            f"{_or(clean.correct, '?')}/{_or(clean.n, '?')}",
        ]
    ]
    for r in res.robust:
        rows.append(
            [
                f"robust, {_or(r.norm, _or(norm, ''))} eps {formatting.eps_str(r.eps)}",
                Cell(formatting.pct(r.accuracy), r.accuracy),
                formatting.ci(r.ci),
                f"{_or(r.n_robust, '')}/{_or(r.n, '')}",
            ]
        )
    out.append(
        table(
            ["accuracy", "point estimate", "95% CI (exact)", "correct / n"],
            rows,
            cls="headline",
            caption="Robust accuracy is the share of samples that every attack in the audit failed to "
            "misclassify (per-sample worst case; a sample broken at a smaller eps counts as broken at every "
            "larger eps). It is an upper bound on the true robust accuracy: stronger attacks can only lower it.",
        )
    )
    out.append("<h3>Gates</h3>")
    if res.gates:
        grows = []
        for g in res.gates:
            grows.append(
                [
                    report_results.gate_label(g),
                    Cell(formatting.num(g.value), g.value if _finite(g.value) else None),
                    f"{report_results.gate_symbol(g)} {formatting.num(g.threshold)}",
                    {"ci_low": "CI low end", "point": "point estimate"}.get(g.judge, str(g.judge or "")),
                    Cell("PASS" if g.passed else "FAIL", cls="ok" if g.passed else "bad"),
                    g.detail or "",
                ]
            )
        out.append(table(["gate", "value", "required", "judged on", "result", "detail"], grows))
    else:
        out.append(
            '<p class="note">No gates were configured: the audit reports numbers but judges nothing.</p>'
        )
    out.append(
        f"<p class=\"caption\">Thresholds come from the 'gates' section of the resolved configuration: "
        f"{esc(report_results.config_source(res))}.</p>"
    )
    checks = res.sanity_checks
    counts = {s: sum(1 for c in checks if c.status == s) for s in ("pass", "fail", "skip", "waived")}
    cls = "bad" if counts["fail"] else ""
    out.append(
        f'<p class="{cls}">Sanity checks: {counts["pass"]} passed, {counts["fail"]} failed, {counts["skip"]} '
        f'skipped, {counts["waived"]} waived (<a href="#checks">Sanity checks</a>).</p>'
    )
    return "\n".join(out)


def _scope(res: AuditResults) -> str:
    out = [pairs_list(report_results.scope_pairs(res)), f"<p>{esc(report_results.SCOPE_NOTE)}</p>"]
    attacks = res.attacks or []
    if attacks:
        rows = [
            [
                Cell(str(i), i),
                a.name,
                a.attack or "",
                a.kind or "",
                report_results.attack_params_text(a.params),
                _indicators_cell(a),
            ]
            for i, a in enumerate(attacks, 1)
        ]
        out.append("<h3>Attacks, in run order</h3>")
        out.append(
            table(
                ["#", "attack", "registered as", "kind", "parameters", "failure indicators"],
                rows,
                caption=report_results.ATTACK_ORDER_NOTE,
            )
        )
        out.append(_indicators(attacks))
    return "\n".join(out)


def _indicators_cell(a: AttackRecord) -> Cell:
    """The attack table's summary of one attack's indicators of attack failure."""
    if not a.indicators:
        return Cell("not measured", cls="muted")
    fired = [i for i in a.indicators if i.fired]
    if fired:
        return Cell(f"{len(fired)} fired", len(fired), "bad", ", ".join(i.title or i.name for i in fired))
    return Cell("none fired", 0.0, "ok")


def _indicators(attacks: list[AttackRecord]) -> str:
    """Every indicator of attack failure of every attack; its explanation and per-eps counts on hover."""
    rows = []
    for a in attacks:
        for i in a.indicators or []:
            per_eps = "; ".join(
                f"eps {formatting.eps_str(r.eps)}: {r.n_fired}/{r.n_measured}"
                + (" (fired)" if r.fired else "")
                for r in i.per_eps or []
            )
            rows.append(
                [
                    a.name,
                    i.member or "",
                    Cell(i.title or i.name, tip=i.explanation or ""),
                    Cell(f"{i.n_fired}/{i.n_measured}", i.n_fired, tip=per_eps),
                    Cell("FIRED", 1.0, "bad") if i.fired else Cell("quiet", 0.0, "ok"),
                ]
            )
    if not rows:
        return ""
    return "<h3>Indicators of attack failure</h3>" + table(
        ["attack", "member", "indicator", "samples", "status"],
        rows,
        caption="Read off the attacks' own runs at no extra cost (Pintor et al. 2022), on the samples each "
        "attack failed on; a fired indicator means those failures are the attack's, not evidence of "
        "robustness. Hover an indicator for what it means, its counts for each eps.",
    )


def _system(res: AuditResults) -> str:
    return pairs_list(report_results.system_pairs(res))


def _clean(res: AuditResults) -> str:
    c = res.clean
    out = [
        pairs_list(
            [
                (
                    "accuracy",
                    f"{formatting.pct(c.accuracy, 2)}, 95% CI {formatting.ci(c.ci, 2)} "
                    f"({_or(c.correct, '?')}/{_or(c.n, '?')})",
                ),
                (
                    "macro precision / recall / F1",
                    f"{formatting.num(c.precision)} / {formatting.num(c.recall)} / {formatting.num(c.f1)}",
                ),
            ]
        )
    ]
    if c.confusion:
        k = len(c.confusion)
        peak = max((v for row in c.confusion for v in row), default=0) or 1
        out.append(
            heat_table(
                "Clean confusion matrix (counts)",
                [str(i) for i in range(k)],
                [str(j) for j in range(len(c.confusion[0]))],
                [[float(v) for v in row] for row in c.confusion],
                show=lambda v: f"{v:.0f}",
                lo=0.0,
                hi=float(peak),
                stops=BLUES,
                row_label="true class",
                column_label="predicted class",
                value_label="count",
            )
        )
    return "\n".join(out)


def robust_chart(res: AuditResults) -> str:
    """Robust accuracy over eps (eps 0 is clean): the worst case with its 95% band, each attack
    (cumulative) and the gates' thresholds."""
    clean = res.clean
    rows = [r for r in res.robust if r.accuracy is not None]
    xs = [0.0] + [float(r.eps) for r in rows]
    ys = [clean.accuracy] + [r.accuracy for r in rows]
    lo = [clean.ci[0] if clean.ci else math.nan] + [r.ci[0] if r.ci else math.nan for r in rows]
    hi = [clean.ci[1] if clean.ci else math.nan] + [r.ci[1] if r.ci else math.nan for r in rows]
    tips = [f"clean: accuracy {formatting.pct(clean.accuracy)}, 95% CI {formatting.ci(clean.ci)}"] + [
        f"eps {formatting.eps_str(r.eps)}: robust accuracy {formatting.pct(r.accuracy)}, 95% CI "
        f"{formatting.ci(r.ci)} ({_or(r.n_robust, '?')}/{_or(r.n, '?')})"
        for r in rows
    ]
    lines = [Line("worst case over all attacks, 95% CI band", xs, ys, lo, hi, tips=tips)]
    names = [a.name for a in res.attacks or []] or list((rows[0].per_attack or {}) if rows else {})
    for name in names:
        acc = [(r.per_attack or {}).get(name) for r in rows]
        if not acc or any(v is None for v in acc):
            continue
        tips = [f"clean: accuracy {formatting.pct(clean.accuracy)}"] + [
            f"after {name} (cumulative), eps {formatting.eps_str(r.eps)}: {formatting.pct(v)}"
            for r, v in zip(rows, acc)
        ]
        lines.append(
            Line(f"after {name} (cumulative)", xs, [clean.accuracy, *acc], style="dashed", tips=tips)
        )
    marks = [
        Mark(
            float(g.eps),
            float(g.threshold),
            VERDICT_COLOUR["pass" if g.passed else "fail"],
            f"gate {report_results.gate_label(g)}: {report_results.gate_symbol(g)} {formatting.num(g.threshold)} "
            f"({'PASS' if g.passed else 'FAIL'}, value {formatting.num(g.value)})",
        )
        for g in res.gates
        if g.kind == "min_robust_accuracy" and _finite(g.eps) and _finite(g.threshold)
    ]
    norm = (res.threat.norm if res.threat else None) or (rows[0].norm if rows else None) or ""
    held = {
        g.passed
        for g in res.gates
        if g.kind == "min_robust_accuracy" and _finite(g.eps) and _finite(g.threshold)
    }
    extra = [(VERDICT_COLOUR["pass"], "gate threshold (held)")] if True in held else []
    extra += [(VERDICT_COLOUR["fail"], "gate threshold (failed)")] if False in held else []
    return svg_chart(
        Chart(
            "Robust accuracy vs eps (eps 0 = clean)",
            f"eps ({norm})",
            "accuracy",
            lines,
            marks=marks,
            y_range=(0.0, 1.0),
            x_from_zero=True,
            legend_extra=extra,
            caption="Hover a point for its eps, accuracy and interval.",
        )
    )


def _robust(res: AuditResults) -> str:
    out = [robust_chart(res)]
    rows = [
        [
            Cell(formatting.eps_str(r.eps), float(r.eps)),
            f"{_or(r.n_robust, '?')}/{_or(r.n, '?')}",
            Cell(formatting.pct(r.accuracy), r.accuracy),
            formatting.ci(r.ci),
            Cell(formatting.seconds(r.time_s), r.time_s),
        ]
        for r in res.robust
    ]
    out.append(table(["eps", "robust / n", "robust accuracy", "95% CI", "time"], rows))
    out.append("<h3>Per attack: what each attack added, and what it cost</h3>")
    cost_rows = []
    for r in res.robust:
        cost = r.per_attack_cost or {}
        per_attack = r.per_attack or {}
        for name in list(per_attack) or list(cost):
            c = cost.get(name)
            cost_rows.append(
                [
                    Cell(formatting.eps_str(r.eps), float(r.eps)),
                    name,
                    Cell(formatting.pct(per_attack.get(name)), per_attack.get(name)),
                    _count(c.n_attacked if c else None),
                    _count(c.n_broken if c else None),
                    Cell(formatting.seconds(c.time_s), c.time_s) if c and c.time_s is not None else "",
                    _count(c.n_backward if c else None),
                    _count(c.n_forward if c else None),
                    _count(c.n_queries if c else None),
                ]
            )
    out.append(
        table(
            ["eps", *report_results.ATTACK_COST_HEADER],
            cost_rows,
            caption=f"{report_results.ATTACK_COST_NOTE} Click a heading to sort.",
        )
    )
    for r in res.robust:
        found = {k: v for k, v in (r.found_by_checks or {}).items() if v}
        if found:
            out.append(
                f'<p class="warn">At eps {esc(formatting.eps_str(r.eps))} the sanity-check attacks broke '
                f"{sum(found.values())} samples the audit's attacks had left standing "
                f"({esc(', '.join(f'{k}: {v}' for k, v in found.items()))}); they count in the worst case above "
                f"(the audit's attacks alone: {esc(formatting.pct(r.accuracy_attacks_only))}).</p>"
            )
    spent = res.timing.parts() if res.timing else []
    if spent:
        note = f" ({res.timing.note})" if res.timing.note is not None else ""
        out.append(
            "<p>Where the time went: "
            + esc(", ".join(f"{k} {formatting.seconds(v)}" for k, v in spent) + note)
            + ".</p>"
        )
    return "\n".join(out)


def _count(v: int | None) -> Cell | str:
    return "" if v is None else Cell(f"{v:,}", float(v))


def _classes(res: AuditResults) -> list[str]:
    names: dict[str, None] = {}
    for d in [res.clean.per_class_accuracy or {}] + [r.per_class_accuracy or {} for r in res.robust]:
        names.update(dict.fromkeys(d))
    if not names and res.clean.confusion:
        names.update(dict.fromkeys(str(i) for i in range(len(res.clean.confusion))))
    return sorted(names, key=lambda k: (len(k), k))


def _class_label(res: AuditResults, key: str) -> str:
    """A class as the data names it ("cat (3)"), or its index where the data names none."""
    names = res.data.class_names if res.data is not None else None
    if names and key.isdigit() and int(key) < len(names):
        return f"{names[int(key)]} ({key})"
    return key


def _per_class(res: AuditResults, samples: list[Any] | None, samples_note: str) -> str:
    classes = _classes(res)
    labels = [_class_label(res, c) for c in classes]
    out = []
    rows = [r for r in res.robust if r.per_class_accuracy]
    if rows:
        clean_pc = res.clean.per_class_accuracy or {}
        columns = ["clean"] + [f"eps {formatting.eps_str(r.eps)}" for r in rows]
        values = [[clean_pc.get(c)] + [(r.per_class_accuracy or {}).get(c) for r in rows] for c in classes]
        out.append(
            heat_table(
                "Accuracy per class: clean, and robust at each eps",
                labels,
                columns,
                values,
                show=lambda v: formatting.pct(v, 0),
                row_label="class",
                value_label="accuracy",
                caption="Click a class to drill down: the samples below and the example gallery show only it.",
                row_attrs=[{"data-pick": c} for c in classes],
            )
        )
    else:
        out.append('<p class="note">The results hold no per-class robust accuracy.</p>')
    if classes:
        options = "".join(
            f'<option value="{esc(c)}">{esc(name)}</option>' for c, name in zip(classes, labels)
        )
        out.append(
            '<div class="picker"><label>Show one true class: <select id="class-picker">'
            f'<option value="">all classes</option>{options}</select></label></div>'
        )
    out.append("<h3>Samples</h3>")
    if samples is None:
        out.append(f'<p class="note">{esc(samples_note)}</p>')
    else:
        out.append(_samples_table(res, samples))
    return "\n".join(out)


def _samples_table(res: AuditResults, samples: list[Any]) -> str:
    eps = [float(r.eps) for r in res.robust]
    shown = samples[:MAX_SAMPLE_ROWS]
    rows, attrs = [], []
    for s in shown:
        cells: list[Any] = [s.id, Cell(str(s.label), s.label), Cell(str(s.clean_pred), s.clean_pred)]
        first = None
        for e in eps:
            a = s.at_eps(e)
            if a is None:
                cells.append(Cell("n/a", cls="muted"))
                continue
            pred = "" if a.adv_pred is None else f" → {a.adv_pred}"
            norm = "" if a.perturbation_norm is None else f"perturbation norm {a.perturbation_norm:.4g}"
            if a.robust:
                cells.append(Cell("robust", 1.0, "ok"))
            elif a.broken_by is None:
                cells.append(Cell(f"misclassified{pred}", -1.0, "muted", "wrong without an attack"))
                first = 0.0 if first is None else first  # wrong before any attack
            else:
                cells.append(Cell(f"{a.broken_by}{pred}", 0.0, "bad", norm))
                first = e if first is None else first
        when = "never" if first is None else "clean" if first == 0 else formatting.eps_str(first)
        cells.append(Cell(when, math.inf if first is None else first))
        rows.append(cells)
        attrs.append({"data-label": str(s.label)})
    header = ["sample", "label", "clean prediction"] + [f"eps {formatting.eps_str(e)}" for e in eps]
    header.append("first broken at")
    cap = (
        "Per sample and eps: 'robust', or the attack that broke it and the prediction on its adversarial "
        "example (hover for the perturbation's norm). From samples.jsonl."
    )
    if len(samples) > len(shown):
        cap += f" The first {len(shown)} of {len(samples)} samples are shown; all are in samples.jsonl."
    return table(header, rows, row_attrs=attrs, caption=cap, filterable=True, cls="by-class")


def _to_rgb(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(C, H, W) in [lo, hi] -> (H, W, 3) in [0, 1]: RGB for three channels, else channel 0 in grey."""
    import numpy as np

    a = (np.clip(a, lo, hi) - lo) / ((hi - lo) or 1.0)
    if a.ndim == 3 and a.shape[0] == 3:
        return np.transpose(a, (1, 2, 0))
    return a[0] if a.ndim == 3 else a


def _difference(d: np.ndarray) -> tuple[np.ndarray, float]:
    """The perturbation as blue (decreased) - white - red (increased), scaled to its largest value."""
    import numpy as np

    d = d.mean(axis=0) if d.ndim == 3 else d
    scale = float(np.abs(d).max()) or 1.0
    t = d / scale
    rgb = np.ones((*t.shape, 3))
    rgb[..., 0] -= np.clip(-t, 0, 1)  # blue where it fell
    rgb[..., 1] -= np.abs(t)
    rgb[..., 2] -= np.clip(t, 0, 1)  # red where it rose
    return rgb, (float(np.abs(d).max()))


def _examples(res: AuditResults, source: Path | None) -> str:
    import numpy as np

    ex = report_results.load_examples(res, source)
    if ex is None:
        name = (res.files or {}).get("examples") or "examples.npz"
        return (
            f'<p class="note">No example images are available ({esc(name)} was not found next to results.json), '
            "so this section shows none; the numbers above do not depend on it.</p>"
        )
    bounds = (
        (res.threat.bounds if res.threat else None) or (res.model.bounds if res.model else None) or (0.0, 1.0)
    )
    lo, hi = float(bounds[0]), float(bounds[1])
    x_clean = np.asarray(ex["x_clean"], dtype=np.float64)
    x_adv = np.asarray(ex["x_adv"], dtype=np.float64)
    eps = np.asarray(ex["eps"], dtype=np.float64)
    y, clean_pred, adv_pred = ex["y"], ex["clean_pred"], ex["adv_pred"]
    ids = [str(i) for i in ex.get("ids", range(len(y)))]
    cards = []
    for i in range(len(y)):
        label = int(y[i])
        groups = [
            f'<div class="group"><h5>clean</h5>{_tile(_to_rgb(x_clean[i], lo, hi), f"prediction {clean_pred[i]}", "clean input")}</div>'
        ]
        for j in range(len(eps)):
            broken = int(adv_pred[j, i]) != label
            diff, scale = _difference(x_adv[j, i] - x_clean[i])
            adv = _tile(
                _to_rgb(x_adv[j, i], lo, hi),
                f"prediction {adv_pred[j, i]}" + (" (broken)" if broken else ""),
                f"adversarial input at eps {eps[j]:g}",
            )
            groups.append(
                f'<div class="group"><h5 class="{"bad" if broken else "ok"}">eps {esc(formatting.eps_str(eps[j]))}</h5>'
                f"{adv}{_tile(diff, f'perturbation, max |d| {scale:.3f}', f'perturbation at eps {eps[j]:g}')}</div>"
            )
        status = "bad" if int(clean_pred[i]) != label or bool((adv_pred[:, i] != label).any()) else "ok"
        cards.append(
            f'<div class="card" data-label="{label}"><h4 class="{status}">sample {esc(ids[i])}: '
            f"label {label}, clean prediction {int(clean_pred[i])}</h4>"
            f'<div class="strip">{"".join(groups)}</div></div>'
        )
    return (
        "<p>The stored samples (broken ones first): the clean input, then at each eps the adversarial input "
        "(the worst example found up to that eps) with the prediction on it, and the perturbation (red = "
        'increased, blue = decreased, scaled to its largest change). <span class="count" id="gallery-count">'
        f'{len(y)} shown</span></p><div class="gallery">{"".join(cards)}</div>'
    )


def _tile(image: np.ndarray, caption: str, alt: str) -> str:
    return f'<figure class="tile">{img_tag(image, alt)}<figcaption>{esc(caption)}</figcaption></figure>'


def _checks(res: AuditResults) -> str:
    out = [
        "<p>An attack that fails does not prove a model robust: gradients can be masked, attacks can stop early. "
        "These checks (after Carlini et al. 2019 and Athalye et al. 2018) look for the usual signs that the robust "
        "accuracy is too high. A failed check makes the verdict 'unreliable' unless the user waived it with a "
        "written reason, printed below.</p>"
    ]
    if not res.sanity_checks:
        out.append(
            '<p class="bad">No sanity checks were run. The robust accuracy has not been checked for gradient '
            "masking.</p>"
        )
    out += [_check_entry(c) for c in res.sanity_checks]
    return "\n".join(out)


def _check_entry(c: CheckOutcome) -> str:
    label = report_results.STATUS_LABEL.get(c.status, c.status.upper())
    parts = [
        f'<div class="check {esc(c.status)}"><p><span class="status {STATUS_CLASS.get(c.status, "bad")}">'
        f"{esc(label)}</span> <strong>{esc(c.title or c.name)}</strong></p>"
    ]
    if c.detail:
        parts.append(f"<p>{esc(c.detail)}</p>")
    if c.explanation:
        parts.append(f"<p><em>Why it matters:</em> {esc(c.explanation)}</p>")
    if c.waiver:
        parts.append(f'<p class="warn">Waived by the user, reason: {esc(c.waiver)}</p>')
    if c.measured:
        parts.append(
            f"<details><summary>measured</summary><pre>{esc(json.dumps(c.measured, indent=1, default=str))}</pre>"
            "</details>"
        )
    parts.append(f'<p class="caption">check id: {esc(c.name)}</p></div>')
    return "".join(parts)


def _appendix(res: AuditResults) -> str:
    pairs = pairs_list(report_results.appendix_pairs(res))
    return f"{pairs}\n<h3>Resolved configuration</h3>\n<pre>{esc(report_results.config_text(res))}</pre>"


def _load_samples(res: AuditResults, source: Path | None) -> tuple[list[Any] | None, str]:
    """The samples for the drill-down, or None and the sentence saying why there are none."""
    from reports.samples import read_samples, samples_path
    from robustness.core.errors import RobustnessError

    if source is None:
        return (
            None,
            "No per-sample results are available (the report was rendered without its output folder).",
        )
    p = samples_path(res, source)
    if not p.is_file():
        return None, f"No per-sample results are available ({p.name} was not found next to results.json)."
    try:
        return read_samples(p), ""
    except RobustnessError as exc:
        return None, f"The per-sample results could not be read: {exc}"


def to_html(results: AuditResults | dict[str, Any], source: Path | None = None) -> str:
    """The report as one HTML page. ``source`` is the folder holding results.json's companions."""
    res = as_results(results)
    samples, samples_note = _load_samples(res, source)
    parts = [
        ("summary", "Verdict and headline numbers", _summary(res)),
        ("scope", "Scope and threat model", _scope(res)),
        ("system", "System under test", _system(res)),
        ("clean", "Clean performance", _clean(res)),
        ("robust", "Robust accuracy", _robust(res)),
        ("classes", "Per class", _per_class(res, samples, samples_note)),
        ("examples", "Adversarial examples", _examples(res, source)),
        ("checks", "Sanity checks", _checks(res)),
    ]
    for name, result in res.sections.items():
        view = result.view()
        parts.append((f"section-{name}", view.title, section_body(view)))
    parts.append(("appendix", "Appendix: reproducibility", _appendix(res)))
    model = res.model.spec if res.model else None
    return page(f"Robustness audit: {_or(model, '?')} ({res.verdict})", _head(res), parts)


@renderer("html", "report.html", suffixes=(".html", ".htm"), order=20)
def render(
    results: AuditResults | dict[str, Any], path: str | Path, *, source: str | Path | None = None
) -> Path:
    """Write report.html atomically to ``path``."""
    from robustness.core.io import atomic_write_text

    return atomic_write_text(path, to_html(results, Path(source) if source is not None else None))
