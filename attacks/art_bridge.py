"""Bridge to the Adversarial Robustness Toolbox: ``art:ClassName`` runs any ART evasion attack.

Built by ``get_attack("art:HopSkipJump", max_iter=10, ...)``; the keyword arguments go to the
ART class. The model is handed to ART as a ``PyTorchClassifier`` around a thin module that
calls the base class's counted model, so ART's queries and gradients are counted like ours;
``clip_values`` come from the bounds. ``eps`` and ``norm`` (``np.inf``/2/1) are passed when
the ART class takes them and the user did not set them; a missing ``eps_step`` is set to a
sensible fraction of ``eps``; progress bars are off unless ``verbose=True`` is given.

Whatever ART returns goes through the base class like any attack's candidates: it is
projected onto the eps ball and the bounds and re-predicted, so attacks that ignore eps
(HopSkipJump, BoundaryAttack, SimBA) are still judged inside the ball.

ART is imported here only when a bridge attack is built; it is never on the hot path. ART's
random starts use numpy's global RNG, which is seeded from the attack's generator for the
call and restored afterwards. This class is not in the registry: ``art:`` names are
resolved on demand by :func:`attacks.registry.get_attack`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from attacks.base import Attack, AttackContext
from robustness.core.errors import AttackError

_NORMS = {"linf": "inf", "l2": 2, "l1": 1}
_EXAMPLES = (
    "HopSkipJump",
    "BoundaryAttack",
    "SimBA",
    "SquareAttack",
    "FastGradientMethod",
    "ProjectedGradientDescent",
    "DeepFool",
    "CarliniL2Method",
    "ZooAttack",
    "SignOPTAttack",
)


def _evasion_module():
    try:
        import art.attacks.evasion as evasion
    except Exception as exc:  # noqa: BLE001 - any import failure is an environment problem
        raise AttackError(
            f"cannot import the Adversarial Robustness Toolbox: {type(exc).__name__}: {exc}",
            field="attack",
            fix="Install it with 'pip install adversarial-robustness-toolbox packaging', or use a built-in attack.",
        ) from exc
    return evasion


def _other_kind(name: str) -> str | None:
    """The kind of ART attack ``name`` is when it is not an evasion attack (poisoning, extraction)."""
    import importlib

    for kind in ("poisoning", "extraction"):
        try:
            module = importlib.import_module(f"art.attacks.{kind}")
        except Exception:  # noqa: BLE001 - optional parts of ART may not import
            continue
        if inspect.isclass(getattr(module, name, None)):
            return kind
    return None


def _resolve(name: str) -> type:
    from art.attacks import EvasionAttack

    evasion = _evasion_module()
    cls = getattr(evasion, name, None) if name else None
    examples = ", ".join(_EXAMPLES[:6])
    if inspect.isclass(cls) and issubclass(cls, EvasionAttack) and not inspect.isabstract(cls):
        return cls
    kind = _other_kind(name) if name and cls is None else None
    if kind is not None:
        raise AttackError(
            f"art:{name} is an ART {kind} attack, not an evasion attack",
            field="attack",
            fix=f"The bridge runs evasion attacks (art.attacks.evasion), e.g. {examples}.",
        )
    if cls is None:
        raise AttackError(
            f"ART has no evasion attack called {name!r}",
            field="attack",
            fix=f"Use art:ClassName with a class from art.attacks.evasion, e.g. {examples}.",
        )
    raise AttackError(
        f"art:{name} is not an ART evasion attack class",
        field="attack",
        fix=f"Use an evasion attack class from art.attacks.evasion, e.g. {examples}.",
    )


# ART attacks that refuse logits and ask for probabilities (softmax is applied for them only).
_NEEDS_PROBABILITIES = {"SimBA"}


class _Counted(nn.Module):
    """What ART sees as the model: the base class's counted, frozen, eval-mode model."""

    def __init__(self, ctx: AttackContext, softmax: bool) -> None:
        super().__init__()
        # A context is not a module: nothing of it is registered (or moved) with this one.
        self._ctx = ctx
        self._softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ART hands over float64 numpy data; the model runs in float32 (the cast is differentiable).
        out = self._ctx.model(x.to(torch.float32))
        return out.softmax(dim=1) if self._softmax else out


@contextmanager
def _seeded_randomness(seed: int, device: torch.device) -> Iterator[None]:
    """Seed numpy's, Python's and torch's global RNGs for an ART call; restore them afterwards.

    Some ART attacks also build ``np.random.RandomState()`` without a seed (HopSkipJump's
    initialisation); for the duration those draw their seed from the seeded global RNG.
    """
    import random

    import numpy as np

    np_state, py_state = np.random.get_state(), random.getstate()
    original = np.random.RandomState

    class _SeededRandomState(original):  # type: ignore[misc, valid-type]
        def __init__(self, seed: Any = None) -> None:
            super().__init__(np.random.randint(0, 2**31 - 1) if seed is None else seed)

    devices = [device] if device.type == "cuda" else []
    try:
        np.random.seed(seed)
        random.seed(seed)
        np.random.RandomState = _SeededRandomState  # type: ignore[misc]
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
    finally:
        np.random.RandomState = original  # type: ignore[misc]
        np.random.set_state(np_state)
        random.setstate(py_state)


