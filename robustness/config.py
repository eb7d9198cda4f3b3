"""Audit configuration: the pydantic models, YAML/TOML loading, presets and validation.

A config file is the whole description of an audit (model, data, threat model, attacks,
sanity checks, gates, outputs). Unknown keys are errors, and every error names the key
path (``gates.min_robust_accuracy.0.1``) and what was expected. Paths inside the file
(weights, data files, baseline, output folder) are relative to the working directory,
as for every other command, so a CI job runs ``robustness audit CONFIG`` from the
repository root.

Attack presets (each attack runs only on the samples still robust after the ones before
it; budgets are per sample):

``quick`` (pull requests): APGD-CE 50 steps; APGD-T 3 target classes x 25 steps;
Square 1000 queries.

``standard`` (AutoAttack standard, Croce & Hein 2020): APGD-CE 100 steps; APGD-T
9 target classes x 100 steps; FAB-T 9 target classes x 100 steps; Square 5000 queries,
p_init 0.8. The components run as separate attacks so per-attack numbers exist.

``thorough``: APGD-CE 100 steps x 5 restarts; APGD-T 9 x 100 steps x 2 restarts;
FAB-T 9 x 100 steps x 2 restarts; Square 5000 queries x 2 restarts; ART HopSkipJump
(20 iterations, at most 1000 evaluations per gradient estimate).

``plus`` (AutoAttack+): APGD-CE and APGD-DLR 100 steps x 5 restarts; FAB-T 9 x 100 steps x
5 restarts; Square 5000 queries; APGD-T 9 x 100 steps.

``malt``: standard with MALT (targeted APGD on the 3 classes a linearisation ranks closest,
Melamed et al. 2024) in place of APGD-T's fixed top-9 targets.

With fewer than 10 classes the attacks cap the target classes at num_classes - 1.

With any preset or list, when the determinism check finds a randomized forward pass, every
gradient attack is wrapped in EOT over ``eot_samples`` draws and success is judged by the
majority of ``eot_samples`` predictions (see ``robustness.audit.runner``).
"""

from __future__ import annotations

import difflib
import functools
import math
import numbers
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    create_model,
    field_validator,
)

from robustness.core.errors import ConfigError
from robustness.core.threads import MAX_THREADS
from robustness.presets import PRESETS

if TYPE_CHECKING:
    from robustness.core.schema import AuditResults


def output_formats() -> list[str]:
    """``output.formats`` choices: json (results.json) and every registered renderer's format."""
    from reports import output_formats as formats

    return formats()


def default_formats() -> list[str]:
    """``output.formats`` when the config names none: json and every default renderer's format."""
    from reports import default_formats as formats

    return formats()


def _known_format(name: str) -> str:
    known = output_formats()
    if name not in known:
        raise ValueError(f"Input should be {', '.join(repr(f) for f in known[:-1])} or {known[-1]!r}")
    return name


def _formats_schema(schema: dict[str, Any]) -> None:
    schema["items"] = {"type": "string", "enum": output_formats()}  # the renderers registered now


# An audit config is a few KB; anything near this is the wrong file (or an attack on the parser).
MAX_CONFIG_BYTES = 1_000_000
# Deeper nesting than any real config; bounds the recursion of the YAML composer and TOML parser.
MAX_CONFIG_DEPTH = 64
# Seeds are 32-bit: attack batch seeds are derived by multiplying the seed (attacks.base.batch_seed)
# and must stay inside the 64-bit range torch generators take, for any eps and batch index.
SEED_MAX = 2**32 - 1


@functools.cache
def _preset_attacks() -> dict[str, list[dict[str, Any]]]:
    """name, params; in run order. Exact budgets are documented in the module docstring and the
    README; standard and thorough are AutoAttack's, written once in ``attacks.autoattack``."""
    from attacks.autoattack import malt_members, plus_members, separate_members

    return {
        "quick": [
            {"name": "apgd-ce", "params": {"steps": 50}},
            {"name": "apgd-t", "params": {"steps": 25, "n_target_classes": 3}},
            {"name": "square", "params": {"n_queries": 1000}},
        ],
        "standard": separate_members(),
        "thorough": [
            *separate_members(restarts={"apgd-ce": 5, "apgd-t": 2, "fab": 2, "square": 2}),
            {"name": "art:HopSkipJump", "params": {"max_iter": 20, "max_eval": 1000, "init_eval": 100}},
        ],
        "plus": plus_members(),
        "malt": malt_members(),
    }


class _PresetAttacks(Mapping[str, list[dict[str, Any]]]):
    """The attacks of each preset, built on the first look-up: importing ``attacks`` imports
    torch, and this module is read without it (report, compare, the baseline gate)."""

    def __getitem__(self, preset: str) -> list[dict[str, Any]]:
        return _preset_attacks()[preset]

    def __iter__(self) -> Iterator[str]:
        return iter(PRESETS)

    def __len__(self) -> int:
        return len(PRESETS)


PRESET_ATTACKS: Mapping[str, list[dict[str, Any]]] = _PresetAttacks()
# Draws of EOT and votes per prediction for a randomized model (config ``eot_samples``), as in
# Croce & Hein 2020's evaluation of randomized defenses.
EOT_SAMPLES = 20


class _Checks(Mapping[str, str]):
    """name -> title of every registered sanity check, in the documented order: the waiver names.

    Derived from the check registry (one file per check in ``robustness/audit/checks/``) on
    each look-up, so a check registered later (a plug-in) is known too.
    """

    def _titles(self) -> dict[str, str]:
        from robustness.audit.check import check_titles

        return check_titles()

    def __getitem__(self, name: str) -> str:
        return self._titles()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._titles())

    def __len__(self) -> int:
        return len(self._titles())


