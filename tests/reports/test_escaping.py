"""Strings from results.json are shown literally in every report: never markup, never a crash.

summary.md goes to pull requests and GitHub's job summary, where a model spec such as
``<img src=x onerror=alert(1)>`` must not become an image tag and ``**bold** | pipe`` must not
become bold text or a broken table. JUnit is XML (ElementTree escapes; control characters and
lone surrogates are ours to handle), and the PDF's font cannot draw every character.
"""

from __future__ import annotations

import copy
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reports import junit, markdown, pdf, render_all

DATA = Path(__file__).parent / "data"
HTML = "<img src=x onerror=alert(1)>"
MD = "**bold** | pipe _em_ [link](http://x) `tick` ~~gone~~ &amp; \\ <!-- c -->"
NON_LATIN = "模型 🔥 שלום é"
OUR_TAGS = re.compile(r"<(?:br|sub|/sub)>")


@pytest.fixture(scope="module")
def fixture_results() -> dict:
    return json.loads((DATA / "results.json").read_text())


@pytest.fixture
def hostile(fixture_results) -> dict:
    """The fixture with hostile strings in every free-text field a report shows."""
    res = copy.deepcopy(fixture_results)
    res["model"]["spec"] = HTML
    res["data"]["spec"] = MD
    res["verdict_reason"] = f"# {HTML} {MD}"
    waived = next(c for c in res["sanity_checks"] if c["status"] == "waived")
    waived["waiver"] = f"{MD}\n- not a list item {HTML}"
    failed = res["sanity_checks"][0]
    failed.update(status="fail", title=f"title {MD}", detail=f"detail {HTML}\n\n| a | b |")
    res["sanity_checks"][1].update(status="skip", detail=f"skipped `{HTML}`")
    res["verdict"] = "unreliable"
    res["gates"].append({"name": f"custom {MD} {HTML}", "passed": True, "value": 1.0, "threshold": 0.5})
    res["environment"].update(device=HTML, precision=MD)
    res["tool_version"] = "0.1 <script>alert(1)</script>"
    res["attacks"][0]["name"] = HTML
    return res


# -- a small model of how GitHub shows Markdown, enough to test escaping ------------------


def _runs(line: str) -> list[tuple[int, int]]:
    """Backtick runs (start, end) that are not backslash-escaped (CommonMark: an escaped
    backtick is a literal one, and the rest of its run still counts)."""
    runs = []
    for m in re.finditer(r"`+", line):
        start = m.start()
        slashes = len(line[:start]) - len(line[:start].rstrip("\\"))
        if slashes % 2:
            start += 1
        if start < m.end():
            runs.append((start, m.end()))
    return runs


