"""The ``privacy`` section: membership inference against the audited model.

Written by the audit's privacy section (:mod:`robustness.audit.sections.privacy`) and, one attack
at a time, by ``robustness privacy --json`` (a :class:`MembershipAttackResult`).
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


class OperatingPointRecord(Record):
    """The TPR at one FPR, with exact intervals and its law when nothing leaks."""

    fpr: Number
    fpr_achieved: Number | None = None
    fpr_ci: Interval | None = None
    fp: Count | None = None
    tp: Count | None = None
    tpr: Number
    tpr_ci: Interval | None = None
    tpr_null_ci: Interval | None = Field(None, description="95% range of the TPR when nothing leaks")
    p_value: Number | None = Field(None, description="one-sided, against no leakage")
    threshold: Number | None = None
    resolved: Flag | None = Field(
        None, description="false: fewer than 1/fpr non-members; measured at the first false positive"
    )


class ClassLeak(Record):
    label: Count
    n_members: Count | None = None
    n_non_members: Count | None = None
    auc: Number | None = None
    tpr: Number | None = None
    tpr_ci: Interval | None = None
    fpr: Number | None = None


class ExposedSample(Record):
    id: str
    label: Count | None = None
    score: Number | None = None
    flagged_at_fpr: Number | None = None


class MembershipAttackResult(Record):
    """One membership attack's scores, judged as the field reports them."""

    attack: str
    title: str | None = None
    params: dict | None = None
    n_members: Count
    n_non_members: Count
    auc: Number
    auc_null_sd: Number | None = None
    auc_p_value: Number | None = None
    leak_p_value: Number | None = None
    advantage: Number | None = Field(None, description="max over thresholds of TPR - FPR (Yeom et al.)")
    tpr_at_fpr: dict[str, Number] = Field(description="FPR -> TPR")
    tpr_at_fpr_ci: dict[str, Interval] | None = None
    operating_points: list[OperatingPointRecord] | None = None
    roc: dict[str, list[Number]] | None = Field(None, description="fpr, tpr: the curve, thinned for log axes")
    leak_detected: Flag | None = None
    per_class_fpr: Number | None = None
    per_class: list[ClassLeak] | None = None
    most_exposed: list[ExposedSample] | None = None
    time_s: Number | None = None

    def check_numbers(self, check, path: str) -> None:  # noqa: ANN001 - plausibility.Checker
        check.rates(self, path, "auc", "auc_p_value", "leak_p_value", "advantage")
        for key, tpr in self.tpr_at_fpr.items():
            check.fraction(tpr, f"{path}.tpr_at_fpr.{key}")
            check.interval((self.tpr_at_fpr_ci or {}).get(key), f"{path}.tpr_at_fpr_ci.{key}", tpr)
        for i, p in enumerate(self.operating_points or []):
            where = f"{path}.operating_points[{i}]"
            check.fraction(p.fpr, f"{where}.fpr")
            check.interval(p.tpr_ci, f"{where}.tpr_ci", p.tpr)
            check.interval(p.fpr_ci, f"{where}.fpr_ci", p.fpr_achieved)
            check.counted(self.n_members, p.tp, None, where, "tp")
            check.counted(self.n_non_members, p.fp, None, where, "fp")
            if p.tp is not None and self.n_members and abs(p.tpr - p.tp / self.n_members) > 1e-9:
                check.bad(f"{where}.tpr", f"tpr {p.tpr!r} is not tp/n_members = {p.tp}/{self.n_members}")
        for i, c in enumerate(self.per_class or []):
            check.rates(c, f"{path}.per_class[{i}]", "auc", "tpr", "fpr")