CHECKS: Mapping[str, str] = _Checks()


def _waive_schema(schema: dict[str, Any]) -> None:
    schema["propertyNames"] = {"enum": list(CHECKS)}  # the checks registered now


class _Section(BaseModel):
    # inf/nan are never meaningful in a config (bounds, mean, std, thresholds, eps): refused by the schema.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


def seed_problem(value: Any) -> str | None:
    """Why ``value`` is not a usable seed (an integer in [0, SEED_MAX]), or None if it is."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= SEED_MAX:
        return f"a seed must be an integer from 0 to {SEED_MAX}"
    return None


def _seed(value: Any) -> Any:
    problem = seed_problem(value)
    if problem:
        raise ValueError(problem)
    return int(value)


# The bounds in Field() are for the JSON schema; _seed words the error.
Seed = Annotated[int, Field(ge=0, le=SEED_MAX), BeforeValidator(_seed)]


class ModelSection(_Section):
    """The model under test (see ``robustness.core.model.load_model``)."""

    spec: str = Field(description="zoo:NAME, file.pt2, file.pt/.ts, package.module:callable or a folder")
    weights: str | None = Field(None, description="weights for a factory spec (.safetensors or .pt)")
    args: dict[str, Any] | None = Field(
        None, description="keyword arguments for a factory spec, e.g. {num_classes: 10} (factories only)"
    )
    trust_model: bool = Field(
        False,
        description="run code the model names or carries: a pickled module, a torch.export file with "
        "pickled entries, a model folder naming a non-built-in factory (trusted sources only)",
    )
    bounds: tuple[float, float] | None = Field(None, description="input bounds [low, high] (default [0, 1])")
    mean: list[float] | None = Field(None, description="per-channel mean applied inside the model")
    std: list[float] | None = Field(None, description="per-channel std applied inside the model")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="the model's forward pass in float32, or under bfloat16 autocast (GPU)"
    )
    channels_last: bool = Field(False, description="NHWC memory layout for 4-d inputs (GPU convolutions)")
    compile: bool = Field(False, description="torch.compile the model")


class DataSection(_Section):
    """The evaluation samples (see ``robustness.core.data.load_data``)."""

    spec: str = Field(
        description="builtin:digits, cifar10:DIR, cifar100:DIR (:train), file.npz (x, y), or package.module:callable"
    )
    n_examples: Annotated[int, Field(gt=0)] | None = Field(None, description="a reproducible subset of N")
    seed: Seed | None = Field(None, description="seed of the subset (default: the top-level seed)")
    batch_size: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(
        256,
        description="samples per attack call and checkpoint; auto: the largest that fits the GPU (halving on "
        "out-of-memory; 256 on the CPU), recorded in results.json",
    )
    # How the spec is read (robustness.core.data.DataOptions); load_data(**data.load_options()).
    args: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of a factory spec 'package.module:callable'"
    )
    image_size: Annotated[int, Field(gt=0)] | None = Field(
        None, description="image folders: shorter side resized to N, centre N x N crop"
    )
    image_mode: Literal["RGB", "L"] | None = Field(
        None, description="image folders: RGB (default) or L (grey)"
    )
    workers: Annotated[int, Field(ge=0)] | None = Field(
        None, description="image folders: reader processes (default: automatic)"
    )

    def load_options(self) -> dict[str, Any]:
        """The keywords of ``load_data``/``open_data`` that these settings give."""
        return {
            "args": dict(self.args) or None,
            "image_size": self.image_size,
            "image_mode": self.image_mode,
            "workers": self.workers,
        }


class ThreatSection(_Section):
    """Norm and eps grid; eps is in input units (e.g. 8/255 for [0, 1] images)."""

    norm: Literal["linf", "l2", "l1"] = "linf"
    eps: list[Annotated[float, Field(gt=0)]] = Field(description="one radius or a list of radii")

    @field_validator("eps", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, (int, float)) and not isinstance(v, bool) else v

    @field_validator("eps")
    @classmethod
    def _sorted(cls, v: list[float]) -> list[float]:
        from robustness.core.threat import ThreatModelError, refuse_duplicate_eps

        if not v:
            raise ValueError("give at least one eps")
        try:
            refuse_duplicate_eps(v)
        except ThreatModelError as exc:
            raise ValueError(f"{exc.message}; give each eps once") from None
        return sorted(float(e) for e in v)


class AttackSpec(_Section):
    """One attack of an explicit list: a registry name and its hyper-parameters."""

    name: str = Field(description="a name from 'robustness attacks', or art:ClassName")
    params: dict[str, Any] = Field(default_factory=dict)


class BPDAOptions(_Section):
    """BPDA for a non-differentiable step before the network (Athalye et al. 2018)."""

    preprocess: str | None = Field(
        None,
        description="'package.module:callable': the step the model applies to its input (default: the "
        "model module's .preprocess)",
    )
    model_body: str | None = Field(
        None, description="the network after preprocess, a model spec (default: the model module's .body)"
    )
    backward: str = Field(
        "identity",
        description="'package.module:callable': a differentiable surrogate of preprocess for the backward "
        "pass, or identity (straight-through)",
    )


class TransferOptions(_Section):
    """A transfer attack from a surrogate model."""

    surrogate: str = Field(description="model spec of a surrogate trained independently of the model")
    attack: str = Field("apgd-ce", description="the attack run on the surrogate")
    params: dict[str, Any] = Field(default_factory=dict, description="its parameters")


class AdaptiveSection(_Section):
    """Adaptive attacks added to any preset or attack list."""

    bpda: BPDAOptions | None = Field(None, description="every gradient attack runs through BPDA")
    transfer: TransferOptions | None = Field(None, description="a transfer attack runs after the others")


class SanityChecksSection(_Section):
    """The sanity checks (a)-(h); each can be waived only with a written reason."""

    enabled: bool = Field(True, description="false needs a written 'reason'; every check is then waived")
    reason: str | None = Field(
        None, description="why the checks are disabled (required when enabled is false)"
    )
    waive: dict[str, str] = Field(
        default_factory=dict, description="check name -> written reason", json_schema_extra=_waive_schema
    )
    sample_size: Annotated[int, Field(gt=0)] = Field(64, description="samples for the sampled checks")
    tolerance: Annotated[float, Field(ge=0.0, le=0.5)] = Field(
        0.02, description="fraction of the tested samples a check attack may break beyond the audit"
    )
    large_eps: Annotated[float, Field(gt=0)] | None = Field(
        None,
        description="eps of check (c) (default: half the input range for linf, 10x the largest eps else)",
    )
    large_eps_max_accuracy: Fraction = Field(0.02, description="accuracy allowed at the large eps")

    @field_validator("waive")
    @classmethod
    def _reasons(cls, v: dict[str, str]) -> dict[str, str]:
        for name, reason in v.items():
            known = list(CHECKS)
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown check {name!r}{hint}; checks are: {', '.join(known)}")
            if not isinstance(reason, str) or len(reason.strip()) < 3:
                raise ValueError(
                    f'waiving {name!r} needs a written reason, e.g. {name}: "why it does not apply"'
                )
        return v


class GatesSection(_Section):
    """Pass/fail thresholds. ``judge: ci_low`` compares the lower end of the 95% interval."""

    min_clean_accuracy: Fraction | None = None
    min_robust_accuracy: dict[float, Fraction] = Field(default_factory=dict, description="eps -> threshold")
    judge: Literal["ci_low", "point"] = "ci_low"
    max_drop: Fraction | dict[float, Fraction] | None = Field(
        None,
        description="largest allowed drop of robust accuracy vs the baseline (one value or eps -> value)",
    )
    baseline: str | None = Field(None, description="a previous results.json for max_drop")
    strict_budget: bool = Field(
        False,
        description="refuse a baseline audited at another attack budget (by default: a warning and a note)",
    )


class OutputSection(_Section):
    dir: str = "runs/audit"
    formats: list[Annotated[str, AfterValidator(_known_format)]] = Field(
        default_factory=default_formats, json_schema_extra=_formats_schema
    )

    @field_validator("dir")
    @classmethod
    def _a_folder(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the output folder is empty; name a folder, e.g. runs/audit")
        return v


class AuditConfig(_Section):
    """A robustness audit."""

    model: ModelSection
    data: DataSection
    threat: ThreatSection
    attacks: Literal["quick", "standard", "thorough", "plus", "malt"] | list[AttackSpec] = "standard"
    sanity_checks: SanityChecksSection = Field(default_factory=SanityChecksSection)
    gates: GatesSection = Field(default_factory=GatesSection)
    output: OutputSection = Field(default_factory=OutputSection)
    seed: Seed = Field(0, description="seed of the attacks (and of the data subset unless data.seed is set)")
    threads: Literal["auto"] | Annotated[StrictInt, Field(ge=1, le=MAX_THREADS)] = Field(
        "auto",
        description="CPU threads for the model (auto: 1 for a model whose batch pass is tiny, else the free "
        "cores; more threads than that only spin against other jobs on a shared runner)",
    )
    # Randomized models (the determinism check decides): EOT draws and the votes that judge success.
    adaptive: AdaptiveSection = Field(default_factory=AdaptiveSection)
    eot_samples: Annotated[StrictInt, Field(ge=2, le=1000)] = Field(
        EOT_SAMPLES,
        description="for a randomized forward pass: draws averaged by every gradient attack (EOT) and "
        "predictions whose majority judges each example",
    )

    @property
    def data_seed(self) -> int:
        return self.seed if self.data.seed is None else self.data.seed


_CONFIG_MODELS: dict[tuple[tuple[str, int], ...], type[AuditConfig]] = {}


def config_model() -> type[AuditConfig]:
    """:class:`AuditConfig` with one optional block per registered audit section (``watermark:``),
    each validated by the section's own config model (see :mod:`robustness.audit.section`)."""
    from robustness.audit.section import AUDIT_SECTIONS

    sections = AUDIT_SECTIONS.items()
    key = tuple((name, id(cls.config)) for name, cls in sections.items())
    if key not in _CONFIG_MODELS:
        fields: dict[str, Any] = {
            name: (cls.config | None, Field(None, description=cls.description))
            for name, cls in sections.items()
        }
        _CONFIG_MODELS[key] = create_model(
            "AuditConfig", __base__=AuditConfig, __module__=__name__, __doc__=AuditConfig.__doc__, **fields
        )
    return _CONFIG_MODELS[key]


