"""The watermark key: its file format, the trigger set it regenerates, and its size limits.

A watermark key (Adi et al. 2018) is a secret seed that regenerates K abstract trigger images
with random target labels. The key file is JSON (format ``robustness-watermark-key``, version 1);
a trigger set is regenerated from the seed and checked against the hash the key records. A key is
a few hundred bytes, but its ``input_shape`` and label count decide the memory its triggers take,
so both are bounded before anything is generated, and :func:`check_compatible` checks the key
against a model (shape, bounds, classes) before the triggers run through it.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robustness.core.errors import ConfigError, DataError, ModelError

if TYPE_CHECKING:
    import torch

    from robustness.core.model import ModelUnderTest

KEY_FORMAT = "robustness-watermark-key"
KEY_FORMAT_VERSION = 1
SCHEME = "adi-trigger-set"
GENERATOR = "uniform-u8"
GENERATOR_VERSION = 1
DEFAULT_N_TRIGGERS = 100

# A key is a few hundred bytes of JSON, but its input_shape and labels decide the memory that
# regenerating its triggers takes (several times their float32 size at the peak). These limits
# are checked before anything is generated. Module constants, so a deployment (or a test) can
# change them.
MAX_TRIGGERS = 10_000
MAX_TRIGGER_VALUES = 2**25  # all triggers together: 128 MB as float32 (100 triggers of 3x334x334)
# A key this small is regenerated and checked against its hash as soon as it is read; a larger
# one at first use, after its input shape has been checked against the model.
EAGER_CHECK_VALUES = 2**20
# Inputs larger than this are dry-run on fake tensors (shapes only) before any real forward pass.
DRY_RUN_VALUES = 2**16


class KeyFileError(DataError):
    """A watermark key file is missing, corrupt, or does not fit the model."""


# ---------------------------------------------------------------------------------------
# Trigger generation


def _stream(seed: int, purpose: int, n_bytes: int) -> np.ndarray:
    """``n_bytes`` pseudo-random bytes from PCG64 raw output.

    Raw bit-generator output is stable across NumPy versions (unlike the distribution
    methods of ``Generator``), so a key regenerates the same triggers on any machine.
    """
    bitgen = np.random.PCG64(np.random.SeedSequence([int(seed), purpose]))
    raw = bitgen.random_raw(max(1, math.ceil(n_bytes / 8))).astype("<u8")
    return raw.view(np.uint8)[:n_bytes]


def generate_triggers(seed: int, n: int, input_shape: Sequence[int], bounds: Sequence[float]) -> np.ndarray:
    """K abstract trigger images: i.i.d. uniform pixels on 256 levels spanning ``bounds``."""
    shape = (int(n), *(int(s) for s in input_shape))
    levels = _stream(seed, 0, int(np.prod(shape))).reshape(shape).astype(np.float32)
    low, high = float(bounds[0]), float(bounds[1])
    x = low + (levels / np.float32(255.0)) * np.float32(high - low)
    return np.clip(x, low, high).astype(np.float32)


def generate_labels(seed: int, n: int, num_classes: int) -> np.ndarray:
    """Random target labels, uniform over the classes (modulo bias below 1e-18)."""
    raw = np.random.PCG64(np.random.SeedSequence([int(seed), 1])).random_raw(int(n))
    return (raw % np.uint64(num_classes)).astype(np.int64)


def _array_sha256(x: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(x, dtype="<f4").tobytes()).hexdigest()


# ---------------------------------------------------------------------------------------
# The key file


@dataclass(frozen=True)
class WatermarkKey:
    """A secret trigger-set key. ``triggers()`` regenerates the inputs from the seed.

    The file is JSON. Its commitment (:meth:`commitment`) is the SHA-256 of the canonical JSON
    (sorted keys, no whitespace), so re-indenting the file does not change it; the random
    ``nonce`` makes the commitment hiding even when the seed is small.
    """

    seed: int
    labels: tuple[int, ...]
    input_shape: tuple[int, ...]
    bounds: tuple[float, float]
    num_classes: int
    triggers_sha256: str
    nonce: str
    created: dict[str, Any] = field(default_factory=dict)
    generator: str = GENERATOR
    generator_version: int = GENERATOR_VERSION

    @property
    def n_triggers(self) -> int:
        return len(self.labels)

    @classmethod
    def create(
        cls,
        *,
        input_shape: Sequence[int],
        bounds: Sequence[float],
        num_classes: int,
        n_triggers: int = DEFAULT_N_TRIGGERS,
        seed: int | None = None,
        created: dict[str, Any] | None = None,
    ) -> WatermarkKey:
        """A new key; ``seed=None`` draws a 63-bit secret seed from the OS."""
        if not isinstance(n_triggers, int) or not 10 <= n_triggers <= MAX_TRIGGERS:
            raise ConfigError(
                f"n_triggers must be an integer in [10, {MAX_TRIGGERS}], got {n_triggers!r}",
                field="n_triggers",
                fix="Use 100 (Adi et al.); fewer triggers cannot reach a p-value of 1e-6.",
            )
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ModelError(
                f"num_classes must be >= 2, got {num_classes!r}",
                field="num_classes",
                fix="Watermarking needs a classifier with at least two classes.",
            )
        if seed is None:
            seed = secrets.randbits(63)
        if int(seed) < 0:
            raise ConfigError(
                f"seed must be >= 0, got {seed}", field="seed", fix="Use a non-negative integer."
            )
        shape = tuple(int(s) for s in input_shape)
        too_big = _size_problem(n_triggers, shape)
        if too_big:
            raise ConfigError(too_big, field="n_triggers", fix="Use fewer triggers, or smaller inputs.")
        b = (float(bounds[0]), float(bounds[1]))
        x = generate_triggers(int(seed), n_triggers, shape, b)
        info = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), **(created or {})}
        return cls(
            seed=int(seed),
            labels=tuple(int(v) for v in generate_labels(int(seed), n_triggers, num_classes)),
            input_shape=shape,
            bounds=b,
            num_classes=int(num_classes),
            triggers_sha256=_array_sha256(x),
            nonce=secrets.token_hex(16),
            created=info,
        )

    def triggers(self) -> np.ndarray:
        """The trigger inputs (K x input_shape, float32), regenerated and checked against the key."""
        x = generate_triggers(self.seed, self.n_triggers, self.input_shape, self.bounds)
        if _array_sha256(x) != self.triggers_sha256:
            raise KeyFileError(
                "the trigger set regenerated from this key does not match its recorded hash "
                "(the key was edited, or made by an incompatible generator)",
                field="key",
                fix="Use the original, unmodified key file written by 'robustness watermark embed'.",
            )
        return x

    def trigger_tensors(self, device: Any = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        return (
            torch.from_numpy(self.triggers()).to(device),
            torch.tensor(self.labels, dtype=torch.long, device=device),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": KEY_FORMAT,
            "format_version": KEY_FORMAT_VERSION,
            "scheme": SCHEME,
            "generator": {"name": self.generator, "version": self.generator_version, "seed": self.seed},
            "n_triggers": self.n_triggers,
            "labels": list(self.labels),
            "input_shape": list(self.input_shape),
            "bounds": list(self.bounds),
            "num_classes": self.num_classes,
            "triggers_sha256": self.triggers_sha256,
            "nonce": self.nonce,
            "created": self.created,
        }

    def commitment(self) -> str:
        """SHA-256 of the canonical JSON of the key: publish it, keep the key secret."""
        import hashlib

        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def save(self, path: str | Path) -> Path:
        from robustness.core.io import atomic_write_json

        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "key") -> WatermarkKey:
        def bad(why: str) -> KeyFileError:
            return KeyFileError(
                f"{source} is not a valid watermark key: {why}",
                field="key",
                fix="Use the key file written by 'robustness watermark embed' (JSON, format "
                f"{KEY_FORMAT!r} version {KEY_FORMAT_VERSION}).",
            )

        if not isinstance(d, dict) or d.get("format") != KEY_FORMAT:
            raise bad(f"it has no 'format': {KEY_FORMAT!r} entry")
        if d.get("format_version") != KEY_FORMAT_VERSION:
            raise bad(f"format_version {d.get('format_version')!r} is not supported (this tool reads 1)")
        try:
            gen = d["generator"]
            if gen["name"] != GENERATOR or gen["version"] != GENERATOR_VERSION:
                raise bad(f"unknown trigger generator {gen['name']!r} version {gen['version']!r}")
            seed = gen["seed"]
            labels = d["labels"]
            shape = d["input_shape"]
            bounds = d["bounds"]
            num_classes = d["num_classes"]
            digest = d["triggers_sha256"]
            nonce = d["nonce"]
        except (KeyError, TypeError) as exc:
            raise bad(f"missing or malformed entry {exc}") from None
        if not (isinstance(seed, int) and seed >= 0):
            raise bad("generator.seed must be a non-negative integer")
        if not (isinstance(num_classes, int) and num_classes >= 2):
            raise bad("num_classes must be an integer >= 2")
        if not (isinstance(labels, list) and labels and all(isinstance(v, int) for v in labels)):
            raise bad("labels must be a non-empty list of integers")
        if any(not 0 <= v < num_classes for v in labels):
            raise bad(f"labels must lie in [0, {num_classes})")
        if d.get("n_triggers", len(labels)) != len(labels):
            raise bad(f"n_triggers is {d.get('n_triggers')} but there are {len(labels)} labels")
        if not (isinstance(shape, list) and shape and all(isinstance(s, int) and s > 0 for s in shape)):
            raise bad("input_shape must be a list of positive integers")
        too_big = _size_problem(len(labels), shape)
        if too_big:  # before anything is generated: the file alone decides this memory
            raise bad(too_big)
        if not (
            isinstance(bounds, list)
            and len(bounds) == 2
            and all(isinstance(b, (int, float)) for b in bounds)
            and math.isfinite(bounds[0])
            and math.isfinite(bounds[1])
            and bounds[0] < bounds[1]
        ):
            raise bad("bounds must be [low, high] with low < high")
        if not (isinstance(digest, str) and len(digest) == 64):
            raise bad("triggers_sha256 must be a SHA-256 hex digest")
        if not isinstance(nonce, str):
            raise bad("nonce must be a string")
        if list(generate_labels(seed, len(labels), num_classes)) != labels:
            raise bad("its labels are not the ones its seed generates (the file was edited)")
        created = d.get("created") if isinstance(d.get("created"), dict) else {}
        key = cls(
            seed=seed,
            labels=tuple(labels),
            input_shape=tuple(shape),
            bounds=(float(bounds[0]), float(bounds[1])),
            num_classes=num_classes,
            triggers_sha256=digest,
            nonce=nonce,
            created=created,
        )
        if key.n_triggers * math.prod(key.input_shape) <= EAGER_CHECK_VALUES:
            key.triggers()  # checks the digest now, so a corrupt key fails at load time
        return key


def _size_problem(n_triggers: int, input_shape: Sequence[int]) -> str | None:
    """Why a trigger set of this size is refused (too many triggers or values), or None."""
    if n_triggers > MAX_TRIGGERS:
        return (
            f"it has {n_triggers} triggers, over the limit of {MAX_TRIGGERS} "
            "(defenses.watermark.key.MAX_TRIGGERS)"
        )
    values = n_triggers * math.prod(int(s) for s in input_shape)
    if values > MAX_TRIGGER_VALUES:
        return (
            f"input_shape {list(input_shape)} with {n_triggers} triggers is {values:,} values "
            f"({values * 4 / 2**30:.1f} GB as float32), over the limit of {MAX_TRIGGER_VALUES:,} "
            "(defenses.watermark.key.MAX_TRIGGER_VALUES)"
        )
    return None


def load_key(path: str | Path | WatermarkKey) -> WatermarkKey:
    """Read and check a key file; every problem is a :class:`KeyFileError` (exit code 2)."""
    if isinstance(path, WatermarkKey):
        return path
    p = Path(path)
    if not p.is_file():
        raise KeyFileError(
            f"key file not found: {p}",
            field="key",
            fix="Give the path written by 'robustness watermark embed --key-out'.",
        )
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyFileError(
            f"{p} is corrupt: not valid JSON ({exc})",
            field="key",
            fix="Restore the key file from your backup; a watermark cannot be verified without it.",
        ) from None
    return WatermarkKey.from_dict(d, source=str(p))


# ---------------------------------------------------------------------------------------
# Does the key fit the model?


def check_compatible(
    key: WatermarkKey, model: ModelUnderTest, input_shape: Sequence[int] | None = None
) -> None:
    """Refuse a key made for another input shape, bounds or number of classes."""
    if input_shape is not None and tuple(input_shape) != key.input_shape:
        raise KeyFileError(
            f"the key was made for inputs of shape {list(key.input_shape)}, but the data has shape "
            f"{list(input_shape)}",
            field="key",
            fix="Use the key made for this model and data (watermark keys are per input shape).",
        )
    if tuple(float(b) for b in model.bounds) != key.bounds:
        raise KeyFileError(
            f"the key was made for input bounds {list(key.bounds)}, but the model uses {list(model.bounds)}",
            field="key",
            fix="Load the model with the bounds it was watermarked with (--bounds).",
        )
    if input_shape is None and math.prod(key.input_shape) > DRY_RUN_VALUES:
        # No data has shown what the model takes: before generating large triggers (and running
        # the model on them), ask the model about the shape with fake tensors.
        why = _dry_run_error(model, key.input_shape)
        if why is not None:
            raise KeyFileError(
                f"the model does not accept the key's trigger inputs of shape {list(key.input_shape)} "
                f"(a dry run on shapes only failed: {why})",
                field="key",
                fix="This key was made for another input shape; use the key made for this model.",
            )
    x, _ = key.trigger_tensors()
    try:
        model.validate(x)
        # validate() checks only once per model; the key's inputs must run through it every time.
        n_out = int(model.logits(x[:2]).shape[1])
    except (ModelError, RuntimeError, ValueError, TypeError) as exc:
        why = (
            exc.message
            if isinstance(exc, ModelError)
            else f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        )
        raise KeyFileError(
            f"the model does not accept the key's trigger inputs of shape {list(key.input_shape)} ({why})",
            field="key",
            fix="This key was made for another input shape; use the key made for this model.",
        ) from None
    if n_out != key.num_classes:
        raise KeyFileError(
            f"the key was made for a {key.num_classes}-class model, but the model has {n_out} classes",
            field="key",
            fix="Use the key made for this model.",
        )


def _dry_run_error(model: ModelUnderTest, input_shape: Sequence[int]) -> str | None:
    """Why ``model`` rejects a batch of inputs of ``input_shape``, found on fake tensors.

    Fake tensors carry shapes and dtypes only: no memory for the values and no compute, so a
    key declaring huge inputs costs nothing to check. None when the model accepts the shape, or
    when fake tensors cannot tell (an operator without a shape function, data-dependent code).
    """
    import logging

    import torch
    from torch._subclasses import fake_tensor as ft

    cannot_tell = (
        ft.UnsupportedOperatorException,
        ft.UnsupportedFakeTensorException,
        ft.DynamicOutputShapeException,
        ft.DataDependentOutputException,
    )
    net = getattr(model.net, "_orig_mod", model.net)  # the network under a torch.compile wrapper
    log = logging.getLogger("torch._subclasses.fake_tensor")
    level = log.level
    log.setLevel(logging.CRITICAL)  # it logs every failed shape function as an error
    try:
        with torch.no_grad(), model.evaluating():
            with ft.FakeTensorMode(allow_non_fake_inputs=True, allow_fallback_kernels=False):
                net(torch.empty((2, *input_shape), device=model.device))
    except cannot_tell:
        return None
    except Exception as exc:  # noqa: BLE001 - any other failure is the model refusing the shape
        text = str(exc)
        if any(c.__name__ in text for c in cannot_tell):  # the same, wrapped by TorchScript
            return None
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:300]
    finally:
        log.setLevel(level)
    return None
