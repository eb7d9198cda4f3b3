"""The attack contract: one call signature, one result type, and the guarantees every attack gets.

An attack subclass implements only its algorithm, :meth:`Attack.perturb`, on a batch of
samples that still need attacking; a composition of attacks (:mod:`attacks.composition`)
implements :meth:`Attack.perturb_attributed` instead, which also says which member found each
example and how many queries its black-box members made. :meth:`Attack.__call__` is final (a
subclass that overrides it is refused when its class is created) and does the rest once for
all: validation, eval mode with frozen weights (gradients w.r.t. inputs only), seeding,
skipping samples that are already misclassified or already broken at a smaller eps (the one
eps loop with worst-case carry, :class:`WorstCase`), batching, projection into the eps ball and
the bounds, re-prediction of every returned example, per-sample attribution and cost
accounting. Everything a call found is in the :class:`AttackResult` it returns; an attack
keeps nothing it found from one call to the next.
"""

from __future__ import annotations

import json
import math
import numbers
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, final

import torch
from torch import nn

from attacks.trace import Counts, OptimisationTrace, merge_counts
from robustness.core.errors import AttackError
from robustness.core.model import ModelUnderTest
from robustness.core.threat import check_eps, check_norm, clip_to_ball_and_bounds, lp_norm

TARGET_MODES = ("random", "least-likely")
# Steps between removals of broken samples from an attack's batch on CUDA: deciding to shrink the
# batch needs a host synchronisation, which every step would stall the GPU's queue of kernels.
COMPACT_EVERY_CUDA = 8
# Seed of batch b at eps index i: seed * 1_000_003 + i + b * _BATCH_STRIDE (batch 0 keeps the
# seed it always had, so a single-batch call is unchanged).
_BATCH_STRIDE = 7_919_993


def compact_interval(device: torch.device) -> int:
    """Steps between compactions of an attack's batch: 1 on the CPU, ``COMPACT_EVERY_CUDA`` on CUDA.

    Attacks read it as ``ctx.compact_every``. Between compactions an attack records each sample's
    first adversarial iterate on the device (``torch.where``) and stops updating it, so the
    result is the same; only samples already broken are carried a few steps longer. No other
    step of an attack's loop may synchronise with the host (tests/attacks/test_host_sync.py).
    """
    return COMPACT_EVERY_CUDA if device.type == "cuda" else 1


def batch_seed(seed: int, eps_index: int, batch: int) -> int:
    """The generator seed of one batch: results do not depend on which process runs which batch."""
    return int(seed) * 1_000_003 + int(eps_index) + int(batch) * _BATCH_STRIDE


# What a parameter's type is called in errors.
_TYPE_NAMES = {int: "an integer", float: "a finite number", bool: "true or false"}


def param_type_problem(value: Any, expected: type) -> str | None:
    """Why ``value`` is not a valid ``expected`` (int, float or bool), or None if it is.

    The one type rule for attack parameters, wherever they come from (Python, ``--param``, a
    config): a bool is not an integer (``steps: true``), a float is not one even when integral
    (``steps: 2.5``, ``3.0``), an integer is a number, numbers are finite, strings never convert.
    """
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    else:
        return None
    if ok:
        return None
    kind = "a boolean" if isinstance(value, bool) else "a string" if isinstance(value, str) else None
    got = repr(value) if len(repr(value)) <= 60 else repr(value)[:50] + "..."
    return f"must be {_TYPE_NAMES[expected]}, got {got}" + (f" ({kind})" if kind else "")


def check_param_types(
    name: str, params: dict[str, Any], types: dict[str, type], defaults: dict[str, Any]
) -> None:
    """Raise :class:`AttackError` (field: the parameter) for the first value of the wrong type.

    ``None`` is accepted where the default is ``None`` (an optional parameter).
    """
    for key, value in params.items():
        expected = types.get(key)
        if expected is None or (value is None and defaults.get(key) is None):
            continue
        problem = param_type_problem(value, expected)
        if problem:
            example = defaults.get(key)
            raise AttackError(
                f"attack {name!r}: parameter {key} {problem}",
                field=key,
                fix=f"Give {key} as {_TYPE_NAMES[expected]}"
                + (f", e.g. {json.dumps(example)} (the default)." if example is not None else "."),
            )


