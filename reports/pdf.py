"""The PDF audit report, for reviewers who do not read JSON.

fpdf2 writes the document: it is pure Python (no Cairo, Pango or LaTeX to install on a CI
runner), embeds PNG figures from matplotlib directly, and with the DejaVu fonts that ship
inside matplotlib it prints Unicode (eps, >=) in every environment the tool installs into.

Everything on the page comes from the results dict and the ``examples.npz`` named in it;
a missing optional piece (examples, per-class numbers, watermark) becomes a sentence, never
a crash.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from reports import results as R

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


def _make_doc(results: dict[str, Any]):
    from fpdf import FPDF

    verdict = str(results.get("verdict", "?"))
    model = (results.get("model") or {}).get("spec", "?")

    class _Doc(FPDF):
        def header(self) -> None:
            if self.page_no() == 1:
                return
            self.set_font("Sans", "", 7)
            self.set_text_color(*GREY)
            self.cell(0, 4, f"Robustness audit of {model}: verdict {verdict.upper()}", align="L")
            self.ln(6)
            self.set_text_color(0, 0, 0)

        def footer(self) -> None:
            self.set_y(-12)
            self.set_font("Sans", "", 7)
            self.set_text_color(*GREY)
            created = results.get("created", "")
            self.cell(0, 4, f"robustness-audit {results.get('tool_version', '')} | {created}", align="L")
            self.cell(0, 4, f"page {self.page_no()}/{{nb}}", align="R")
            self.set_text_color(0, 0, 0)

    doc = _Doc(format="A4", unit="mm")
    fonts = _font_dir()
    doc.add_font("Sans", "", str(fonts / "DejaVuSans.ttf"))
    doc.add_font("Sans", "B", str(fonts / "DejaVuSans-Bold.ttf"))
    doc.add_font("Sans", "I", str(fonts / "DejaVuSans-Oblique.ttf"))
    doc.add_font("Mono", "", str(fonts / "DejaVuSansMono.ttf"))
    doc.set_auto_page_break(True, margin=16)
    doc.set_margins(16, 14, 16)
    doc.set_title(f"Robustness audit: {model}")
    doc.set_author("robustness-audit")
    doc.set_creator(f"robustness-audit {results.get('tool_version', '')}")
    return doc


class _Writer:
    """Small layout helpers over an FPDF document."""

    def __init__(self, doc) -> None:
        self.doc = doc

    def h1(self, text: str) -> None:
        d = self.doc
        if d.get_y() > d.h - 60:
            d.add_page()
        d.ln(2)
        d.set_font("Sans", "B", 14)
        d.cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
        d.set_draw_color(200, 200, 200)
        d.line(d.l_margin, d.get_y(), d.w - d.r_margin, d.get_y())
        d.ln(2)

    def h2(self, text: str) -> None:
        d = self.doc
        if d.get_y() > d.h - 40:
            d.add_page()
        d.ln(1)
        d.set_font("Sans", "B", 11)
        d.cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")

    def p(
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
                hr.cell(h)
            for i, r in enumerate(rows):
                colour = colours[i] if colours else None
                row = t.row()
                for j, c in enumerate(r):
                    style = FontFace(color=colour, emphasis="BOLD") if colour and j == len(r) - 1 else None
                    row.cell(c, style=style)
        d.ln(2)

    def image(self, png: bytes, width: float) -> None:
        d = self.doc
        from PIL import Image

        with Image.open(io.BytesIO(png)) as im:
            w_px, h_px = im.size
        height = width * h_px / w_px
        if d.get_y() + height > d.h - d.b_margin:
            d.add_page()
        x = (d.w - width) / 2
        d.image(io.BytesIO(png), x=x, w=width)
        d.ln(2)


# -- sections ----------------------------------------------------------------------------------


def _verdict_page(w: _Writer, res: dict[str, Any]) -> None:
    d = w.doc
    verdict = str(res.get("verdict", "?"))
    model = res.get("model") or {}
    d.set_font("Sans", "B", 18)
    d.cell(0, 10, "Adversarial robustness audit", new_x="LMARGIN", new_y="NEXT")
    w.p(
        f"Model {model.get('spec', '?')} on {(res.get('data') or {}).get('spec', '?')}, "
        f"created {res.get('created', '?')}",
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
    w.p(str(res.get("verdict_reason") or ""), 11, "B")
    w.p(VERDICT_MEANING.get(verdict, ""), 9)

    w.h2("Headline numbers")
    clean = res["clean"]
    threat = res.get("threat") or {}
    rows = [
        [
            "clean",
            R.pct(clean.get("accuracy")),
            R.ci(clean.get("ci")),
            f"{clean.get('correct', '?')}/{clean.get('n', '?')}",
        ]
    ]
    for r in res["robust"]:
        rows.append(
            [
                f"robust, {r.get('norm', threat.get('norm', ''))} eps {R.eps_str(r['eps'])}",
                R.pct(r.get("accuracy")),
                R.ci(r.get("ci")),
                f"{r.get('n_robust', '')}/{r.get('n', '')}",
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
    gates = res.get("gates") or []
    if gates:
        grows, colours = [], []
        for g in gates:
            grows.append(
                [
                    R.gate_label(g["name"]),
                    R.num(g.get("value")),
                    f"{R.gate_comparator(g['name'])} {R.num(g.get('threshold'))}",
                    {"ci_low": "CI low end", "point": "point estimate"}.get(
                        g.get("judge"), str(g.get("judge") or "")
                    ),
                    "PASS" if g.get("passed") else "FAIL",
                ]
            )
            colours.append(VERDICT_COLOUR["pass"] if g.get("passed") else VERDICT_COLOUR["fail"])
        w.table(
            ["gate", "value", "required", "judged on", "result"], grows, (62, 24, 24, 38, 22), colours=colours
        )
        for g in gates:
            if g.get("detail") and not g.get("passed"):
                w.p(f"{g['name']}: {g['detail']}", 8.5, colour=VERDICT_COLOUR["fail"])
    else:
        w.p("No gates were configured: the audit reports numbers but judges nothing.", 9)
    w.p(
        f"Thresholds come from the 'gates' section of the resolved configuration: {_config_source(res)}.",
        8,
        colour=GREY,
    )
    checks = res.get("sanity_checks") or []
    counts = {s: sum(1 for c in checks if c.get("status") == s) for s in ("pass", "fail", "skip", "waived")}
    w.p(
        f"Sanity checks: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped, "
        f"{counts['waived']} waived (section 'Sanity checks').",
        9,
        "B" if counts["fail"] else "",
        colour=VERDICT_COLOUR["fail"] if counts["fail"] else None,
    )


def _config_source(res: dict[str, Any]) -> str:
    env = res.get("environment") or {}
    cfg = res.get("config") or {}
    src = cfg.get("source") or cfg.get("config_file") or env.get("config_file")
    cmd = env.get("command_line")
    parts = []
    if src:
        parts.append(f"file {src}")
    if cmd:
        parts.append(f"command line '{cmd}'")
    return ", ".join(parts) or "see the appendix"


def _scope(w: _Writer, res: dict[str, Any]) -> None:
    w.h1("Scope and threat model")
    threat = res.get("threat") or {}
    data = res.get("data") or {}
    norm = threat.get("norm", "?")
    eps = threat.get("eps") or [r["eps"] for r in res["robust"]]
    bounds = threat.get("bounds") or (res.get("model") or {}).get("bounds")
    norm_text = {
        "linf": "L-infinity (each input value moves by at most eps)",
        "l2": "L2 (Euclidean length of the change at most eps)",
        "l1": "L1 (sum of absolute changes at most eps)",
    }
    w.kv(
        [
            (
                "data",
                f"{data.get('spec', '?')}: {data.get('n', '?')} samples, input shape {data.get('shape', '?')}, subset seed {data.get('seed', 'n/a')}",
            ),
            ("norm", norm_text.get(norm, norm)),
            ("eps grid", ", ".join(R.eps_str(e) for e in eps)),
            ("input bounds", str(bounds)),
            ("attacker", "white-box: knows the model and its gradients; untargeted (any wrong class counts)"),
        ]
    )
    w.p(
        "The audit answers: for how many of these samples can an attacker who may change the input within "
        "the budget above make the model predict a wrong class? It says nothing about other threat models "
        "(larger budgets, other norms, physical or semantic changes, poisoning) or other data.",
        9,
    )
    attacks = res.get("attacks") or []
    if attacks:
        w.h2("Attacks, in run order")
        rows = []
        for a in attacks:
            params = a.get("params") or {}
            shown = ", ".join(f"{k}={v}" for k, v in params.items() if v is not None)
            rows.append([a.get("name", "?"), a.get("kind", ""), shown or "defaults"])
        w.table(["attack", "kind", "parameters"], rows, (30, 24, 124), size=7.5)
        w.p(
            "Each attack runs only on the samples that are still classified correctly after the attacks "
            "before it; a sample counts as robust only if every attack failed on it.",
            8,
            colour=GREY,
        )


def _system(w: _Writer, res: dict[str, Any]) -> None:
    w.h1("System under test")
    m = res.get("model") or {}
    data = res.get("data") or {}
    env = res.get("environment") or {}
    n_params = m.get("n_parameters")
    w.kv(
        [
            ("model spec", m.get("spec")),
            ("model SHA-256", m.get("sha256")),
            ("parameters", f"{n_params:,}" if isinstance(n_params, int) else n_params),
            ("classes", m.get("num_classes")),
            (
                "output",
                "probabilities (gradient attacks are weakened)"
                if m.get("outputs_probabilities")
                else "logits",
            ),
            ("data spec", data.get("spec")),
            ("data SHA-256", data.get("sha256")),
            (
                "tool",
                f"robustness-audit {res.get('tool_version', '?')}, results schema {res.get('schema_version', '?')}",
            ),
            (
                "Python / torch / ART",
                f"{env.get('python', '?')} / {env.get('torch', '?')} / {env.get('art') or 'not installed'}",
            ),
            ("device, precision", f"{env.get('device', '?')}, {env.get('precision', 'fp32')}"),
            ("platform", env.get("platform")),
        ]
    )


def _clean(w: _Writer, res: dict[str, Any]) -> None:
    from reports import figures

    w.h1("Clean performance")
    c = res["clean"]
    w.kv(
        [
            (
                "accuracy",
                f"{R.pct(c.get('accuracy'), 2)}, 95% CI {R.ci(c.get('ci'), 2)} ({c.get('correct', '?')}/{c.get('n', '?')})",
            ),
            (
                "macro precision / recall / F1",
                f"{R.num(c.get('precision'))} / {R.num(c.get('recall'))} / {R.num(c.get('f1'))}",
            ),
        ],
        key_w=60,
    )
    if c.get("confusion"):
        w.image(figures.confusion_matrix(c["confusion"]), 95)


def _robust(w: _Writer, res: dict[str, Any]) -> None:
    from reports import figures

    w.h1("Robust accuracy")
    w.image(figures.robust_curve(res), 150)
    rows = [
        [
            R.eps_str(r["eps"]),
            f"{r.get('n_robust', '?')}/{r.get('n', '?')}",
            R.pct(r.get("accuracy")),
            R.ci(r.get("ci")),
            R.seconds(r.get("time_s")),
        ]
        for r in res["robust"]
    ]
    w.table(["eps", "robust / n", "robust accuracy", "95% CI", "time"], rows, (30, 30, 35, 50, 33))

    w.h2("Per attack: what each attack added, and what it cost")
    for r in res["robust"]:
        cost = r.get("per_attack_cost") or {}
        names = list(r.get("per_attack") or {}) or list(cost)
        rows = []
        for name in names:
            c = cost.get(name) or {}
            rows.append(
                [
                    name,
                    R.pct(r.get("per_attack", {}).get(name)),
                    str(c.get("n_attacked", "")),
                    str(c.get("n_broken", "")),
                    R.seconds(c.get("time_s")) if c else "",
                    f"{c['n_backward']:,}" if "n_backward" in c else "",
                    f"{c['n_forward']:,}" if "n_forward" in c else "",
                    f"{c['n_queries']:,}" if "n_queries" in c else "",
                ]
            )
        w.p(f"eps {R.eps_str(r['eps'])}", 9, "B")
        w.table(
            [
                "attack",
                "robust after",
                "attacked",
                "broken",
                "time",
                "gradient calls",
                "forward passes",
                "queries",
            ],
            rows,
            (28, 22, 19, 17, 22, 26, 25, 19),
            size=7.5,
        )
    w.p(
        "'robust after' is cumulative in run order (the worst case so far); 'attacked' counts the samples "
        "still standing when the attack started; gradient calls and forward passes are counted per sample (one batch of 100 counts 100).",
        8,
        colour=GREY,
    )
    for r in res["robust"]:
        found = {k: v for k, v in (r.get("found_by_checks") or {}).items() if v}
        if found:
            w.p(
                f"At eps {R.eps_str(r['eps'])} the sanity-check attacks broke {sum(found.values())} samples the audit's "
                f"attacks had left standing ({', '.join(f'{k}: {v}' for k, v in found.items())}); they count in the "
                f"worst case above (the audit's attacks alone: {R.pct(r.get('accuracy_attacks_only'))}).",
                8.5,
                "B",
                colour=STATUS_COLOUR["waived"],
            )
    t = res.get("timing") or {}
    spent = [
        (k.removesuffix("_s"), v) for k, v in t.items() if k.endswith("_s") and isinstance(v, int | float)
    ]
    if spent:
        note = f" ({t['note']})" if isinstance(t.get("note"), str) else ""
        w.p("Where the time went: " + ", ".join(f"{k} {R.seconds(v)}" for k, v in spent) + note + ".", 8.5)


def _per_class(w: _Writer, res: dict[str, Any]) -> None:
    from reports import figures

    w.h1("Robust accuracy per class")
    png = figures.per_class(res)
    if png is None:
        w.p("The results hold no per-class robust accuracy.", 9)
        return
    w.p("Share of each true class still classified correctly, clean and under attack at each eps.", 9)
    w.image(png, min(170, 40 + 22 * (len(res["robust"]) + 1)))


def _examples(w: _Writer, res: dict[str, Any], source: Path | None) -> None:
    from reports import figures

    w.h1("Adversarial examples")
    ex = R.load_examples(res, source)
    if ex is None:
        name = (res.get("files") or {}).get("examples") or "examples.npz"
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
        (res.get("threat") or {}).get("bounds") or (res.get("model") or {}).get("bounds") or (0.0, 1.0)
    )
    w.image(figures.example_grid(ex, bounds), 170)


def _checks(w: _Writer, res: dict[str, Any]) -> None:
    w.h1("Sanity checks")
    w.p(
        "An attack that fails does not prove a model robust: gradients can be masked, attacks can stop "
        "early. These checks (after Carlini et al. 2019 and Athalye et al. 2018) look for the usual signs that "
        "the robust accuracy is too high. A failed check makes the verdict 'unreliable' unless the user "
        "waived it with a written reason, printed below.",
        9,
    )
    checks = res.get("sanity_checks") or []
    if not checks:
        w.p(
            "No sanity checks were run. The robust accuracy has not been checked for gradient masking.",
            9,
            "B",
            VERDICT_COLOUR["fail"],
        )
    d = w.doc
    for c in checks:
        status = str(c.get("status", "?"))
        if d.get_y() > d.h - 40:
            d.add_page()
        d.set_font("Sans", "B", 9.5)
        d.set_text_color(*STATUS_COLOUR.get(status, (0, 0, 0)))
        d.cell(22, 5.5, R.STATUS_LABEL.get(status, status.upper()))
        d.set_text_color(0, 0, 0)
        d.multi_cell(0, 5.5, c.get("title") or c.get("name", "?"), align="L", new_x="LMARGIN", new_y="NEXT")
        d.set_x(d.l_margin + 22)
        d.set_font("Sans", "", 8.5)
        body = str(c.get("detail") or "")
        why = R.CHECK_EXPLANATIONS.get(c.get("name", ""))
        if why:
            body += f"\nWhy it matters: {why}"
        if c.get("waiver"):
            body += f"\nWaived by the user, reason: {c['waiver']}"
        d.multi_cell(
            0, 4.3, body + f"\n(check id: {c.get('name', '?')})", align="L", new_x="LMARGIN", new_y="NEXT"
        )
        d.ln(1.5)


def _mark_status(s: dict[str, Any]) -> str:
    """Survived / removed; a mark lost only by wrecking the model does not count as removed
    (Lukas et al. 2022 count a removal only within a small accuracy cost)."""
    if s.get("verified"):
        return "survived"
    if s.get("removed") is False:
        return "lost, model damaged"
    return "removed"


def _watermark(w: _Writer, res: dict[str, Any]) -> None:
    wm = res.get("watermark")
    if not wm:
        return
    w.h1("Watermark verification and survival")
    pairs = [
        ("trigger matches", f"{wm.get('k', '?')}/{wm.get('K', '?')}"),
        (
            "null match rate p0",
            R.num(wm.get("p0")) + (f" ({wm['p0_method']})" if wm.get("p0_method") else ""),
        ),
        ("p-value", R.num(wm.get("p_value"))),
        ("alpha", R.num(wm.get("alpha"))),
        ("ownership verified", "yes" if wm.get("verified") else "no"),
    ]
    if wm.get("false_positive_rate") is not None:
        pairs.append(("false-positive rate on reference models", R.pct(wm["false_positive_rate"])))
    if wm.get("key_sha256"):
        pairs.append(("key SHA-256", wm["key_sha256"]))
    w.kv(pairs, key_w=62)
    surr = wm.get("surrogates") or []
    if surr:
        rows = [
            [
                str(s.get("name", "?")),
                R.pct(s.get("clean_accuracy")),
                R.pct(s.get("agreement")),
                str(s.get("k", "?")) + (f"/{s.get('K') or wm.get('K')}" if s.get("K") or wm.get("K") else ""),
                R.num(s.get("p_value")),
                _mark_status(s),
            ]
            for s in surr
        ]
        w.table(
            ["surrogate", "clean accuracy", "agreement", "k", "p-value", "mark"],
            rows,
            (46, 26, 24, 20, 26, 36),
        )
        drop = wm.get("removal_max_accuracy_drop")
        w.p(
            "A surrogate is a copy of the model after a removal attempt (fine-tuning, pruning, quantization, "
            "extraction). 'survived' means the watermark still verifies on it at the same alpha; 'removed' means "
            "it does not"
            + (f" while the copy lost at most {R.pct(drop, 0)} of clean accuracy" if drop is not None else "")
            + ".",
            8,
            colour=GREY,
        )
    else:
        w.p("No removal attacks were tested, so survival is unknown.", 9)


def _appendix(w: _Writer, res: dict[str, Any]) -> None:
    w.h1("Appendix: reproducibility")
    env = res.get("environment") or {}
    w.kv(
        [
            ("command line", env.get("command_line")),
            ("seed", env.get("seed")),
            ("created", res.get("created")),
            ("tool version", res.get("tool_version")),
            ("results schema", res.get("schema_version")),
            (
                "versions",
                f"Python {env.get('python', '?')}, torch {env.get('torch', '?')}, ART {env.get('art') or 'not installed'}",
            ),
        ]
    )
    w.h2("Resolved configuration")
    try:
        import yaml

        text = yaml.safe_dump(res.get("config") or {}, sort_keys=False, width=100)
    except Exception:  # a config yaml cannot represent still prints, as JSON
        text = json.dumps(res.get("config") or {}, indent=2)
    d = w.doc
    d.set_font("Mono", "", 7)
    d.set_fill_color(246, 246, 246)
    d.multi_cell(0, 3.4, text.rstrip(), fill=True, new_x="LMARGIN", new_y="NEXT")


def render_pdf_bytes(results: dict[str, Any], source: Path | None = None) -> bytes:
    """The report as PDF bytes. ``source`` is the folder holding results.json and its companions."""
    R.check_schema(results)
    doc = _make_doc(results)
    w = _Writer(doc)
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
    _watermark(w, results)
    _appendix(w, results)
    return bytes(doc.output())


def render(results: dict[str, Any], path: str | Path, *, source: str | Path | None = None) -> Path:
    """Write the PDF report atomically to ``path``."""
    from robustness.io import atomic_write_bytes

    data = render_pdf_bytes(results, Path(source) if source is not None else None)
    return atomic_write_bytes(path, data)