@section("privacy")
class PrivacyResult(SectionResult):
    """Membership inference: does the model reveal who was in its training set?"""

    title = "Privacy: membership inference"

    members: str | None = Field(None, description="spec of the audited members")
    non_members: str | None = None
    n_members: Count | None = None
    n_non_members: Count | None = None
    accuracy: dict[str, Number] | None = Field(
        None, description="the model's accuracy on members / non-members"
    )
    references: dict | None = Field(
        None, description="the reference models: given specs or the training recipe"
    )
    fprs: list[Number] | None = None
    attacks: list[MembershipAttackResult] = Field(default_factory=list)
    strongest: str | None = Field(
        None, description="the attack with the highest TPR at the lowest FPR the non-members resolve"
    )
    leak_detected: Flag | None = None
    time_s: Number | None = None

    def check_numbers(self, check, path: str) -> None:  # noqa: ANN001 - plausibility.Checker
        for name, value in (self.accuracy or {}).items():
            check.fraction(value, f"{path}.accuracy.{name}")
        for i, a in enumerate(self.attacks):
            a.check_numbers(check, f"{path}.attacks[{i}]")

    def strongest_attack(self) -> MembershipAttackResult | None:
        return next(
            (a for a in self.attacks if a.attack == self.strongest), self.attacks[0] if self.attacks else None
        )

    def _leak_text(self, short: bool = False) -> str:
        """Which attacks show a leak, and the strongest evidence (the smallest adjusted p-value)."""
        found = [a.attack for a in self.attacks if a.leak_detected]
        ps = [a.leak_p_value for a in self.attacks if a.leak_p_value is not None]
        text = f"detected by {', '.join(found)}" if found else "not shown by any attack"
        return text if short or not ps else f"{text} (smallest adjusted p-value {num(min(ps))})"

    def view(self) -> SectionView:
        top = self.strongest_attack()
        keys = [f"{float(f):g}" for f in (self.fprs or [0.01, 0.001, 0.0])]
        pairs = [
            ("members", f"{self.members or '?'} (n={self.n_members})"),
            ("non-members", f"{self.non_members or '?'} (n={self.n_non_members})"),
        ]
        if self.accuracy:
            gap = self.accuracy.get("members", 0.0) - self.accuracy.get("non_members", 0.0)
            pairs.append(
                (
                    "model accuracy, members / non-members",
                    f"{pct(self.accuracy.get('members'))} / {pct(self.accuracy.get('non_members'))} "
                    f"(gap {pct(gap)})",
                )
            )
        refs = self.references or {}
        if refs:
            if refs.get("source") == "trained":
                recipe = refs.get("recipe") or {}
                what = (
                    f"{refs.get('n_models')} trained ({recipe.get('method')}, {recipe.get('epochs')} epochs) on "
                    f"{refs.get('train_size')} of {refs.get('pool_size')} pool samples; pool: {refs.get('pool')}"
                )
            else:
                what = f"{refs.get('n_models')} given: {', '.join(refs.get('specs') or [])}"
            pairs.append(("reference models", what))
        if top is not None:
            pairs.append(("strongest attack", top.title or top.attack))
            pairs.append(("leak", self._leak_text()))
        rows = []
        for a in self.attacks:
            cells = [a.title or a.attack, num(a.auc), num(a.advantage)]
            for key in keys:
                tpr = a.tpr_at_fpr.get(key)
                point = next((p for p in a.operating_points or [] if f"{p.fpr:g}" == key), None)
                mark = "*" if point is not None and point.resolved is False else ""
                cells.append(f"{pct(tpr, 2)}{mark} {ci((a.tpr_at_fpr_ci or {}).get(key), 2)}")
            cells.append(num(a.leak_p_value))
            rows.append(cells)
        table = SectionTable(
            [
                "attack",
                "AUC",
                "advantage",
                *[f"TPR @ {pct(float(k), 1 if float(k) < 0.01 else 0)} FPR" for k in keys],
                "p (leak)",
            ],
            rows,
            (44, 14, 24, *([40] * len(keys)), 18),
            title="Membership inference attacks",
        )
        tables: list[SectionTable] = []
        figures = []
        notes = [SectionNote(_MEANING)]
        if any(p.resolved is False for a in self.attacks for p in a.operating_points or []):
            notes.append(
                SectionNote(
                    f"* {self.n_non_members} non-members cannot resolve that FPR (it needs at least 1/FPR of them): "
                    "the TPR is read at the first false positive instead, which can only over-state the leak. "
                    "Audit with more non-members for a tighter number.",
                    "caption",
                )
            )
        if top is not None and top.per_class:
            tables.append(
                SectionTable(
                    ["class", "members", "AUC", f"TPR @ {pct(top.per_class_fpr or 0.01, 0)} FPR", "95% CI"],
                    [
                        [str(c.label), str(c.n_members), num(c.auc), pct(c.tpr), ci(c.tpr_ci)]
                        for c in top.per_class
                    ],
                    (20, 20, 20, 30, 40),
                    title=f"Leakage per class ({top.attack})",
                )
            )
        if top is not None and top.most_exposed:
            tables.append(
                SectionTable(
                    ["sample", "class", "score", "flagged at FPR"],
                    [
                        [
                            e.id,
                            "?" if e.label is None else str(e.label),
                            num(e.score),
                            "-" if e.flagged_at_fpr is None else pct(e.flagged_at_fpr, 1),
                        ]
                        for e in top.most_exposed
                    ],
                    (50, 16, 24, 30),
                    title=f"Most exposed training samples ({top.attack})",
                )
            )
        series = [
            CurveSeries(a.title or a.attack, list(a.roc["fpr"]), list(a.roc["tpr"]))
            for a in self.attacks
            if a.roc and a.roc.get("fpr")
        ]
        if series:
            low = min(min(s.x) for s in series)
            series.append(CurveSeries("chance (no leak)", [low, 1.0], [low, 1.0], style="dashed"))
            figures.append(
                SectionCurve(
                    "Membership inference ROC (log-log)",
                    "false-positive rate",
                    "true-positive rate",
                    series,
                    log_x=True,
                    log_y=True,
                    caption="The low-FPR corner (left) is what matters: a curve above the diagonal there means "
                    "some training samples are identified with near certainty.",
                )
            )
        summary = "no attack was run"
        if top is not None:
            # The lowest FPR the non-members resolve (an unresolved one would need its caveat).
            resolved = [
                f"{p.fpr:g}" for p in top.operating_points or [] if p.fpr > 0 and p.resolved is not False
            ]
            k = min(resolved, key=float) if resolved else keys[0]
            summary = (
                f"{top.attack}: TPR {pct(top.tpr_at_fpr.get(k), 2)} at {pct(float(k), 1)} FPR "
                f"{ci((top.tpr_at_fpr_ci or {}).get(k), 2)}, AUC {num(top.auc)}; leak {self._leak_text(short=True)}."
            )
        return SectionView(
            title=self.title,
            label="Privacy",
            summary=summary,
            pairs=pairs,
            table=table,
            tables=tables,
            notes=notes,
            figures=figures,
        )


_MEANING = (
    "What this means: a membership-inference attack guesses, from the model's outputs alone, whether a "
    "sample was in its training set. The number to read is the true-positive rate at a low false-positive "
    "rate (Carlini et al. 2022): TPR 5% at 0.1% FPR means the attacker names 1 in 20 training samples while "
    "wrongly accusing only 1 in 1,000 outsiders. AUC near 0.5 alone does not mean safe. Intervals are exact "
    "95% Clopper-Pearson; 'p (leak)' tests the hypothesis that the model leaks nothing (AUC and every "
    "resolved operating point, Bonferroni-adjusted). A weak loss-threshold result does not show a model is "
    "low-risk; reference-model attacks (RMIA, LiRA) are the stronger evidence. A leak is a reason for "
    "DP-SGD (robustness harden --method dp-sgd) or less overfitting before the model sees personal data."
)
