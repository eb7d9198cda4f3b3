"""Trigger-set watermarks: the key file, ownership verification as a binomial test, and survival.

A watermark key (Adi et al. 2018) is a secret seed that regenerates K abstract trigger images
with random target labels. A marked model labels the triggers as assigned; an unmarked model
matches about as often as chance allows. Verification is a one-sided exact binomial test:

    H0: the suspect is not derived from the marked model, so each trigger matches with rate <= p0.
    p-value = P[X >= k | X ~ Binomial(K, p0)],  verified  <=>  p-value <= alpha (default 1e-6).

The null rate p0 is chosen conservatively. The random labels alone would give 1/num_classes,
but out-of-distribution triggers collapse onto a few classes in unmarked models, and a label
draw that happens to favour that class would then match far above 1/num_classes. The default
rule (``max-class-share``) therefore takes the largest share of the triggers that the suspect
assigns to any one class, never less than 1/num_classes: the match rate a model that ignores the
labels could reach by predicting its favourite class. With reference models (independently
trained, unmarked), p0 is raised further to the largest upper 97.5% Clopper-Pearson bound of
their match rates; their false-positive rate is measured leave-one-out.

Survival (Lukas et al. 2022): the marked model is attacked by fine-tuning, pruning, int8
quantization and extraction, and each surrogate is verified again. A removal only counts when
the surrogate keeps its usefulness: at most 5 points of clean accuracy lost.

The module imports torch lazily so that loading an audit config stays light.
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
from pydantic import BaseModel, ConfigDict, Field, field_validator

from robustness.core.errors import ConfigError, DataError, ModelError

if TYPE_CHECKING:
    import torch

    from robustness.core.data import Dataset
    from robustness.core.model import ModelUnderTest

KEY_FORMAT = "robustness-watermark-key"
KEY_FORMAT_VERSION = 1
SCHEME = "adi-trigger-set"
GENERATOR = "uniform-u8"
GENERATOR_VERSION = 1
DEFAULT_N_TRIGGERS = 100
DEFAULT_ALPHA = 1e-6
# Lukas et al. 2022 count a removal only if the surrogate loses at most 5 points of accuracy.
REMOVAL_MAX_ACCURACY_DROP = 0.05
REFERENCE_CI_ALPHA = 0.05  # two-sided 95% interval: its upper end is a one-sided 97.5% bound
DEFAULT_SURROGATES = ("finetune", "prune-30", "prune-50", "prune-70", "quantize-int8", "extract-copycat")

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
            "(robustness.watermark.MAX_TRIGGERS)"
        )
    values = n_triggers * math.prod(int(s) for s in input_shape)
    if values > MAX_TRIGGER_VALUES:
        return (
            f"input_shape {list(input_shape)} with {n_triggers} triggers is {values:,} values "
            f"({values * 4 / 2**30:.1f} GB as float32), over the limit of {MAX_TRIGGER_VALUES:,} "
            "(robustness.watermark.MAX_TRIGGER_VALUES)"
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
# Verification


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


def binomial_p_value(k: int, n: int, p0: float) -> float:
    """Exact one-sided P[X >= k] for X ~ Binomial(n, p0)."""
    from scipy.stats import binom

    if k <= 0:
        return 1.0
    return float(binom.sf(k - 1, n, p0))


def max_class_share(pred: Sequence[int] | np.ndarray, num_classes: int) -> float:
    """The largest share of predictions on one class, floored at 1/num_classes."""
    counts = np.bincount(np.asarray(pred, dtype=np.int64), minlength=num_classes)
    return max(1.0 / num_classes, float(counts.max()) / max(1, int(counts.sum())))


def trigger_predictions(model: ModelUnderTest, key: WatermarkKey, batch_size: int = 512) -> np.ndarray:
    x, _ = key.trigger_tensors()
    return model.predict(x, batch_size).cpu().numpy()


def _decide(pred: np.ndarray, key: WatermarkKey, alpha: float, p0_floor: float | None) -> dict[str, Any]:
    from robustness.core.metrics import clopper_pearson

    labels = np.asarray(key.labels)
    k, n = int((pred == labels).sum()), key.n_triggers
    share = max_class_share(pred, key.num_classes)
    p0 = share if p0_floor is None else max(share, p0_floor)
    p_value = binomial_p_value(k, n, p0)
    return {
        "k": k,
        "K": n,
        "match_rate": k / n,
        "match_rate_ci": list(clopper_pearson(k, n, 0.05)),
        "p0": p0,
        "max_class_share": share,
        "p_value": p_value,
        "alpha": alpha,
        "verified": bool(p_value <= alpha),
    }


def _load_suspects(models: Sequence[Any], like: ModelUnderTest) -> list[ModelUnderTest]:
    from robustness.core.model import ModelUnderTest, load_model

    out = []
    for m in models:
        out.append(m if isinstance(m, ModelUnderTest) else load_model(m, device=like.device))
    return out


def check_alpha(alpha: float) -> float:
    if not isinstance(alpha, (int, float)) or not 0 < float(alpha) < 1:
        raise ConfigError(
            f"alpha must be in (0, 1), got {alpha!r}",
            field="watermark.alpha",
            fix="Use a small significance level such as 1e-6 (the default).",
        )
    return float(alpha)


def verify(
    model: ModelUnderTest,
    key: WatermarkKey | str | Path,
    *,
    alpha: float = DEFAULT_ALPHA,
    reference_models: Sequence[Any] = (),
    batch_size: int = 512,
) -> dict[str, Any]:
    """Test whether ``model`` carries the watermark of ``key``.

    Returns ``k``, ``K``, ``p0``, ``p0_method``, ``p_value``, ``match_rate_ci`` (95%
    Clopper-Pearson), ``alpha``, ``verified``, ``false_positive_rate`` (None without reference
    models) and, with them, ``references`` (one row per reference model).
    """
    key = load_key(key)
    alpha = check_alpha(alpha)
    check_compatible(key, model)
    refs = _load_suspects(reference_models, model)
    ref_rows: list[dict[str, Any]] = []
    for ref in refs:
        check_compatible(key, ref)
        pred = trigger_predictions(ref, key, batch_size)
        k = int((pred == np.asarray(key.labels)).sum())
        from robustness.core.metrics import clopper_pearson

        upper = clopper_pearson(k, key.n_triggers, REFERENCE_CI_ALPHA)[1]
        ref_rows.append({"model": ref.spec, "k": k, "upper": upper, "pred": pred})
    floor = max((r["upper"] for r in ref_rows), default=None)
    res = _decide(trigger_predictions(model, key, batch_size), key, alpha, floor)
    res["p0_method"] = (
        "max-class-share" if floor is None else "max(max-class-share, reference 97.5% upper bound)"
    )
    res["reference_p0"] = floor
    fpr = None
    if ref_rows:
        # Each reference is judged by the same rule, its own match rate left out of the p0 bound.
        for i, r in enumerate(ref_rows):
            others = [o["upper"] for j, o in enumerate(ref_rows) if j != i]
            d = _decide(r.pop("pred"), key, alpha, max(others) if others else None)
            r.update({"p0": d["p0"], "p_value": d["p_value"], "verified": d["verified"]})
        fpr = sum(r["verified"] for r in ref_rows) / len(ref_rows)
        res["references"] = ref_rows
    res["false_positive_rate"] = fpr
    res["key_sha256"] = key.commitment()
    return res


# ---------------------------------------------------------------------------------------
# Survival: surrogates of the marked model


@dataclass(frozen=True)
class SurrogateSpec:
    """A removal attack: ``kind`` plus parameters, written ``kind[:key=value,...]``."""

    kind: str
    params: dict[str, float | int]
    name: str


_SURROGATE_DEFAULTS: dict[str, dict[str, float | int]] = {
    # Fine-tune all layers (Lukas et al.'s FTAL) on half of the attacker's clean data.
    "finetune": {"share": 0.5, "epochs": 10, "lr": 1e-3},
    "prune": {"amount": 0.5},
    "quantize-int8": {},
    # Extraction: a fresh copy of the architecture trained on the victim's labels for `budget` queries.
    "extract-copycat": {"budget": 1000, "epochs": 30},
    "extract-knockoff": {"budget": 1000, "epochs": 30},
}


def parse_surrogate(spec: str) -> SurrogateSpec:
    """``finetune``, ``finetune:share=0.2,epochs=5``, ``prune-30``, ``quantize-int8``,
    ``extract-copycat``, ``extract-copycat:budget=500``, ``extract-knockoff``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"bad surrogate {spec!r}", field="watermark.surrogates", fix=_SURROGATE_FIX)
    head, _, tail = spec.strip().partition(":")
    params: dict[str, float | int] = {}
    kind = head
    if head.startswith("prune-"):
        kind = "prune"
        try:
            params["amount"] = int(head[6:]) / 100
        except ValueError:
            raise ConfigError(
                f"bad pruning amount in {spec!r}", field="watermark.surrogates", fix=_SURROGATE_FIX
            ) from None
    if kind not in _SURROGATE_DEFAULTS:
        raise ConfigError(f"unknown surrogate {head!r}", field="watermark.surrogates", fix=_SURROGATE_FIX)
    merged: dict[str, float | int] = {**_SURROGATE_DEFAULTS[kind], **params}
    for item in filter(None, tail.split(",")):
        name, eq, value = item.partition("=")
        if not eq or name.strip() not in _SURROGATE_DEFAULTS[kind]:
            raise ConfigError(
                f"unknown parameter {name.strip()!r} for surrogate {kind!r}",
                field="watermark.surrogates",
                fix=f"{kind} takes {sorted(_SURROGATE_DEFAULTS[kind]) or 'no parameters'}.",
            )
        default = _SURROGATE_DEFAULTS[kind][name.strip()]
        try:
            merged[name.strip()] = type(default)(float(value)) if isinstance(default, int) else float(value)
        except ValueError:
            raise ConfigError(
                f"{name.strip()}={value!r} is not a number", field="watermark.surrogates", fix=_SURROGATE_FIX
            ) from None
    amount = merged.get("amount")
    if kind == "prune" and not 0 < float(amount) < 1:  # type: ignore[arg-type]
        raise ConfigError(f"pruning amount must be in (0, 1) in {spec!r}", field="watermark.surrogates")
    if kind == "finetune" and not 0 < float(merged["share"]) <= 1:
        raise ConfigError(f"share must be in (0, 1] in {spec!r}", field="watermark.surrogates")
    for positive in ("epochs", "budget", "lr"):
        if positive in merged and float(merged[positive]) <= 0:
            raise ConfigError(f"{positive} must be > 0 in {spec!r}", field="watermark.surrogates")
    # The name shows the parameters that differ from the defaults, so two variants stay apart in a table.
    name = f"prune-{round(float(amount) * 100)}" if kind == "prune" else kind
    changed = [
        f"{k}={merged[k]:g}" for k, v in _SURROGATE_DEFAULTS[kind].items() if merged[k] != v and k != "amount"
    ]
    if changed:
        name += ":" + ",".join(changed)
    return SurrogateSpec(kind, merged, name)