# ---------------------------------------------------------------------------------------
# Loading and errors


_TYPE_TAG = re.compile(
    r"^(float|int|str|bool|none|list\[.*|dict\[.*|tuple\[.*|literal\[.*|function-.*|constrained-.*|[A-Z]\w*)$"
)


_TYPE_ERRORS = {"literal_error", "list_type", "dict_type", "float_type", "float_parsing", "model_type"}


def _path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and _TYPE_TAG.match(p))]
    if parts and parts[-1] == "[key]":
        parts = parts[:-1]
    return ".".join(parts) or "<root>"


def _model_in(ann: Any) -> Any:
    """The pydantic model class inside an annotation (``X``, ``X | None``, ``list[X]``), if any."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in get_args(ann):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = config_model()
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is not None:
            model = _model_in(field.annotation) or model
    return list(model.model_fields)


def _short(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error quotes the bad value, never pages of it."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} characters)"


def _explain(exc: ValidationError) -> ConfigError:
    merged: dict[str, list[str]] = {}
    errors = exc.errors()
    paths = [_path(tuple(e["loc"])) for e in errors]
    for err, path in zip(errors, paths):
        loc = tuple(err["loc"])
        # In a union (a preset name or a list), an error inside the list is the useful one.
        if err["type"] in _TYPE_ERRORS and any(p.startswith(path + ".") for p in paths):
            continue
        if path == "attacks" and err["type"] in _TYPE_ERRORS:
            msg = (
                f"expected a preset ({', '.join(repr(p) for p in PRESETS)}) or a list of "
                f"{{name, params}} (got {_short(err.get('input'))})"
            )
        elif err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            msg = f"unknown key; {hint}expected one of: {', '.join(allowed)}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and err["type"] not in ("model_type",):
                msg += f" (got {_short(err['input'])})"
        merged.setdefault(path, [])
        if msg not in merged[path]:
            merged[path].append(msg)
    items = list(merged.items())
    first_path, first_msgs = items[0]
    text = " or ".join(first_msgs)
    for path, msgs in items[1:5]:
        text += f"; {path}: {' or '.join(msgs)}"
    if len(items) > 5:
        text += f"; and {len(items) - 5} more"
    return ConfigError(text, field=first_path, fix="Fix the config (see 'robustness schema' for every key).")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML (.yaml/.yml) or TOML (.toml) file into a dict.

    Every problem with the file is a :class:`ConfigError` naming it: missing, a folder, larger
    than :data:`MAX_CONFIG_BYTES`, not UTF-8, bad syntax, a key given twice (YAML would keep the
    last one silently), YAML anchors and aliases (refused: an alias bomb of a few hundred bytes
    expands to billions of nodes), or nesting deeper than :data:`MAX_CONFIG_DEPTH`.
    """
    p = Path(path)
    text = _read_text(p)
    data = _parse_toml(text, p) if p.suffix == ".toml" else _parse_yaml(text, p)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p} holds {type(data).__name__}, not a mapping of sections",
            field="CONFIG",
            fix="Start from examples/digits-audit.yaml.",
        )
    return data


