"""The ``watermark`` section: the ownership test of the audited model and the survival table.

Written by the audit's watermark section (:func:`robustness.watermark.survival.watermark_section`)
when the config names a key.
"""

from __future__ import annotations

from pydantic import Field

from robustness.core.formatting import num, pct
from robustness.core.schema import (
    Count,
    Flag,
    Interval,
    Number,
    Record,
    SectionNote,
    SectionResult,
    SectionTable,
    SectionView,
    section,
)


class WatermarkReference(Record):
    """An independently trained, unmarked model the null hypothesis was calibrated on."""

    model: str | None = None
    k: Count | None = None
    upper: Number | None = None
    p0: Number | None = None
    p_value: Number | None = None
    verified: Flag | None = None


class Surrogate(Record):
    """A copy of the model after one removal attempt, tested again."""

    name: str | None = None
    clean_accuracy: Number | None = None
    accuracy_drop: Number | None = None
    agreement: Number | None = Field(None, description="share of predictions equal to the model's")
    k: Count | None = None
    K: Count | None = None
    p0: Number | None = None
    p_value: Number | None = None
    verified: Flag | None = None
    survived: Flag | None = None
    removed: Flag | None = Field(None, description="lost within the allowed accuracy cost")
    params: dict | None = None
    time_s: Number | None = None

    def mark(self) -> str:
        """Survived / removed; a mark lost only by wrecking the model does not count as removed
        (Lukas et al. 2022 count a removal only within a small accuracy cost)."""
        if self.verified:
            return "survived"
        if self.removed is False:
            return "lost, model damaged"
        return "removed"


@section("watermark")
class WatermarkResult(SectionResult):
    """Watermark ownership test and survival table."""

    title = "Watermark verification and survival"

    scheme: str | None = None
    key_sha256: str | None = None
    k: Count | None = Field(None, description="trigger inputs classified as the key says")
    K: Count | None = Field(None, description="trigger inputs in the key")
    p0: Number | None = Field(None, description="match rate of an unmarked model (the null)")
    p0_method: str | None = None
    p_value: Number | None = None
    match_rate_ci: Interval | None = None
    alpha: Number | None = None
    verified: Flag | None = None
    false_positive_rate: Number | None = Field(None, description="on the reference models")
    references: list[WatermarkReference] | None = None
    clean_accuracy: Number | None = None
    eval_n: Count | None = None
    attack_data: str | None = None
    removal_max_accuracy_drop: Number | None = None
    surrogates: list[Surrogate] | None = None

    def check_numbers(self, check, path: str) -> None:
        check.rates(self, path, "p0", "p_value", "alpha", "false_positive_rate", "removal_max_accuracy_drop")
        if self.k is not None and self.K is not None and self.k > self.K:
            check.bad(f"{path}.k", f"{self.k} trigger matches out of {self.K} triggers")
        for i, s in enumerate(self.surrogates or []):
            check.rates(s, f"{path}.surrogates[{i}]", "clean_accuracy", "agreement", "p_value")

    def view(self) -> SectionView:
        k = "?" if self.k is None else str(self.k)
        big_k = "?" if self.K is None else str(self.K)
        pairs = [
            ("trigger matches", f"{k}/{big_k}"),
            ("null match rate p0", num(self.p0) + (f" ({self.p0_method})" if self.p0_method else "")),
            ("p-value", num(self.p_value)),
            ("alpha", num(self.alpha)),
            ("ownership verified", "yes" if self.verified else "no"),
        ]
        if self.false_positive_rate is not None:
            pairs.append(("false-positive rate on reference models", pct(self.false_positive_rate)))
        if self.key_sha256:
            pairs.append(("key SHA-256", self.key_sha256))
        table, notes = None, []
        if self.surrogates:
            rows = []
            for s in self.surrogates:
                of = s.K or self.K
                rows.append(
                    [
                        "?" if s.name is None else s.name,
                        pct(s.clean_accuracy),
                        pct(s.agreement),
                        ("?" if s.k is None else str(s.k)) + (f"/{of}" if of else ""),
                        num(s.p_value),
                        s.mark(),
                    ]
                )
            table = SectionTable(
                ["surrogate", "clean accuracy", "agreement", "k", "p-value", "mark"],
                rows,
                (46, 26, 24, 20, 26, 36),
            )
            drop = self.removal_max_accuracy_drop
            notes.append(
                SectionNote(
                    "A surrogate is a copy of the model after a removal attempt (fine-tuning, pruning, quantization, "
                    "extraction). 'survived' means the watermark still verifies on it at the same alpha; 'removed' "
                    "means it does not"
                    + (
                        f" while the copy lost at most {pct(drop, 0)} of clean accuracy"
                        if drop is not None
                        else ""
                    )
                    + ".",
                    "caption",
                )
            )
        else:
            notes.append(SectionNote("No removal attacks were tested, so survival is unknown."))
        return SectionView(
            title=self.title,
            label="Watermark",
            summary=f"{k}/{big_k} trigger matches, p-value {num(self.p_value)}, "
            f"{'verified' if self.verified else 'NOT verified'}.",
            pairs=pairs,
            table=table,
            notes=notes,
        )
