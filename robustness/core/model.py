"""Models under test: loading from a spec, and the wrapper every attack talks to.

Attacks always work in input space: a mean/std normalisation is applied inside the
wrapper, never by the attack. The wrapper owns the model's device, bounds and mode.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from robustness.core.errors import ModelError
from robustness.core.registry import Registry
from robustness.core.threat import check_bounds

PRECISIONS = ("fp32", "bf16")
MODEL_SUFFIXES = (".pt2", ".pt", ".ts", ".pth", ".jit", ".safetensors")
SAFE_FORMATS = (
    "a TorchScript file (torch.jit.save, .pt/.ts), a torch.export program (.pt2) with plain tensor "
    "weights (no pickled entries), a factory 'package.module:callable' with --weights FILE "
    "(.safetensors or a state-dict .pt), or a folder written by 'robustness harden' for a built-in architecture"
)
TRUST_FIX = "Pass --trust-model (trust_model=True) only if you trust the file's source"
# What reading a damaged or crafted zip archive can raise.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    EOFError,
    ValueError,
    RuntimeError,
    NotImplementedError,
)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA when present; ``cuda:N`` is checked against the devices there are."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(str(device))
    except RuntimeError:
        raise ModelError(
            f"unknown device {device!r}", field="device", fix="Use auto, cpu, cuda or cuda:N."
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(
                "CUDA was requested but no CUDA device is available",
                field="device",
                fix="Use --device cpu (or auto), or run on a machine with a GPU.",
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelError(
                f"{dev} does not exist ({torch.cuda.device_count()} CUDA devices)",
                field="device",
                fix="Pick an index below the device count, or use auto.",
            )
    elif dev.type not in ("cpu", "mps"):
        raise ModelError(
            f"unsupported device {device!r}", field="device", fix="Use auto, cpu, cuda or cuda:N."
        )
    return dev


class Normalized(nn.Module):
    """Applies ``(x - mean) / std`` before the wrapped network."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean, self.std
        if x.dim() == 2:  # flat inputs: one mean/std per feature or a scalar
            mean, std = mean.reshape(1, -1), std.reshape(1, -1)
        return self.net((x - mean) / std)