_SURROGATE_FIX = (
    "Use finetune[:share=S,epochs=E,lr=L], prune-NN (percent of conv+linear weights), quantize-int8, "
    "extract-copycat[:budget=Q,epochs=E] or extract-knockoff[:budget=Q,epochs=E]."
)


def _copy_net(model: ModelUnderTest) -> torch.nn.Module:
    import copy

    # The normalised net: surrogates then take inputs in input space, like the original.
    return copy.deepcopy(model.net)


def _wrap(net: torch.nn.Module, model: ModelUnderTest, name: str, device: Any = None) -> ModelUnderTest:
    from robustness.core.model import ModelUnderTest

    return ModelUnderTest(
        net.eval(),
        spec=f"{model.spec} [{name}]",
        bounds=model.bounds,
        device=device if device is not None else model.device,
        num_classes=model.num_classes,
    )


def _fresh_architecture(model: ModelUnderTest) -> torch.nn.Module:
    """An untrained module of the same architecture (normalisation kept), for a thief."""
    import copy

    from robustness.core.model import Normalized, build_architecture

    arch = architecture_of(model)
    if arch is not None:
        net = build_architecture(arch)
        if model.mean is not None:
            net = Normalized(net, model.mean, model.std)
        return net
    net = copy.deepcopy(model.net)
    for m in net.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    for prm in net.parameters():  # the copy inherits frozen flags from an audit in progress
        prm.requires_grad_(True)
    return net


