"""The one typed result of an audit: the models of ``results.json``, and its one loader.

``results.json`` is the contract between the runner and every reader: the renderers
(``reports/``), ``robustness compare``, the baseline gate (``gates.baseline``) and the pytest
plugin. The runner builds an :class:`AuditResults` from what it measured and writes the file from
it; every reader gets one from :func:`load_results` (a path) or :func:`parse_results` (a dict):

1. the version check: schema 1.x only (minor versions only add keys);
2. the migration of older files to :data:`SCHEMA_VERSION` (:func:`migrate`; 1.0, written by
   robustness-audit 0.1.0, gains the explicit ``kind``, ``eps`` and ``comparator`` of each gate);
3. the types, field by field (pydantic, strict: ``"0.9"`` is no accuracy and ``true`` no count);
4. the numbers no audit can produce (:mod:`robustness.core.plausibility`).

Each failure is one :class:`ResultsError` naming the field path (``robust[2].accuracy``).

Sections: the top-level keys that optional parts of an audit add (``watermark`` today; privacy,
certification, corruptions next) are typed by a :class:`SectionResult` model each, registered
on :data:`RESULT_SECTIONS` by one file in ``robustness/core/sections/``. They stay top-level keys
of the file (``results.watermark``); :attr:`AuditResults.sections` maps each present one's name
to its typed result, and every renderer shows it through :meth:`SectionResult.view`.

Every model keeps keys it does not declare (``extra="allow"``): a newer 1.x file reads, and
writing a result back keeps them. :meth:`AuditResults.to_dict` is the file's content.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    create_model,
    model_serializer,
    model_validator,
)

from robustness.core.errors import RobustnessError, UsageError
from robustness.core.registry import Registry
from robustness.core.verdict import VERDICTS

SCHEMA_VERSION = "1.1"
READABLE_MAJOR = "1."  # any 1.x: minor versions only add keys
RESULTS_FILE = "results.json"
# The keys a results object must have, whatever its minor version.
REQUIRED = ("verdict", "clean", "robust", "gates", "sanity_checks")
CHECK_STATUSES = ("pass", "fail", "skip", "waived")
COMPARATORS = (">=", "<=")


class ResultsError(RobustnessError):
    """A results file holds values no audit can produce (damaged, edited by hand or forged)."""


FIX_EDITED = (
    "The file was edited or damaged after the audit wrote it; re-run the audit, or use the "
    "results.json it wrote."
)


# -- value types --------------------------------------------------------------------------------
# Checked strictly, with the messages a reader of a damaged file needs; the value is kept as it is
# (an int stays an int, so writing a result back changes nothing).


def _number(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):  # true is no accuracy
        raise ValueError(f"{v!r} is not a number")
    return v.item() if hasattr(v, "item") else v  # numpy scalars as Python numbers


def _count(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
        raise ValueError(f"{v!r} is not a non-negative integer")
    return int(v)


def _flag(v: Any) -> bool:
    if isinstance(v, bool) or (getattr(v, "dtype", None) is not None and v.dtype.kind == "b"):
        return bool(v)
    raise ValueError(f"{v!r} is not true or false")


def _interval(v: Any) -> list[Any]:
    if not isinstance(v, list | tuple) or len(v) != 2:
        raise ValueError(f"{v!r} is not an interval [low, high]")
    return [_number(x) for x in v]


def _same(v: Any) -> Any:
    return v


Number = Annotated[float, PlainValidator(_number), PlainSerializer(_same), WithJsonSchema({"type": "number"})]
Count = Annotated[
    int, PlainValidator(_count), PlainSerializer(_same), WithJsonSchema({"type": "integer", "minimum": 0})
]
Flag = Annotated[bool, PlainValidator(_flag), PlainSerializer(_same), WithJsonSchema({"type": "boolean"})]
Interval = Annotated[
    list[float],
    PlainValidator(_interval),
    PlainSerializer(_same),
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "number", "minimum": 0, "maximum": 1},
            "minItems": 2,
            "maxItems": 2,
            "description": "[low, high], exact 95% Clopper-Pearson",
        }
    ),
]
# Checked against VERDICTS / CHECK_STATUSES with the numbers (plausibility), so that a renderer
# handed an unknown one in memory still draws it (as a failure, never as a pass).
VerdictName = Annotated[str, WithJsonSchema({"type": "string", "enum": list(VERDICTS)})]
CheckStatus = Annotated[str, WithJsonSchema({"type": "string", "enum": list(CHECK_STATUSES)})]


class Record(BaseModel):
    """A part of the results: strictly typed fields, undeclared keys kept."""

    model_config = ConfigDict(strict=True, extra="allow")

    def to_dict(self) -> dict[str, Any]:
        """The part as results.json holds it (only the keys it was given or set)."""
        return self.model_dump(mode="python", exclude_unset=True)


# -- the parts of results.json ------------------------------------------------------------------


class Environment(Record):
    """Versions and settings needed to reproduce the run."""

    python: str | None = None
    torch: str | None = None
    art: str | None = None
    numpy: str | None = None
    platform: str | None = None
    device: str | None = None
    precision: str | None = None
    seed: int | None = None
    threads: int | None = None
    command_line: str | None = None
    channels_last: Flag | None = None
    compiled: Flag | None = None
    processes: dict[str, Any] | None = Field(None, description="world size and backend under torchrun")


class ModelInfo(Record):
    spec: str | None = None
    sha256: str | None = None
    n_parameters: Count | None = None
    bounds: list[Number] | None = None
    num_classes: Count | None = None
    outputs_probabilities: Flag | None = None
    mean: Any = None
    std: Any = None
    args: dict[str, Any] | None = Field(
        None, description="keyword arguments the model's factory was called with"
    )
    epsilon: Number | None = Field(
        None, description="differential privacy spent in training (DP-SGD), from the model card; null: none"
    )
    delta: Number | None = Field(None, description="the delta of that (epsilon, delta) guarantee")

    def privacy_text(self) -> str | None:
        """The DP guarantee as the reports print it (None when the card records none); epsilon
        rounded up, since a privacy budget is never shown smaller than it was spent."""
        if self.epsilon is None:
            return None
        import math

        delta = "?" if self.delta is None else f"{self.delta:g}"
        return (
            f"({math.ceil(self.epsilon * 1000) / 1000:g}, {delta})-DP training (DP-SGD), from its model card"
        )


class DataInfo(Record):
    spec: str | None = None
    n: Count | None = None
    sha256: str | None = None
    shape: list[int] | None = None
    seed: int | None = None
    n_examples: int | None = None
    class_names: list[str] | None = Field(
        None, description="class index -> name (image folders, CIFAR meta files); null: shown as indices"
    )
    batch_size: Count | None = Field(
        None, description="samples per attack call (data.batch_size, auto resolved)"
    )
    batch_size_search: dict[str, Any] | None = Field(None, description="how data.batch_size auto chose it")


class Threat(Record):
    norm: str | None = None
    eps: list[Number] | None = None
    bounds: list[Number] | None = None


class CleanMetrics(Record):
    """Accuracy on the unperturbed data."""

    n: Count | None = None
    correct: Count | None = None
    accuracy: Number
    accuracy_ci: Interval | None = None
    precision: Number | None = Field(None, description="macro average")
    recall: Number | None = Field(None, description="macro average")
    f1: Number | None = Field(None, description="macro average")
    per_class_accuracy: dict[str, Number | None] | None = Field(
        None, description="class -> accuracy; null for a class absent from the data"
    )
    confusion: list[list[Count]] | None = Field(None, description="[true class][predicted class] counts")
    ci: Interval | None = None


class IndicatorAtEps(Record):
    """One indicator of attack failure of one attack at one eps."""

    eps: Number
    n_measured: Count = Field(description="samples it was measured on: those the attack failed on")
    n_fired: Count = Field(description="samples it holds for")
    fired: Flag = Field(description="beyond its threshold: the attack's failures here are not evidence")

    @model_validator(mode="after")
    def _at_most_measured(self) -> IndicatorAtEps:
        if self.n_fired > self.n_measured:
            raise ValueError(f"n_fired {self.n_fired} exceeds n_measured {self.n_measured}")
        return self


class FailureIndicator(Record):
    """An indicator of attack failure (Pintor et al., NeurIPS 2022) of one attack of the run: read
    off the attack's own loss trajectories, or (unreachable misclassification) off the runs of the
    large-eps check. Renderers show its title and counts; the check ``attack_failure`` judges it."""

    name: str = Field(
        description="silent_loss, incomplete_optimisation, non_converging_restarts or "
        "unreachable_misclassification"
    )
    title: str | None = None
    explanation: str | None = None
    member: str | None = Field(
        None, description="the member that reported it (apgd-t in autoattack); null: the attack itself"
    )
    n_measured: Count = Field(description="samples it was measured on, summed over eps")
    n_fired: Count = Field(description="samples it holds for, summed over eps")
    fired: Flag = Field(description="fired at some eps")
    per_eps: list[IndicatorAtEps] | None = None

    @model_validator(mode="after")
    def _at_most_measured(self) -> FailureIndicator:
        if self.n_fired > self.n_measured:
            raise ValueError(f"n_fired {self.n_fired} exceeds n_measured {self.n_measured}")
        return self


class AttackRecord(Record):
    """One attack of the run, with its resolved parameters and its indicators of attack failure."""

    name: str = Field(description="the label in per_attack (pgd, pgd#2)")
    attack: str | None = Field(None, description="the registered attack")
    params: dict[str, Any] | None = None
    kind: str | None = Field(None, description="white-box, black-box, ...")
    indicators: list[FailureIndicator] | None = Field(
        None, description="its indicators of attack failure; empty: none measured (no loss trajectory)"
    )


class AttackCost(Record):
    """What one attack cost at one eps; gradient calls and forward passes are counted per sample."""

    time_s: Number | None = None
    n_forward: Count | None = None
    n_backward: Count | None = None
    n_queries: Count | None = None
    n_attacked: Count | None = Field(None, description="samples still standing when the attack started")
    n_broken: Count | None = None


class RobustRow(Record):
    """Robust accuracy at one eps: the per-sample worst case over every attack of the run."""

    eps: Number
    norm: str | None = None
    n: Count | None = None
    n_robust: Count | None = None
    accuracy: Number | None = None
    ci: Interval | None = None
    per_attack: dict[str, Number] | None = Field(
        None, description="attack label -> robust accuracy after it (cumulative, in run order)"
    )
    per_attack_cost: dict[str, AttackCost] | None = None
    per_class_accuracy: dict[str, Number | None] | None = None
    time_s: Number | None = None
    accuracy_attacks_only: Number | None = Field(
        None, description="robust accuracy before the sanity checks' attacks were folded in"
    )
    found_by_checks: dict[str, Count] | None = Field(
        None, description="check attack -> samples it broke that the audit's attacks left standing"
    )


class CheckOutcome(Record):
    """One sanity check: its status (a waiver turns a measured outcome into ``waived``)."""

    name: str
    title: str | None = None
    explanation: str | None = Field(None, description="why the check matters, in plain language")
    status: CheckStatus
    detail: str | None = None
    waiver: str | None = None
    outcome: str | None = Field(None, description="the check's own status, before a waiver")
    measured: dict[str, Any] | None = None


class Gate(Record):
    """One gate: ``value comparator threshold`` must hold for it to pass."""

    name: str = Field(description="unique name, e.g. min_robust_accuracy@0.1")
    kind: str = Field(
        description="min_clean_accuracy, min_robust_accuracy, max_drop, watermark_verified, ..."
    )
    eps: Number | None = Field(description="the eps it judges; null for a gate not tied to one eps")
    passed: Flag
    value: Number | None = None
    comparator: Literal[">=", "<="]
    threshold: Number | None = None
    judge: str | None = Field(None, description="ci_low, point, ...")
    detail: str | None = None
    baseline: str | None = None
    baseline_accuracy: Number | None = None


class Timing(Record):
    total_s: Number | None = None
    clean_s: Number | None = None
    attacks_s: Number | None = None
    checks_s: Number | None = None
    resumed_batches: Count | None = None
    note: str | None = None

    def parts(self) -> list[tuple[str, float]]:
        """(name, seconds) of every ``*_s`` entry, in file order (total first)."""
        return [
            (k.removesuffix("_s"), v)
            for k, v in self.to_dict().items()
            if k.endswith("_s") and isinstance(v, int | float) and not isinstance(v, bool)
        ]


# -- sections -------------------------------------------------------------------------------------


@dataclass
class SectionTable:
    header: list[str]
    rows: list[list[str]]
    widths: tuple[float, ...] | None = None  # relative column widths
    title: str = ""  # a sub-heading above the table, where a section has several


@dataclass
class SectionNote:
    text: str
    style: Literal["body", "caption"] = "body"  # caption: small and grey, under a table


@dataclass
class CurveSeries:
    """One line of a :class:`SectionCurve`; ``lower``/``upper`` (same length as ``x``) draw its
    interval as a band."""

    name: str
    x: list[float]
    y: list[float]
    lower: list[float] | None = None
    upper: list[float] | None = None
    style: Literal["line", "dashed", "points"] = "line"


@dataclass
class SectionCurve:
    """A line chart of a section (a ROC curve, accuracy over a budget): the numbers to draw,
    taken from the section's fields; each renderer draws it its own way."""

    title: str
    x_label: str
    y_label: str
    series: list[CurveSeries]
    log_x: bool = False
    log_y: bool = False
    caption: str = ""