def code_spans(line: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of the CommonMark code spans in a line."""
    spans, runs, i = [], _runs(line), 0
    while i < len(runs):
        start, end = runs[i]
        n = end - start
        j = next((k for k in range(i + 1, len(runs)) if runs[k][1] - runs[k][0] == n), None)
        if j is None:
            i += 1
            continue
        # Inside a code span a backslash is literal, so the closing run is any run of n.
        content = line[end : runs[j][0]]
        if content.startswith(" ") and content.endswith(" ") and content.strip():
            content = content[1:-1]
        spans.append((start, runs[j][1], content))
        i = j + 1
    return spans


def visible(line: str, *, table: bool = False) -> str:
    """The text a reader sees: escapes resolved, entities decoded, code spans as typed."""
    out, i = [], 0
    for start, end, content in code_spans(line):
        out.append(_unescape(line[i:start]))
        out.append(content.replace("\\|", "|") if table else content)
        i = end
    out.append(_unescape(line[i:]))
    return "".join(out)


def _unescape(text: str) -> str:
    text = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)
    return text.replace("&lt;", "<").replace("&amp;", "&")


def outside_code(line: str) -> str:
    out, i = [], 0
    for start, end, _ in code_spans(line):
        out.append(line[i:start])
        i = end
    return "".join(out) + line[i:]


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def collapse(text: str) -> str:
    return " ".join(text.split())


def test_markdown_shows_hostile_strings_literally(hostile):
    md = markdown.to_markdown(hostile)
    lines = md.splitlines()
    seen = " ".join(visible(ln, table=ln.startswith("|")) for ln in lines)
    for s in (
        HTML,
        MD,
        hostile["verdict_reason"],
        f"title {MD}",
        f"detail {HTML} | a | b |",
        f"skipped `{HTML}`",
    ):
        assert collapse(s) in seen, s
    assert "0.1 <script>alert(1)</script>" in seen
    for ln in lines:
        rest = outside_code(ln)
        # No raw HTML but the summary's own <br> and <sub>; no markup from the strings.
        assert not re.search(r"<[A-Za-z/!?]", OUR_TAGS.sub("", rest)), ln
        assert "**bold**" not in rest and "[link](" not in rest and "~~gone" not in rest, ln
        assert "&amp;" not in rest.replace("&amp;amp;", ""), ln  # an entity in the text stays text
    # The verdict reason starts its line: '#' would make it a heading.
    reason = next(ln for ln in lines if HTML in visible(ln) and ln.lstrip("\\").startswith("#"))
    assert reason.startswith("\\#")
    # A newline in a waiver does not start a list item.
    assert not any(ln.startswith("- not a list item") for ln in lines)


def test_markdown_tables_keep_their_columns(hostile):
    md = markdown.to_markdown(hostile)
    tables: list[list[str]] = []
    for ln in md.splitlines():
        if ln.startswith("|"):
            if not tables or not tables[-1]:
                tables.append([])
            tables[-1].append(ln)
        elif tables and tables[-1]:
            tables.append([])
    tables = [t for t in tables if t]
    assert len(tables) == 2  # the eps table and the other gates (with the hostile gate name)
    for t in tables:
        assert {unescaped_pipes(ln) for ln in t} == {unescaped_pipes(t[0])}, t
    other = tables[1]
    row = next(ln for ln in other if "custom" in ln)
    assert collapse(f"custom {MD} {HTML}") in visible(row, table=True)


def test_markdown_code_spans_survive_backticks():
    assert markdown._code("a`b") == "`` a`b ``"
    assert visible(markdown._code("``x` <b>")) == "``x` <b>"
    assert visible(markdown._code("a|b", table=True), table=True) == "a|b"
    # Control characters and lone surrogates are written as escapes (UTF-8 cannot hold surrogates).
    assert markdown._text("a\x00b\ud800") == "a\\\\x00b\\\\ud800"


def test_junit_escapes_and_stays_parseable(hostile):
    hostile["model"]["spec"] = HTML + " \x00\x1b \ud800 " + NON_LATIN
    xml = junit.to_xml(hostile)
    xml.encode("utf-8")  # writable: no lone surrogate left
    root = ET.fromstring(xml)
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["model"] == HTML + " ?? ? " + NON_LATIN
    assert props["data"] == MD
    assert root.get("name") == f"robustness audit of {props['model']}"
    names = [c.get("name") for c in root.iter("testcase")]
    assert f"custom {MD} {HTML}" in names
    waived = next(
        c
        for c in root.iter("testcase")
        if c.find("skipped") is not None and "waived" in c.find("skipped").get("message")
    )
    assert HTML in waived.find("skipped").get("message")


def test_pdf_draws_any_string_and_shows_what_its_font_cannot(hostile):
    pypdf = pytest.importorskip("pypdf")
    spec = f"{HTML} {NON_LATIN} \x07 \ud800 " + "x" * 300
    hostile["model"]["spec"] = spec
    hostile["attacks"][1]["params"]["steps"] = "9" * 5000  # a table cell taller than a page
    data = pdf.render_pdf_bytes(hostile, None)
    pages = [p.extract_text() for p in pypdf.PdfReader(io.BytesIO(data)).pages]
    text = collapse(" ".join(pages))
    # DejaVu (from matplotlib) draws Hebrew and accents; CJK, emoji, control characters and a
    # lone surrogate are printed as their escapes rather than dropped.
    assert HTML in text
    assert "שלום" in text or "םולש" in text  # no bidi reordering in the PDF: either order is fine
    for esc in ("\\u6a21\\u578b", "\\U0001f525", "\\x07", "\\ud800"):
        assert esc in text, esc
    assert MD.split(" <!--")[0] in text
    # The running header cuts a long spec to one line.
    header = next(ln for ln in pages[1].splitlines() if ln.startswith("Robustness audit of"))
    assert header.endswith("…: verdict UNRELIABLE") and len(header) < 160


def test_render_all_writes_every_format_for_hostile_results(hostile, tmp_path):
    hostile["model"]["spec"] = f"{HTML} {NON_LATIN} \ud800"
    errors: dict[str, str] = {}
    written = render_all(hostile, tmp_path, ["pdf", "junit", "md"], errors=errors)
    assert errors == {} and set(written) == {"pdf", "junit", "md"}
    assert "\\ud800" in Path(written["md"]).read_text(encoding="utf-8")
