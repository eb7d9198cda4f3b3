"""The ``certify`` section: randomized smoothing's certified accuracy bracketed by an attack.

Written by the audit's certify section (:mod:`robustness.audit.sections.certify`) for an l2
audit: at each eps, the smoothed classifier's certified accuracy at radius eps (a lower bound on
its robust accuracy) beside its accuracy under an attack with expectation over the noise (an
upper bound), and the samples certified yet broken, which only Monte Carlo error may explain.
"""

from __future__ import annotations

import math

from pydantic import Field

from robustness.core.formatting import num, pct, seconds
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

TOLERANCE = 1e-9


class CurvePoint(Record):
    """Certified accuracy at one radius."""

    radius: Number
    certified_accuracy: Number


class BracketRow(Record):
    """One eps of the audit: the certified (lower) and empirical (upper) robust accuracy."""

    eps: Number
    certified_accuracy: Number
    certified_ci: Interval | None = None
    n_certified: Count | None = None
    empirical_accuracy: Number
    empirical_ci: Interval | None = None
    n_robust: Count | None = None
    contradictions: Count | None = Field(None, description="samples certified at eps that the attack broke")
    contradictions_expected: Number | None = Field(None, description="expected from Monte Carlo error")
    contradictions_allowed: Count | None = Field(None, description="its 99.9% Poisson quantile")