@dataclass
class SectionHeatmap:
    """A table of numbers drawn as colours (accuracy per corruption and severity);
    ``values[i][j]`` belongs to ``rows[i]`` and ``columns[j]``, None where not measured."""

    title: str
    rows: list[str]
    columns: list[str]
    values: list[list[float | None]]
    value_label: str
    row_label: str = ""
    column_label: str = ""
    lo: float = 0.0
    hi: float = 1.0
    caption: str = ""


@dataclass
class SectionImages:
    """A strip of small images (examples of a corruption), each ``H x W`` (grey) or
    ``H x W x C`` with values in [0, 1], one caption each."""

    title: str
    images: list[list[Any]]
    captions: list[str]
    caption: str = ""


SectionFigure = SectionCurve | SectionHeatmap | SectionImages


@dataclass
class SectionView:
    """What every renderer shows of a section: the PDF draws the heading, the pairs, the tables,
    the figures and the notes; Markdown prints ``**label:** summary``; the HTML report all of it.

    ``table`` is the one table most sections have; ``tables`` holds any further ones (each
    renderer shows ``table`` first, then ``tables`` in order).
    """

    title: str
    label: str
    summary: str
    pairs: list[tuple[str, str]] = field(default_factory=list)
    table: SectionTable | None = None
    notes: list[SectionNote] = field(default_factory=list)
    tables: list[SectionTable] = field(default_factory=list)
    figures: list[SectionFigure] = field(default_factory=list)

    def all_tables(self) -> list[SectionTable]:
        """``table`` (when set) then ``tables``: what a renderer iterates."""
        return ([self.table] if self.table is not None else []) + list(self.tables)