def _read_text(p: Path) -> str:
    if not p.exists():
        raise ConfigError(f"config file not found: {p}", field="CONFIG", fix="Check the path.")
    if p.is_dir():
        raise ConfigError(
            f"{p} is a folder, not a config file",
            field="CONFIG",
            fix="Give the path of a .yaml/.yml or .toml file, e.g. examples/digits-audit.yaml.",
        )
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)  # never more: the file may be huge or endless
    except OSError as exc:
        raise ConfigError(
            f"cannot read {p}: {exc.strerror or exc}",
            field="CONFIG",
            fix="Check the path and its permissions.",
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{p} is larger than {MAX_CONFIG_BYTES // 1_000_000} MB; an audit config is a few KB",
            field="CONFIG",
            fix="Check that CONFIG names the audit config, not a data, model or results file.",
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{p} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at line {line})",
            field="CONFIG",
            fix="Save the config as UTF-8; check that CONFIG names the config, not a binary file.",
        ) from None


def _parse_toml(text: str, p: Path) -> Any:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message names the line ("Cannot declare ('gates',) twice (at line 7, column 7)").
        repeated = "twice" in str(exc) or "overwrite" in str(exc)
        raise ConfigError(
            f"{p} is not valid TOML: {exc}",
            field="CONFIG",
            fix="Give each key and table once." if repeated else "Fix the syntax.",
        ) from None
    except RecursionError:
        raise ConfigError(
            f"{p} is nested too deeply", field="CONFIG", fix="An audit config needs a few levels at most."
        ) from None


def _parse_yaml(text: str, p: Path) -> Any:
    import yaml

    loader = _config_loader()(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_repeated_keys(loader, node)
        return loader.construct_document(node)
    except _Refused as exc:
        raise ConfigError(f"{p}: {exc.message}", field=exc.field, fix=exc.fix) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{p} is not valid YAML: {exc}".replace("\n", " "), field="CONFIG", fix="Fix the syntax."
        ) from None
    finally:
        loader.dispose()


class _Refused(Exception):
    """A YAML construct refused in configs (raised inside the loader, reported as a ConfigError)."""

    def __init__(self, message: str, field: str, fix: str) -> None:
        super().__init__(message)
        self.message, self.field, self.fix = message, field, fix


_MERGE_TAG = "tag:yaml.org,2002:merge"