def architecture_of(model: ModelUnderTest) -> dict[str, Any] | None:
    """The rebuildable architecture of a model (zoo, model folder or factory spec), if known."""
    meta = model.metadata or {}
    if isinstance(meta.get("architecture"), dict):
        return dict(meta["architecture"])
    card = meta.get("card")
    if isinstance(card, dict) and isinstance(card.get("architecture"), dict):
        return dict(card["architecture"])
    spec = str(model.spec)
    if ":" in spec and not spec.startswith(("zoo:", "<")) and not Path(spec).exists():
        return {"factory": spec, "kwargs": {}}
    return None


def _train_on_labels(
    net: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    seed: int,
    device: Any,
    batch_size: int = 64,
) -> None:
    """Plain cross-entropy training (Adam), the attacker's fine-tuning loop."""
    import torch

    g = torch.Generator().manual_seed(seed)
    net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(int(epochs)):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            loss = torch.nn.functional.cross_entropy(net(x[idx].to(device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()


def make_surrogate(
    model: ModelUnderTest, spec: SurrogateSpec, attack_data: Dataset, *, seed: int = 0
) -> tuple[ModelUnderTest, dict[str, Any]]:
    """Derive one surrogate of ``model``; returns it and the stated attack parameters."""
    import torch

    p = spec.params
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec.kind == "finetune":
            n = max(1, round(float(p["share"]) * len(attack_data)))
            idx = torch.randperm(len(attack_data), generator=torch.Generator().manual_seed(seed))[:n]
            net = _copy_net(model)
            for prm in net.parameters():
                prm.requires_grad_(True)
            _train_on_labels(
                net,
                attack_data.x[idx],
                attack_data.y[idx],
                epochs=int(p["epochs"]),
                lr=float(p["lr"]),
                seed=seed,
                device=model.device,
            )
            details = {**p, "n_samples": n, "layers": "all", "optimizer": "adam"}
            return _wrap(net, model, spec.name), details
        if spec.kind == "prune":
            from torch.nn.utils import prune

            net = _copy_net(model)
            targets = [
                (m, "weight")
                for m in net.modules()
                if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear))
            ]
            if not targets:
                raise ModelError(
                    "the model has no Conv or Linear layers to prune",
                    field="watermark.surrogates",
                    fix="Drop the prune-* surrogates for this model.",
                )
            prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=float(p["amount"]))
            for m, name in targets:
                prune.remove(m, name)
            return _wrap(net, model, spec.name), {
                "amount": float(p["amount"]),
                "scope": "global, conv+linear",
            }
        if spec.kind == "quantize-int8":
            import warnings

            net = _copy_net(model).cpu().eval()
            with warnings.catch_warnings():  # torch.ao.quantization's deprecation notice; still the eager API
                warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
                from torch.ao.quantization import quantize_dynamic

                qnet = quantize_dynamic(net, {torch.nn.Linear}, dtype=torch.qint8)
            return _wrap(qnet, model, spec.name, device="cpu"), {"layers": "Linear", "dtype": "qint8"}
        if spec.kind in ("extract-copycat", "extract-knockoff"):
            return _extract(model, spec, attack_data, seed=seed)
    raise ConfigError(f"unknown surrogate {spec.kind!r}", field="watermark.surrogates", fix=_SURROGATE_FIX)


