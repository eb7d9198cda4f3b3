"""What an attack's optimisation loop reports about itself: the raw counts behind the indicators
of attack failure (Pintor, Demetrio, Sotgiu, Melis, Demontis & Biggio, NeurIPS 2022).

An attack that climbs a loss (APGD and the attacks built on it, PGD) reports each of its runs (a
restart, a target class) to ``ctx.trace``: per sample the loss at the run's starting point, the
best loss when the last tenth of the steps began and the best loss at the end. Per sample the
runs are combined, and when the batch ends the base class takes the counts over the samples the
attack failed on (the only ones an indicator can explain):

- ``silent_loss``: no run ever raised the loss above its starting value. The attack got no
  signal (zero, saturated or masked gradients), so its failure says nothing about robustness.
- ``incomplete_optimisation``: in the run that reached the highest loss, the last tenth of the
  steps still added more than ``INCOMPLETE_GAIN`` of the run's whole gain: the loss was still
  rising when the budget ran out.
- ``non_converging_restarts``: with two or more restarts, the samples the last restart attacked
  (measured) and broke (fired): restarts that still find new examples have not converged.

Nothing here synchronises with the device inside an attack's step loop: a run is reported once
it is over, and counts are read once per batch. Adversarial training (``perturb_batch``) keeps no
trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SILENT_LOSS = "silent_loss"
INCOMPLETE_OPTIMISATION = "incomplete_optimisation"
NON_CONVERGING_RESTARTS = "non_converging_restarts"
TRACED = (SILENT_LOSS, INCOMPLETE_OPTIMISATION, NON_CONVERGING_RESTARTS)

LATE_SHARE = 0.1  # the late window: the last tenth of a run's steps
INCOMPLETE_GAIN = 0.05  # a late window adding more than this share of the gain: still rising
# Loss changes below this (relative to the loss, at least 1) are float noise, not progress.
FLAT = 1e-6

# member -> indicator -> [n_measured, n_fired]
Counts = dict[str, dict[str, list[int]]]


def late_step(steps: int) -> int:
    """The step count after which a run of ``steps`` steps is in its late window (0: from the start)."""
    return steps - max(1, math.ceil(steps * LATE_SHARE))


def merge_counts(total: Counts, part: Counts) -> Counts:
    """``total`` plus ``part``, member by member and indicator by indicator (``total`` is updated)."""
    for member, indicators in part.items():
        mine = total.setdefault(member, {})
        for name, (measured, fired) in indicators.items():
            old = mine.get(name, [0, 0])
            mine[name] = [old[0] + int(measured), old[1] + int(fired)]
    return total


@dataclass
class _CallLog:
    """Per sample of one ``perturb`` call of one attack, its runs combined (on the device)."""

    found: torch.Tensor  # the call's own success accumulator, read when the batch ends
    ran: torch.Tensor
    silent: torch.Tensor
    best: torch.Tensor
    incomplete: torch.Tensor
    restart_measured: torch.Tensor
    restart_fired: torch.Tensor
    restarts: bool = False


class OptimisationTrace:
    """The runs the attacks of one batch reported, grouped by attack and ``perturb`` call.

    A call is known by its success accumulator ``found`` (one boolean per sample of the call's
    batch, shared by all its restarts and targets, final when the call returns); the trace holds
    a reference to it until :meth:`take`.
    """

    def __init__(self) -> None:
        self._calls: dict[tuple[str, int], _CallLog] = {}

    def _log(self, attack: str, found: torch.Tensor) -> _CallLog:
        key = (attack, id(found))
        if key not in self._calls:
            n, dev = found.shape[0], found.device
            self._calls[key] = _CallLog(
                found=found,
                ran=torch.zeros(n, dtype=torch.bool, device=dev),
                silent=torch.ones(n, dtype=torch.bool, device=dev),
                best=torch.full((n,), float("-inf"), device=dev),
                incomplete=torch.zeros(n, dtype=torch.bool, device=dev),
                restart_measured=torch.zeros((), dtype=torch.long, device=dev),
                restart_fired=torch.zeros((), dtype=torch.long, device=dev),
            )
        return self._calls[key]

    def run(
        self,
        attack: str,
        found: torch.Tensor,
        positions: torch.Tensor,
        f_start: torch.Tensor,
        f_late: torch.Tensor,
        f_best: torch.Tensor,
    ) -> None:
        """One finished run of ``attack`` on the samples ``positions`` of the call whose success
        accumulator is ``found``: per sample its starting loss, its best loss when the late window
        began (:func:`late_step`) and its best loss at the end (for a sample the run broke, at
        the moment it broke: it is not measured)."""
        log = self._log(attack, found)
        gain = f_best - f_start
        noise = FLAT * f_start.abs().clamp_min(1.0)
        late_gain = f_best - f_late
        log.ran[positions] = True
        log.silent[positions] = log.silent[positions] & (gain <= noise)
        still_rising = (late_gain > INCOMPLETE_GAIN * gain) & (late_gain > noise)
        better = f_best > log.best[positions]
        log.incomplete[positions] = torch.where(better, still_rising, log.incomplete[positions])
        log.best[positions] = torch.maximum(f_best, log.best[positions])

    def last_restart(self, attack: str, found: torch.Tensor, attacked: int, broken: torch.Tensor) -> None:
        """The last of two or more restarts attacked ``attacked`` samples and broke ``broken`` (a count)."""
        log = self._log(attack, found)
        log.restarts = True
        log.restart_measured += attacked
        log.restart_fired += broken.to(torch.long)

    def take(self) -> Counts:
        """The counts of every call reported so far, over the samples each attack failed on; the
        trace is then empty."""
        out: Counts = {}
        for (attack, _), log in self._calls.items():
            failed = log.ran & ~log.found.to(log.ran.device)
            measured = int(failed.sum())
            part = {
                SILENT_LOSS: [measured, int((log.silent & failed).sum())],
                INCOMPLETE_OPTIMISATION: [measured, int((log.incomplete & failed).sum())],
            }
            if log.restarts:
                part[NON_CONVERGING_RESTARTS] = [int(log.restart_measured), int(log.restart_fired)]
            merge_counts(out, {attack: part})
        self._calls.clear()
        return out