@functools.cache
def _config_loader() -> Any:
    """yaml.SafeLoader refusing anchors, aliases and deep nesting while it composes (built once)."""
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            # Refused before anything is expanded: no alias is ever resolved, so memory stays
            # proportional to the file, and the error quotes only the name.
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                sign = "*" if isinstance(event, yaml.AliasEvent) else "&"
                raise _Refused(
                    f"YAML anchors and aliases are not allowed in an audit config "
                    f"({sign}{event.anchor[:40]} at line {event.start_mark.line + 1})",
                    field="CONFIG",
                    fix="Write the values out in full.",
                )
            self.depth += 1
            try:
                if self.depth > MAX_CONFIG_DEPTH:
                    raise _Refused(
                        f"nested more than {MAX_CONFIG_DEPTH} levels deep (line {event.start_mark.line + 1})",
                        field="CONFIG",
                        fix="An audit config needs a few levels at most.",
                    )
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return ConfigLoader


def _refuse_repeated_keys(loader: Any, node: Any, where: tuple[str, ...] = ()) -> None:
    """Raise :class:`_Refused` naming a key given twice in one mapping, with both lines."""
    import yaml

    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_repeated_keys(loader, item, (*where, str(i)))
        return
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[Any, tuple[str, int]] = {}
    for key_node, value_node in node.value:
        text = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
        line = key_node.start_mark.line + 1
        key = _key_of(loader, key_node)
        if key is not None:
            if key in seen:
                first_text, first_line = seen[key]
                spelled = f" (spelt {_short(first_text, 40)} there)" if first_text != text else ""
                raise _Refused(
                    f"key {_short(text, 60)} is given twice: at line {first_line}{spelled} and at line "
                    f"{line}; YAML would silently keep only the second",
                    field=".".join((*where, text)),
                    fix="Keep one of them (merge their contents if both hold settings).",
                )
            seen[key] = (text, line)
        _refuse_repeated_keys(loader, value_node, (*where, text))


def _key_of(loader: Any, key_node: Any) -> Any:
    """The key as the loader will build it (``0.1`` and ``0.10`` are one key), or None if not a scalar."""
    import yaml

    if not isinstance(key_node, yaml.ScalarNode):
        return None  # a complex key: the constructor reports it
    if key_node.tag == _MERGE_TAG:
        return ("<<",)
    key = loader.construct_object(key_node)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def parse_config(data: dict[str, Any] | AuditConfig) -> AuditConfig:
    """Validate a dict into an :class:`AuditConfig` (schema only; see :func:`check_config`)."""
    if isinstance(data, AuditConfig):
        return data
    try:
        return config_model().model_validate(data)
    except ValidationError as exc:
        raise _explain(exc) from None


def load_config(source: str | Path | dict[str, Any] | AuditConfig) -> AuditConfig:
    """Read and validate a config from a path, a dict or an :class:`AuditConfig`."""
    if isinstance(source, (str, Path)):
        return parse_config(read_config_file(source))
    return parse_config(source)


def apply_overrides(cfg: AuditConfig, **overrides: Any) -> AuditConfig:
    """Return a copy with CLI-style overrides applied (``None`` values are ignored)."""
    data = cfg.model_dump(mode="python")
    mapping = {
        "model": ("model", "spec"),
        "weights": ("model", "weights"),
        "device": ("model", "device"),
        "precision": ("model", "precision"),
        "data": ("data", "spec"),
        "n_examples": ("data", "n_examples"),
        "batch_size": ("data", "batch_size"),
        "image_size": ("data", "image_size"),
        "image_mode": ("data", "image_mode"),
        "norm": ("threat", "norm"),
        "eps": ("threat", "eps"),
        "output_dir": ("output", "dir"),
        "formats": ("output", "formats"),
    }
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "model_args":
            # --model-arg KEY=VALUE sets single arguments; the config's other arguments stay
            data["model"]["args"] = {**(data["model"].get("args") or {}), **value}
        elif key == "data_args":  # --data-arg likewise
            data["data"]["args"] = {**(data["data"].get("args") or {}), **value}
        elif key in mapping:
            section, field = mapping[key]
            data[section][field] = str(value) if key == "output_dir" else value
        elif key in ("preset", "attacks"):
            data["attacks"] = value
        elif key in ("seed", "threads"):
            data[key] = value
        else:
            raise ConfigError(
                f"unknown override {key!r}",
                field=key,
                fix=f"Use one of: {', '.join([*mapping, 'model_args', 'data_args'])}.",
            )
    return parse_config(data)


# ---------------------------------------------------------------------------------------
# Semantic checks (after the schema): names, norms, eps keys, files


def resolve_attacks(cfg: AuditConfig) -> list[AttackSpec]:
    """The attacks to run, in order: the preset's list (attacks not supporting the norm dropped)
    or the explicit list."""
    if isinstance(cfg.attacks, str):
        from attacks.registry import available

        known = available()
        out = []
        for spec in PRESET_ATTACKS[cfg.attacks]:
            cls = known.get(spec["name"])
            if cls is not None and cfg.threat.norm not in cls.norms:
                continue
            out.append(AttackSpec(name=spec["name"], params=dict(spec["params"])))
        return with_adaptive(cfg, out)
    return with_adaptive(cfg, [AttackSpec(name=a.name, params=dict(a.params)) for a in cfg.attacks])