@dataclass
class AttackResult:
    """What one attack did at one eps. Tensors live on the model's device (``x_adv`` on ``x``'s)."""

    attack: str
    norm: str
    eps: float
    x_adv: torch.Tensor
    y: torch.Tensor
    clean_pred: torch.Tensor
    adv_pred: torch.Tensor
    success: torch.Tensor
    perturbation_norm: torch.Tensor
    n_forward: int = 0
    n_backward: int = 0
    n_queries: int = 0
    time_s: float = 0.0
    targets: torch.Tensor | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # Per sample, who broke it (see WorstCase): "clean", a member's name, or None.
    broken_by: list[str | None] = field(default_factory=list)
    # The attacks that ran, in order: the attack itself, or the members of a composition.
    members: tuple[str, ...] = ()
    # The counts behind the indicators of attack failure (attacks.trace), over every batch:
    # reporting member -> indicator -> [samples measured, samples it holds for].
    indicators: Counts = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def robust(self) -> torch.Tensor:
        """Per sample: still classified correctly at ``x_adv``."""
        return self.adv_pred == self.y

    @property
    def clean_accuracy(self) -> float:
        # An exact ratio of counts (a float32 mean would print 0.9800000190734863).
        return int((self.clean_pred == self.y).sum()) / self.n if self.n else 0.0

    @property
    def robust_accuracy(self) -> float:
        return int(self.robust.sum()) / self.n if self.n else 0.0

    @property
    def robust_after(self) -> dict[str, float]:
        """Per member, in run order: the share of samples that neither it, nor a member before
        it, nor the clean model broke (untargeted, the last one is the robust accuracy)."""
        gone = {WorstCase.CLEAN}
        after = {}
        for member in self.members:
            gone.add(member)
            after[member] = sum(label not in gone for label in self.broken_by) / self.n if self.n else 0.0
        return after

    def summary(self) -> dict[str, Any]:
        from robustness.core.metrics import clopper_pearson

        k = int(self.robust.sum())
        return {
            "attack": self.attack,
            "norm": self.norm,
            "eps": self.eps,
            "n": self.n,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "robust_accuracy_ci": list(clopper_pearson(k, self.n)),
            "n_forward": self.n_forward,
            "n_backward": self.n_backward,
            "n_queries": self.n_queries,
            "time_s": round(self.time_s, 4),
            "params": self.params,
        }


@dataclass
class BatchOutcome:
    """What an attack's algorithm found for one batch (:meth:`Attack.perturb_attributed`).

    ``candidates``: one adversarial candidate per sample, shaped like the batch (the base class
    projects and re-predicts them). ``found_by``: for a composition, per sample the index in
    :attr:`Attack.members` of the member whose candidate it is (-1: none); None means the attack
    itself. ``n_queries``: forward passes made by black-box members of a white-box composition
    (a black-box attack's own passes are counted by the base class). ``indicators``: what the
    batch's runs reported to ``ctx.trace`` (filled by the base class).
    """

    candidates: torch.Tensor
    found_by: torch.Tensor | None = None
    n_queries: int = 0
    indicators: Counts = field(default_factory=dict)

    def to(self, device: torch.device | str) -> BatchOutcome:
        return BatchOutcome(
            self.candidates.to(device),
            None if self.found_by is None else self.found_by.to(device),
            self.n_queries,
            self.indicators,
        )


