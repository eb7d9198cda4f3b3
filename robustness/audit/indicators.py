"""Indicators of attack failure (Pintor, Demetrio, Sotgiu, Melis, Demontis & Biggio, NeurIPS 2022):
per attack of the run, the signs that its failures are the attack's, not the model's robustness.

They cost no extra attack: three are read off the attacks' own loss trajectories
(:mod:`attacks.trace`; APGD, the attacks built on it, PGD) over the samples each attack failed
on, and one, unreachable misclassification, off the very-large-eps runs of the sanity check (c).
This module is their catalogue (what each means and when it fires) and the :class:`IndicatorBook`
the runner fills while the audit runs; the records it gives are the ``indicators`` of each attack
in results.json, and the check ``attack_failure`` judges them.

An indicator *fires* on an attack at one eps when it holds for more than its share of the
samples it was measured on (and, for the trajectory indicators, for more than two samples: a
stray sample or two is no evidence). Silent success, the paper's first indicator, cannot happen here:
every attack keeps its first adversarial iterate and the base class re-predicts every example.
Transfer failure is not measured (the transfer attack keeps no record of the surrogate's verdict).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from attacks.trace import INCOMPLETE_OPTIMISATION, NON_CONVERGING_RESTARTS, SILENT_LOSS, Counts

UNREACHABLE = "unreachable_misclassification"


@dataclass(frozen=True)
class Indicator:
    """One indicator: its title and explanation for the reports, and when it fires."""

    name: str
    title: str
    explanation: str
    share: float  # fires above this share of the samples measured ...
    at_least: int = 2  # ... and above this many samples (two stray samples are no evidence)

    def limit(self, n_measured: int, share: float | None = None) -> int:
        """The most samples it may hold for without firing."""
        share = self.share if share is None else share
        return max(self.at_least, math.floor(share * n_measured + 1e-9))

    def fires(self, n_measured: int, n_fired: int, share: float | None = None) -> bool:
        return n_measured > 0 and n_fired > self.limit(n_measured, share)


INDICATORS: dict[str, Indicator] = {
    SILENT_LOSS: Indicator(
        SILENT_LOSS,
        "Silent loss",
        "The attack's loss never rose above its starting value on the samples it failed on: it got no "
        "signal from the model (zero, saturated or masked gradients), so those failures say nothing "
        "about robustness.",
        share=0.05,
    ),
    INCOMPLETE_OPTIMISATION: Indicator(
        INCOMPLETE_OPTIMISATION,
        "Incomplete optimisation",
        "On the samples it failed on, the attack's best loss was still rising in the last tenth of its "
        "steps (more than 5% of its whole gain came there): a longer run would likely break more.",
        share=0.1,
    ),
    NON_CONVERGING_RESTARTS: Indicator(
        NON_CONVERGING_RESTARTS,
        "Non-converging restarts",
        "The last of the attack's random restarts still broke samples the earlier ones had not: the "
        "outcome depends on the starting point, and more restarts would likely break more.",
        share=0.05,
    ),
    UNREACHABLE: Indicator(
        UNREACHABLE,
        "Unreachable misclassification",
        "At a very large eps (sanity check (c)), the attack left samples correctly classified: an "
        "unbounded adversary should always win, so the attack is not reaching the model.",
        share=0.02,  # the check's own limit (sanity_checks.large_eps_max_accuracy) is passed in
        at_least=0,
    ),
}
TRAJECTORY = (SILENT_LOSS, INCOMPLETE_OPTIMISATION, NON_CONVERGING_RESTARTS)


@dataclass
class _Entry:
    """One indicator of one attack (or member) at one eps."""

    eps: float
    n_measured: int
    n_fired: int
    fired: bool


# Who reported: an attack label of the run and, inside a composition, the member (None: the attack).
Reporter = tuple[str, str | None]


class IndicatorBook:
    """Per attack of the run (and member of a composition), in run order: each indicator's counts
    at each eps."""

    def __init__(self) -> None:
        self._book: dict[Reporter, dict[str, list[_Entry]]] = {}
        # A member's place in its composition's run order (0 for an attack on its own).
        self._place: dict[Reporter, int] = {}

    def add(self, label: str, eps: float, counts: Counts, attack: str, members: tuple[str, ...] = ()) -> None:
        """An attack stage's trajectory counts (member -> indicator -> [measured, fired]), members
        in run order (``members``; others after them); a member named ``attack`` is the attack itself."""
        order = {m: k for k, m in enumerate(members)}
        for member in sorted(counts, key=lambda m: (order.get(m, len(order)), m)):
            for name, (measured, fired) in sorted(counts[member].items()):
                indicator = INDICATORS.get(name)
                if indicator is not None:
                    who = (label, None if member == attack else member)
                    self._place[who] = order.get(member, len(order))
                    self._entry(who, name, eps, measured, fired, indicator.fires(measured, fired))

    def add_unreachable(
        self, label: str, eps: float, n_attacked: int, n_left: int, max_accuracy: float
    ) -> None:
        """What the attack ``label`` left correctly classified at the large eps of check (c)."""
        fired = INDICATORS[UNREACHABLE].fires(n_attacked, n_left, max_accuracy)
        self._entry((label, None), UNREACHABLE, eps, n_attacked, n_left, fired)

    def _entry(self, who: Reporter, name: str, eps: float, measured: int, fired: int, fires: bool) -> None:
        rows = self._book.setdefault(who, {}).setdefault(name, [])
        rows.append(_Entry(float(eps), int(measured), int(fired), bool(fires)))

    def records(self, label: str) -> list[dict[str, Any]]:
        """The ``indicators`` of the attack ``label`` in results.json: member by member in run
        order, each in catalogue order."""
        out = []
        mine = sorted((who for who in self._book if who[0] == label), key=lambda who: self._place.get(who, 0))
        for who in mine:
            member, per_name = who[1], self._book[who]
            for name in (n for n in INDICATORS if n in per_name):
                rows = per_name[name]
                indicator = INDICATORS[name]
                out.append(
                    {
                        "name": name,
                        "title": indicator.title,
                        "explanation": indicator.explanation,
                        "member": member,
                        "n_measured": sum(r.n_measured for r in rows),
                        "n_fired": sum(r.n_fired for r in rows),
                        "fired": any(r.fired for r in rows),
                        "per_eps": [
                            {"eps": r.eps, "n_measured": r.n_measured, "n_fired": r.n_fired, "fired": r.fired}
                            for r in rows
                        ],
                    }
                )
        return out

    def judged(self, labels: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        """The trajectory indicators that fired, split into ``(uncovered, covered, n_reporters)``.

        Attacks run in order on what the earlier ones left, so every sample an attack failed on was
        attacked again by each later one. A fired indicator is *covered* when a later attack (or
        member) at the same eps reported and none of its trajectory indicators fired there: the
        samples still standing were also attacked by an optimisation that shows no sign of failure.
        Each entry: attack, member, indicator name and title, eps, counts and ``covered_by``.
        ``n_reporters``: the attacks and members with a trajectory measured on some sample.
        """
        rank = {label: k for k, label in enumerate(labels)}
        reporters = sorted(
            (who for who in self._book if who[0] in rank and any(n in self._book[who] for n in TRAJECTORY)),
            key=lambda who: (rank[who[0]], self._place.get(who, 0)),
        )
        uncovered, covered = [], []
        n_reporters = 0
        for k, who in enumerate(reporters):
            n_reporters += any(r.n_measured for n in TRAJECTORY for r in self._book[who].get(n, []))
            for name in TRAJECTORY:
                for entry in self._book[who].get(name, []):
                    if not entry.fired:
                        continue
                    by = next(
                        (later for later in reporters[k + 1 :] if self._quiet_at(later, entry.eps)), None
                    )
                    item = {
                        "attack": who[0],
                        "member": who[1],
                        "name": name,
                        "title": INDICATORS[name].title,
                        "eps": entry.eps,
                        "n_measured": entry.n_measured,
                        "n_fired": entry.n_fired,
                        "covered_by": None if by is None else by[0] + (f" ({by[1]})" if by[1] else ""),
                    }
                    (uncovered if by is None else covered).append(item)
        return uncovered, covered, n_reporters

    def _quiet_at(self, who: Reporter, eps: float) -> bool:
        """It reported at ``eps`` and none of its trajectory indicators fired there (measured on no
        sample: it broke every sample it attacked)."""
        rows = [r for n in TRAJECTORY for r in self._book[who].get(n, []) if r.eps == eps]
        return bool(rows) and not any(r.fired for r in rows)