class ARTAttack(Attack):
    """Any ART evasion attack on the model under test, judged by the base class."""

    name = "art"
    norms = ("linf", "l2", "l1")
    description = "An ART evasion attack through the bridge (art:ClassName)."

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {}

    def __init__(self, art_class: str = "HopSkipJump", **kwargs: Any) -> None:
        self.art_cls = _resolve(str(art_class))
        self.name = f"art:{art_class}"  # type: ignore[misc]
        self.kwargs = dict(kwargs)
        self._signature = inspect.signature(self.art_cls.__init__).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in self._signature.values())
        own = {"self", "classifier", "estimator"}
        if not takes_any:
            bad = sorted(set(kwargs) - set(self._signature) | (set(kwargs) & own))
            if bad:
                valid = sorted(set(self._signature) - own)
                raise AttackError(
                    f"art:{art_class} does not take {', '.join(bad)}",
                    field="attack",
                    fix=f"Its parameters are: {', '.join(valid)}.",
                )
        if "targeted" in kwargs:
            raise AttackError(
                "the targeted mode of an art: attack is set by the attack call, not by a keyword",
                field="targeted",
                fix="Drop targeted=; pass targeted='random', 'least-likely' or a tensor of targets to the call.",
            )
        reqs = getattr(self.art_cls, "_estimator_requirements", ())
        from art.estimators.classification.classifier import ClassGradientsMixin
        from art.estimators.estimator import LossGradientsMixin

        gradient_based = any(
            isinstance(r, type) and issubclass(r, (LossGradientsMixin, ClassGradientsMixin)) for r in reqs
        )
        self.kind = "white-box" if gradient_based else "black-box"  # type: ignore[misc]
        self.supports_targeted = "targeted" in self._signature  # type: ignore[misc]
        self.params = {"art_class": str(art_class), **self.kwargs}

    def _art_kwargs(self, ctx: AttackContext, eps: float) -> dict[str, Any]:
        import numpy as np

        kw = dict(self.kwargs)
        sig = self._signature
        if "norm" in sig and "norm" not in kw:
            kw["norm"] = np.inf if ctx.norm == "linf" else _NORMS[ctx.norm]
        if "eps" in sig and "eps" not in kw:
            kw["eps"] = float(eps)
            if "eps_step" in sig and "eps_step" not in kw:
                steps = kw.get("max_iter", sig["max_iter"].default if "max_iter" in sig else None)
                # Madry's 2.5 * eps / steps for iterative attacks, eps itself for single-step ones.
                kw["eps_step"] = float(eps) * (2.5 / steps if isinstance(steps, int) and steps > 1 else 1.0)
        if "verbose" in sig and "verbose" not in kw:
            kw["verbose"] = False
        return kw

    def perturb(
        self,
        ctx: AttackContext,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        import numpy as np
        from art.estimators.classification import PyTorchClassifier
        from art.exceptions import EstimatorError

        on_gpu = ctx.device.type == "cuda"
        classifier = PyTorchClassifier(
            model=_Counted(ctx, softmax=self.art_cls.__name__ in _NEEDS_PROBABILITIES),
            loss=nn.CrossEntropyLoss(),
            input_shape=tuple(x.shape[1:]),
            nb_classes=int(ctx.num_classes),
            clip_values=(float(ctx.bounds[0]), float(ctx.bounds[1])),
            device_type="gpu" if on_gpu else "cpu",
        )
        out = x.clone()
        # One-hot labels: every ART attack accepts them (some, like SimBA, only them).
        labels = np.eye(int(ctx.num_classes), dtype=np.float32)[
            (targets if targets is not None else y).cpu().numpy()
        ]
        seed = int(torch.randint(0, 2**31 - 1, (1,), device=ctx.device, generator=ctx.generator))
        with _seeded_randomness(seed, ctx.device):
            for e in torch.unique(eps):
                idx = (eps == e).nonzero().flatten()
                kw = self._art_kwargs(ctx, float(e))
                if "targeted" in self._signature:
                    # Always explicit: some ART attacks (BoundaryAttack) default to targeted=True.
                    kw["targeted"] = targets is not None
                try:
                    attack = self.art_cls(classifier, **kw)
                except EstimatorError as exc:
                    raise AttackError(
                        f"{self.name} does not work on a PyTorch classifier: {exc}",
                        field="attack",
                        fix="Pick an ART attack for classifiers, e.g. HopSkipJump, SimBA or ProjectedGradientDescent.",
                    ) from exc
                except (TypeError, ValueError) as exc:
                    raise AttackError(
                        f"{self.name} rejected its parameters: {exc}",
                        field="attack",
                        fix="Check the ART class's documentation for valid values.",
                    ) from exc
                xs = x[idx].detach().cpu().numpy().astype(np.float32)
                with torch.cuda.device(ctx.device) if on_gpu else nullcontext():
                    try:
                        adv = attack.generate(x=xs, y=labels[idx.cpu().numpy()])
                    except ValueError as exc:
                        raise AttackError(
                            f"{self.name} failed: {exc}",
                            field="attack",
                            fix="Check the ART class's parameters and that it supports this model and norm.",
                        ) from exc
                out[idx] = torch.as_tensor(np.asarray(adv), dtype=x.dtype, device=x.device).view_as(x[idx])
        return out