class WorstCase:
    """The carry of the eps loop: per sample, the worst case found so far and who found it.

    The eps balls are nested, so an example found at a smaller eps is valid at every larger one:
    a sample that succeeded keeps its example (``x_best``) and its attribution and is not
    attacked again; the others are attacked again at the next eps. ``broken_by[i]`` is
    ``"clean"`` for a sample that succeeded before any attack (misclassified, or already at its
    target), the name of the attack or member whose example succeeded, ``"unattributed"`` for a
    success that no member claimed, or None while the sample has not succeeded.
    """

    CLEAN = "clean"
    UNATTRIBUTED = "unattributed"

    def __init__(self, x: torch.Tensor, succeeded: torch.Tensor) -> None:
        self.x_best = x.clone()
        self.success = succeeded.clone()
        self.broken_by: list[str | None] = [self.CLEAN if s else None for s in succeeded.tolist()]

    def standing(self) -> torch.Tensor:
        """Indices (ascending) of the samples still to attack."""
        return (~self.success).nonzero().flatten()

    def propose(self, idx: torch.Tensor, candidates: torch.Tensor) -> None:
        """Candidates for the samples ``idx``: ``x_best`` is what will be re-predicted."""
        self.x_best[idx] = candidates

    def settle(self, success: torch.Tensor, found_by: Sequence[str | None]) -> None:
        """Take ``success`` as re-predicted on ``x_best``; a sample that newly succeeded is
        attributed to ``found_by[i]``, one that still succeeds keeps its attribution."""
        labels: list[str | None] = []
        for i, (was, now) in enumerate(zip(self.success.tolist(), success.tolist())):
            if not now:
                labels.append(None)
            elif was:
                labels.append(self.broken_by[i])
            else:
                labels.append(found_by[i] or self.UNATTRIBUTED)
        self.broken_by = labels
        self.success = success.clone()


class PassCounter:
    """Counts per-sample forward and backward passes through the model; with them travels the
    optimisation trace of the call (None where none is kept), so that a context built on another
    (EOT, BPDA) reports to the same one."""

    def __init__(self) -> None:
        self.forward = 0
        self.backward = 0
        self.trace: OptimisationTrace | None = None


