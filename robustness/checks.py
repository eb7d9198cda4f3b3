"""Sanity checks of an evaluation (Carlini et al. 2019; Athalye, Carlini & Wagner 2018).

Each check is one function returning a :class:`CheckResult` (pass / fail / skip) with a
plain-language detail and the numbers it was judged on. The model checks (f), (g), (h)
measure the model directly; the attack checks (a)-(e) judge measurements the runner made
with real attacks (see ``robustness.audit``). A failed check means the robust accuracy
cannot be trusted, whatever the gates say; it can only be waived with a written reason.

Tolerances: a check attack may break at most ``allowed(n_tested, tolerance)`` samples
that the audit's attacks left standing, that is ``max(1, floor(tolerance * n_tested))``
(one stray sample is not evidence of a broken evaluation; more is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from robustness.config import CHECKS

ZERO_GRAD = 1e-10  # largest |d margin / d x| entry below which a gradient counts as zero
ZERO_GRAD_MAX_FRACTION = 0.1


@dataclass
class CheckResult:
    name: str
    status: str  # pass | fail | skip
    detail: str
    measured: dict[str, Any] = field(default_factory=dict)

    def as_dict(self, waiver: str | None = None) -> dict[str, Any]:
        """The results.json entry; a waiver turns the status into 'waived' and keeps the outcome."""
        status, detail = self.status, self.detail
        if waiver is not None:
            status = "waived"
            detail = f"Waived (the check itself: {self.status}). {self.detail}"
        return {
            "name": self.name,
            "title": CHECKS[self.name],
            "status": status,
            "detail": detail,
            "waiver": waiver,
            "outcome": self.status,
            "measured": self.measured,
        }


def allowed(n_tested: int, tolerance: float) -> int:
    """How many samples a check attack may break beyond the audit's attacks."""
    return max(1, math.floor(tolerance * n_tested + 1e-9)) if n_tested > 0 else 0


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({k / n:.1%})" if n else "0/0"


# ---------------------------------------------------------------------------------------
# (a) iterative attacks are not weaker than single-step ones


def iterative_beats_single_step(per_eps: list[dict[str, Any]], tolerance: float) -> CheckResult:
    """``per_eps``: {eps, n_attacked, fgsm_robust, iterative_robust, extra} per eps, where
    ``extra`` counts samples FGSM broke that every configured attack left standing."""
    name = "iterative_beats_single_step"
    rows = [r for r in per_eps if r["n_attacked"] > 0]
    if not rows:
        return CheckResult(
            name, "skip", "No sample was correctly classified and unbroken, so nothing was attacked."
        )
    if all(r.get("iterative_robust") is None for r in rows):
        return CheckResult(name, "skip", "No iterative white-box attack is configured to compare FGSM with.")
    bad = []
    parts = []
    for r in rows:
        n, lim = r["n_attacked"], allowed(r["n_attacked"], tolerance)
        parts.append(
            f"eps {r['eps']:g}: FGSM left {_pct(r['fgsm_robust'], n)} robust, the iterative attacks "
            f"{_pct(r['iterative_robust'], n)}; FGSM broke {r['extra']} that no configured attack broke"
        )
        if r["extra"] > lim or r["fgsm_robust"] < r["iterative_robust"] - lim:
            bad.append(r["eps"])
    detail = "; ".join(parts) + "."
    if bad:
        return CheckResult(
            name,
            "fail",
            "A single gradient step beat the iterative attacks at eps "
            + ", ".join(f"{e:g}" for e in bad)
            + ": the iterative attacks are not working on this model (often masked or saturated "
            "gradients), so their robust accuracy is too high. " + detail,
            {"per_eps": per_eps},
        )
    return CheckResult(name, "pass", "FGSM never beat the iterative attacks. " + detail, {"per_eps": per_eps})


# ---------------------------------------------------------------------------------------
# (b) robust accuracy does not rise with eps


def monotonic_in_eps(
    eps: list[float], accuracy: list[float], per_eps: list[dict[str, Any]], tolerance: float
) -> CheckResult:
    """``accuracy``: reported robust accuracy per eps (ascending eps). ``per_eps``: for each eps
    after the first, {eps, n_tested, n_not_broken}: samples broken at a smaller eps, attacked
    again at this eps by the attack that broke them, and how many it now failed to break."""
    name = "monotonic_in_eps"
    rising = [(eps[i], eps[i + 1]) for i in range(len(eps) - 1) if accuracy[i + 1] > accuracy[i] + 1e-12]
    measured = {"accuracy": accuracy, "per_eps": per_eps}
    if rising:
        return CheckResult(
            name,
            "fail",
            "Robust accuracy rises from eps "
            + ", ".join(f"{a:g} to {b:g}" for a, b in rising)
            + "; a larger eps can only make the adversary stronger.",
            measured,
        )
    if len(eps) < 2:
        return CheckResult(
            name, "skip", "Only one eps was evaluated; monotonicity needs two or more.", measured
        )
    tested = [r for r in per_eps if r["n_tested"] > 0]
    if not tested:
        return CheckResult(
            name,
            "pass",
            "Robust accuracy does not rise with eps; no sample was broken at a smaller eps, so no re-attack "
            "was needed.",
            measured,
        )
    bad = [r for r in tested if r["n_not_broken"] > allowed(r["n_tested"], tolerance)]
    parts = "; ".join(
        f"at eps {r['eps']:g}, {r['n_not_broken']} of {r['n_tested']} samples broken at a smaller eps "
        "resisted the same attack"
        for r in tested
    )
    if bad:
        return CheckResult(
            name,
            "fail",
            "Attacks that broke samples at a small eps failed on them at a larger eps: the attacks are "
            f"unstable (step size or gradients), so their numbers are not trustworthy. {parts}.",
            measured,
        )
    return CheckResult(
        name,
        "pass",
        "Robust accuracy does not rise with eps (an example found at a smaller eps counts at every larger "
        f"one), and re-attacking at larger eps confirms it: {parts}.",
        measured,
    )