@section("certify")
class CertifyResult(SectionResult):
    """Randomized smoothing: certified accuracy (lower bound) and attacked accuracy (upper bound)."""

    title = "Certified robustness (randomized smoothing)"

    sigma: Number
    n0: Count
    n: Count
    alpha: Number
    n_samples: Count | None = None
    seed: int | None = None
    batch_size: Count | None = None
    max_radius: Number | None = Field(
        None, description="sigma * Phi^-1(alpha^(1/n)): the most n draws certify"
    )
    smoothed_accuracy: Number | None = Field(None, description="certified for the right class at any radius")
    abstain_rate: Number | None = None
    vote_accuracy: Number | None = Field(
        None, description="accuracy of the smoothed classifier's vote, no attack"
    )
    curve: list[CurvePoint] | None = None
    rows: list[BracketRow] | None = None
    attack: dict | None = None
    bracket_holds: Flag | None = None
    certify_s: Number | None = None
    attack_s: Number | None = None
    time_s: Number | None = None

    def check_numbers(self, check, path: str) -> None:
        check.rates(self, path, "smoothed_accuracy", "abstain_rate", "vote_accuracy")
        if not (0 < float(self.alpha) < 1):
            check.bad(f"{path}.alpha", f"alpha {self.alpha!r} is not in (0, 1)")
        if not (math.isfinite(float(self.sigma)) and self.sigma > 0):
            check.bad(f"{path}.sigma", f"sigma {self.sigma!r} is not a positive number")
        if self.n < 1 or self.n0 < 1:
            check.bad(f"{path}.n", f"n0={self.n0}, n={self.n}: CERTIFY draws at least one sample each")
        for name in ("certify_s", "attack_s", "time_s"):
            check.not_negative(getattr(self, name), f"{path}.{name}")
        top = self.max_radius
        previous = None
        for i, point in enumerate(self.curve or []):
            where = f"{path}.curve[{i}]"
            check.fraction(point.certified_accuracy, f"{where}.certified_accuracy")
            if top is not None and point.radius > top + TOLERANCE and point.certified_accuracy > 0:
                check.bad(where, f"accuracy certified at radius {point.radius!r}, beyond the largest {top!r}")
            if previous is not None and point.certified_accuracy > previous + TOLERANCE:
                check.bad(where, "certified accuracy rises with the radius")
            previous = point.certified_accuracy
        for i, row in enumerate(self.rows or []):
            where = f"{path}.rows[{i}]"
            check.rates(row, where, "certified_accuracy", "empirical_accuracy")
            check.interval(row.certified_ci, f"{where}.certified_ci", row.certified_accuracy)
            check.interval(row.empirical_ci, f"{where}.empirical_ci", row.empirical_accuracy)
            if top is not None and row.eps > top + TOLERANCE and row.certified_accuracy > 0:
                check.bad(where, f"accuracy certified at eps {row.eps!r}, beyond the largest radius {top!r}")

    def _worst_row(self) -> BracketRow | None:
        broken = [r for r in self.rows or [] if (r.contradictions or 0) > (r.contradictions_allowed or 0)]
        return broken[0] if broken else None

    def view(self) -> SectionView:
        rows = self.rows or []
        pairs = [
            ("noise sigma", num(self.sigma)),
            ("draws n0 / n, alpha", f"{self.n0} / {self.n}, {num(self.alpha)}"),
            ("samples certified", "?" if self.n_samples is None else str(self.n_samples)),
            ("largest certifiable radius", num(self.max_radius)),
            ("smoothed classifier: certified correct at radius 0", pct(self.smoothed_accuracy)),
            ("abstained", pct(self.abstain_rate)),
        ]
        attack = self.attack or {}
        if attack:
            draws = (attack.get("noise_samples") or 0) * (attack.get("eot_samples") or 0)
            pairs.append(
                (
                    "attack on the smoothed classifier",
                    f"{attack.get('attack', '?')} {attack.get('attack_params') or {}} with EOT, {draws} noise draws "
                    f"per step, {attack.get('restarts', '?')} restart(s), judged by {attack.get('votes', '?')}-draw votes",
                )
            )
        if self.time_s is not None:
            pairs.append(
                (
                    "time",
                    f"{seconds(self.time_s)} (certify {seconds(self.certify_s)}, attack {seconds(self.attack_s)})",
                )
            )
        table = None
        if rows:
            table = SectionTable(
                ["eps (l2)", "certified (lower bound)", "attacked (upper bound)", "certified but broken"],
                [
                    [
                        num(r.eps),
                        f"{pct(r.certified_accuracy)} [{_ci(r.certified_ci)}]",
                        f"{pct(r.empirical_accuracy)} [{_ci(r.empirical_ci)}]",
                        f"{'?' if r.contradictions is None else r.contradictions}"
                        + (
                            ""
                            if r.contradictions_allowed is None
                            else f" (MC allows {r.contradictions_allowed})"
                        ),
                    ]
                    for r in rows
                ],
                (20, 40, 40, 34),
            )
        figures = []
        if self.curve:
            series = [
                CurveSeries(
                    "certified (lower bound)",
                    [p.radius for p in self.curve],
                    [p.certified_accuracy for p in self.curve],
                )
            ]
            if rows:
                series.append(
                    CurveSeries(
                        "attacked, EOT (upper bound)",
                        [r.eps for r in rows],
                        [r.empirical_accuracy for r in rows],
                        style="points",
                    )
                )
            figures.append(
                SectionCurve(
                    title=f"Smoothed classifier, sigma = {self.sigma:g}",
                    x_label="l2 radius",
                    y_label="accuracy",
                    series=series,
                    caption="The smoothed classifier's robust accuracy lies between the certified curve and "
                    "the attacked points (their 95% intervals are in the table).",
                )
            )
        bad = self._worst_row()
        notes = [
            SectionNote(
                "Randomized smoothing (Cohen, Rosenfeld & Kolter 2019) classifies by the vote of the base model over "
                f"Gaussian noise of sigma {num(self.sigma)}. A sample counts as certified at radius r when CERTIFY "
                f"({self.n0} draws pick the class, {self.n} more bound its probability from below at alpha "
                f"{num(self.alpha)}) returns its label with a radius of at least r; abstentions count as wrong. "
                "Certified accuracy is a lower bound on the smoothed classifier's robust accuracy (each certificate "
                "holds with probability 1 - alpha); the attacked accuracy, from an attack through the averaged noise "
                "judged by the classifier's own vote, is an upper bound. The certificates describe the smoothed "
                "classifier, not the base model the main table attacks, and no radius above the largest "
                f"certifiable one ({num(self.max_radius)}) can be certified with {self.n} draws."
            )
        ]
        if bad is not None:
            notes.append(
                SectionNote(
                    f"At eps {num(bad.eps)} the attack broke {bad.contradictions} certified samples where Monte Carlo "
                    f"error explains at most {bad.contradictions_allowed}: the certificates or the attack are wrong; "
                    "do not trust these numbers."
                )
            )
        summary = (
            "; ".join(
                f"eps {num(r.eps)}: certified {pct(r.certified_accuracy)} <= robust <= {pct(r.empirical_accuracy)}"
                for r in rows
            )
            or f"smoothed accuracy {pct(self.smoothed_accuracy)}"
        )
        if bad is not None:
            summary += " (INCONSISTENT: certified samples broken beyond Monte Carlo error)"
        return SectionView(
            title=self.title,
            label=f"Certified (sigma {self.sigma:g})",
            summary=summary + ".",
            pairs=pairs,
            table=table,
            notes=notes,
            figures=figures,
        )


def _ci(ci: list[float] | None) -> str:
    if not ci:
        return "n/a"
    return f"{pct(ci[0])}, {pct(ci[1])}"
