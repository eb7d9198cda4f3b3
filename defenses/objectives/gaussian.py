"""Gaussian data augmentation (Cohen, Rosenfeld & Kolter 2019): the base model of randomized smoothing.

Every training input is replaced by x + N(0, sigma^2 I), drawn afresh each step on the model's
device from the run's generator. As in the paper's code (locuslab/smoothing, ``train.py``), the
noisy input is not clipped to the input bounds: smoothing certifies the classifier under exactly
this noise, so training and certification must see the same distribution. Sigma is in input units
(the model's normalisation, if any, comes after the noise, as in the paper).

The best epoch is chosen on validation accuracy under the same noise (the base classifier's
accuracy that smoothing rests on), then clean accuracy.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional

from defenses.objective import HyperParameter, Objective, register_objective


@register_objective
class GaussianAugmentation(Objective):
    name = "gaussian"
    description = (
        "Cohen et al. 2019: cross-entropy on x + N(0, sigma^2) (unclipped), for randomized smoothing "
        "at the same sigma."
    )
    hyperparameters = {
        "sigma": HyperParameter(
            0.25,
            float,
            "standard deviation of the training noise, in input units (certify with the same sigma)",
            minimum=0,
            exclusive=True,
            fix="Give e.g. --sigma 0.25 (Cohen et al. use 0.12, 0.25, 0.5 and 1.0 on inputs in [0, 1]).",
        ),
    }
    selection_metric = "val_noisy_accuracy"

    def noisy(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``x`` plus Gaussian noise of standard deviation sigma, drawn on ``x``'s device."""
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + float(self.params["sigma"]) * noise

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(self.noisy(x, self.generator))
        return functional.cross_entropy(logits.float(), y), logits

    @torch.no_grad()
    def validation(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> dict[str, Any]:
        """Accuracy on one noisy copy of the validation split (a generator of its own: the run's is untouched)."""
        device = self.model.device
        generator = torch.Generator(device=device).manual_seed(seed)
        correct = 0
        for start in range(0, len(y), 512):
            xb = x[start : start + 512].to(device)
            pred = self.model.predict(self.noisy(xb, generator), 512)
            correct += int((pred.cpu() == y[start : start + 512]).sum())
        return {"val_noisy_accuracy": correct / max(1, len(y))}

    def card(self) -> dict[str, Any]:
        return {
            **super().card(),
            "noise": {
                "distribution": "gaussian",
                "sigma": float(self.params["sigma"]),
                "clipped": False,
                "space": "input (before the model's normalisation)",
            },
        }