class ModelUnderTest:
    """A classifier plus what an audit needs to know about it.

    Call it like a module to get logits (no mode change). Use :meth:`evaluating` around
    attacks: it puts the network in eval mode, freezes the weights so only input gradients
    are computed, and restores both afterwards.

    Speed options (GPU): ``precision="bf16"`` runs the network's forward pass under bfloat16
    autocast (logits are returned as float32; attacks keep their arithmetic and projections in
    float32, and results record the precision); ``channels_last`` stores the weights and feeds
    4-d inputs in NHWC layout (faster convolutions on tensor cores); ``compile`` wraps the
    network in ``torch.compile``.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        spec: str = "<module>",
        bounds: Sequence[float] = (0.0, 1.0),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        device: str | torch.device | None = "auto",
        num_classes: int | None = None,
        metadata: dict[str, Any] | None = None,
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise ModelError(
                f"unknown precision {precision!r}",
                field="precision",
                fix=f"Use one of: {', '.join(PRECISIONS)}.",
            )
        if not isinstance(module, nn.Module):
            raise ModelError(
                f"expected a torch.nn.Module, got {type(module).__name__}",
                field="model",
                fix=f"Give {SAFE_FORMATS}.",
            )
        if (mean is None) != (std is None):
            raise ModelError(
                "mean and std must be given together",
                field="model.std",
                fix="Give both mean and std, or neither.",
            )
        if std is not None and any(float(s) <= 0 for s in std):
            raise ModelError(
                f"std must be > 0, got {list(std)}", field="model.std", fix="Use the training std."
            )
        self.spec = spec
        self.bounds = check_bounds(bounds, field="model.bounds")
        self.mean = None if mean is None else [float(m) for m in mean]
        self.std = None if std is None else [float(s) for s in std]
        self.device = resolve_device(device)
        self.module = module
        net = Normalized(module, self.mean, self.std) if self.mean is not None else module
        try:
            self.net = net.to(self.device)
        except Exception as exc:  # noqa: BLE001 - exported programs and odd modules
            raise ModelError(
                f"could not move the model to {self.device}: {exc}",
                field="device",
                fix="Use --device cpu, or export the model for the target device.",
            ) from exc
        self.num_classes = num_classes
        self.metadata = dict(metadata or {})
        self.outputs_probabilities = False
        self._validated = False
        self.precision = precision
        self.channels_last = bool(channels_last)
        self.compiled = False
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if compile:
            self.compile()

    def compile(self, **options: Any) -> None:
        """Wrap the network in ``torch.compile`` (weights and modes stay shared with ``module``)."""
        if not self.compiled:
            self.net = torch.compile(self.net, **options)
            self.compiled = True

    # -- calling -------------------------------------------------------------------
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.precision == "bf16":
            # Only the network runs in bfloat16; its logits come back as float32.
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                out = self.net(x)
            return out.float() if isinstance(out, torch.Tensor) else out
        return self.net(x)

    @contextmanager
    def evaluating(self, freeze: bool = True) -> Iterator[ModelUnderTest]:
        """Eval mode and frozen weights for the duration; the previous state is restored."""
        modes = [(m, m.training) for m in self.net.modules()]
        params = [(p, p.requires_grad) for p in self.net.parameters()]
        for m, _ in modes:
            m.training = False  # not .eval(): exported graph modules refuse it
        if freeze:
            for p, _ in params:
                p.requires_grad_(False)
        try:
            yield self
        finally:
            for m, mode in modes:
                m.training = mode
            for p, flag in params:
                p.requires_grad_(flag)

    @torch.no_grad()
    def logits(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Logits for ``x`` in batches, in eval mode; returned on the model's device."""
        out = []
        with self.evaluating():
            for i in range(0, x.shape[0], batch_size):
                y = self(x[i : i + batch_size].to(self.device))
                if not isinstance(y, torch.Tensor):
                    raise ModelError(
                        f"the model returned {type(y).__name__}, not a tensor of logits",
                        field="model",
                        fix="Wrap the model so that forward returns one (N, num_classes) tensor.",
                    )
                out.append(y.float())
        if not out:
            return torch.empty(0, self.num_classes or 0, device=self.device)
        return torch.cat(out)

    def predict(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Predicted labels for ``x`` (on the model's device)."""
        return self.logits(x, batch_size).argmax(dim=1)

    # -- checks --------------------------------------------------------------------
    def validate(self, x: torch.Tensor) -> None:
        """Check the outputs on a few inputs once: finite (N, C) logits, not probabilities."""
        if self._validated:
            return
        sample = x[: min(8, x.shape[0])].to(self.device)
        try:
            out = self.logits(sample)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure here is the user's model
            shape = tuple(sample.shape[1:])
            raise ModelError(
                f"the model failed on inputs of shape {shape}: {type(exc).__name__}: {exc}",
                field="model",
                fix="Check that the data matches the model's expected input shape "
                "and that the model runs on the chosen device.",
            ) from exc
        if out.dim() != 2 or out.shape[0] != sample.shape[0]:
            raise ModelError(
                f"the model returned shape {tuple(out.shape)} for {sample.shape[0]} inputs, "
                "expected (N, num_classes) logits",
                field="model",
                fix="Return one row of class scores per input.",
            )
        if out.shape[1] < 2:
            raise ModelError(
                f"the model returned {out.shape[1]} score per input; a classifier needs one per class",
                field="model",
                fix="For a binary model with one logit z, return torch.cat([torch.zeros_like(z), z], dim=1).",
            )
        if not torch.isfinite(out).all():
            raise ModelError(
                "the model returned NaN or infinite outputs",
                field="model",
                fix="Check the weights and the input preprocessing (bounds, mean/std).",
            )
        if self.num_classes is not None and out.shape[1] != self.num_classes:
            raise ModelError(
                f"the model returned {out.shape[1]} classes, expected {self.num_classes}",
                field="model",
                fix="Set num_classes to match the model's output.",
            )
        self.num_classes = int(out.shape[1])
        rows = out.sum(dim=1)
        if bool((out >= 0).all()) and bool(torch.allclose(rows, torch.ones_like(rows), atol=1e-3)):
            self.outputs_probabilities = True
            warnings.warn(
                f"{self.spec}: the model's outputs look like probabilities (non-negative, rows sum to 1). "
                "Gradient attacks are weakened by a softmax output; return logits if you can. The audit "
                "uses margin losses and flags this.",
                stacklevel=2,
            )
        self._validated = True

    # -- identity ------------------------------------------------------------------
    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def sha256(self) -> str:
        """Hash of the weights and buffers (names, shapes, dtypes, values)."""
        h = hashlib.sha256()
        for name, t in sorted(self.module.state_dict().items()):
            if not isinstance(t, torch.Tensor):
                continue
            t = t.detach().cpu().contiguous()
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
            # reshape first: a 0-d tensor (e.g. BatchNorm's num_batches_tracked) cannot be viewed as bytes
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()

    def info(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "sha256": self.sha256(),
            "n_parameters": self.n_parameters,
            "bounds": list(self.bounds),
            "mean": self.mean,
            "std": self.std,
            "device": str(self.device),
            "num_classes": self.num_classes,
            "precision": self.precision,
            "channels_last": self.channels_last,
            "compiled": self.compiled,
            # how a factory was built (--model-arg / model.args): an audit says which model it measured
            **({"args": dict(self.metadata["args"])} if self.metadata.get("args") else {}),
        }


# ---------------------------------------------------------------------------------------
# Loading


def load_model(
    spec: str | nn.Module | ModelUnderTest,
    *,
    weights: str | None = None,
    trust_model: bool = False,
    bounds: Sequence[float] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: str | torch.device | None = "auto",
    num_classes: int | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    model_args: dict[str, Any] | None = None,
) -> ModelUnderTest:
    """Load a model from a spec.

    Specs: ``zoo:NAME``; ``path.pt2`` (torch.export); ``path.pt``/``path.ts`` (TorchScript);
    ``package.module:callable`` (a factory, with optional ``weights``); a folder written by
    ``robustness harden``; a pickled whole module in ``.pt`` only with ``trust_model=True``.
    Explicit ``bounds``/``mean``/``std`` override what the spec records. ``precision``,
    ``channels_last`` and ``compile``: see :class:`ModelUnderTest`. ``model_args`` are keyword
    arguments for a factory spec (recorded in the model's info); any other spec refuses them.
    """
    if isinstance(spec, ModelUnderTest):
        return spec
    meta: dict[str, Any] = {}
    if isinstance(spec, nn.Module):
        module, label = spec, f"<{type(spec).__name__}>"
    else:
        label = str(spec)
        module, meta = _load_module(label, weights=weights, trust_model=trust_model, model_args=model_args)
        if model_args:
            meta = {**meta, "args": dict(model_args)}
    return ModelUnderTest(
        module,
        spec=label,
        bounds=bounds if bounds is not None else meta.get("bounds", (0.0, 1.0)),
        mean=mean if mean is not None else meta.get("mean"),
        std=std if std is not None else meta.get("std"),
        device=device,
        num_classes=num_classes if num_classes is not None else meta.get("num_classes"),
        metadata=meta,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
    )


class ModelScheme(Protocol):
    """Loads ``SCHEME:NAME`` specs: a catalogue of named models (the zoo registers ``zoo``).

    A scheme lives above the ground floor (the zoo trains its models through ``defenses``), so
    it registers itself in :data:`MODEL_SCHEMES` from its own module, found through the
    ``robustness.plugins`` entry-point group; loading a model never imports what a scheme needs
    until that scheme is used. A scheme may also offer ``check(name)``, which ``robustness
    validate`` calls to refuse an unknown name without loading the model; without it the name is
    looked up in :meth:`names`.
    """

    def load(self, name: str) -> tuple[nn.Module, dict[str, Any]]:
        """The trained model called ``name`` and its metadata (bounds, num_classes, ...)."""
        ...

    def architecture(self, name: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
        """A fresh, untrained instance of the architecture called ``name``."""
        ...

    def names(self) -> list[str]:
        """The names it knows (for error messages)."""
        ...

    def factory_paths(self) -> set[str]:
        """``module:qualname`` of its architectures' factories: as safe to call as its names."""
        ...


MODEL_SCHEMES: Registry[ModelScheme] = Registry(
    "model scheme", entry_points="robustness.plugins", error=ModelError, field="model"
)


def model_scheme(spec: str) -> tuple[ModelScheme, str] | None:
    """The registered scheme of ``SCHEME:NAME`` and the name, or None for other specs."""
    prefix, sep, rest = spec.partition(":")
    if sep and prefix and "." not in prefix and "/" not in prefix and prefix in MODEL_SCHEMES:
        return MODEL_SCHEMES.get(prefix), rest
    return None


def is_factory_spec(spec: str) -> bool:
    """Whether ``load_model`` reads ``spec`` as a factory ``package.module:callable`` (not a scheme or path)."""
    path = Path(spec)
    if model_scheme(spec) is not None or path.is_dir() or path.suffix in MODEL_SUFFIXES or path.exists():
        return False
    return ":" in spec


def _load_module(
    spec: str, *, weights: str | None, trust_model: bool, model_args: dict[str, Any] | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    if model_args is not None and not isinstance(model_args, dict):
        raise ModelError(
            f"model arguments must be a mapping of names to values, got {type(model_args).__name__}",
            field="model.args",
            fix="Give them as --model-arg KEY=VALUE or as a mapping under model.args in the config.",
        )
    found = model_scheme(spec)
    if model_args and not is_factory_spec(spec):
        # Only a factory is called with arguments; a named, saved or folder model is already built.
        raise ModelError(
            f"model arguments ({', '.join(sorted(model_args))}) are only passed to a factory "
            f"'package.module:callable', and {spec!r} is not one",
            field="model.args",
            fix="Drop --model-arg / model.args, or name the architecture's factory as the model.",
        )
    if found is not None:
        scheme, name = found
        if weights:
            raise ModelError(
                f"--weights cannot be combined with a {spec.partition(':')[0]} model ({spec})",
                field="weights",
                fix="Drop --weights, or use the architecture's factory as 'package.module:callable'.",
            )
        return scheme.load(name)
    path = Path(spec)
    if path.is_dir():
        if weights:
            raise ModelError(
                "--weights cannot be combined with a model folder",
                field="weights",
                fix="The folder's model.json already names its weights; drop --weights.",
            )
        return load_model_dir(path, trust_model=trust_model)
    if path.suffix in MODEL_SUFFIXES or path.exists():
        if not path.exists():
            raise ModelError(f"file not found: {spec}", field="model", fix="Check the path.")
        if weights:
            raise ModelError(
                "--weights is only used with a factory spec 'package.module:callable'",
                field="weights",
                fix="Drop --weights, or name the architecture's factory as --model.",
            )
        return _load_file(path, trust_model), {}
    if ":" in spec:
        module = build_factory(spec, model_args)
        if weights:
            load_weights(module, weights)
        return module, {}
    raise ModelError(
        f"cannot tell what kind of model {spec!r} is (not a zoo name, an existing file, or 'module:callable')",
        field="model",
        fix=f"Use zoo:NAME (see 'robustness models'), or {SAFE_FORMATS}.",
    )


def build_factory(spec: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Import ``package.module:callable`` and call it to get an ``nn.Module``."""
    return call_module_factory(
        import_object(spec, field="model"),
        kwargs,
        label=spec,
        fix="Check the factory's keyword arguments (--model-arg KEY=VALUE / model.args) against its signature."
        if kwargs
        else "Make the factory callable without arguments (or give its kwargs: --model-arg KEY=VALUE).",
        type_fix="Return an nn.Module from the factory.",
    )


def call_module_factory(
    factory: Any, kwargs: dict[str, Any] | None, *, label: str, fix: str, type_fix: str
) -> nn.Module:
    """Call an architecture's factory with ``kwargs``; its failure or a non-module is a named ModelError."""
    try:
        module = factory(**(kwargs or {}))
    except Exception as exc:  # noqa: BLE001 - the user's or a plug-in's factory, kwargs from a model card
        raise ModelError(
            f"calling {label} failed: {type(exc).__name__}: {exc}", field="model", fix=fix
        ) from exc
    if not isinstance(module, nn.Module):
        raise ModelError(
            f"{label} returned {type(module).__name__}, not a torch.nn.Module", field="model", fix=type_fix
        )
    return module


def import_object(spec: str, *, field: str) -> Any:
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise ModelError(
            f"{spec!r} is not of the form 'package.module:callable'",
            field=field,
            fix="Write the module path, a colon, and the callable's name.",
        )
    try:
        mod = importlib.import_module(mod_name)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(
            f"cannot import {mod_name!r}: {type(exc).__name__}: {exc}",
            field=field,
            fix="Check the module path and that it is importable (installed, or on PYTHONPATH).",
        ) from exc
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(
                f"{mod_name!r} has no attribute {attr!r}",
                field=field,
                fix="Check the callable's name after the colon.",
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"{spec} is not callable", field=field, fix="Point at a function or class.")
    return obj


def load_weights(module: nn.Module, weights: str | Path) -> None:
    """Load ``.safetensors`` or a state-dict ``.pt`` (``weights_only=True``) into ``module``."""
    path = Path(weights)
    if not path.exists():
        raise ModelError(f"weights file not found: {path}", field="weights", fix="Check the path.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(
                f"cannot read {path}: {exc}",
                field="weights",
                fix="The file is corrupt or not safetensors; re-export the weights.",
            ) from exc
    else:
        if zipfile.is_zipfile(path):
            check_zip_integrity(path, field="weights")
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(
                f"{path} is not a plain state dict ({type(exc).__name__})",
                field="weights",
                fix="Save weights with torch.save(model.state_dict(), path) or as .safetensors.",
            ) from exc
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ModelError(
                f"{path} holds {type(state).__name__}, not a state dict",
                field="weights",
                fix="Save weights with torch.save(model.state_dict(), path).",
            )
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        fix = "Check that the factory builds the architecture these weights were trained for."
        if state and all(str(k).startswith("module.") for k in state):
            fix += " The keys start with 'module.' (saved from DataParallel): save model.module.state_dict()."
        raise ModelError(
            f"the weights do not fit the architecture ({_state_dict_mismatch(module, state) or exc})",
            field="weights",
            fix=fix,
        ) from exc


def _state_dict_mismatch(module: nn.Module, state: dict[str, Any], limit: int = 3) -> str:
    """One line naming the missing, unexpected and wrongly shaped tensors (the first few of each)."""
    own = module.state_dict()

    def _few(items: list[str]) -> str:
        return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")

    missing = [k for k in own if k not in state]
    unexpected = [str(k) for k in state if k not in own]
    shapes = [
        f"{k} is {tuple(state[k].shape)} in the file but {tuple(own[k].shape)} in the model"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    if shapes:
        parts.append("size mismatch: " + _few(shapes))
    if missing:
        parts.append("missing from the file: " + _few(missing))
    if unexpected:
        parts.append("not in the model: " + _few(unexpected))
    return "; ".join(parts)


def _file_kind(path: Path) -> str:
    """What a model file holds, from its bytes rather than its name.

    One of ``export`` (torch.export archive), ``torchscript``, ``torch-save`` (torch.save zip),
    ``pickle`` (legacy torch.save), ``safetensors`` or ``unknown``.
    """
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError):
            return "unknown"
        if any(n.endswith("models/model.json") or "serialized_exported_program" in n for n in names):
            return "export"
        if any("/code/" in n or n.startswith("code/") for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "torch-save"
        return "unknown"
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:1] == b"\x80":  # pickle protocol marker: a legacy (non-zip) torch.save file
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":  # 8-byte header length, then the JSON header
        return "safetensors"
    return "unknown"


def check_zip_integrity(path: Path, *, field: str = "model") -> None:
    """Refuse a zip-based file (TorchScript, torch.export, torch.save) with a damaged member.

    torch's zip reader does not check the members' CRCs, so flipped bytes inside the weights
    would load and give wrong numbers without any error.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except _ZIP_ERRORS as exc:
        raise ModelError(
            f"{path} is a damaged zip archive ({type(exc).__name__}: {exc})",
            field=field,
            fix="Copy or download the file again, or save it again from the original model.",
        ) from None
    if bad is not None:
        raise ModelError(
            f"{path} is damaged: its member {bad!r} does not match the checksum (CRC) recorded in the archive",
            field=field,
            fix="Copy or download the file again, or save it again; a damaged file gives wrong numbers.",
        )


def _load_file(path: Path, trust_model: bool) -> nn.Module:
    if zipfile.is_zipfile(path):
        check_zip_integrity(path)
    kind = _file_kind(path)
    if kind == "export" or (kind == "unknown" and path.suffix == ".pt2"):
        return _load_exported(path, trust_model)
    if kind == "torchscript":
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001
            raise ModelError(
                f"cannot load {path} as TorchScript: {type(exc).__name__}: {exc}",
                field="model",
                fix="Save it with torch.jit.save(torch.jit.script(model), path).",
            ) from exc
    if kind == "safetensors" or path.suffix == ".safetensors":
        raise ModelError(
            f"{path} holds weights only (safetensors), not a model",
            field="model",
            fix="Name the architecture as 'package.module:callable' and pass this file as --weights.",
        )
    if kind in ("torch-save", "pickle"):
        return _load_pickled(path, trust_model)
    raise ModelError(
        f"{path} is not a TorchScript, torch.export or torch.save file",
        field="model",
        fix=f"Give {SAFE_FORMATS}.",
    )


def _load_exported(path: Path, trust_model: bool = False) -> nn.Module:
    if not trust_model:
        _refuse_code_in_export(path)
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(
            f"cannot load {path} as a torch.export program: {exc}",
            field="model",
            fix="Save it with torch.export.save(torch.export.export(model, args), path).",
        ) from exc
    module = program.module()
    train_ops = _training_mode_ops(module)
    if train_ops:
        # An exported graph has its mode baked in: predictions would depend on the batch
        # (batch-norm statistics) and on chance (dropout), and no flag can switch that off.
        raise ModelError(
            f"{path} was exported in training mode ({', '.join(train_ops)} active)",
            field="model",
            fix="Export the model in eval mode: torch.export.export(model.eval(), args).",
        )
    batch = _static_batch_size(program)
    if batch is not None:
        warnings.warn(
            f"{path} was exported for a fixed batch size of {batch}; batches are split and padded to it, "
            "which is slower. Export with a dynamic batch dimension for speed: "
            "torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim('batch')},)).",
            stacklevel=3,
        )
        return FixedBatch(module, batch)
    return module


def _refuse_code_in_export(path: Path) -> None:
    """Refuse a torch.export archive that loading would unpickle, or run native code, from.

    ``torch.export.load`` unpickles with ``weights_only=False`` every weight or tensor constant
    whose payload config says ``use_pickle``, every custom or opaque object constant, and any
    ``.pt`` entry (sample inputs, legacy layouts) that does not load with ``weights_only=True``;
    it also loads AOTInductor shared libraries. Any of them runs code from the file.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            found = _code_entries(zf)
    except _ZIP_ERRORS as exc:
        raise ModelError(
            f"cannot load {path} as a torch.export program: not a readable zip archive "
            f"({type(exc).__name__}: {exc})",
            field="model",
            fix="Save it with torch.export.save(torch.export.export(model, args), path).",
        ) from None
    if found:
        more = f"; and {len(found) - 3} more" if len(found) > 3 else ""
        raise ModelError(
            f"{path} is a torch.export archive whose loading would run code from the file: "
            + "; ".join(found[:3])
            + more,
            field="model",
            fix=f"{TRUST_FIX}. Otherwise ask for an export with plain tensor weights "
            "(torch.export.save of a model whose weights are ordinary tensors), or for its factory and "
            ".safetensors weights.",
        )


def _code_entries(zf: zipfile.ZipFile) -> list[str]:
    """The entries of an export archive that loading would unpickle or execute, described."""
    infos = zf.infolist()
    # Matched case-insensitively and with either slash: stricter than torch's reader, never looser.
    names = [i.filename.replace("\\", "/").lower() for i in infos]
    seen: set[str] = set()
    for name, info in zip(names, infos):
        if name in seen:
            # Two entries of one name: a reader could take the copy that was not checked.
            return [f"entry {info.filename!r} appears twice"]
        seen.add(name)
    found: list[str] = []
    native = [i.filename for n, i in zip(names, infos) if "data/aotinductor/" in n]
    if native:
        found.append(f"entry {native[0]!r} is AOTInductor compiled code (a native library that loading runs)")
    for name, info in zip(names, infos):
        if "data/aotinductor/" in name:
            continue
        if name.endswith(("_weights_config.json", "_constants_config.json")):
            found += _pickled_payloads(zf, info, constants=name.endswith("_constants_config.json"))
        elif name.endswith(".pt") and not _loads_weights_only(zf.read(info)):
            found.append(f"entry {info.filename!r} is pickled data that does not load with weights_only=True")
    return found


def _pickled_payloads(zf: zipfile.ZipFile, info: zipfile.ZipInfo, *, constants: bool) -> list[str]:
    """Weights/constants that a payload config (``*_weights_config.json``) marks as unpickled."""
    folder = info.filename.rsplit("/", 1)[0]
    try:
        config = json.loads(zf.read(info))["config"]
        items = list(config.items())
    except (ValueError, KeyError, TypeError, AttributeError):
        return [f"entry {info.filename!r} is not a readable payload config, so its entries cannot be checked"]
    what = "constant" if constants else "weight"
    found = []
    for fqn, meta in items:
        if not isinstance(meta, dict):
            found.append(f"entry {info.filename!r} has a malformed record for {what} {fqn!r}")
            continue
        entry = f"{folder}/{meta.get('path_name')}"
        if meta.get("use_pickle"):  # any true value: torch tests it for truth
            found.append(f"entry {entry!r} ({what} {fqn!r}) is pickled (use_pickle)")
        elif constants and not str(meta.get("path_name", "")).startswith("tensor_"):
            # custom_obj_* and opaque_obj_* constants are always unpickled
            found.append(f"entry {entry!r} ({what} {fqn!r}) is a pickled object")
    return found


def _loads_weights_only(data: bytes) -> bool:
    """Whether ``torch.load(weights_only=True)`` reads these bytes (torch would fall back to a full unpickle)."""
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure means torch would retry with weights_only=False
        return False
    return True


def _static_batch_size(program: Any) -> int | None:
    """The batch size an exported program was specialised to, or None if its batch is dynamic."""
    names = tuple(program.graph_signature.user_inputs)
    if len(names) != 1:
        return None
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name == names[0]:
            val = node.meta.get("val")
            shape = getattr(val, "shape", None)
            if shape is not None and len(shape) > 0 and isinstance(shape[0], int):
                return int(shape[0])
    return None


class FixedBatch(nn.Module):
    """Runs a network specialised to one batch size on batches of any size.

    Splits the input into chunks of that size, pads the last chunk with copies of its first
    row and drops the padded rows' outputs. Sound because an eval-mode network treats the
    rows of a batch independently (training-mode exports are refused).
    """

    def __init__(self, net: nn.Module, batch_size: int) -> None:
        super().__init__()
        self.net = net
        self.batch_size = int(batch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n = self.batch_size, x.shape[0]
        if n == b:
            return self.net(x)
        outs = []
        for i in range(0, n, b):
            chunk = x[i : i + b]
            k = chunk.shape[0]
            if k < b:
                chunk = torch.cat([chunk, chunk[:1].expand(b - k, *chunk.shape[1:])])
            outs.append(self.net(chunk)[:k])
        return torch.cat(outs)


def _training_mode_ops(module: nn.Module) -> list[str]:
    """Names of batch-norm / dropout calls whose training flag is baked in as True."""
    graph = getattr(module, "graph", None)
    if graph is None:
        return []
    found: set[str] = set()
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        name = str(node.target)
        if "batch_norm" in name and "no_training" not in name:
            # aten.batch_norm / native_batch_norm / _native_batch_norm_legit: training is argument 5;
            # the no_stats overload has no running statistics, so argument 3.
            pos = 3 if "no_stats" in name else 5
            flag = node.args[pos] if len(node.args) > pos else node.kwargs.get("training")
            if flag is True:
                found.add("batch norm with batch statistics")
        elif "dropout" in name:
            flag = node.args[2] if len(node.args) > 2 else node.kwargs.get("train")
            if flag is True:
                found.add("dropout")
    return sorted(found)


def _load_pickled(path: Path, trust_model: bool) -> nn.Module:
    """A ``torch.save`` file: a state dict is refused with a hint; a whole module needs trust."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - needs full unpickling
        pass
    else:
        if isinstance(obj, dict):
            raise ModelError(
                f"{path} holds a state dict, not a model",
                field="model",
                fix="Name the architecture as 'package.module:callable' and pass this file as --weights.",
            )
        raise ModelError(
            f"{path} holds {type(obj).__name__}, not a model", field="model", fix=f"Give {SAFE_FORMATS}."
        )
    if not trust_model:
        raise ModelError(
            f"{path} is a pickled Python object; loading it would unpickle it, and unpickling can run arbitrary "
            "code from the file",
            field="model",
            fix=f"{TRUST_FIX}, or give {SAFE_FORMATS}.",
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(
            f"cannot unpickle {path}: {type(exc).__name__}: {exc}",
            field="model",
            fix="Make the model's classes importable, or save it in a safe format.",
        ) from exc
    if not isinstance(obj, nn.Module):
        raise ModelError(
            f"{path} holds {type(obj).__name__}, not an nn.Module", field="model", fix=f"Give {SAFE_FORMATS}."
        )
    return obj


MODEL_CARD = "model.json"


def load_model_dir(path: Path, *, trust_model: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a folder holding ``model.json`` (architecture + weights file).

    Without ``trust_model`` the card may only name a built-in architecture (see
    :func:`check_folder_architecture`); the weights file is checked against the card's hash.
    """
    card_path = path / MODEL_CARD
    if not card_path.exists():
        raise ModelError(
            f"{path} has no {MODEL_CARD}",
            field="model",
            fix="Point at a folder written by 'robustness harden', or at a model file.",
        )
    try:
        card = json.loads(card_path.read_text())
        arch = card["architecture"]
        weights_name = card.get("weights", "model.safetensors")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ModelError(
            f"{card_path} is malformed ({exc})",
            field="model",
            fix="Re-create the folder with 'robustness harden'.",
        ) from exc
    if (
        not isinstance(weights_name, str)
        or weights_name in ("", ".", "..")
        or Path(weights_name).name != weights_name
    ):
        raise ModelError(
            f"{card_path} names the weights file {weights_name!r}, which is not a file in the folder",
            field="model",
            fix="Keep the weights beside model.json and name the file only (e.g. model.safetensors).",
        )
    check_folder_architecture(arch, trust_model=trust_model, source=card_path)
    module = build_architecture(arch)
    weights = path / weights_name
    _check_weights_hash(weights, card.get("weights_sha256"), card_path)
    load_weights(module, weights)
    meta = {k: card[k] for k in ("bounds", "mean", "std", "num_classes") if card.get(k) is not None}
    meta["card"] = card
    return module, meta


def check_folder_architecture(arch: Any, *, trust_model: bool, source: str | Path) -> None:
    """Refuse a model card naming anything but a built-in architecture, unless the model is trusted.

    A folder's ``model.json`` is data from whoever sent the folder, and a factory named there is
    imported and called with the card's kwargs: ``{"factory": "subprocess:run", "kwargs":
    {"args": [...]}}`` would run a command. Built in: ``zoo:NAME`` (the zoo's models and the
    architectures plug-ins register with :func:`robustness.zoo.register_architecture`, looked up
    by name, never imported) and those factories' own import paths.
    """
    factory = arch.get("factory") if isinstance(arch, dict) else arch
    if not isinstance(factory, str) or not factory:
        raise ModelError(
            f"{source} has no architecture factory (got {arch!r})",
            field="model",
            fix="Re-create the folder with 'robustness harden'.",
        )
    if trust_model or model_scheme(factory) is not None:
        return
    schemes = MODEL_SCHEMES.items()
    if any(factory in scheme.factory_paths() for scheme in schemes.values()):
        return
    builtin = ", ".join(f"{prefix}:{n}" for prefix, scheme in schemes.items() for n in scheme.names())
    raise ModelError(
        f"{source} names the factory {factory!r}, which is not a built-in architecture; loading the folder "
        "would import and call it (with the card's kwargs), running code named by the file",
        field="model",
        fix=f"{TRUST_FIX}: a folder that 'robustness harden' wrote for your own factory names that factory "
        "and needs --trust-model, or register the architecture from a plug-in with "
        f"robustness.zoo.register_architecture(NAME, factory) and name it 'zoo:NAME'. Built in: {builtin}.",
    )


def _check_weights_hash(weights: Path, expected: Any, card_path: Path) -> None:
    """Compare the weights file with the SHA-256 the card records (safetensors has no checksum of its own)."""
    if not isinstance(expected, str) or not weights.is_file():
        return  # older cards record none; a missing file is reported by load_weights
    from robustness.core.io import sha256_file

    actual = sha256_file(weights)
    if actual != expected:
        raise ModelError(
            f"{weights} does not match the hash recorded in {card_path} (sha256 {actual[:12]}..., "
            f"expected {expected[:12]}...): the file is damaged or was replaced",
            field="model",
            fix="Copy the folder again from its source, or re-create it with 'robustness harden'.",
        )


def build_architecture(arch: dict[str, Any] | str) -> nn.Module:
    """Build an untrained module from an architecture spec: ``zoo:NAME`` or {factory, kwargs}.

    Calls any factory it names: for a spec from a model folder, call
    :func:`check_folder_architecture` first.
    """
    if isinstance(arch, str):
        arch = {"factory": arch}
    factory = arch.get("factory", "")
    found = model_scheme(factory)
    if found is not None:
        scheme, name = found
        return scheme.architecture(name, arch.get("kwargs"))
    return build_factory(factory, arch.get("kwargs"))