def with_adaptive(cfg: AuditConfig, attacks: list[AttackSpec]) -> list[AttackSpec]:
    """The attacks with the config's ``adaptive`` block applied: under ``bpda`` every white-box
    attack runs inside the ``bpda`` wrapper (the named preprocessing, body and backward
    surrogate); ``transfer`` appends a transfer attack from the named surrogate."""
    adaptive = cfg.adaptive
    if adaptive.bpda is None and adaptive.transfer is None:
        return attacks
    from attacks.registry import available

    known = available()
    out = []
    for spec in attacks:
        cls = known.get(spec.name)
        if adaptive.bpda is not None and cls is not None and cls.kind == "white-box" and spec.name != "bpda":
            options = adaptive.bpda.model_dump()
            spec = AttackSpec(
                name="bpda", params={"attack": spec.name, "attack_params": spec.params, **options}
            )
        out.append(spec)
    if adaptive.transfer is not None:
        t = adaptive.transfer
        params = {"surrogate": t.surrogate, "attack": t.attack, "attack_params": dict(t.params)}
        out.append(AttackSpec(name="transfer", params=params))
    return out


def default_large_eps(norm: str, eps: list[float], bounds: tuple[float, float]) -> float:
    """eps of check (c): half the input range for linf (every pixel may move to mid-range), else 10x."""
    width = bounds[1] - bounds[0]
    if norm == "linf":
        return max(0.5 * width, min(width, 2 * max(eps)))
    return 10.0 * max(eps)


def find_eps(value: float, grid: list[float]) -> float | None:
    return next((e for e in grid if math.isclose(e, float(value), rel_tol=1e-9, abs_tol=1e-12)), None)


def check_config(cfg: AuditConfig) -> list[AttackSpec]:
    """Checks that need more than the schema. Returns the resolved attacks.

    Attack names must be registered (or ``art:``), their parameters known and of the right
    type, their norm supported; bounds, mean and std usable; gate eps must be in the grid; the
    baseline must exist and be readable, and each audit section checks its block (the watermark
    key must exist). No file of the model or
    data is opened here (see :func:`check_inputs`), so this also holds for model objects.
    """
    from attacks.registry import available, get_attack
    from robustness.audit.section import AUDIT_SECTIONS, section_blocks
    from robustness.core.errors import RobustnessError
    from robustness.core.threat import check_eps

    bounds = cfg.model.bounds or (0.0, 1.0)
    if bounds[0] >= bounds[1]:
        raise ConfigError(
            f"bounds must be [low, high] with low < high, got {list(bounds)}", field="model.bounds"
        )
    _check_normalisation(cfg.model)
    try:
        check_eps(cfg.threat.eps, bounds=bounds, norm=cfg.threat.norm, field="threat.eps")
    except RobustnessError as exc:
        raise ConfigError(exc.message, field="threat.eps", fix=exc.fix) from None

    known = available()
    attacks = resolve_attacks(cfg)
    if not attacks:
        raise ConfigError(
            f"no attack of the preset supports norm {cfg.threat.norm}",
            field="attacks",
            fix="Give an explicit list of attacks that support this norm.",
        )
    for i, spec in enumerate(attacks):
        where = (
            f"attacks.{i}"
            if isinstance(cfg.attacks, list)
            else f"attacks ({cfg.attacks} preset: {spec.name})"
        )
        if not spec.name.startswith("art:") and spec.name not in known:
            close = difflib.get_close_matches(spec.name, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown attack {spec.name!r}{hint}",
                field=f"{where}.name" if isinstance(cfg.attacks, list) else where,
                fix=f"Known attacks: {', '.join(known)}; or art:ClassName for an ART attack.",
            )
        cls = known.get(spec.name)
        if cls is not None and cfg.threat.norm not in cls.norms:
            raise ConfigError(
                f"attack {spec.name!r} does not support norm {cfg.threat.norm}",
                field=where,
                fix=f"It supports {', '.join(cls.norms)}; drop it or change threat.norm.",
            )
        try:
            get_attack(spec.name, **spec.params)
        except RobustnessError as exc:
            # The parameter's own key path when the error names one of the given parameters.
            key = f".{exc.field}" if exc.field in spec.params else ""
            raise ConfigError(exc.message, field=f"{where}.params{key}", fix=exc.fix) from None

    g = cfg.gates
    for key in g.min_robust_accuracy:
        if find_eps(key, cfg.threat.eps) is None:
            raise ConfigError(
                f"eps {key:g} is not in threat.eps {cfg.threat.eps}",
                field=f"gates.min_robust_accuracy.{key:g}",
                fix="Gate only eps values that the audit runs.",
            )
    if isinstance(g.max_drop, dict):
        for key in g.max_drop:
            if find_eps(key, cfg.threat.eps) is None:
                raise ConfigError(
                    f"eps {key:g} is not in threat.eps {cfg.threat.eps}",
                    field=f"gates.max_drop.{key:g}",
                    fix="Gate only eps values that the audit runs.",
                )
    if (g.max_drop is None) != (g.baseline is None):
        missing = "gates.baseline" if g.baseline is None else "gates.max_drop"
        raise ConfigError(
            "max_drop and baseline go together",
            field=missing,
            fix="Give both max_drop and the baseline results.json it is measured against, or neither.",
        )
    if g.baseline is not None:
        from robustness.gates import check_baseline

        check_baseline(cfg)  # readable, same norm, possible numbers; the budget under strict_budget
    for name, block in section_blocks(cfg).items():
        AUDIT_SECTIONS.get(name).check_config(block, cfg)
    if not cfg.sanity_checks.enabled and not (cfg.sanity_checks.reason or "").strip():
        raise ConfigError(
            "disabling the sanity checks needs a written reason",
            field="sanity_checks.reason",
            fix='Add sanity_checks.reason: "why the checks do not apply" (the report prints it), '
            "or waive single checks under sanity_checks.waive.",
        )
    return attacks


