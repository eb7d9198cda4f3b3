"""The PDF audit report, for reviewers who do not read JSON.

fpdf2 writes the document: it is pure Python (no Cairo, Pango or LaTeX to install on a CI
runner), embeds PNG figures from matplotlib directly, and with the DejaVu fonts that ship
inside matplotlib it prints Unicode (eps, >=) in every environment the tool installs into.
Characters those fonts lack (CJK, emoji, control characters) are printed as escapes such as
``\\u6a21``, never dropped, so any model or data spec renders.

Layout: a heading is never left alone at a page's foot and a short table never splits across
pages (see :class:`_Writer`).

Everything on the page comes from the typed results and the ``examples.npz`` named in them;
a missing optional piece (examples, per-class numbers, a section) becomes a sentence, never
a crash. Each section of the audit (the watermark today) is drawn from its own
:meth:`~robustness.core.schema.SectionResult.view`.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reports import as_results, renderer
from reports import results as report_results
from robustness.core import formatting

if TYPE_CHECKING:
    from robustness.core.schema import AttackRecord, AuditResults, CheckOutcome, SectionResult

VERDICT_COLOUR = {"pass": (26, 127, 55), "fail": (207, 34, 46), "unreliable": (188, 76, 0)}
VERDICT_MEANING = {
    "pass": "All gates hold and no sanity check failed (waived checks are listed with their reasons).",
    "fail": "At least one gate failed: the model does not meet the robustness requirement it was audited against.",
    "unreliable": (
        "A sanity check failed and was not waived: the attacks may not have been strong enough on this "
        "model, so the robust accuracy below may be too high and must not be trusted, whatever the gates say."
    ),
}
STATUS_COLOUR = {
    "pass": (26, 127, 55),
    "fail": (207, 34, 46),
    "skip": (110, 110, 110),
    "waived": (154, 103, 0),
}
GREY = (90, 90, 90)


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


# Document metadata is UTF-16 in the PDF, where a lone surrogate (valid in JSON) cannot go.
_SURROGATE = re.compile("[\ud800-\udfff]")


# fpdf2 cannot draw a table row taller than a page; a results string (an attack parameter, a
# name) can be that long. Cut there: even the narrowest column then stays under a page.
TABLE_CELL_CHARS = 500


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _visible(text: str, drawable: frozenset[int]) -> str:
    """``text`` with every character the font cannot draw written as its escape (``\\u6a21``).

    Results strings come from users (model and data specs, waiver reasons): a CJK name, an
    emoji or a control character must be shown, not dropped or drawn as a blank box, and a
    lone surrogate (valid in JSON, not in UTF-16) must not crash the PDF writer. Line breaks
    are kept for ``multi_cell``.
    """
    if all(ord(ch) in drawable or ch in "\n\r" for ch in text):
        return text
    return "".join(
        ch
        if ord(ch) in drawable or ch in "\n\r"
        else ch.encode("unicode_escape", "backslashreplace").decode("ascii")
        for ch in text
    )


def _make_doc(results: AuditResults, fonts_of: Any = None):
    """The report's FPDF document. ``fonts_of``: a document whose loaded fonts to share (the
    scratch copy used for measuring; loading the four fonts again costs more than the rest)."""
    from fpdf import FPDF

    verdict = results.verdict
    model = _or((results.model.spec if results.model else None), "?")
    tool = _or(results.tool_version, "")

    class _Doc(FPDF):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # Where the text of the current page starts (below the running header).
            self.content_top = 0.0
            # Per font: the code points it has glyphs for (see normalize_text).
            self._drawable: dict[str, frozenset[int]] = {}
            super().__init__(*args, **kwargs)

        def header(self) -> None:
            if self.page_no() > 1:
                self.set_font("Sans", "", 7)
                self.set_text_color(*GREY)
                tail = f": verdict {verdict.upper()}"
                spec = model
                # One line: a long spec is cut to the width (it is printed whole on the first pages).
                while len(spec) > 8 and self.get_string_width(f"Robustness audit of {spec}{tail}") > self.epw:
                    spec = _short(spec, max(8, len(spec) * 4 // 5))
                self.cell(0, 4, f"Robustness audit of {spec}{tail}", align="L")
                self.ln(6)
                self.set_text_color(0, 0, 0)
            self.content_top = self.get_y()

        def footer(self) -> None:
            self.set_y(-12)
            self.set_font("Sans", "", 7)
            self.set_text_color(*GREY)
            created = _or(results.created, "")
            self.cell(0, 4, f"robustness-audit {tool} | {created}", align="L")
            self.cell(0, 4, f"page {self.page_no()}/{{nb}}", align="R")
            self.set_text_color(0, 0, 0)

        def normalize_text(self, text: str) -> str:
            # Every string fpdf2 draws or measures passes here: the one place to make any
            # results string drawable (see _visible).
            font = self.current_font
            ttf = getattr(font, "ttfont", None)
            if ttf is not None:
                key = str(getattr(font, "fontkey", id(font)))
                if key not in self._drawable:
                    self._drawable[key] = frozenset(ttf.getBestCmap() or {})
                text = _visible(text, self._drawable[key])
            return super().normalize_text(text)

    doc = _Doc(format="A4", unit="mm")
    if isinstance(getattr(fonts_of, "fonts", None), dict) and fonts_of.fonts:
        doc.fonts.update(fonts_of.fonts)
    else:
        fonts = _font_dir()
        doc.add_font("Sans", "", str(fonts / "DejaVuSans.ttf"))
        doc.add_font("Sans", "B", str(fonts / "DejaVuSans-Bold.ttf"))
        doc.add_font("Sans", "I", str(fonts / "DejaVuSans-Oblique.ttf"))
        doc.add_font("Mono", "", str(fonts / "DejaVuSansMono.ttf"))
    doc.set_auto_page_break(True, margin=16)
    doc.set_margins(16, 14, 16)
    doc.set_title(_SURROGATE.sub("?", f"Robustness audit: {model}"))
    doc.set_author("robustness-audit")
    doc.set_creator(f"robustness-audit {tool}")
    return doc


Draw = Callable[["_Writer"], None]


class _Writer:
    """Small layout helpers over an FPDF document.

    Headings are not drawn at once: they wait for the block that follows them (a paragraph,
    key-value list, table, image, check entry), and both are placed together, so a heading
    never ends a page. A block is measured by drawing it on a scratch copy of the document
    (same fonts, margins and widths; never written out): the heading goes to a new page
    unless the block's first ``KEEP_WITH_HEADING`` mm fit below it, and a short block (a
    table of up to ``SHORT_TABLE_ROWS`` rows, a key-value list, one check) moves to a new page
    whole rather than split, when it fits on one.
    """

    KEEP_WITH_HEADING = 22.0  # mm: about four lines of text, or a table's header and three rows
    SHORT_TABLE_ROWS = 10

    def __init__(self, doc, scratch=None) -> None:
        self.doc = doc
        self.scratch = scratch  # None: draw as asked (the scratch document's own writer)
        self._headings: list[Draw] = []

    # -- placement -----------------------------------------------------------------------

    def _measure(self, draw: Draw) -> float:
        """Height of ``draw`` on a fresh page of the scratch document; inf past one page."""
        s = self.scratch
        s.add_page()
        page, y0 = s.page, s.get_y()
        draw(_Writer(s))
        return math.inf if s.page != page else s.get_y() - y0

    def _page_height(self) -> float:
        """Height for content on a page after the first (below the running header)."""
        return self.scratch.page_break_trigger - self.scratch.content_top

    def place(self, draw: Draw, *, whole: bool = False, height: float | None = None) -> None:
        """Draw a block with the headings waiting for it (see the class docstring).

        ``whole``: keep the block on one page when it fits on one; ``height``: its height when
        known without drawing (an image).
        """
        headings, self._headings = self._headings, []
        d = self.doc
        if self.scratch is not None and (headings or whole):
            head_h = self._measure(lambda w: [h(w) for h in headings]) if headings else 0.0
            body_h = height if height is not None else self._measure(draw)
            fits_a_page = head_h + body_h <= self._page_height()
            need = head_h + (body_h if whole and fits_a_page else min(body_h, self.KEEP_WITH_HEADING))
            at_top = d.get_y() <= d.content_top + 1e-6
            # A hair of slack: the measured height and the real one differ only by float rounding.
            if not at_top and d.get_y() + need > d.page_break_trigger - 1e-6:
                d.add_page()
        for h in headings:
            h(self)
        draw(self)

    def flush(self) -> None:
        """Draw headings still waiting (a section that ended right after its heading)."""
        if self._headings:
            self.place(lambda w: None)

    # -- headings ------------------------------------------------------------------------

    def h1(self, text: str) -> None:
        self._headings.append(lambda w: w._h1(text))

    def h2(self, text: str) -> None:
        self._headings.append(lambda w: w._h2(text))

    def h3(self, text: str) -> None:
        """A run-in label over a table (bold, body size)."""
        self._headings.append(lambda w: w._h3(text))

    def _h1(self, text: str) -> None:
        d = self.doc
        d.ln(2)
        d.set_font("Sans", "B", 14)
        d.cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
        d.set_draw_color(200, 200, 200)
        d.line(d.l_margin, d.get_y(), d.w - d.r_margin, d.get_y())
        d.ln(2)

    def _h2(self, text: str) -> None:
        d = self.doc
        d.ln(1)
        d.set_font("Sans", "B", 11)
        d.cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")

    def _h3(self, text: str) -> None:
        self._p(text, 9, "B")

    # -- blocks --------------------------------------------------------------------------

    def p(
        self, text: str, size: float = 9.5, style: str = "", colour: tuple[int, int, int] | None = None
    ) -> None:
        self.place(lambda w: w._p(text, size, style, colour))

    def _p(
        self, text: str, size: float = 9.5, style: str = "", colour: tuple[int, int, int] | None = None
    ) -> None:
        d = self.doc
        d.set_font("Sans", style, size)
        if colour:
            d.set_text_color(*colour)
        d.multi_cell(0, size * 0.5, text, align="L", new_x="LMARGIN", new_y="NEXT")
        d.set_text_color(0, 0, 0)
        d.ln(1)

    def kv(self, pairs: list[tuple[str, Any]], key_w: float = 48) -> None:
        self.place(lambda w: w._kv(pairs, key_w), whole=True)

    def _kv(self, pairs: list[tuple[str, Any]], key_w: float) -> None:
        d = self.doc
        for k, v in pairs:
            d.set_font("Sans", "B", 9)
            y = d.get_y()
            d.multi_cell(key_w, 4.6, k, new_x="RIGHT", new_y="TOP")
            d.set_font("Sans", "", 9)
            d.multi_cell(0, 4.6, "n/a" if v is None else str(v), align="L", new_x="LMARGIN", new_y="NEXT")
            d.set_y(max(d.get_y(), y + 4.6))
        d.ln(1)

    def table(
        self,
        header: list[str],
        rows: list[list[str]],
        widths: tuple[float, ...] | None = None,
        size: float = 8,
        colours: list[tuple[int, int, int] | None] | None = None,
        align: str = "LEFT",
    ) -> None:
        self.place(
            lambda w: w._table(header, rows, widths, size, colours, align),
            whole=len(rows) <= self.SHORT_TABLE_ROWS,
        )

    def _table(
        self,
        header: list[str],
        rows: list[list[str]],
        widths: tuple[float, ...] | None,
        size: float,
        colours: list[tuple[int, int, int] | None] | None,
        align: str,
    ) -> None:
        from fpdf.fonts import FontFace

        d = self.doc
        d.set_font("Sans", "", size)
        with d.table(
            col_widths=widths,
            text_align=align,
            line_height=size * 0.55,
            headings_style=FontFace(emphasis="BOLD", fill_color=(235, 235, 235)),
            padding=0.8,
            cell_fill_color=(255, 255, 255),
            cell_fill_mode="NONE",
        ) as t:
            hr = t.row()
            for h in header:
                hr.cell(_short(str(h), TABLE_CELL_CHARS))
            for i, r in enumerate(rows):
                colour = colours[i] if colours else None
                row = t.row()
                for j, c in enumerate(r):
                    style = FontFace(color=colour, emphasis="BOLD") if colour and j == len(r) - 1 else None
                    row.cell(_short(str(c), TABLE_CELL_CHARS), style=style)
        d.ln(2)

    def image(self, png: bytes, width: float) -> None:
        from PIL import Image

        with Image.open(io.BytesIO(png)) as im:
            w_px, h_px = im.size
        height = width * h_px / w_px
        self.place(lambda w: w._image(png, width), whole=True, height=height + 2)

    def _image(self, png: bytes, width: float) -> None:
        d = self.doc
        x = (d.w - width) / 2
        d.image(io.BytesIO(png), x=x, w=width)
        d.ln(2)


# -- sections ----------------------------------------------------------------------------------


def _or(value: Any, default: Any) -> Any:
    """``value``, or ``default`` when it is None (absent from the results)."""
    return default if value is None else value


def _verdict_page(w: _Writer, res: AuditResults) -> None:
    d = w.doc
    verdict = res.verdict
    model_spec = res.model.spec if res.model else None
    data_spec = res.data.spec if res.data else None
    d.set_font("Sans", "B", 18)
    d.cell(0, 10, "Adversarial robustness audit", new_x="LMARGIN", new_y="NEXT")
    w.p(
        f"Model {_or(model_spec, '?')} on {_or(data_spec, '?')}, created {_or(res.created, '?')}",
        9,
        colour=GREY,
    )
    d.ln(3)
    colour = VERDICT_COLOUR.get(verdict, (60, 60, 60))
    d.set_fill_color(*colour)
    d.set_text_color(255, 255, 255)
    d.set_font("Sans", "B", 40)
    d.cell(0, 24, f"VERDICT: {verdict.upper()}", align="C", fill=True, new_x="LMARGIN", new_y="NEXT")
    d.set_text_color(0, 0, 0)
    d.set_fill_color(255, 255, 255)
    d.ln(2)
    w.p(res.verdict_reason or "", 11, "B")
    w.p(VERDICT_MEANING.get(verdict, ""), 9)

    w.h2("Headline numbers")
    clean = res.clean
    norm = res.threat.norm if res.threat else None
    rows = [
        [
            "clean",
            formatting.pct(clean.accuracy),
            formatting.ci(clean.ci),
            f"{_or(clean.correct, '?')}/{_or(clean.n, '?')}",
        ]
    ]
    for r in res.robust:
        rows.append(
            [
                f"robust, {_or(r.norm, _or(norm, ''))} eps {formatting.eps_str(r.eps)}",
                formatting.pct(r.accuracy),
                formatting.ci(r.ci),
                f"{_or(r.n_robust, '')}/{_or(r.n, '')}",
            ]
        )
    w.table(["accuracy", "point estimate", "95% CI (exact)", "correct / n"], rows, (60, 35, 50, 35))
    w.p(
        "Robust accuracy is the share of samples that every attack in the audit failed to misclassify "
        "(per-sample worst case; a sample broken at a smaller eps counts as broken at every larger eps). "
        "It is an upper bound on the true robust accuracy: stronger attacks can only lower it.",
        8,
        colour=GREY,
    )

    w.h2("Gates")
    if res.gates:
        grows, colours = [], []
        for g in res.gates:
            grows.append(
                [
                    report_results.gate_label(g),
                    formatting.num(g.value),
                    f"{report_results.gate_symbol(g)} {formatting.num(g.threshold)}",
                    {"ci_low": "CI low end", "point": "point estimate"}.get(g.judge, str(g.judge or "")),
                    "PASS" if g.passed else "FAIL",
                ]
            )
            colours.append(VERDICT_COLOUR["pass"] if g.passed else VERDICT_COLOUR["fail"])
        w.table(
            ["gate", "value", "required", "judged on", "result"], grows, (62, 24, 24, 38, 22), colours=colours
        )
        for g in res.gates:
            if g.detail and not g.passed:
                w.p(f"{g.name}: {g.detail}", 8.5, colour=VERDICT_COLOUR["fail"])
    else:
        w.p("No gates were configured: the audit reports numbers but judges nothing.", 9)
    w.p(
        f"Thresholds come from the 'gates' section of the resolved configuration: {report_results.config_source(res)}.",
        8,
        colour=GREY,
    )
    checks = res.sanity_checks
    counts = {s: sum(1 for c in checks if c.status == s) for s in ("pass", "fail", "skip", "waived")}
    w.p(
        f"Sanity checks: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped, "
        f"{counts['waived']} waived (section 'Sanity checks').",
        9,
        "B" if counts["fail"] else "",
        colour=VERDICT_COLOUR["fail"] if counts["fail"] else None,
    )


def _scope(w: _Writer, res: AuditResults) -> None:
    w.h1("Scope and threat model")
    w.kv(report_results.scope_pairs(res))
    w.p(report_results.SCOPE_NOTE, 9)
    attacks = res.attacks or []
    if attacks:
        w.h2("Attacks, in run order")
        rows = [
            [a.name, a.kind or "", report_results.attack_params_text(a.params), _indicators_cell(a)]
            for a in attacks
        ]
        w.table(["attack", "kind", "parameters", "failure indicators"], rows, (28, 20, 100, 30), size=7.5)
        w.p(report_results.ATTACK_ORDER_NOTE, 8, colour=GREY)
        _indicators(w, attacks)


# What the indicators of attack failure are, under their table (the PDF's and the HTML's).
INDICATORS_NOTE = (
    "Read off the attacks' own runs at no extra cost (Pintor et al. 2022), on the samples each attack "
    "failed on: a silent loss never rose (no gradient signal), an incomplete optimisation was still "
    "rising in the last tenth of the steps, non-converging restarts still broke samples in the last "
    "restart; unreachable misclassification counts what the attack left standing at the very large eps "
    "of check (c). An indicator fires above its share of the samples at some eps; a fired one means "
    "those failures are the attack's, not evidence of robustness."
)


def _indicators_cell(a: AttackRecord) -> str:
    """The attack table's summary of one attack's indicators of attack failure."""
    if not a.indicators:
        return "not measured"
    fired = [i for i in a.indicators if i.fired]
    return f"{len(fired)} FIRED" if fired else "none fired"


def _indicators(w: _Writer, attacks: list[AttackRecord]) -> None:
    """Every indicator of attack failure of every attack: samples it holds for / measured on."""
    rows, colours = [], []
    for a in attacks:
        for i in a.indicators or []:
            status = "FIRED" if i.fired else "quiet"
            rows.append([a.name, i.member or "", i.title or i.name, f"{i.n_fired}/{i.n_measured}", status])
            colours.append(VERDICT_COLOUR["fail"] if i.fired else None)
    if not rows:
        return
    w.h2("Indicators of attack failure")
    w.table(["attack", "member", "indicator", "samples", "status"], rows, (30, 22, 66, 30, 30), 7.5, colours)
    w.p(INDICATORS_NOTE, 8, colour=GREY)


def _system(w: _Writer, res: AuditResults) -> None:
    w.h1("System under test")
    w.kv(report_results.system_pairs(res))


def _clean(w: _Writer, res: AuditResults) -> None:
    from reports import figures

    w.h1("Clean performance")
    c = res.clean
    w.kv(
        [
            (
                "accuracy",
                f"{formatting.pct(c.accuracy, 2)}, 95% CI {formatting.ci(c.ci, 2)} ({_or(c.correct, '?')}/{_or(c.n, '?')})",
            ),
            (
                "macro precision / recall / F1",
                f"{formatting.num(c.precision)} / {formatting.num(c.recall)} / {formatting.num(c.f1)}",
            ),
        ],
        key_w=60,
    )
    if c.confusion:
        w.image(figures.confusion_matrix(c.confusion), 95)


def _robust(w: _Writer, res: AuditResults) -> None:
    from reports import figures

    w.h1("Robust accuracy")
    w.image(figures.robust_curve(res), 150)
    rows = [
        [
            formatting.eps_str(r.eps),
            f"{_or(r.n_robust, '?')}/{_or(r.n, '?')}",
            formatting.pct(r.accuracy),
            formatting.ci(r.ci),
            formatting.seconds(r.time_s),
        ]
        for r in res.robust
    ]
    w.table(["eps", "robust / n", "robust accuracy", "95% CI", "time"], rows, (30, 30, 35, 50, 33))

    w.h2("Per attack: what each attack added, and what it cost")
    for r in res.robust:
        cost = r.per_attack_cost or {}
        per_attack = r.per_attack or {}
        rows = []
        for name in list(per_attack) or list(cost):
            c = cost.get(name)
            rows.append(
                [
                    name,
                    formatting.pct(per_attack.get(name)),
                    _count(c.n_attacked if c else None, plain=True),
                    _count(c.n_broken if c else None, plain=True),
                    formatting.seconds(c.time_s) if c else "",
                    _count(c.n_backward if c else None),
                    _count(c.n_forward if c else None),
                    _count(c.n_queries if c else None),
                ]
            )
        w.h3(f"eps {formatting.eps_str(r.eps)}")
        w.table(
            report_results.ATTACK_COST_HEADER,
            rows,
            (28, 22, 19, 17, 22, 26, 25, 19),
            size=7.5,
        )
    w.p(report_results.ATTACK_COST_NOTE, 8, colour=GREY)
    for r in res.robust:
        found = {k: v for k, v in (r.found_by_checks or {}).items() if v}
        if found:
            w.p(
                f"At eps {formatting.eps_str(r.eps)} the sanity-check attacks broke {sum(found.values())} samples the audit's "
                f"attacks had left standing ({', '.join(f'{k}: {v}' for k, v in found.items())}); they count in the "
                f"worst case above (the audit's attacks alone: {formatting.pct(r.accuracy_attacks_only)}).",
                8.5,
                "B",
                colour=STATUS_COLOUR["waived"],
            )
    spent = res.timing.parts() if res.timing else []
    if spent:
        note = f" ({res.timing.note})" if res.timing.note is not None else ""
        w.p(
            "Where the time went: "
            + ", ".join(f"{k} {formatting.seconds(v)}" for k, v in spent)
            + note
            + ".",
            8.5,
        )


def _count(v: int | None, *, plain: bool = False) -> str:
    """A cost count for the table: '' when not recorded; thousands separated unless ``plain``."""
    if v is None:
        return ""
    return str(v) if plain else f"{v:,}"


def _per_class(w: _Writer, res: AuditResults) -> None:
    from reports import figures

    w.h1("Robust accuracy per class")
    if not any(r.per_class_accuracy for r in res.robust):
        w.p("The results hold no per-class robust accuracy.", 9)
        return
    names = res.data.class_names if res.data is not None else None
    png = figures.section_heatmap(_named_classes(res, names)) if names else figures.per_class(res)
    w.p("Share of each true class still classified correctly, clean and under attack at each eps.", 9)
    w.image(png, min(170, 40 + 22 * (len(res.robust) + 1)))


def _named_classes(res: AuditResults, names: list[str]) -> Any:
    """The per-class accuracies as a heat map whose rows are the data's class names (in class
    order; a class beyond the names keeps its index)."""
    from robustness.core.schema import SectionHeatmap

    rows = [r for r in res.robust if r.per_class_accuracy]
    clean = res.clean.per_class_accuracy or {}
    keys = sorted({k for r in rows for k in r.per_class_accuracy} | set(clean), key=lambda k: (len(k), k))
    columns = [("clean", clean)] + [(f"eps {r.eps:g}", r.per_class_accuracy) for r in rows]

    def label(key: str) -> str:
        return names[int(key)] if key.isdigit() and int(key) < len(names) else key

    return SectionHeatmap(
        title="Accuracy per class",
        rows=[label(k) for k in keys],
        columns=[name for name, _ in columns],
        values=[[None if d.get(k) is None else float(d[k]) for _, d in columns] for k in keys],
        value_label="accuracy",
        row_label="class",
    )


def _examples(w: _Writer, res: AuditResults, source: Path | None) -> None:
    from reports import figures

    w.h1("Adversarial examples")
    ex = report_results.load_examples(res, source)
    if ex is None:
        name = (res.files or {}).get("examples") or "examples.npz"
        w.p(
            f"No example images are available ({name} was not found next to results.json), so this "
            "section shows none; the numbers above do not depend on it.",
            9,
        )
        return
    w.p(
        "A few samples (broken ones first): the clean input, the adversarial input at the smallest eps that "
        "broke it, and their difference (red = increased, blue = decreased).",
        9,
    )
    bounds = tuple(
        (res.threat.bounds if res.threat else None) or (res.model.bounds if res.model else None) or (0.0, 1.0)
    )
    w.image(figures.example_grid(ex, bounds), 170)


def _checks(w: _Writer, res: AuditResults) -> None:
    w.h1("Sanity checks")
    w.p(
        "An attack that fails does not prove a model robust: gradients can be masked, attacks can stop "
        "early. These checks (after Carlini et al. 2019 and Athalye et al. 2018) look for the usual signs that "
        "the robust accuracy is too high. A failed check makes the verdict 'unreliable' unless the user "
        "waived it with a written reason, printed below.",
        9,
    )
    if not res.sanity_checks:
        w.p(
            "No sanity checks were run. The robust accuracy has not been checked for gradient masking.",
            9,
            "B",
            VERDICT_COLOUR["fail"],
        )
    for c in res.sanity_checks:
        # One check's status, title and explanation stay on one page.
        w.place(lambda w, c=c: _check_entry(w, c), whole=True)


def _check_entry(w: _Writer, c: CheckOutcome) -> None:
    d = w.doc
    status = c.status
    d.set_font("Sans", "B", 9.5)
    d.set_text_color(*STATUS_COLOUR.get(status, (0, 0, 0)))
    d.cell(22, 5.5, report_results.STATUS_LABEL.get(status, status.upper()))
    d.set_text_color(0, 0, 0)
    d.multi_cell(0, 5.5, c.title or c.name, align="L", new_x="LMARGIN", new_y="NEXT")
    d.set_x(d.l_margin + 22)
    d.set_font("Sans", "", 8.5)
    body = c.detail or ""
    why = c.explanation
    if why:
        body += f"\nWhy it matters: {why}"
    if c.waiver:
        body += f"\nWaived by the user, reason: {c.waiver}"
    d.multi_cell(0, 4.3, body + f"\n(check id: {c.name})", align="L", new_x="LMARGIN", new_y="NEXT")
    d.ln(1.5)


# Width of the names in a section's key-value list, and of a section's figures (mm).
SECTION_KEY_WIDTH = 62
FIGURE_WIDTH = 150


def _section(w: _Writer, result: SectionResult) -> None:
    """One audit section (the watermark today), as its result describes itself."""
    from reports import figures

    view = result.view()
    w.h1(view.title)
    if view.pairs:
        w.kv(view.pairs, key_w=SECTION_KEY_WIDTH)
    for table in view.all_tables():
        if table.title:
            w.h3(table.title)
        widths = table.widths
        if widths:
            widths = tuple(w.doc.epw * x / sum(widths) for x in widths)
        w.table(table.header, table.rows, widths)
    for figure in view.figures:
        w.image(figures.section_figure(figure), FIGURE_WIDTH)
        if figure.caption:
            w.p(figure.caption, 8, colour=GREY)
    for note in view.notes:
        if note.style == "caption":
            w.p(note.text, 8, colour=GREY)
        else:
            w.p(note.text, 9)


def _appendix(w: _Writer, res: AuditResults) -> None:
    w.h1("Appendix: reproducibility")
    w.kv(report_results.appendix_pairs(res))
    w.h2("Resolved configuration")
    text = report_results.config_text(res)
    w.place(lambda w: _mono(w, text))


def _mono(w: _Writer, text: str) -> None:
    d = w.doc
    d.set_font("Mono", "", 7)
    d.set_fill_color(246, 246, 246)
    d.multi_cell(0, 3.4, text, fill=True, new_x="LMARGIN", new_y="NEXT")


def render_pdf_bytes(results: AuditResults | dict[str, Any], source: Path | None = None) -> bytes:
    """The report as PDF bytes. ``source`` is the folder holding results.json and its companions."""
    results = as_results(results)
    doc = _make_doc(results)
    w = _Writer(doc, scratch=_make_doc(results, fonts_of=doc))
    doc.add_page()
    _verdict_page(w, results)
    doc.add_page()
    _scope(w, results)
    _system(w, results)
    doc.add_page()
    _clean(w, results)
    _robust(w, results)
    _per_class(w, results)
    _examples(w, results, source)
    _checks(w, results)
    for result in results.sections.values():
        _section(w, result)
    _appendix(w, results)
    w.flush()
    return bytes(doc.output())


@renderer("pdf", "report.pdf", suffixes=(".pdf",), order=10)
def render(
    results: AuditResults | dict[str, Any], path: str | Path, *, source: str | Path | None = None
) -> Path:
    """Write the PDF report atomically to ``path``."""
    from robustness.core.io import atomic_write_bytes

    data = render_pdf_bytes(results, Path(source) if source is not None else None)
    return atomic_write_bytes(path, data)