def _extract(
    model: ModelUnderTest, spec: SurrogateSpec, attack_data: Dataset, *, seed: int
) -> tuple[ModelUnderTest, dict[str, Any]]:
    """Model extraction through ART: the thief sees only the victim's labels on its queries."""
    import torch
    from art.estimators.classification import PyTorchClassifier

    budget = min(int(spec.params["budget"]), len(attack_data))
    epochs = int(spec.params["epochs"])
    shape = tuple(attack_data.x.shape[1:])
    device_type = "gpu" if model.device.type == "cuda" else "cpu"
    x = attack_data.x.cpu().numpy()
    state = np.random.get_state()  # ART samples queries with NumPy's global generator
    np.random.seed(seed % 2**32)
    try:
        with model.evaluating():  # ART's predict() calls .eval(); this restores the victim's mode after
            victim = PyTorchClassifier(
                model=model.net,
                loss=torch.nn.CrossEntropyLoss(),
                input_shape=shape,
                nb_classes=int(model.num_classes),
                clip_values=tuple(model.bounds),
                device_type=device_type,
            )
            thief_net = _fresh_architecture(model)
            thief = PyTorchClassifier(
                model=thief_net,
                loss=torch.nn.CrossEntropyLoss(),
                optimizer=torch.optim.Adam(thief_net.parameters(), lr=1e-3),
                input_shape=shape,
                nb_classes=int(model.num_classes),
                clip_values=tuple(model.bounds),
                device_type=device_type,
            )
            if spec.kind == "extract-copycat":
                from art.attacks.extraction import CopycatCNN

                attack = CopycatCNN(
                    victim, batch_size_fit=64, batch_size_query=256, nb_epochs=epochs, nb_stolen=budget
                )
                attack.extract(x, thieved_classifier=thief)
            else:
                from art.attacks.extraction import KnockoffNets

                attack = KnockoffNets(
                    victim,
                    batch_size_fit=64,
                    batch_size_query=256,
                    nb_epochs=epochs,
                    nb_stolen=budget,
                    sampling_strategy="random",
                )
                attack.extract(x, thieved_classifier=thief)
    finally:
        np.random.set_state(state)
    thief_net = thief.model.eval()
    for prm in thief_net.parameters():
        prm.requires_grad_(False)
    details = {
        "queries": budget,
        "epochs": epochs,
        "thief": "fresh instance of the victim's architecture",
        "labels": "victim's top-1 labels",
        "tool": f"ART {'CopycatCNN' if spec.kind == 'extract-copycat' else 'KnockoffNets (random)'}",
    }
    return _wrap(thief_net, model, spec.name), details