# ---------------------------------------------------------------------------------------
# (c) at a very large eps, accuracy falls to about zero


def large_eps_breaks_all(
    eps: float, attack: str | None, n_tested: int, n_robust: int, max_accuracy: float
) -> CheckResult:
    name = "large_eps_breaks_all"
    measured = {"eps": eps, "attack": attack, "n_tested": n_tested, "n_robust": n_robust}
    if attack is None or n_tested == 0:
        return CheckResult(name, "skip", "No correctly classified sample to attack at a large eps.", measured)
    lim = max(math.floor(max_accuracy * n_tested + 1e-9), 0)
    text = (
        f"At eps {eps:g}, far beyond the evaluated radii, {attack} left {_pct(n_robust, n_tested)} of "
        "the sampled points correctly classified"
    )
    if n_robust > lim:
        return CheckResult(
            name,
            "fail",
            text
            + f" (at most {lim} allowed). An unbounded adversary should win almost always: the attack is "
            "not reaching the model (masked gradients, a non-differentiable step, or too few iterations).",
            measured,
        )
    return CheckResult(
        name, "pass", text + "; the attack works when the adversary is strong enough.", measured
    )


# ---------------------------------------------------------------------------------------
# (d) black-box and random-noise attacks do not beat the white-box attacks


def black_box_not_stronger(per_eps: list[dict[str, Any]], tolerance: float) -> CheckResult:
    """``per_eps``: {eps, n_tested, n_broken, by: {attack: n}} where ``n_tested`` counts samples the
    white-box attacks left standing that a black-box or noise attack then ran on."""
    name = "black_box_not_stronger"
    rows = [r for r in per_eps if r["n_tested"] > 0]
    if not rows:
        return CheckResult(
            name,
            "skip",
            "The white-box attacks left no sample standing, so nothing was left to test.",
            {"per_eps": per_eps},
        )
    bad = [r for r in rows if r["n_broken"] > allowed(r["n_tested"], tolerance)]
    parts = "; ".join(
        f"eps {r['eps']:g}: "
        + (", ".join(f"{a} broke {k}" for a, k in r["by"].items()) or "nothing broke")
        + f" of {r['n_tested']} samples the white-box attacks left standing"
        for r in rows
    )
    if bad:
        return CheckResult(
            name,
            "fail",
            "Gradient-free attacks broke samples the white-box attacks could not: the gradients do not "
            f"lead the white-box attacks to adversarial examples (gradient masking). {parts}.",
            {"per_eps": per_eps},
        )
    return CheckResult(
        name,
        "pass",
        f"Black-box and random-noise attacks found (almost) nothing new. {parts}.",
        {"per_eps": per_eps},
    )


# ---------------------------------------------------------------------------------------
# (e) more iterations and restarts do not lower robust accuracy materially


def more_iterations_no_gain(
    attack: str | None, per_eps: list[dict[str, Any]], tolerance: float
) -> CheckResult:
    """``per_eps``: {eps, n_tested, n_broken}: still-robust samples attacked again with twice the
    iterations and more restarts of the main gradient attack."""
    name = "more_iterations_no_gain"
    if attack is None:
        return CheckResult(name, "skip", "No iterative gradient attack is configured to strengthen.")
    rows = [r for r in per_eps if r["n_tested"] > 0]
    if not rows:
        return CheckResult(
            name,
            "skip",
            "No sample was left robust, so there was nothing to attack harder.",
            {"per_eps": per_eps},
        )
    bad = [r for r in rows if r["n_broken"] > allowed(r["n_tested"], tolerance)]
    parts = "; ".join(f"eps {r['eps']:g}: broke {_pct(r['n_broken'], r['n_tested'])}" for r in rows)
    if bad:
        return CheckResult(
            name,
            "fail",
            f"{attack} broke more still-robust samples: the attacks have not converged, so the reported "
            f"robust accuracy is too high. {parts}.",
            {"attack": attack, "per_eps": per_eps},
        )
    return CheckResult(
        name,
        "pass",
        f"{attack} on a sample of the still-robust points found (almost) nothing new: the attacks have "
        f"converged. {parts}.",
        {"attack": attack, "per_eps": per_eps},
    )


