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
(20 iterations, at most 1000 evaluations per gradient estimate). When the determinism
check finds a randomized forward pass, the gradient attacks are wrapped in EOT.

With fewer than 10 classes the attacks cap the target classes at num_classes - 1.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from robustness.errors import ConfigError
from robustness.watermark import WatermarkConfig

FORMATS = ("json", "pdf", "junit", "md")
PRESETS = ("quick", "standard", "thorough")

# name, params; in run order. Exact budgets are documented in the module docstring and the README.
PRESET_ATTACKS: dict[str, list[dict[str, Any]]] = {
    "quick": [
        {"name": "apgd-ce", "params": {"steps": 50}},
        {"name": "apgd-t", "params": {"steps": 25, "n_target_classes": 3}},
        {"name": "square", "params": {"n_queries": 1000}},
    ],
    "standard": [
        {"name": "apgd-ce", "params": {"steps": 100, "restarts": 1}},
        {"name": "apgd-t", "params": {"steps": 100, "n_target_classes": 9, "restarts": 1}},
        {"name": "fab", "params": {"steps": 100, "n_target_classes": 9, "restarts": 1}},
        {"name": "square", "params": {"n_queries": 5000, "p_init": 0.8, "restarts": 1}},
    ],
    "thorough": [
        {"name": "apgd-ce", "params": {"steps": 100, "restarts": 5}},
        {"name": "apgd-t", "params": {"steps": 100, "n_target_classes": 9, "restarts": 2}},
        {"name": "fab", "params": {"steps": 100, "n_target_classes": 9, "restarts": 2}},
        {"name": "square", "params": {"n_queries": 5000, "p_init": 0.8, "restarts": 2}},
        {"name": "art:HopSkipJump", "params": {"max_iter": 20, "max_eval": 1000, "init_eval": 100}},
    ],
}
EOT_SAMPLES_THOROUGH = 10