class AttackContext:
    """What an attack's algorithm may use: the (counted) model and the threat model."""

    def __init__(
        self,
        model: ModelUnderTest,
        norm: str,
        generator: torch.Generator,
        num_classes: int,
        counter: PassCounter,
    ) -> None:
        self.mut = model
        self.norm = norm
        self.bounds = model.bounds
        self.device = model.device
        self.generator = generator
        self.num_classes = num_classes
        # Steps between removals of broken samples from the batch (see compact_interval).
        self.compact_every = compact_interval(self.device)
        # Predictions whose majority judges success (see majority_vote); 1 for a deterministic model.
        self.votes = 1
        # The memory layout the iterates run in, per input shape and dtype (attacks.layout).
        self.layouts: dict[tuple[tuple[int, ...], torch.dtype], torch.memory_format] = {}
        self._counter = counter

    @contextmanager
    def uncounted(self) -> Iterator[None]:
        """Passes made inside are not the attack's (a probe of the model): the counts are restored."""
        forward, backward = self._counter.forward, self._counter.backward
        try:
            yield
        finally:
            self._counter.forward, self._counter.backward = forward, backward

    @property
    def n_forward(self) -> int:
        """Per-sample forward passes counted so far (shared by the contexts built on this one)."""
        return self._counter.forward

    @property
    def trace(self) -> OptimisationTrace | None:
        """Where a loss-climbing attack reports each finished run (:mod:`attacks.trace`); None in
        adversarial training and on a surrogate, whose losses say nothing about the target."""
        return self._counter.trace

    def model(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x`` (float32); counted. Gradients flow to ``x`` only."""
        out = self.mut(x)
        n = int(x.shape[0])
        self._counter.forward += n
        if out.requires_grad:
            counter = self._counter

            def _count(grad: torch.Tensor) -> None:
                counter.backward += n

            out.register_hook(_count)
        return out.float()

    def project(self, x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
        """Closest point to ``x_adv`` inside the eps ball around ``x`` and the bounds."""
        return clip_to_ball_and_bounds(x_adv, x, self.norm, eps, self.bounds)

    @staticmethod
    def is_adversarial(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        pred = logits.argmax(dim=1)
        return pred == targets if targets is not None else pred != y

    @torch.no_grad()
    def judge(self, x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """Per sample: ``x`` is adversarial, by the majority of ``votes`` predictions (counted).

        A composition uses it to decide which samples its later members still attack: on a
        randomized model one lucky draw must not end the attack on a sample.
        """
        hits = torch.stack([self.is_adversarial(self.model(x), y, targets) for _ in range(self.votes)])
        return hits.float().mean(dim=0) > 0.5

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, device=self.device, generator=self.generator)

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, device=self.device, generator=self.generator)


class _FullBudgetContext(AttackContext):
    """Context for :meth:`Attack.perturb_batch`: success never ends the attack early.

    Attacks stop working on a sample once ``ctx.is_adversarial`` says it is broken; for
    adversarial training every sample must get the full budget (Madry et al. train on the
    final PGD iterate), so here nothing ever counts as broken.
    """

    def is_adversarial(  # type: ignore[override]
        self, logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None
    ) -> torch.Tensor:
        return torch.zeros(y.shape[0], dtype=torch.bool, device=y.device)


@contextmanager
def _frozen_weights(mut: ModelUnderTest) -> Iterator[None]:
    """Weights frozen (gradients reach the input only); the train/eval mode is left as it is."""
    params = [(p, p.requires_grad) for p in mut.net.parameters()]
    for p, _ in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in params:
            p.requires_grad_(flag)


class Attack:
    """Base class. Subclasses set the class attributes and implement :meth:`perturb`.

    Call as ``attack(model, x, y, eps=0.1)`` (one :class:`AttackResult`) or with a list of
    eps (one result per eps, ascending). Hyper-parameters go to the constructor. ``model`` is
    a :class:`~robustness.core.model.ModelUnderTest` (an ``nn.Module`` is wrapped in one with
    the default bounds); a model spec is the caller's to load (``robustness.load_model``).
    """

    name: ClassVar[str] = ""
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    kind: ClassVar[str] = "white-box"  # or "black-box"
    supports_targeted: ClassVar[bool] = False
    description: ClassVar[str] = ""
    # Types of parameters whose default does not show it (a None default), e.g. {"step_size": float}.
    declared_param_types: ClassVar[dict[str, type]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__} overrides Attack.__call__, which is final: "
                "implement perturb (or perturb_attributed, for a composition of attacks) instead"
            )

    def __init__(self, **params: Any) -> None:
        defaults = self.defaults()
        unknown = set(params) - set(defaults)
        if unknown:
            raise AttackError(
                f"unknown parameter(s) {sorted(unknown)} for attack {self.name!r}",
                field="attack",
                fix=f"Known parameters: {', '.join(sorted(defaults)) or 'none'}.",
            )
        check_param_types(self.name, params, self.param_types(), defaults)
        self.params = {**defaults, **params}
        try:
            self.check_params()
        except (TypeError, ValueError, OverflowError) as exc:
            # A check_params that converts (int(p["k"])) met a value of a type nobody declared:
            # still the user's input, so a named error rather than an internal one.
            given = sorted(params)
            raise AttackError(
                f"attack {self.name!r}: a parameter has an unusable value ({type(exc).__name__}: {exc})",
                field=given[0] if len(given) == 1 else "attack",
                fix=f"Check the values given for: {', '.join(given) or 'none'}.",
            ) from None

    # -- to be overridden --------------------------------------------------------------
    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Hyper-parameters and their defaults."""
        return {}

    @classmethod
    def param_types(cls) -> dict[str, type]:
        """The type of each typed parameter: int, float or bool, from its default (or declared).

        Checked by :func:`check_param_types` before :meth:`check_params`, for every way an
        attack is built. Parameters with other defaults (names, lists, dicts) are left to
        :meth:`check_params`.
        """
        types = {
            key: type(value) for key, value in cls.defaults().items() if type(value) in (int, float, bool)
        }
        return {**types, **cls.declared_param_types}

    def check_params(self) -> None:
        """Validate ``self.params`` (types are already checked); raise :class:`AttackError` naming the bad one."""

    def perturb(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        """Return adversarial candidates for the batch ``x`` (labels ``y``, per-sample ``eps``)."""
        raise NotImplementedError

    def perturb_attributed(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> BatchOutcome:
        """The batch's candidates with who found each: :meth:`perturb`'s, found by the attack itself.

        A composition of attacks overrides this (see :class:`BatchOutcome`); the base class
        calls it for every batch.
        """
        return BatchOutcome(self.perturb(ctx, x, y, eps, targets))

    @property
    def members(self) -> tuple[str, ...]:
        """The attacks that ``BatchOutcome.found_by`` indexes, in run order: this attack alone."""
        return (self.name,)

    # -- the contract --------------------------------------------------------------------
    @final
    def __call__(
        self,
        model: Any,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        eps: float | Sequence[float],
        norm: str = "linf",
        targeted: str | torch.Tensor | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        dist: Any = None,
        votes: int = 1,
    ) -> AttackResult | list[AttackResult]:
        """Attack ``x`` (labels ``y``) at each eps; see the class docstring.

        ``dist``: a :class:`robustness.core.distributed.DistContext` to share the batches out over the
        ranks of a torchrun launch (every rank passes the same ``x``, ``y`` and arguments, and every
        rank gets the full result, equal to a single process's). Default: one process.

        ``votes``: for a model with a randomized forward pass, every prediction that judges success
        (the clean one, each re-prediction, a composition's filter between its members) is the
        majority of ``votes`` forward passes (:func:`majority_vote`): a sample counts as broken
        only when most draws misclassify its example, never on one lucky draw. Default 1.
        """
        mut = _model_under_test(model)
        norm = check_norm(norm)
        if norm not in self.norms:
            raise AttackError(
                f"attack {self.name!r} does not support norm {norm!r}",
                field="norm",
                fix=f"Use one of: {', '.join(self.norms)}, or pick another attack.",
            )
        eps_list = check_eps(eps, bounds=mut.bounds, norm=norm)
        if targeted is not None and not self.supports_targeted:
            raise AttackError(
                f"attack {self.name!r} has no targeted mode",
                field="targeted",
                fix="Drop the target, or use an attack with targets (see 'robustness attacks').",
            )
        if batch_size is not None and batch_size <= 0:
            raise AttackError(
                f"batch_size must be > 0, got {batch_size}", field="batch_size", fix="Use e.g. 256."
            )
        if isinstance(votes, bool) or not isinstance(votes, int) or votes < 1:
            raise AttackError(
                f"votes must be an integer >= 1, got {votes!r}", field="votes", fix="Use e.g. 20."
            )
        if x.shape[0] != y.shape[0]:
            raise AttackError(
                f"{x.shape[0]} inputs but {y.shape[0]} labels", field="y", fix="Give one label per input."
            )
        mut.validate(x)
        results = self._run(mut, x, y, eps_list, norm, targeted, seed, batch_size or 512, dist, votes)
        return results if isinstance(eps, Sequence) and not isinstance(eps, str) else results[0]

    def perturb_batch(
        self,
        model: ModelUnderTest,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        eps: float | torch.Tensor,
        norm: str = "linf",
        generator: torch.Generator | None = None,
        seed: int = 0,
        eval_mode: bool = True,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Adversarial examples for every sample of one batch: the building block of adversarial training.

        Unlike :meth:`__call__` this is not an evaluation: no sample is skipped (misclassified
        ones included), success never stops the attack early (each sample gets the full budget
        and the final iterate), nothing is re-predicted or counted. The weights are frozen while
        it runs, so no gradient reaches them; ``eval_mode`` (default) also puts the network in
        eval mode (batch-norm running statistics are used, not updated), and the previous mode
        is restored. ``generator`` (on the model's device) supplies all randomness; without it
        one is seeded with ``seed``. Returns ``x_adv`` detached, inside the eps ball and bounds.
        """
        norm = check_norm(norm)
        dev = model.device
        x0 = x.detach().to(dev, dtype=torch.float32)
        y0 = y.detach().to(dev, dtype=torch.long)
        eps_t = torch.as_tensor(eps, dtype=torch.float32, device=dev).flatten()
        eps_t = eps_t.expand(x0.shape[0]) if eps_t.numel() == 1 else eps_t
        gen = generator if generator is not None else torch.Generator(device=dev).manual_seed(int(seed))
        ctx = _FullBudgetContext(model, norm, gen, int(model.num_classes or 0), PassCounter())
        guard = model.evaluating(freeze=True) if eval_mode else _frozen_weights(model)
        with guard, torch.enable_grad():
            cand = self.perturb(ctx, x0, y0, eps_t, targets)
        return ctx.project(cand.detach().float(), x0, eps_t)

    def _run(
        self,
        mut: ModelUnderTest,
        x: torch.Tensor,
        y: torch.Tensor,
        eps_list: tuple[float, ...],
        norm: str,
        targeted: str | torch.Tensor | None,
        seed: int,
        batch_size: int,
        dist: Any = None,
        votes: int = 1,
    ) -> list[AttackResult]:
        """The eps loop: at each eps, attack the samples still standing, batch by batch; then
        re-predict every example and carry the successes to the next eps (:class:`WorstCase`)."""
        from robustness.core.distributed import SINGLE

        dist = dist if dist is not None else SINGLE
        dev = mut.device
        # A copy on the model's device; the caller's x is untouched.
        x0 = x.detach().to(dev, dtype=torch.float32)
        y0 = y.detach().to(dev, dtype=torch.long)
        num_classes = int(mut.num_classes or 0)
        members = self.members
        with mut.evaluating(freeze=True):
            targets = self._targets(mut, x0, y0, targeted, num_classes, seed, batch_size)
            clean_pred, clean_success = _judged(mut, x0, y0, targets, batch_size, votes, seed)
            worst = WorstCase(x0, clean_success)
            last_pred = clean_pred
            results = []
            for i, e in enumerate(eps_list):
                counter = PassCounter()
                counter.trace = OptimisationTrace()
                t0 = time.perf_counter()
                todo = worst.standing()
                batches = [todo[s : s + batch_size] for s in range(0, todo.numel(), batch_size)]
                outcomes: dict[int, BatchOutcome] = {}
                for b, idx in enumerate(batches):
                    if not dist.owns(b):
                        continue  # another rank's batch
                    # A generator per batch: a batch's result depends only on (seed, eps, batch).
                    gen = torch.Generator(device=dev).manual_seed(batch_seed(seed, i, b))
                    ctx = AttackContext(mut, norm, gen, num_classes, counter)
                    ctx.votes = votes
                    if votes == 1:
                        outcomes[b] = self._attack_batch(ctx, x0, y0, targets, idx, e)
                        continue
                    # A randomized model draws from the global generator: seeded per batch, so
                    # that the run is reproducible; the caller's random state is restored.
                    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                        torch.manual_seed(batch_seed(seed, i, b) % (2**63))
                        outcomes[b] = self._attack_batch(ctx, x0, y0, targets, idx, e)
                if dist.enabled:
                    # Every rank gets every batch's outcome and the summed costs.
                    local = {b: outcome.to("cpu") for b, outcome in outcomes.items()}
                    outcomes = {
                        b: o.to(dev) for part in dist.all_gather_object(local) for b, o in part.items()
                    }
                    counter.forward, counter.backward = dist.sum_counts([counter.forward, counter.backward])
                found_by: list[str | None] = [None] * worst.success.numel()
                member_queries = 0
                indicators: Counts = {}
                for b, outcome in sorted(outcomes.items()):
                    idx = batches[b]
                    worst.propose(idx, outcome.candidates)
                    member_queries += outcome.n_queries
                    merge_counts(indicators, outcome.indicators)
                    if outcome.found_by is None:
                        names: list[str | None] = [self.name] * idx.numel()
                    else:
                        names = [members[m] if m >= 0 else None for m in outcome.found_by.tolist()]
                    for sample, name in zip(idx.tolist(), names):
                        found_by[sample] = name
                # Re-predict everything: success is observed, never assumed.
                adv_pred, success = _judged(
                    mut, worst.x_best, y0, targets, batch_size, votes, seed * 31 + i + 1
                )
                counter.forward += int(worst.x_best.shape[0]) * votes
                if votes > 1:
                    # A randomized model may vote differently on an example it already lost: the
                    # verdict already given stands (the carried example does not change).
                    carried = worst.success
                    adv_pred = torch.where(carried, last_pred, adv_pred)
                    success = success | carried
                last_pred = adv_pred
                # A sample that is adversarial now keeps its example for every larger eps; the
                # others are attacked again there. x_adv stays the example adv_pred was measured
                # on (in targeted mode a failed sample may still be misclassified).
                worst.settle(success, found_by)
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                elapsed = time.perf_counter() - t0
                n_fwd = counter.forward
                results.append(
                    AttackResult(
                        attack=self.name,
                        norm=norm,
                        eps=float(e),
                        x_adv=worst.x_best.clone().to(device=x.device, dtype=x.dtype),
                        y=y0,
                        clean_pred=clean_pred,
                        adv_pred=adv_pred,
                        success=success.clone(),
                        perturbation_norm=lp_norm(worst.x_best - x0, norm),
                        n_forward=n_fwd,
                        n_backward=counter.backward,
                        n_queries=(n_fwd if self.kind == "black-box" else 0) + member_queries,
                        time_s=elapsed,
                        targets=targets,
                        params=dict(self.params),
                        broken_by=list(worst.broken_by),
                        members=members,
                        indicators=indicators,
                    )
                )
        return results

    def _attack_batch(
        self,
        ctx: AttackContext,
        x0: torch.Tensor,
        y0: torch.Tensor,
        targets: torch.Tensor | None,
        idx: torch.Tensor,
        eps: float,
    ) -> BatchOutcome:
        """The samples ``idx`` attacked at ``eps``: the algorithm's outcome, its candidates
        checked and projected into the ball and the bounds."""
        xb, yb = x0[idx], y0[idx]
        tb = None if targets is None else targets[idx]
        eb = torch.full((idx.numel(),), eps, device=x0.device)
        with torch.enable_grad():
            outcome = self.perturb_attributed(ctx, xb, yb, eb, tb)
        cand = outcome.candidates
        if cand.shape != xb.shape:
            raise AttackError(
                f"attack {self.name!r} returned shape {tuple(cand.shape)} for inputs of shape {tuple(xb.shape)}",
                field="attack",
                fix="perturb() must return one candidate per input, shaped like the input.",
            )
        # Project around fresh copies: an attack that edits its arguments in place must not move
        # the centre or the radius of the ball. NaN/inf entries fall back to the clean value so
        # that the bounds guarantee holds.
        centre = x0[idx]
        cand = cand.detach().to(x0.device, torch.float32)
        cand = torch.where(torch.isfinite(cand), cand, centre)
        cand = ctx.project(cand, centre, torch.full_like(eb, eps))
        counts = ctx.trace.take() if ctx.trace is not None else {}
        return BatchOutcome(cand, outcome.found_by, int(outcome.n_queries), counts)

    def _targets(
        self,
        mut: ModelUnderTest,
        x: torch.Tensor,
        y: torch.Tensor,
        targeted: str | torch.Tensor | None,
        num_classes: int,
        seed: int,
        batch_size: int,
    ) -> torch.Tensor | None:
        if targeted is None:
            return None
        if isinstance(targeted, torch.Tensor):
            t = targeted.to(x.device, torch.long).flatten()
            if t.numel() != y.numel() or int(t.min()) < 0 or int(t.max()) >= num_classes:
                raise AttackError(
                    "targets must give one class index in [0, num_classes) per sample",
                    field="targeted",
                    fix="Pass a LongTensor of shape (N,).",
                )
            return t
        if targeted == "random":
            g = torch.Generator(device=x.device).manual_seed(int(seed) + 7919)
            offset = torch.randint(1, num_classes, y.shape, device=x.device, generator=g)
            return (y + offset) % num_classes
        if targeted == "least-likely":
            logits = mut.logits(x, batch_size)
            return logits.argmin(dim=1)
        raise AttackError(
            f"unknown target mode {targeted!r}",
            field="targeted",
            fix=f"Use one of: {', '.join(TARGET_MODES)}, or a tensor of target labels.",
        )


def _model_under_test(model: Any) -> ModelUnderTest:
    """The model an attack runs on: a ModelUnderTest, or an ``nn.Module`` wrapped in one."""
    if isinstance(model, ModelUnderTest):
        return model
    if isinstance(model, nn.Module):
        return ModelUnderTest(model, spec=f"<{type(model).__name__}>")
    loaded = "load_model(spec)" if isinstance(model, str | bytes) or hasattr(model, "__fspath__") else "it"
    raise AttackError(
        f"an attack runs on a loaded model (a ModelUnderTest or an nn.Module), got {type(model).__name__}",
        field="model",
        fix=f"Load the model first: model = {loaded} (from robustness import load_model), then attack it.",
    )


def _succeeded(pred: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Per sample: misclassified (untargeted), or at its target."""
    return pred != y if targets is None else pred == targets


def _judged(
    mut: ModelUnderTest,
    x: torch.Tensor,
    y: torch.Tensor,
    targets: torch.Tensor | None,
    batch_size: int,
    votes: int,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The prediction on ``x`` and whether it succeeded: one forward pass, or a majority vote."""
    if votes == 1:
        pred = _predict(mut, x, batch_size)
        return pred, _succeeded(pred, y, targets)
    pred, success, _ = majority_vote(
        mut, x, y, votes=votes, seed=seed, targets=targets, batch_size=batch_size
    )
    return pred, success


@torch.no_grad()
def majority_vote(
    mut: ModelUnderTest,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    votes: int,
    seed: int,
    targets: torch.Tensor | None = None,
    batch_size: int = 512,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``votes`` predictions of a randomized model on ``x``, judged by their majority.

    Returns ``(pred, success, rate)``: ``rate`` is the share of draws that succeed (misclassify,
    or hit the target), ``success`` is ``rate > 1/2`` (a strict majority: a sample counts as
    broken only when most draws misclassify it), and ``pred`` agrees with it: untargeted, the
    label itself when the sample is not broken and the most frequent wrong class when it is;
    targeted, the target when it is hit and the most frequent class otherwise. The model's own
    randomness (the global generator) is seeded with ``seed`` for the duration and the caller's
    global random state is restored, so the votes are reproducible.
    """
    dev = mut.device
    y = y.to(dev)
    if x.shape[0] == 0:
        empty = torch.empty(0, dtype=torch.long, device=dev)
        return empty, empty.bool(), empty.float()
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(int(seed) % (2**63))
        draws = torch.stack([_predict(mut, x, batch_size) for _ in range(votes)])  # (votes, n)
    num_classes = int(mut.num_classes or int(draws.max()) + 1)
    counts = torch.zeros(x.shape[0], max(num_classes, int(draws.max()) + 1), device=dev)
    counts.scatter_add_(1, draws.t(), torch.ones_like(draws.t(), dtype=counts.dtype))
    if targets is None:
        rate = 1.0 - counts.gather(1, y[:, None]).squeeze(1) / votes
        success = rate > 0.5
        wrong = counts.scatter(1, y[:, None], -1.0).argmax(dim=1)
        pred = torch.where(success, wrong, y)
    else:
        t = targets.to(dev)
        rate = counts.gather(1, t[:, None]).squeeze(1) / votes
        success = rate > 0.5
        pred = torch.where(success, t, counts.scatter(1, t[:, None], -1.0).argmax(dim=1))
    return pred, success, rate


@torch.no_grad()
def _predict(mut: ModelUnderTest, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return (
        torch.cat([mut(x[i : i + batch_size]).argmax(dim=1) for i in range(0, x.shape[0], batch_size)])
        if x.shape[0]
        else torch.empty(0, dtype=torch.long, device=x.device)
    )
