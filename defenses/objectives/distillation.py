"""Defensive distillation (Papernot et al. 2016).

A teacher is trained with its softmax at temperature T; the student (same architecture) is
trained on the teacher's soft labels at the same T, and deployed at T = 1: the saved student
returns its raw logits, which are about T times larger than a normal model's.

Known to be broken (Carlini & Wagner 2017, "Towards Evaluating the Robustness of Neural
Networks"): the large logits saturate the softmax, so cross-entropy gradients underflow and
gradient attacks using them stall, which looks like robustness and is not. Margin / DLR
losses (APGD-DLR, C&W) are invariant to that scale and break the student about as easily as a
normal model. It is provided to show that the audit is not fooled by it, not as a defense.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional

from defenses.objective import HyperParameter, Objective, register_objective

WARNING = (
    "Defensive distillation is known to be broken (Carlini & Wagner 2017): its robustness to "
    "cross-entropy gradient attacks is gradient masking. Audit it with margin/DLR losses (apgd-dlr, "
    "autoattack); do not deploy it as a defense."
)
# Papernot et al.'s MNIST setting.
TEMPERATURE = HyperParameter(100.0, float, "softmax temperature T", minimum=0, exclusive=True)


@register_objective
class DistillationTeacher(Objective):
    """The teacher's objective: cross-entropy with the softmax at temperature T."""

    name = "distillation-teacher"
    description = "Cross-entropy of softmax(logits / T): the teacher of defensive distillation."
    hyperparameters = {"temperature": TEMPERATURE}
    listed = False

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)
        return functional.cross_entropy(logits.float() / float(self.params["temperature"]), y), logits


@register_objective
class Distillation(Objective):
    name = "distillation"
    description = (
        "Papernot et al. 2016 (broken: Carlini & Wagner 2017): student on a T-softmax teacher's labels."
    )
    hyperparameters = {"temperature": TEMPERATURE}

    def prepare(self, trainer) -> None:  # noqa: ANN001 - defenses.trainer.Trainer
        # The teacher is a run of its own (in <output>/teacher, resumable like any run).
        self.teacher = trainer.sub_run("distillation-teacher", "teacher")

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = float(self.params["temperature"])
        with torch.no_grad(), self.teacher.evaluating(freeze=True):
            soft = functional.softmax(self.teacher(x).float() / t, dim=1)
        logits = self.model(x)
        return -(soft * functional.log_softmax(logits.float() / t, dim=1)).sum(dim=1).mean(), logits

    def card(self) -> dict[str, Any]:
        return {**super().card(), "deployed_temperature": 1.0, "teacher": "teacher/", "warning": WARNING}