class SectionResult(Record):
    """The typed result of one optional audit section (a top-level key of results.json).

    A section is one file in ``robustness/core/sections/`` with a subclass registered under its
    key (``@section("watermark")``); it declares its fields, :meth:`check_numbers` refuses the
    values no run can produce, and :meth:`view` is what every renderer shows.
    """

    title: ClassVar[str] = ""

    def check_numbers(self, check: Any, path: str) -> None:
        """Refuse impossible values; ``check`` is a :class:`robustness.core.plausibility.Checker`."""

    def view(self) -> SectionView:
        return SectionView(title=self.title, label=self.title, summary="")


RESULT_SECTIONS: Registry[type[SectionResult]] = Registry(
    "results section", package="robustness.core.sections", error=UsageError
)


def section(name: str):
    """Class decorator: register a :class:`SectionResult` as the results key ``name``."""
    return RESULT_SECTIONS.register(name)


# -- the whole file -----------------------------------------------------------------------------


class AuditResults(Record):
    """The results of one audit: everything ``results.json`` holds.

    Use :func:`results_model` for the class that also types the registered sections (which
    :func:`parse_results` and :func:`load_results` return).
    """

    schema_version: str
    tool_version: str | None = None
    created: str | None = Field(None, description="UTC, ISO 8601")
    config: dict[str, Any] | None = Field(None, description="the resolved audit config")
    environment: Environment | None = None
    model: ModelInfo | None = None
    data: DataInfo | None = None
    threat: Threat | None = None
    clean: CleanMetrics
    attacks: list[AttackRecord] | None = None
    robust: list[RobustRow]
    sanity_checks: list[CheckOutcome]
    gates: list[Gate]
    verdict: VerdictName
    verdict_reason: str | None = None
    timing: Timing | None = None
    files: dict[str, str] | None = Field(None, description="companion files next to results.json")
    eot_used: Flag | None = None
    renderer_errors: dict[str, str] | None = Field(None, description="format -> why it was not written")

    _file_schema: str | None = PrivateAttr(None)

    @model_serializer(mode="wrap")
    def _in_file_order(self, handler: Any) -> dict[str, Any]:
        # The sections sit where the runner has always written them: right after "files".
        data = handler(self)
        names = [n for n in RESULT_SECTIONS.names() if n in data]
        if not names or "files" not in data:
            return data
        out: dict[str, Any] = {}
        for k, v in data.items():
            if k in names:
                continue
            out[k] = v
            if k == "files":
                out.update((n, data[n]) for n in names)
        return out

    @property
    def sections(self) -> dict[str, SectionResult]:
        """Section name -> typed result, for the sections this audit ran (in registry order)."""
        out = {}
        for name in RESULT_SECTIONS.names():
            value = getattr(self, name, None)
            if isinstance(value, SectionResult):
                out[name] = value
        return out

    @property
    def file_schema_version(self) -> str:
        """The schema version of the file this was read from (before migration)."""
        return self._file_schema or self.schema_version

    def row_at(self, eps: float | None) -> RobustRow | None:
        """The robust row of ``eps`` (None for None or an eps not in the grid)."""
        if eps is None:
            return None
        return next((r for r in self.robust if abs(float(r.eps) - float(eps)) <= 1e-12), None)

    def failed_checks(self) -> list[CheckOutcome]:
        return [c for c in self.sanity_checks if c.status == "fail"]

    def failed_gates(self) -> list[Gate]:
        return [g for g in self.gates if not g.passed]


