"""DP-SGD (Abadi et al. 2016) through Opacus: a model trained with (epsilon, delta) differential privacy.

Each step takes a Poisson-sampled batch (every training sample joins with probability
q = 1 / batches-per-epoch, as Opacus's ``DPDataLoader``), clips every sample's gradient to
``max_grad_norm``, adds Gaussian noise of standard deviation ``noise_multiplier * max_grad_norm``
to the sum and divides by the expected batch size; the optimiser (Adam or SGD) then steps on
that. The noise multiplier is the smallest that keeps the whole run (epochs x batches steps)
within ``target_epsilon`` at ``delta``; the accountant (Opacus's PRV by default, RDP on request)
counts every step actually taken, and the epsilon it reports is an upper bound.

What the guarantee covers: adding or removing one sample of the training split. The held-out
validation split is not covered, so the method keeps the last epoch (choosing the best epoch on
that split would let it leak). The noise comes from the run's seeded generator (reproducible,
resumable); the guarantee assumes that seed stays secret.

Opacus is optional (``pip install opacus``) and imported only when this method trains. Layers
that mix the samples of a batch (batch-norm) or that Opacus cannot give per-sample gradients
are refused by name before anything is written.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from defenses.objective import HyperParameter, Objective, register_objective
from robustness.core.errors import ConfigError, ModelError, UsageError

OPACUS_FIX = "Install it with 'pip install opacus' (or pip install 'robustness-audit[privacy]')."

# Layers whose output for one sample depends on the other samples of the batch (or that keep
# running statistics of the private data), with what to use instead.
_MIXING_LAYERS: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.modules.batchnorm._BatchNorm, "GroupNorm (opacus.validators.ModuleValidator.fix does it)"),
    (nn.modules.instancenorm._InstanceNorm, "InstanceNorm with track_running_stats=False, or GroupNorm"),
    (nn.RNNBase, "opacus.layers.DPLSTM / DPGRU / DPRNN"),
    (nn.MultiheadAttention, "opacus.layers.DPMultiheadAttention"),
)


def import_opacus() -> Any:
    """The ``opacus`` module; a :class:`ConfigError` naming ``pip install opacus`` when it is missing."""
    try:
        import opacus
    except ImportError:
        raise ConfigError(
            "training method 'dp-sgd' needs Opacus, which is not installed",
            field="method",
            fix=OPACUS_FIX,
        ) from None
    return opacus


@functools.lru_cache(maxsize=32)
def noise_multiplier(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> float:
    """The smallest noise multiplier whose run spends at most ``target_epsilon`` (and at least 0.01 less).

    Opacus's ``get_noise_multiplier`` bisects (about 20 accountant calls, each up to a second at a
    large sampling rate); this finds the same root by regula falsi with the Illinois rule on
    log(epsilon) over log(sigma), in about 6. Only a multiplier the accountant has confirmed to
    stay within the target is returned.
    """
    from opacus.accountants import create_accountant

    ledger = create_accountant(mechanism=accountant)

    def excess(log_sigma: float) -> float:
        ledger.history = [(math.exp(log_sigma), sample_rate, steps)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # RDP's "optimal order is the largest alpha": only looser
            spent = float(ledger.get_epsilon(delta=delta))
        return math.log(spent) - math.log(target_epsilon) if spent > 0 else -math.inf

    # A bracket: f(high) <= 0 (within the target), f(low) > 0.
    low, high = math.log(0.25), math.log(1.0)
    f_high = excess(high)
    while f_high > 0:
        low, high = high, high + math.log(4.0)
        if high > math.log(1e6):
            raise ConfigError(
                f"no noise multiplier reaches target_epsilon {target_epsilon:g} at delta {delta:g} over "
                f"{steps} steps",
                field="target_epsilon",
                fix="Give a larger --target-epsilon, or fewer --epochs / a smaller sampling rate (more data "
                "or a smaller --batch-size).",
            )
        f_high = excess(high)
    f_low = excess(low)
    while f_low <= 0:
        high, f_high = low, f_low
        low -= math.log(4.0)
        f_low = excess(low)
    close = math.log(target_epsilon) - math.log(max(target_epsilon - 0.01, 1e-12))
    # Working values of the two ends for the interpolation (Illinois halves the stale one).
    g_low, g_high, side = f_low, f_high, 0
    for _ in range(60):
        if f_high >= -close:
            break
        if math.isfinite(g_low) and math.isfinite(g_high):
            middle = high - g_high * (high - low) / (g_high - g_low)
        else:
            middle = (low + high) / 2
        f_middle = excess(middle)
        if f_middle <= 0:
            high, f_high, g_high = middle, f_middle, f_middle
            if side == -1:
                g_low /= 2
            side = -1
        else:
            low, f_low, g_low = middle, f_middle, f_middle
            if side == 1:
                g_high /= 2
            side = 1
    return math.exp(high)


def unsupported_layers(module: nn.Module) -> list[str]:
    """``'name (Type): use X'`` for every layer DP-SGD cannot train; empty when the model is fine."""
    found = []
    for name, layer in module.named_modules():
        for kind, instead in _MIXING_LAYERS:
            if not isinstance(layer, kind):
                continue
            if isinstance(layer, nn.modules.instancenorm._InstanceNorm) and not layer.track_running_stats:
                continue
            found.append(f"{name or '<root>'} ({type(layer).__name__}): use {instead}")
    return found


@register_objective
class DPSGD(Objective):
    name = "dp-sgd"
    description = (
        "Abadi et al. 2016 with Opacus: per-sample clipping, Gaussian noise, Poisson batches; "
        "(epsilon, delta)-DP recorded in model.json."
    )
    hyperparameters = {
        "target_epsilon": HyperParameter(
            8.0,
            float,
            "privacy budget epsilon the whole run stays within (smaller is more private)",
            minimum=0,
            exclusive=True,
            fix="Give e.g. --target-epsilon 1 (strong), 3 or 8 (moderate).",
        ),
        "delta": HyperParameter(
            1e-5,
            float,
            "privacy parameter delta; must be well below 1 / the number of training samples",
            minimum=0,
            exclusive=True,
            fix="Give e.g. --delta 1e-5 (below 1 / n).",
        ),
        "max_grad_norm": HyperParameter(
            1.0, float, "per-sample gradient clipping norm C", minimum=0, exclusive=True
        ),
        "accountant": HyperParameter(
            "prv",
            str,
            "privacy accountant: prv (Gopi et al. 2021, tighter) or rdp (Mironov 2017)",
            choices=("prv", "rdp"),
        ),
    }
    keeps_last_epoch = True

    @classmethod
    def check_run(cls, config, model, n_train: int, world_size: int) -> None:  # noqa: ANN001 - see Objective
        params = config.method_params()
        import_opacus()
        if world_size > 1:
            raise UsageError(
                f"dp-sgd trains in one process; this launch has {world_size}",
                field="method",
                fix="Run 'robustness harden --method dp-sgd' without torchrun.",
            )
        if config.amp != "off":
            raise ConfigError(
                f"dp-sgd does not train under mixed precision (amp {config.amp})",
                field="amp",
                fix="Use --amp off.",
            )
        delta = float(params["delta"])
        if delta >= 1.0 / n_train:
            raise ConfigError(
                f"delta {delta:g} is not below 1 / n = {1.0 / n_train:.3g} for the {n_train} training samples: "
                "a mechanism that publishes one random sample in full meets such a delta",
                field="delta",
                fix=f"Give --delta below {1.0 / n_train:.2g}, e.g. {_suggested_delta(n_train):.0e}.",
            )
        found = unsupported_layers(model.module)
        if found:
            raise ModelError(
                f"dp-sgd cannot train layer(s) {'; '.join(found)}: they mix the samples of a batch or keep "
                "statistics of the private data, so per-sample gradients (and the guarantee) do not exist",
                field="model",
                fix="Build the architecture with the suggested layers (its factory, given as --model), "
                "or choose a model without them.",
            )
        from opacus.grad_sample import GradSampleModule

        problems = GradSampleModule.validate(model.net, strict=False)
        if problems:
            raise ModelError(
                f"Opacus cannot compute per-sample gradients of this model: {problems[0]}",
                field="model",
                fix="Replace the named layer (Opacus's ModuleValidator.fix lists the replacements).",
            )
        steps_per_epoch = -(-n_train // config.batch_size)
        noise_multiplier(
            float(params["target_epsilon"]),
            delta,
            1.0 / steps_per_epoch,
            config.epochs * steps_per_epoch,
            str(params["accountant"]),
        )

    def prepare(self, trainer) -> None:  # noqa: ANN001 - defenses.trainer.Trainer
        from opacus.accountants import create_accountant
        from opacus.grad_sample import GradSampleModule

        self.n_train = trainer.n_train
        self.steps_per_epoch = -(-self.n_train // self.config.batch_size)
        # Opacus's DPDataLoader: one expected batch per step, as many steps as plain batches.
        self.sample_rate = 1.0 / self.steps_per_epoch
        self.delta = float(self.params["delta"])
        self.max_grad_norm = float(self.params["max_grad_norm"])
        self.noise_multiplier = noise_multiplier(
            float(self.params["target_epsilon"]),
            self.delta,
            self.sample_rate,
            self.config.epochs * self.steps_per_epoch,
            str(self.params["accountant"]),
        )
        self.accountant = create_accountant(mechanism=str(self.params["accountant"]))
        self._spent: tuple[tuple, float] | None = None  # (accountant history, its epsilon)
        # Opacus's backward hooks fire on the first layer, whose input needs no gradient: expected.
        warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed")
        # Hooks on the layers record each sample's gradient; the network itself is unchanged.
        self.per_sample = GradSampleModule(self.model.net, batch_first=True, loss_reduction="mean")

    def batches(self, n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Poisson sampling: each sample joins each step's batch independently with probability q."""
        for _ in range(self.steps_per_epoch):
            yield torch.nonzero(torch.rand(n, generator=generator) < self.sample_rate).flatten()

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        private = build_private_optimizer(
            optimizer,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.max_grad_norm,
            expected_batch_size=self.n_train * self.sample_rate,
            loss_reduction="mean",
            generator=self.generator,
        )
        private.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))
        return private

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)
        return functional.cross_entropy(logits.float(), y), logits

    def steps_taken(self) -> int:
        return sum(steps for _, _, steps in self.accountant.history)

    def spent_epsilon(self) -> float:
        """The accountant's upper bound on epsilon at ``delta`` for every step taken so far."""
        if not self.accountant.history:
            return 0.0
        key = tuple(self.accountant.history)
        if self._spent is None or self._spent[0] != key:  # an accountant call can take a second
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # RDP's "optimal order is the largest alpha": only looser
                self._spent = (key, float(self.accountant.get_epsilon(delta=self.delta)))
        return self._spent[1]

    def epoch_end(self) -> dict[str, Any]:
        return {"epsilon": round(self.spent_epsilon(), 6)}

    def state_dict(self) -> dict[str, Any]:
        history = [[float(sigma), float(rate), int(steps)] for sigma, rate, steps in self.accountant.history]
        return {"accountant": {"mechanism": self.accountant.mechanism(), "history": history}}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        saved = (state or {}).get("accountant")
        if not saved or saved.get("mechanism") != self.accountant.mechanism():
            # Resuming without the steps already taken would under-report the privacy spent.
            raise UsageError(
                "the checkpoint holds no privacy accounting for this dp-sgd run, so the epsilon spent "
                "before the interruption is unknown",
                field="resume",
                fix="Start the run again in a new --output folder.",
            )
        self.accountant.history = [(float(s), float(r), int(n)) for s, r, n in saved["history"]]

    def close(self) -> None:
        per_sample = getattr(self, "per_sample", None)
        if per_sample is None:
            return
        per_sample.cleanup()  # hooks and Opacus's attributes off the parameters
        for parameter in self.model.net.parameters():
            if hasattr(parameter, "summed_grad"):
                del parameter.summed_grad
        self.per_sample = None

    def card(self) -> dict[str, Any]:
        return {
            **super().card(),
            "privacy": {
                "epsilon": self.spent_epsilon(),
                "delta": self.delta,
                "target_epsilon": float(self.params["target_epsilon"]),
                "accountant": str(self.params["accountant"]),
                "noise_multiplier": self.noise_multiplier,
                "max_grad_norm": self.max_grad_norm,
                "sample_rate": self.sample_rate,
                "sampling": "poisson",
                "expected_batch_size": self.n_train * self.sample_rate,
                "steps": self.steps_taken(),
                "n_train": self.n_train,
                "guarantee": (
                    "(epsilon, delta)-DP for adding or removing one sample of the training split "
                    f"({self.n_train} samples); the validation split is not covered, and the last epoch "
                    "is kept. The noise comes from the run's seeded generator: the guarantee assumes "
                    "that seed stays secret."
                ),
                "library": f"opacus {import_opacus().__version__}",
            },
        }

    def card_fields(self) -> dict[str, Any]:
        return {"epsilon": self.spent_epsilon(), "delta": self.delta}


def _suggested_delta(n: int) -> float:
    """A power of ten at most 1 / (10 n)."""
    power = 1.0
    while power > 1.0 / (10 * n):
        power /= 10
    return power


def build_private_optimizer(optimizer: torch.optim.Optimizer, **options: Any) -> torch.optim.Optimizer:
    """Opacus's DP optimiser around ``optimizer``, also stepping on an empty Poisson batch (noise only)."""
    from opacus.optimizers import DPOptimizer

    class PrivateOptimizer(DPOptimizer):
        def pre_step(self, closure: Any = None) -> bool:
            if all(getattr(parameter, "grad_sample", None) is None for parameter in self.params):
                # No sample this step: a sum of zero clipped gradients, to which the noise is added.
                for parameter in self.params:
                    parameter.grad_sample = parameter.new_zeros((0, *parameter.shape))
            return super().pre_step(closure)

    return PrivateOptimizer(optimizer, **options)
