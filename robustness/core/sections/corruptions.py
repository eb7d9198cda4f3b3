"""The ``corruptions`` section: accuracy under the 15 common corruptions at 5 severities.

Written by the audit's corruptions section (:mod:`robustness.audit.sections.corruptions`) from
:func:`robustness.core.corruptions.accuracy.corruption_accuracy`: a row per corruption with its
accuracy at each severity, the mean corruption accuracy (the mean over every corruption and
severity, as RobustBench reports CIFAR-10-C), its drop relative to clean accuracy, and a strip of
one sample under every corruption.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from robustness.core.formatting import ci, pct, seconds
from robustness.core.schema import (
    Count,
    Interval,
    Number,
    Record,
    SectionHeatmap,
    SectionImages,
    SectionNote,
    SectionResult,
    SectionTable,
    SectionView,
    section,
)

CONSTANTS = {"cifar10-c": "CIFAR-10-C", "imagenet-c": "ImageNet-C"}


class CorruptionRow(Record):
    """One corruption: accuracy at each severity of the run."""

    name: str
    title: str | None = None
    family: str | None = Field(None, description="noise, blur, weather or digital")
    correct: list[Count] | None = Field(None, description="correctly classified samples per severity")
    accuracy: list[Number]
    mean_accuracy: Number | None = None
    time_s: Number | None = None


class CorruptionExamples(Record):
    """One sample, clean and under each corruption at one severity (small images in [0, 1])."""

    index: Count | None = None
    label: int | None = None
    severity: int | None = None
    names: list[str]
    predictions: list[int] | None = None
    images: list[Any] = Field(description="H x W (grey) or H x W x 3 nested lists in [0, 1]")


@section("corruptions")
class CorruptionsResult(SectionResult):
    """Accuracy under the common corruptions (Hendrycks & Dietterich 2019) at each severity."""

    title = "Common corruptions"

    constants: str | None = Field(None, description="cifar10-c (images up to 32x32) or imagenet-c")
    pixel_scale: Number | None = Field(None, description="scale of the constants given in pixels")
    n: Count
    seed: int | None = None
    severities: list[int]
    channels: Count | None = None
    clean_accuracy: Number
    clean_ci: Interval | None = None
    mean_corruption_accuracy: Number
    mean_corruption_ci: Interval | None = Field(
        None, description="95%, over samples (each sample's share of corrupted versions it survives)"
    )
    relative_drop: Number | None = Field(None, description="(clean - mean corruption accuracy) / clean")
    corruptions: list[CorruptionRow]
    examples: CorruptionExamples | None = None
    time_s: Number | None = None

    def check_numbers(self, check: Any, path: str) -> None:
        check.rates(self, path, "clean_accuracy", "mean_corruption_accuracy")
        if any(s not in (1, 2, 3, 4, 5) for s in self.severities) or not self.severities:
            check.bad(f"{path}.severities", f"severities {self.severities} are not values from 1 to 5")
        total = 0.0
        for i, row in enumerate(self.corruptions):
            where = f"{path}.corruptions[{i}]"
            if len(row.accuracy) != len(self.severities):
                check.bad(
                    f"{where}.accuracy",
                    f"{len(row.accuracy)} accuracies for {len(self.severities)} severities",
                )
            for j, a in enumerate(row.accuracy):
                check.fraction(a, f"{where}.accuracy[{j}]")
                if row.correct is not None and j < len(row.correct):
                    check.counted(self.n, row.correct[j], a, where, f"correct[{j}]")
            total += sum(float(a) for a in row.accuracy)
        cells = len(self.corruptions) * len(self.severities)
        if cells and abs(total / cells - float(self.mean_corruption_accuracy)) > 1e-6:
            check.bad(
                f"{path}.mean_corruption_accuracy",
                f"{self.mean_corruption_accuracy!r} is not the mean of the {cells} accuracies ({total / cells:.6f})",
            )
        check.interval(self.clean_ci, f"{path}.clean_ci", self.clean_accuracy)
        check.interval(self.mean_corruption_ci, f"{path}.mean_corruption_ci", self.mean_corruption_accuracy)

    def view(self) -> SectionView:
        bench = CONSTANTS.get(self.constants or "", self.constants or "?")
        levels = [str(s) for s in self.severities]
        pairs = [
            ("clean accuracy", f"{pct(self.clean_accuracy)} {ci(self.clean_ci)}".strip()),
            (
                "mean corruption accuracy",
                f"{pct(self.mean_corruption_accuracy)} {ci(self.mean_corruption_ci)}".strip(),
            ),
            ("relative drop from clean", pct(self.relative_drop)),
            ("corruptions x severities", f"{len(self.corruptions)} x {len(self.severities)} on n={self.n}"),
            (
                "constants",
                bench
                + (
                    f" (pixel lengths x {self.pixel_scale:.3g})"
                    if self.pixel_scale not in (None, 1, 1.0)
                    else ""
                ),
            ),
        ]
        if self.seed is not None:
            pairs.append(("seed", str(self.seed)))
        if self.time_s is not None:
            pairs.append(("time", seconds(self.time_s)))
        rows = [
            [r.title or r.name, *(pct(a) for a in r.accuracy), pct(r.mean_accuracy)] for r in self.corruptions
        ]
        table = SectionTable(
            ["corruption", *(f"severity {s}" for s in levels), "mean"],
            rows,
            (40, *([18] * len(levels)), 18),
        )
        heatmap = SectionHeatmap(
            title="Accuracy per corruption and severity",
            rows=[r.title or r.name for r in self.corruptions],
            columns=levels,
            values=[[float(a) for a in r.accuracy] for r in self.corruptions],
            value_label="accuracy",
            row_label="corruption",
            column_label="severity",
            lo=0.0,
            hi=1.0,
            caption=f"Accuracy of each corruption at each severity; clean accuracy {pct(self.clean_accuracy)}.",
        )
        figures: list[Any] = [heatmap]
        if self.examples is not None and self.examples.images:
            ex = self.examples
            preds = ex.predictions or [None] * len(ex.names)
            titles = {r.name: r.title or r.name for r in self.corruptions}
            captions = [
                f"{titles.get(name, name)}: {'?' if p is None else p}" for name, p in zip(ex.names, preds)
            ]
            figures.append(
                SectionImages(
                    title=f"One sample (label {ex.label}) under each corruption at severity {ex.severity}",
                    images=list(ex.images),
                    captions=captions,
                    caption="Each caption gives the model's prediction.",
                )
            )
        notes = [
            SectionNote(
                "Mean corruption accuracy is the mean of the accuracies over every corruption and severity "
                "(RobustBench's CIFAR-10-C metric); its interval is taken over samples. "
                f"Constants: {bench} ({'images up to 32x32' if self.constants == 'cifar10-c' else 'images above 32x32'}).",
                "caption",
            )
        ]
        if any(r.name == "frost" for r in self.corruptions):
            notes.append(
                SectionNote(
                    "Frost uses procedurally generated ice textures, not the benchmark's photographs: its "
                    "numbers are not comparable with published CIFAR-10-C or ImageNet-C frost results.",
                    "caption",
                )
            )
        if self.n < 100:
            notes.append(SectionNote(f"Only {self.n} samples: the accuracies are rough (see the interval)."))
        return SectionView(
            title=self.title,
            label="Corruptions",
            summary=f"mean corruption accuracy {pct(self.mean_corruption_accuracy)} "
            f"(clean {pct(self.clean_accuracy)}, relative drop {pct(self.relative_drop)}) over "
            f"{len(self.corruptions)} corruptions x {len(self.severities)} severities.",
            pairs=pairs,
            table=table,
            notes=notes,
            figures=figures,
        )