_MODELS: dict[tuple[tuple[str, int], ...], type[AuditResults]] = {}


def results_model() -> type[AuditResults]:
    """:class:`AuditResults` with one optional field per registered section."""
    sections = RESULT_SECTIONS.items()
    key = tuple((name, id(model)) for name, model in sections.items())
    if key not in _MODELS:
        fields: dict[str, Any] = {
            name: (model | None, Field(None, description=(model.__doc__ or "").strip().split("\n")[0]))
            for name, model in sections.items()
        }
        _MODELS[key] = create_model(
            "AuditResults", __base__=AuditResults, __module__=__name__, __doc__=AuditResults.__doc__, **fields
        )
    return _MODELS[key]


def results_json_schema() -> dict[str, Any]:
    """The JSON Schema of results.json (``robustness schema --results``)."""
    schema = results_model().model_json_schema()
    props = schema["properties"]
    names = [n for n in RESULT_SECTIONS.names() if n in props]
    order = [k for k in props if k not in names]
    at = order.index("files") + 1 if "files" in order else len(order)
    schema["properties"] = {k: props[k] for k in [*order[:at], *names, *order[at:]]}  # as in the file
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "robustness-audit results.json",
        "description": f"Schema version {SCHEMA_VERSION}. "
        + (AuditResults.__doc__ or "").strip().split("\n")[0],
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