# The sanity checks, in the order of issue 5 (a)..(h): stable names (used by waivers) and titles.
CHECKS: dict[str, str] = {
    "iterative_beats_single_step": "Iterative attacks are not weaker than single-step ones",
    "monotonic_in_eps": "Robust accuracy does not rise with eps",
    "large_eps_breaks_all": "At a very large eps, accuracy falls to about zero",
    "black_box_not_stronger": "Black-box and random-noise attacks do not beat the white-box attacks",
    "more_iterations_no_gain": "More iterations and restarts do not lower robust accuracy",
    "gradients_nonzero": "Input gradients are finite and non-zero",
    "deterministic_forward": "The forward pass is deterministic",
    "outputs_logits": "The model returns logits, not probabilities",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class ModelSection(_Section):
    """The model under test (see ``robustness.model.load_model``)."""

    spec: str = Field(description="zoo:NAME, file.pt2, file.pt/.ts, package.module:callable or a folder")
    weights: str | None = Field(None, description="weights for a factory spec (.safetensors or .pt)")
    trust_model: bool = Field(
        False, description="allow unpickling a whole pickled module (trusted files only)"
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
    """The evaluation samples (see ``robustness.data.load_data``)."""

    spec: str = Field(description="builtin:digits, file.npz (x, y), or package.module:callable")
    n_examples: Annotated[int, Field(gt=0)] | None = Field(None, description="a reproducible subset of N")
    seed: int | None = Field(None, description="seed of the subset (default: the top-level seed)")
    batch_size: Annotated[int, Field(gt=0)] = Field(256, description="samples per attack call and checkpoint")


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
        if not v:
            raise ValueError("give at least one eps")
        return sorted(set(float(e) for e in v))


class AttackSpec(_Section):
    """One attack of an explicit list: a registry name and its hyper-parameters."""

    name: str = Field(description="a name from 'robustness attacks', or art:ClassName")
    params: dict[str, Any] = Field(default_factory=dict)


class SanityChecksSection(_Section):
    """The checks (a)-(h) of issue 5; each can be waived only with a written reason."""

    enabled: bool = Field(True, description="false needs a written 'reason'; every check is then waived")
    reason: str | None = Field(
        None, description="why the checks are disabled (required when enabled is false)"
    )
    waive: dict[str, str] = Field(default_factory=dict, description="check name -> written reason")
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
            if name not in CHECKS:
                close = difflib.get_close_matches(name, list(CHECKS), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown check {name!r}{hint}; checks are: {', '.join(CHECKS)}")
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


class OutputSection(_Section):
    dir: str = "runs/audit"
    formats: list[Literal["json", "pdf", "junit", "md"]] = Field(default_factory=lambda: list(FORMATS))


class AuditConfig(_Section):
    """A robustness audit."""

    model: ModelSection
    data: DataSection
    threat: ThreatSection
    attacks: Literal["quick", "standard", "thorough"] | list[AttackSpec] = "standard"
    sanity_checks: SanityChecksSection = Field(default_factory=SanityChecksSection)
    gates: GatesSection = Field(default_factory=GatesSection)
    output: OutputSection = Field(default_factory=OutputSection)
    seed: int = Field(0, description="seed of the attacks (and of the data subset unless data.seed is set)")
    watermark: WatermarkConfig | None = Field(
        None, description="verify a trigger-set watermark and test whether it survives removal attacks"
    )

    @property
    def data_seed(self) -> int:
        return self.seed if self.data.seed is None else self.data.seed


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
    model: Any = AuditConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is not None:
            model = _model_in(field.annotation) or model
    return list(model.model_fields)


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
                f"{{name, params}} (got {err.get('input')!r})"
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
                msg += f" (got {err['input']!r})"
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
    """Parse a YAML (.yaml/.yml) or TOML (.toml) file into a dict."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file not found: {p}", field="CONFIG", fix="Check the path.")
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p} is not valid TOML: {exc}", field="CONFIG", fix="Fix the syntax.") from exc
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"{p} is not valid YAML: {exc}".replace("\n", " "), field="CONFIG", fix="Fix the syntax."
            ) from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p} holds {type(data).__name__}, not a mapping of sections",
            field="CONFIG",
            fix="Start from examples/digits-audit.yaml.",
        )
    return data


def parse_config(data: dict[str, Any] | AuditConfig) -> AuditConfig:
    """Validate a dict into an :class:`AuditConfig` (schema only; see :func:`check_config`)."""
    if isinstance(data, AuditConfig):
        return data
    try:
        return AuditConfig.model_validate(data)
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
        "norm": ("threat", "norm"),
        "eps": ("threat", "eps"),
        "output_dir": ("output", "dir"),
        "formats": ("output", "formats"),
    }
    for key, value in overrides.items():
        if value is None:
            continue
        if key in mapping:
            section, field = mapping[key]
            data[section][field] = str(value) if key == "output_dir" else value
        elif key in ("preset", "attacks"):
            data["attacks"] = value
        elif key == "seed":
            data["seed"] = value
        else:
            raise ConfigError(
                f"unknown override {key!r}", field=key, fix=f"Use one of: {', '.join(mapping)}."
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
        return out
    return [AttackSpec(name=a.name, params=dict(a.params)) for a in cfg.attacks]


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

    Attack names must be registered (or ``art:``), their parameters known, their norm
    supported; gate eps must be in the grid; the baseline must exist and be readable.
    """
    from attacks.registry import available, get_attack
    from robustness.errors import RobustnessError
    from robustness.threat import check_eps

    bounds = cfg.model.bounds or (0.0, 1.0)
    if bounds[0] >= bounds[1]:
        raise ConfigError(
            f"bounds must be [low, high] with low < high, got {list(bounds)}", field="model.bounds"
        )
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
            raise ConfigError(exc.message, field=f"{where}.params", fix=exc.fix) from None

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
        load_baseline(g.baseline, cfg.threat.norm)
    if not cfg.sanity_checks.enabled and not (cfg.sanity_checks.reason or "").strip():
        raise ConfigError(
            "disabling the sanity checks needs a written reason",
            field="sanity_checks.reason",
            fix='Add sanity_checks.reason: "why the checks do not apply" (the report prints it), '
            "or waive single checks under sanity_checks.waive.",
        )
    return attacks


def load_baseline(path: str | Path, norm: str) -> dict[str, Any]:
    """Read a baseline results.json for ``max_drop``; it must use the same norm."""
    import json

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"baseline not found: {p}", field="gates.baseline", fix="Point at a results.json.")
    try:
        base = json.loads(p.read_text(encoding="utf-8"))
        entries = base["robust"]
        base_norm = base["threat"]["norm"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{p} is not a results.json written by 'robustness audit' ({type(exc).__name__}: {exc})",
            field="gates.baseline",
            fix="Point at the results.json of an earlier audit.",
        ) from None
    if base_norm != norm:
        raise ConfigError(
            f"the baseline uses norm {base_norm}, this audit {norm}",
            field="gates.baseline",
            fix="Compare audits of the same threat model.",
        )
    if not isinstance(entries, list):
        raise ConfigError(f"{p}: 'robust' is not a list", field="gates.baseline")
    return base


def json_schema() -> dict[str, Any]:
    """The JSON schema of the config file."""
    return AuditConfig.model_json_schema()
