"""(h) The model returns logits, not probabilities (outputs non-negative and summing to 1)."""

from __future__ import annotations

from typing import Any

from robustness.audit.check import CheckResult, ModelCheck, register_check


@register_check
class OutputsLogits(ModelCheck):
    name = "outputs_logits"
    letter = "h"
    title = "The model returns logits, not probabilities"
    explanation = "Probabilities saturate, so their gradients vanish and attacks weaken. Audits must attack logits."
    measures = "whether the model's outputs are non-negative and sum to 1"

    def measure(self, *, eot_used: bool) -> CheckResult:
        return measure(self.audit.model)


def measure(model: Any) -> CheckResult:
    name = OutputsLogits.name
    if getattr(model, "outputs_probabilities", False):
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
