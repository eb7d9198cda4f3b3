"""(g) The forward pass is deterministic.

Two forward passes (eval mode) on a sample of correctly classified inputs must give the same
logits. When they differ, the audit runs every gradient attack with EOT (``eot_samples`` draws)
and judges success by the majority of as many predictions; the check then passes and says so.
"""

from __future__ import annotations

from typing import Any

from robustness.audit.check import CheckResult, ModelCheck, register_check


@register_check
class DeterministicForward(ModelCheck):
    name = "deterministic_forward"
    letter = "g"
    title = "The forward pass is deterministic"
    explanation = (
        "A randomised forward pass makes single gradient samples noisy; such models must be attacked "
        "with expectation over transformation (EOT)."
    )
    measures = "two forward passes on the same sampled inputs"

    def measure(self, *, eot_used: bool) -> CheckResult:
        audit = self.audit
        x = audit.x[audit.model_sample()]
        return measure(audit.model, x.to(audit.model.device), eot_used=eot_used)

    def wants_eot(self, result: CheckResult) -> bool:
        return bool(result.measured.get("randomized"))


def measure(model: Any, x: Any, *, eot_used: bool) -> CheckResult:
    """Two forward passes on the same inputs (eval mode) must give the same logits."""
    name = DeterministicForward.name
    a = model.logits(x)
    b = model.logits(x)
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
        text + " Gradients of one random draw mislead the attacks: use EOT. The audit ran no gradient attack "
        "it could give EOT; add a white-box attack (the audit then averages eot_samples draws per step).",
        measured,
    )
