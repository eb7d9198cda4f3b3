"""The ``extraction`` section: how well a thief with query access copies the model, per budget.

Written by the audit's extraction section (:mod:`robustness.audit.sections.extraction`) and, as
a list of :class:`ExtractionPoint`, by ``robustness extract --json``.
"""

from __future__ import annotations

from pydantic import Field

from robustness.core.formatting import ci, num, pct
from robustness.core.schema import (
    Count,
    CurveSeries,
    Flag,
    Interval,
    Number,
    Record,
    SectionCurve,
    SectionNote,
    SectionResult,
    SectionTable,
    SectionView,
    section,
)


class MarkTest(Record):
    """The watermark ownership test on one model (the exact binomial test of the key's triggers)."""

    k: Count | None = None
    K: Count | None = None
    p0: Number | None = None
    p_value: Number | None = None
    alpha: Number | None = None
    verified: Flag | None = None


class ExtractionPoint(Record):
    """The surrogate stolen with one query budget."""

    queries: Count
    agreement: Number = Field(description="share of held-out inputs where the copy predicts as the model")
    agreement_ci: Interval | None = None
    accuracy: Number | None = None
    accuracy_ci: Interval | None = None
    watermark: MarkTest | None = Field(None, description="the ownership test on the stolen copy")
    time_s: Number | None = None


@section("extraction")
class ExtractionResult(SectionResult):
    """Model extraction: how many queries a thief needs to copy the model."""

    title = "Model extraction risk"

    data: str | None = Field(None, description="the thief's query pool")
    eval: str | None = Field(None, description="where the copies are measured")
    outputs: str | None = Field(None, description="what the thief sees: labels or probabilities")
    pool_size: Count | None = None
    eval_n: Count | None = None
    model_accuracy: Number | None = None
    thief: dict | None = None
    implementation: str | None = None
    curve: list[ExtractionPoint] = Field(default_factory=list)
    watermark: MarkTest | None = Field(None, description="the ownership test on the model itself")
    time_s: Number | None = None

    def check_numbers(self, check, path: str) -> None:  # noqa: ANN001 - plausibility.Checker
        check.rates(self, path, "model_accuracy")
        for i, p in enumerate(self.curve):
            where = f"{path}.curve[{i}]"
            check.fraction(p.agreement, f"{where}.agreement")
            check.fraction(p.accuracy, f"{where}.accuracy")
            check.interval(p.agreement_ci, f"{where}.agreement_ci", p.agreement)
            check.interval(p.accuracy_ci, f"{where}.accuracy_ci", p.accuracy)
            if self.pool_size is not None and p.queries > self.pool_size:
                check.bad(f"{where}.queries", f"{p.queries} queries from a pool of {self.pool_size}")

    def view(self) -> SectionView:
        marked = any(p.watermark is not None for p in self.curve)
        pairs = [
            ("thief sees", self.outputs or "?"),
            ("query pool", f"{self.data or '?'} ({self.pool_size} inputs)"),
            ("measured on", f"{self.eval or '?'} (n={self.eval_n})"),
            ("model accuracy there", pct(self.model_accuracy)),
        ]
        if self.thief:
            pairs.append(
                (
                    "surrogate",
                    f"{self.thief.get('architecture')}, {self.thief.get('epochs')} epochs, "
                    f"{self.thief.get('optimizer', 'adam')} lr {self.thief.get('lr')}",
                )
            )
        if self.watermark is not None:
            pairs.append(
                (
                    "watermark on the model",
                    f"{self.watermark.k}/{self.watermark.K} trigger matches, p-value {num(self.watermark.p_value)}",
                )
            )
        header = ["queries", "agreement", "95% CI", "accuracy", "95% CI"]
        rows = []
        for p in self.curve:
            row = [str(p.queries), pct(p.agreement), ci(p.agreement_ci), pct(p.accuracy), ci(p.accuracy_ci)]
            if marked:
                w = p.watermark
                row.append(
                    "-" if w is None else f"{'verified' if w.verified else 'not verified'} ({w.k}/{w.K})"
                )
            rows.append(row)
        if marked:
            header.append("watermark on the copy")
        table = SectionTable(
            header, rows, (18, 22, 40, 22, 40, *((44,) if marked else ())), title="Extraction curve"
        )
        figures = []
        if self.curve:
            xs = [float(p.queries) for p in self.curve]
            series = [
                CurveSeries(
                    "agreement with the model",
                    xs,
                    [float(p.agreement) for p in self.curve],
                    lower=[
                        float(p.agreement_ci[0]) if p.agreement_ci else float(p.agreement) for p in self.curve
                    ],
                    upper=[
                        float(p.agreement_ci[1]) if p.agreement_ci else float(p.agreement) for p in self.curve
                    ],
                ),
                CurveSeries(
                    "surrogate accuracy", xs, [float(p.accuracy or 0.0) for p in self.curve], style="dashed"
                ),
            ]
            if self.model_accuracy is not None and len(xs) > 1:
                series.append(
                    CurveSeries(
                        "model accuracy",
                        [xs[0], xs[-1]],
                        [float(self.model_accuracy)] * 2,
                        style="points",
                    )
                )
            figures.append(
                SectionCurve(
                    "Extraction: the copy's agreement over query budget",
                    "queries",
                    "share of held-out inputs",
                    series,
                    log_x=True,
                    caption="Band: exact 95% interval of the agreement.",
                )
            )
        best = self.curve[-1] if self.curve else None
        summary = (
            "no budget was run"
            if best is None
            else f"{best.queries} queries ({self.outputs}) copy the model to {pct(best.agreement)} agreement, "
            f"{pct(best.accuracy)} accuracy."
        )
        notes = [SectionNote(_MEANING)]
        if marked:
            kept = [p.queries for p in self.curve if p.watermark is not None and p.watermark.verified]
            notes.append(
                SectionNote(
                    "The watermark identifies the stolen copies at "
                    + (
                        ", ".join(str(q) for q in kept) + " queries."
                        if kept
                        else "no budget: extraction removes it."
                    )
                    + " Trigger-set marks are usually not learned from ordinary queries, so a thief's copy "
                    "rarely carries them (Lukas et al. 2022).",
                    "caption",
                )
            )
        return SectionView(
            title=self.title,
            label="Extraction",
            summary=summary,
            pairs=pairs,
            table=table,
            notes=notes,
            figures=figures,
        )


_MEANING = (
    "What this means: a thief who can only query the model (as through a prediction API) trains its own "
    "copy on the answers. Agreement is the share of held-out inputs where the copy and the model predict "
    "the same class; once it is near the model's own accuracy, the copy is as useful as the model, for the "
    "number of queries in the first column. Few queries to a high agreement mean the model's value (and any "
    "attack crafted on the copy, which transfers to the original) is cheap to take: rate-limit and monitor "
    "queries, return labels rather than probabilities, and keep ownership evidence (watermark)."
)