def _accuracy_and_agreement(
    surrogate: ModelUnderTest, data: Dataset, reference_pred: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    pred = surrogate.predict(data.x, batch_size).cpu()
    return float((pred == data.y).float().mean()), float((pred == reference_pred).float().mean())


def split_attack_data(data: Dataset, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Half of ``data`` for the attacker's training, the other half to evaluate on (seeded)."""
    import torch

    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    half = len(data) // 2
    return data.subset(perm[:half].sort().values), data.subset(perm[half:].sort().values)


def survival_table(
    model: ModelUnderTest,
    key: WatermarkKey | str | Path,
    data: Dataset,
    surrogates: Sequence[str] = DEFAULT_SURROGATES,
    *,
    attack_data: Dataset | None = None,
    alpha: float = DEFAULT_ALPHA,
    reference_p0: float | None = None,
    seed: int = 0,
    batch_size: int = 512,
) -> list[dict[str, Any]]:
    """Derive each surrogate of the marked ``model`` and verify the watermark on it.

    ``data`` is the clean evaluation data; the attacker trains on ``attack_data`` (fine-tuning,
    extraction queries). Rows: ``name``, ``clean_accuracy``, ``accuracy_drop`` (original minus
    surrogate, on ``data``), ``agreement`` (share of ``data`` where the surrogate predicts as the
    original), ``k``, ``K``, ``p0``, ``p_value``, ``verified``, ``survived`` (= verified),
    ``removed`` (not verified and at most 5 points of accuracy lost, the Lukas et al. criterion),
    ``params`` and ``time_s``.
    """
    import time

    key = load_key(key)
    alpha = check_alpha(alpha)
    specs = [parse_surrogate(s) for s in surrogates]
    check_compatible(key, model, tuple(data.x.shape[1:]))
    attack_data = data if attack_data is None else attack_data
    original_pred = model.predict(data.x, batch_size).cpu()
    original_acc = float((original_pred == data.y).float().mean())
    rows = []
    for i, spec in enumerate(specs):
        t0 = time.perf_counter()
        surrogate, params = make_surrogate(model, spec, attack_data, seed=seed + i)
        acc, agreement = _accuracy_and_agreement(surrogate, data, original_pred, batch_size)
        d = _decide(trigger_predictions(surrogate, key, batch_size), key, alpha, reference_p0)
        drop = original_acc - acc
        rows.append(
            {
                "name": spec.name,
                "clean_accuracy": acc,
                "accuracy_drop": drop,
                "agreement": agreement,
                "k": d["k"],
                "K": d["K"],
                "p0": d["p0"],
                "p_value": d["p_value"],
                "verified": d["verified"],
                "survived": d["verified"],
                "removed": (not d["verified"]) and drop <= REMOVAL_MAX_ACCURACY_DROP,
                "params": params,
                "time_s": time.perf_counter() - t0,
            }
        )
    return rows


def watermark_section(
    model: ModelUnderTest,
    key_path: WatermarkKey | str | Path,
    data: Dataset,
    alpha: float = DEFAULT_ALPHA,
    surrogates: Sequence[str] = DEFAULT_SURROGATES,
    reference_models: Sequence[Any] = (),
    *,
    attack_data: Dataset | None = None,
    seed: int = 0,
    batch_size: int = 512,
) -> dict[str, Any]:
    """The ``watermark`` key of ``results.json``: verification of ``model`` plus the survival table.

    Without ``attack_data`` the audit data is split in two (seeded): the attacker trains on one
    half, and clean accuracy and agreement are measured on the other, so no surrogate is scored
    on the data it was trained on.
    """
    key = load_key(key_path)
    check_compatible(key, model, tuple(data.x.shape[1:]))
    v = verify(model, key, alpha=alpha, reference_models=reference_models, batch_size=batch_size)
    if attack_data is None and surrogates:
        attack_data, eval_data = split_attack_data(data, seed)
        data_note = f"audit data split in two (seed {seed}): attacker half n={len(attack_data)}"
    else:
        eval_data = data
        data_note = "separate attacker data" if attack_data is not None else None
    acc = float((model.predict(eval_data.x, batch_size).cpu() == eval_data.y).float().mean())
    rows = survival_table(
        model,
        key,
        eval_data,
        surrogates,
        attack_data=attack_data,
        alpha=alpha,
        reference_p0=v.get("reference_p0"),
        seed=seed,
        batch_size=batch_size,
    )
    return {
        "scheme": SCHEME,
        "key_sha256": v["key_sha256"],
        "k": v["k"],
        "K": v["K"],
        "p0": v["p0"],
        "p0_method": v["p0_method"],
        "p_value": v["p_value"],
        "match_rate_ci": v["match_rate_ci"],
        "alpha": v["alpha"],
        "verified": v["verified"],
        "false_positive_rate": v["false_positive_rate"],
        "references": v.get("references", []),
        "clean_accuracy": acc,
        "eval_n": len(eval_data),
        "attack_data": data_note,
        "removal_max_accuracy_drop": REMOVAL_MAX_ACCURACY_DROP,
        "surrogates": rows,
    }


# ---------------------------------------------------------------------------------------
# The audit config section


class WatermarkConfig(BaseModel):
    """The ``watermark:`` section of an audit config."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="path to the key file written by 'robustness watermark embed'")
    alpha: float = Field(DEFAULT_ALPHA, gt=0, lt=1, description="significance level of the ownership test")
    surrogates: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SURROGATES),
        description="removal attacks to test survival against (see parse_surrogate); [] to skip",
    )
    reference_models: list[str] = Field(
        default_factory=list, description="specs of independently trained, unmarked models (null calibration)"
    )
    attack_data: str | None = Field(
        None, description="data spec the attacker trains on; default: half of the audit data"
    )
    seed: int = Field(0, ge=0, description="seed of the surrogates' training and of the data split")

    @field_validator("surrogates")
    @classmethod
    def _known_surrogates(cls, v: list[str]) -> list[str]:
        for s in v:
            try:
                parse_surrogate(s)
            except ConfigError as exc:
                raise ValueError(exc.message + ". " + (exc.fix or "")) from None
        return v