def _check_normalisation(m: ModelSection) -> None:
    """mean and std go together, one value per channel each, std > 0 (inf/nan: the schema)."""
    if (m.mean is None) != (m.std is None):
        raise ConfigError(
            "mean and std go together",
            field="model.std" if m.std is None else "model.mean",
            fix="Give both (one value per input channel), or neither.",
        )
    if m.mean is None or m.std is None:
        return
    if not m.mean or not m.std or len(m.mean) != len(m.std):
        raise ConfigError(
            f"mean has {len(m.mean)} values and std {len(m.std)}",
            field="model.std",
            fix="Give one mean and one std per input channel, e.g. [0.5, 0.5, 0.5].",
        )
    if any(s <= 0 for s in m.std):
        raise ConfigError(
            f"std must be > 0, got {m.std}", field="model.std", fix="Use the std the model was trained with."
        )


def check_file(path: str, field: str, what: str) -> Path:
    """``path`` exists and is a file (not a folder)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(
            f"{what} not found: {p}", field=field, fix="Check the path (relative to the working folder)."
        )
    if not p.is_file():
        raise ConfigError(f"{p} is a folder, not a {what}", field=field, fix="Name the file itself.")
    return p


def check_inputs(cfg: AuditConfig, *, model: bool = True, data: bool = True) -> None:
    """What the audit finds wrong when it starts, found without loading or training a model.

    The files the config names exist (model file or folder, weights, data, the watermark's
    reference models and attack data), factories import (they are not called), zoo and
    built-in names exist, ``n_examples`` fits the data, the device is spelt right and the
    output folder can be written. ``model``/``data`` False skip a spec that an object replaces
    (``run_audit(config, model=module)``). With :func:`check_config` this is ``robustness validate``.
    """
    if model:
        check_model_spec(cfg.model.spec, cfg.model.weights, field="model.spec", weights_field="model.weights")
        if cfg.model.args:
            from robustness.core.model import is_factory_spec

            if not is_factory_spec(cfg.model.spec):
                raise ConfigError(
                    f"model.args are only passed to a factory 'package.module:callable', and "
                    f"{cfg.model.spec!r} is not one",
                    field="model.args",
                    fix="Drop model.args, or name the architecture's factory as model.spec.",
                )
    if data:
        check_data_spec(cfg.data.spec, "data.spec", n_examples=cfg.data.n_examples, bounds=cfg.model.bounds)
        check_data_options(cfg)
    _check_device(cfg.model.device)
    from robustness.audit.section import AUDIT_SECTIONS, section_blocks

    for name, block in section_blocks(cfg).items():
        AUDIT_SECTIONS.get(name).check_inputs(block, cfg)
    check_output_dir(cfg.output.dir)


def _as_config_error(exc: Any, field: str) -> ConfigError:
    return ConfigError(exc.message, field=field, fix=exc.fix)


def check_model_spec(spec: str, weights: str | None, *, field: str, weights_field: str = "") -> None:
    """The model spec's kind as ``robustness.core.model.load_model`` tells it, and its files; no code
    from a model file or folder runs (a factory named in the config is imported, not called)."""
    from robustness.core.errors import RobustnessError
    from robustness.core.model import MODEL_CARD, MODEL_SUFFIXES, import_object, model_scheme

    def no_weights(kind: str) -> None:
        if weights:
            raise ConfigError(
                f"weights cannot be combined with {kind}",
                field=weights_field,
                fix="Drop model.weights; it is only used with a factory spec 'package.module:callable'.",
            )

    path = _spec_path(spec, field)
    try:
        found = model_scheme(spec)
        if found is not None:
            scheme, name = found
            # a scheme's own check of a name without loading it (the zoo would train on first use)
            check = getattr(scheme, "check", None)
            if check is not None:
                check(name)
            elif name not in scheme.names():
                raise ConfigError(
                    f"unknown model {spec!r}",
                    field=field,
                    fix=f"Known: {', '.join(spec.partition(':')[0] + ':' + n for n in scheme.names())}.",
                )
            no_weights(f"a {spec.partition(':')[0]} model")
        elif path.is_dir():
            no_weights("a model folder")
            check_file(str(path / MODEL_CARD), field, f"model folder's {MODEL_CARD}")
        elif path.suffix in MODEL_SUFFIXES or path.exists():
            check_file(spec, field, "model file")
            no_weights("a model file")
        elif ":" in spec:
            import_object(spec, field=field)
            if weights:
                check_file(weights, weights_field, "weights file")
        else:
            raise ConfigError(
                f"cannot tell what kind of model {spec!r} is (not a zoo name, an existing file or "
                "folder, or 'package.module:callable')",
                field=field,
                fix="Use zoo:NAME (see 'robustness models'), a model file or folder, or a factory.",
            )
    except ConfigError:
        raise
    except RobustnessError as exc:
        raise _as_config_error(exc, field) from None


def _spec_path(spec: str, field: str) -> Path:
    if "\0" in spec:  # pathlib raises ValueError on it
        raise ConfigError(f"{_short(spec)} contains a NUL character", field=field, fix="Fix the spec.")
    return Path(spec)


def check_data_spec(
    spec: str, field: str, *, n_examples: int | None = None, bounds: tuple[float, float] | None = None
) -> None:
    """The data spec's kind as ``robustness.core.data.load_data`` tells it, its file, and the sample count."""
    from robustness.core.errors import RobustnessError
    from robustness.core.model import import_object

    n_field = field.rsplit(".", 1)[0] + ".n_examples"
    path = _spec_path(spec, field)
    try:
        from robustness.core.data import data_scheme, load_data

        loader = data_scheme(spec)
        if loader is not None:
            # a scheme's own light check (its files are there) when it has one; else loading is the
            # check (builtin: is bundled and small)
            check = getattr(loader, "check", None)
            if check is not None:
                check(spec)
            else:
                load_data(spec, n_examples=n_examples, bounds=bounds)
            return
        if path.suffix == ".npz" or path.exists():
            n = _npz_length(check_file(spec, field, "data file"), field)
            if n_examples is not None and n is not None and n_examples > n:
                raise ConfigError(
                    f"n_examples is {n_examples} but {spec} has only {n} samples",
                    field=n_field,
                    fix=f"Use at most {n}, or leave it out to use all.",
                )
            return
        if ":" in spec:
            import_object(spec, field=field)
            return
        raise ConfigError(
            f"cannot tell what kind of data {spec!r} is",
            field=field,
            fix="Use builtin:digits, a .npz file with arrays x and y, or a factory 'package.module:callable'.",
        )
    except ConfigError:
        raise
    except RobustnessError as exc:
        raise _as_config_error(exc, n_field if exc.field == "n_examples" else field) from None