# -- migration ----------------------------------------------------------------------------------


def gate_fields_from_name(gate: dict[str, Any]) -> dict[str, Any]:
    """``kind``, ``eps`` and ``comparator`` of a gate of schema 1.0, which only named them.

    The one place a gate's name is read: ``min_robust_accuracy@0.1`` judges eps 0.1; ``max_*``
    gates and the watermark's p-value (judged against alpha) are upper limits.
    """
    name = str(gate.get("name", ""))
    base, _, at = name.partition("@")
    eps = gate.get("eps")
    if eps is None and at:
        try:
            eps = float(at)
        except ValueError:
            eps = None
    kind = base if eps is not None else name
    upper = kind.startswith("max_") or kind == "watermark_verified"
    return {"kind": kind, "eps": eps, "comparator": "<=" if upper else ">="}


# What each sanity check of robustness-audit 0.1.0 means, as its reports explained it: a results
# file of schema 1.0 carries only the titles. (Checks now declare their own explanation, and the
# runner writes it into every check outcome.)
CHECK_EXPLANATIONS_1_0 = {
    "iterative_beats_single_step": (
        "A many-step attack should find at least every weakness a one-step attack finds. If it does not, "
        "the gradients are misleading it (gradient masking) and the robust accuracy is over-stated."
    ),
    "monotonic_in_eps": (
        "A bigger perturbation budget gives the attacker more room, so robust accuracy can only fall as "
        "eps grows. A rise means an attack failed to find examples it provably could."
    ),
    "large_eps_breaks_all": (
        "With a budget large enough to erase the image, any model should be fooled. Accuracy well above "
        "zero there means the attack, not the model, is the limit."
    ),
    "black_box_not_stronger": (
        "Attacks that do not use gradients (random search, Square) should not break samples the "
        "gradient attacks left standing. If they do, the gradients are masked."
    ),
    "more_iterations_no_gain": (
        "Running the attack longer or restarting it should not lower robust accuracy much. If it does, "
        "the reported attack had not converged and the number is too optimistic."
    ),
    "gradients_nonzero": (
        "Gradient attacks need finite, non-zero input gradients. Zero or NaN gradients make them "
        "silently fail while the model is not robust at all."
    ),
    "deterministic_forward": (
        "A randomised forward pass makes single gradient samples noisy; such models must be attacked "
        "with expectation over transformation (EOT)."
    ),
    "outputs_logits": (
        "Probabilities saturate, so their gradients vanish and attacks weaken. Audits must attack logits."
    ),
}