# ---------------------------------------------------------------------------------------
# (f), (g), (h): the model itself


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return other - z_y


def _input_grads(mut: Any, x: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    x = x.clone().to(mut.device).requires_grad_(True)
    logits = mut(x).float()
    yd = y.to(mut.device)
    value = (
        _margin(logits, yd)
        if loss == "margin"
        else torch.nn.functional.cross_entropy(logits, yd, reduction="none")
    )
    (g,) = torch.autograd.grad(value.sum(), x)
    return g.detach().flatten(1)


def gradients_nonzero(mut: Any, x: torch.Tensor, y: torch.Tensor, x_near: torch.Tensor) -> CheckResult:
    """Margin-loss input gradients at ``x`` and at random points ``x_near`` of the smallest ball."""
    name = "gradients_nonzero"
    with torch.enable_grad(), mut.evaluating(freeze=True):
        g_clean = _input_grads(mut, x, y, "margin")
        g_near = _input_grads(mut, x_near, y, "margin")
        g_ce = _input_grads(mut, x, y, "ce")
    n = int(x.shape[0])
    nonfinite = int((~torch.isfinite(g_clean).all(1)).sum() + (~torch.isfinite(g_near).all(1)).sum())
    zero_clean = int((g_clean.abs().amax(1) < ZERO_GRAD).sum())
    zero_near = int((g_near.abs().amax(1) < ZERO_GRAD).sum())
    zero_ce = int((g_ce.abs().amax(1) < ZERO_GRAD).sum())
    measured = {
        "n": n,
        "nonfinite": nonfinite,
        "zero_at_clean": zero_clean,
        "zero_near_clean": zero_near,
        "zero_cross_entropy": zero_ce,
        "median_grad_l1": float(g_clean.abs().sum(1).median()) if n else 0.0,
    }
    text = (
        f"Of {n} sampled inputs, the margin-loss gradient was zero at {zero_clean} clean points and at "
        f"{zero_near} random points near them; {nonfinite} gradients were NaN or infinite."
    )
    if zero_ce > ZERO_GRAD_MAX_FRACTION * n:
        text += (
            f" The cross-entropy gradient vanished at {zero_ce} points: the logits are so large that the "
            "softmax saturates (as in defensive distillation); scale-invariant losses (DLR, margin) are needed "
            "and the standard attacks use them."
        )
    if nonfinite:
        return CheckResult(
            name, "fail", text + " Gradient attacks cannot work with NaN/infinite gradients.", measured
        )
    if zero_clean > ZERO_GRAD_MAX_FRACTION * n or zero_near > ZERO_GRAD_MAX_FRACTION * n:
        return CheckResult(
            name,
            "fail",
            text + " Zero gradients mean gradient attacks get no signal (a non-differentiable step such as "
            "rounding or thresholding, or saturated outputs): use BPDA for such steps.",
            measured,
        )
    return CheckResult(name, "pass", text, measured)


def deterministic_forward(mut: Any, x: torch.Tensor, *, eot_used: bool) -> CheckResult:
    """Two forward passes on the same inputs (eval mode) must give the same logits."""
    name = "deterministic_forward"
    a = mut.logits(x)
    b = mut.logits(x)
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    scale = float(a.abs().max()) if a.numel() else 0.0
    flips = int((a.argmax(1) != b.argmax(1)).sum())
    measured = {"n": int(x.shape[0]), "max_abs_diff": diff, "max_abs_logit": scale, "prediction_flips": flips}
    randomized = flips > 0 or diff > 1e-4 * (1.0 + scale)
    measured["randomized"] = randomized
    if not randomized:
        return CheckResult(
            name,
            "pass",
            f"Two forward passes on {x.shape[0]} inputs agree (largest difference {diff:.2g}).",
            measured,
        )
    text = (
        f"Two forward passes on the same {x.shape[0]} inputs differ (largest logit difference {diff:.3g}, "
        f"{flips} predictions changed): the model is randomized."
    )
    if eot_used:
        return CheckResult(
            name,
            "pass",
            text + " The gradient attacks were wrapped in EOT (expectation over the randomness), as the "
            "evaluation of randomized models requires.",
            measured,
        )
    return CheckResult(
        name,
        "fail",
        text + " Gradients of one random draw mislead the attacks: randomized model - use EOT (the thorough "
        "preset does; or wrap attacks in 'eot').",
        measured,
    )


def outputs_logits(mut: Any) -> CheckResult:
    name = "outputs_logits"
    if getattr(mut, "outputs_probabilities", False):
        return CheckResult(
            name,
            "fail",
            "The model's outputs are non-negative and sum to 1: it returns probabilities. A softmax at the "
            "output saturates, so cross-entropy gradients vanish and the attacks look weaker than they are. "
            "Audit the logits (remove the final softmax).",
            {"outputs_probabilities": True},
        )
    return CheckResult(
        name, "pass", "The model returns unnormalised scores (logits).", {"outputs_probabilities": False}
    )