def check_data_options(cfg: AuditConfig) -> None:
    """``data.args`` only with a factory, ``data.image_size``/``image_mode`` only with an image folder."""
    from robustness.core.data import DataOptions, data_scheme
    from robustness.core.errors import RobustnessError
    from robustness.core.model import is_factory_spec

    spec, block = cfg.data.spec, cfg.data
    scheme = data_scheme(spec)
    options = DataOptions(**block.load_options())
    try:
        options.refuse(
            spec,
            args=not (scheme is None and is_factory_spec(spec)),
            images=not (scheme is not None and hasattr(scheme, "open")),
        )
    except RobustnessError as exc:
        raise _as_config_error(exc, exc.field or "data") from None


def _npz_length(p: Path, field: str) -> int | None:
    """Samples in an .npz (from the header of ``y``; nothing is decompressed beyond it)."""
    import zipfile

    import numpy as np

    try:
        with zipfile.ZipFile(p) as z:
            names = set(z.namelist())
            missing = [k for k in ("x", "y") if f"{k}.npy" not in names]
            if missing:
                raise ConfigError(
                    f"{p} has no array {' or '.join(repr(m) for m in missing)}",
                    field=field,
                    fix="Save inputs as 'x' and labels as 'y': numpy.savez(path, x=..., y=...).",
                )
            with z.open("y.npy") as f:
                version = np.lib.format.read_magic(f)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape = read(f)[0]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read {p} as .npz ({type(exc).__name__}: {exc})",
            field=field,
            fix="Save it with numpy.savez(path, x=inputs, y=labels).",
        ) from None
    return int(shape[0]) if shape else None


def _check_device(device: str) -> None:
    """Spelt right; whether this machine has the device is the audit's business (a config is
    often validated on a machine without the GPU it will run on)."""
    import torch

    if str(device) == "auto":
        return
    try:
        kind = torch.device(str(device)).type
    except RuntimeError:
        kind = ""
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigError(
            f"unknown device {device!r}", field="model.device", fix="Use auto, cpu, cuda or cuda:N."
        )


def check_output_dir(path: str | Path, *, field: str = "output.dir") -> Path:
    """The output folder is a folder, or can be created, and can be written."""
    p = Path(path)
    try:
        if p.exists() and not p.is_dir():
            raise ConfigError(
                f"{p} is a file, not a folder",
                field=field,
                fix="Name a folder for the outputs, or move the file.",
            )
        existing = p
        while not existing.exists():  # ends at '.' or the root, which exist
            existing = existing.parent
        if not existing.is_dir():
            raise ConfigError(
                f"{p} cannot be created: {existing} is a file",
                field=field,
                fix="Name a folder for the outputs.",
            )
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(
                f"{existing} is not writable",
                field=field,
                fix="Name a folder you can write to, e.g. runs/audit.",
            )
    except OSError as exc:
        raise ConfigError(f"cannot use {p} as the output folder: {exc}", field=field) from None
    return p


def load_baseline(path: str | Path, norm: str) -> AuditResults:
    """Read a baseline results.json for ``max_drop`` with the one results loader (an older schema
    is migrated, impossible numbers are refused); it must use the same norm."""
    from robustness.core.errors import RobustnessError
    from robustness.core.schema import ResultsError, load_results

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"baseline not found: {p}", field="gates.baseline", fix="Point at a results.json.")
    if not p.is_file():
        raise ConfigError(
            f"{p} is a folder, not a results.json",
            field="gates.baseline",
            fix="Name the results.json inside it.",
        )
    try:
        base = load_results(p, role="the baseline")
    except ResultsError as exc:  # possible numbers only: a baseline decides a gate
        raise ConfigError(f"{exc.field}: {exc.message}", field="gates.baseline", fix=exc.fix) from None
    except RobustnessError as exc:  # unreadable, not results, a schema this version cannot read
        raise ConfigError(
            f"{p} is not a results.json written by 'robustness audit' ({exc.message})",
            field="gates.baseline",
            fix="Point at the results.json of an earlier audit.",
        ) from None
    base_norm = base.threat.norm if base.threat is not None else None
    if base_norm != norm:
        raise ConfigError(
            f"the baseline uses norm {base_norm}, this audit {norm}",
            field="gates.baseline",
            fix="Compare audits of the same threat model.",
        )
    return base


def json_schema() -> dict[str, Any]:
    """The JSON schema of the config file."""
    return config_model().model_json_schema()