def _from_1_0(data: dict[str, Any]) -> dict[str, Any]:
    """1.0 -> 1.1: every gate carries its kind, eps and comparator; every check of a known name
    its explanation."""
    checks = data.get("sanity_checks")
    if isinstance(checks, list):
        data["sanity_checks"] = [
            {**c, "explanation": CHECK_EXPLANATIONS_1_0[c["name"]]}
            if isinstance(c, dict) and c.get("name") in CHECK_EXPLANATIONS_1_0 and "explanation" not in c
            else c
            for c in checks
        ]
    gates = data.get("gates")
    if isinstance(gates, list):
        data["gates"] = [
            {**g, **{k: v for k, v in gate_fields_from_name(g).items() if k not in g}}
            if isinstance(g, dict)
            else g
            for g in gates
        ]
    return data


# version -> (the step to the next version, that version)
MIGRATIONS = {"1.0": (_from_1_0, "1.1")}


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a results dict of any readable 1.x version, at :data:`SCHEMA_VERSION` or newer."""
    data = dict(data)
    version = str(data["schema_version"])
    while version in MIGRATIONS:
        step, version = MIGRATIONS[version]
        data = step(data)
        data["schema_version"] = version
    return data


# -- reading ------------------------------------------------------------------------------------


def check_version(data: Any, where: str = "results") -> str:
    """The schema version of a results dict this code reads; a UsageError for anything else."""
    if not isinstance(data, dict) or "schema_version" not in data:
        raise UsageError(
            f"{where} is not an audit results object (no schema_version)",
            field=where,
            fix="Give the results.json written by 'robustness audit'.",
        )
    version = str(data["schema_version"])
    if not version.startswith(READABLE_MAJOR):
        raise UsageError(
            f"{where} has results schema {version}; this version reads schema 1.x",
            field=where,
            fix="Re-render with the robustness-audit version that wrote it, or re-run the audit.",
        )
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise UsageError(
            f"{where} lacks the required key(s) {', '.join(missing)}",
            field=where,
            fix="The file is incomplete; re-run the audit.",
        )
    return version


def parse_results(data: Any, where: str = "results", *, check_numbers: bool = True) -> AuditResults:
    """The typed result of a results dict (or an :class:`AuditResults`, returned as it is).

    Checks the version, migrates an older file, checks every field's type and, with
    ``check_numbers``, refuses numbers no audit can produce (:class:`ResultsError`, the field
    path in ``field``). The runner, whose own numbers need no such check, passes False.
    """
    if isinstance(data, AuditResults):
        results = data
    else:
        version = check_version(data, where)
        try:
            results = results_model().model_validate(migrate(data))
        except ValidationError as exc:
            path, message = _first_error(exc)
            raise ResultsError(f"{message} (in {where})", field=path or "results", fix=FIX_EDITED) from None
        results._file_schema = version
    if check_numbers:
        from robustness.core.plausibility import check_numbers as check

        check(results, where)
    return results


def load_results(path: str | Path, *, role: str | None = None) -> AuditResults:
    """Read ``results.json`` (or the output folder holding it) into the typed result.

    ``role`` names the file in messages and as the error's field ("BASE", "the baseline").
    A missing or unreadable file or a schema this code cannot read is a UsageError; impossible
    values are a :class:`ResultsError`.
    """
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    subject = f"{role} results file" if role else "results file"
    where = f"{role} {p}" if role else str(p)
    what = role or str(path)
    if not p.is_file():
        raise UsageError(
            f"{subject} {p} does not exist" if role else f"no results file at {p}",
            field=what,
            fix="Give the results.json written by 'robustness audit' (or its output folder).",
        )
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"{subject} {p} is not valid JSON ({exc})",
            field=what,
            fix="Re-run the audit; results.json is written atomically, so a damaged file was edited or copied badly.",
        ) from exc
    return parse_results(data, where)


def _first_error(exc: ValidationError) -> tuple[str, str]:
    """(field path, message) of the first type error, in the words of a reader of the file."""
    err = exc.errors(include_url=False)[0]
    loc = err["loc"]
    path = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in loc).lstrip(".")
    value, kind = err.get("input"), err["type"]
    if kind == "value_error":
        message = str(err["ctx"]["error"])
    elif kind == "missing":
        message = f"the entry has no {loc[-1]}" if loc else "a required key is missing"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = f"expected an object, got {type(value).__name__}"
    elif kind == "list_type":
        message = f"expected a list, got {type(value).__name__}"
    elif kind == "string_type":
        message = f"expected text, got {value!r}"
    elif kind == "bool_type":
        message = f"{value!r} is not true or false"
    elif kind == "int_type":
        message = f"{value!r} is not an integer"
    elif kind == "literal_error":
        message = f"{value!r} is not one of {err['ctx']['expected']}"
    else:
        message = f"{value!r}: {err['msg']}"
    return path, message
