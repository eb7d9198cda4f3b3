"""What the renderers share: reading results (re-exported from the one loader), gate labels, the
companion files, and number formatting. A check's title and explanation are in its outcome.

Renderers take the typed result (:class:`robustness.core.schema.AuditResults`) and never
recompute a number; loading, the version check, the migration of older files and the refusal of
impossible numbers are :mod:`robustness.core.schema`'s (re-exported here: :func:`load_results`,
:func:`validate_results`, :class:`ResultsError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustness.core.formatting import ci, eps_str, num, pct, seconds  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from robustness.core.schema import AuditResults, Gate


STATUS_LABEL = {"pass": "PASS", "fail": "FAIL", "skip": "SKIPPED", "waived": "WAIVED"}

# The loader's names, imported when first used (pydantic stays out of a plain ``import reports``,
# which the CLI does to list the formats).
_FROM_SCHEMA = ("load_results", "ResultsError", "CHECK_STATUSES", "check_version", "parse_results")


def __getattr__(name: str) -> Any:
    if name in _FROM_SCHEMA:
        from robustness.core import schema

        return getattr(schema, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def validate_results(results: Any, where: str = "results.json") -> AuditResults:
    """The typed result of a results dict; a ResultsError (field = the path, e.g.
    ``robust[2].accuracy``) for a value of the wrong type or a number no audit can produce."""
    from robustness.core.schema import parse_results

    return parse_results(results, where)


def gate_label(gate: Gate) -> str:
    """'min robust accuracy @ eps 0.1' for the min_robust_accuracy gate at eps 0.1."""
    text = gate.kind.replace("_", " ")
    return f"{text} @ eps {float(gate.eps):g}" if gate.eps is not None else text


def gate_symbol(gate: Gate) -> str:
    """How a gate's value must relate to its threshold to pass, as printed: ≥ or ≤."""
    return {">=": "≥", "<=": "≤"}.get(gate.comparator, gate.comparator)


def companion(results: AuditResults, source: Path | None, key: str) -> Path | None:
    """Path of a file the results name in ``files`` (``samples``, ``examples``) if it exists."""
    if source is None:
        return None
    name = (results.files or {}).get(key)
    if not name:
        return None
    p = Path(source) / name
    return p if p.is_file() else None


def load_examples(results: AuditResults, source: Path | None) -> dict[str, Any] | None:
    """The stored adversarial examples for the image grid, or None when absent or unreadable."""
    p = companion(results, source, "examples")
    if p is None:
        return None
    import numpy as np

    try:
        with np.load(p, allow_pickle=False) as z:
            ex = {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None
    need = {"x_clean", "x_adv", "eps", "y", "clean_pred", "adv_pred"}
    return ex if need <= set(ex) and len(ex["y"]) > 0 else None


# -- what the PDF and the HTML report both say, as words and (name, value) pairs --------------

NORM_TEXT = {
    "linf": "L-infinity (each input value moves by at most eps)",
    "l2": "L2 (Euclidean length of the change at most eps)",
    "l1": "L1 (sum of absolute changes at most eps)",
}
SCOPE_NOTE = (
    "The audit answers: for how many of these samples can an attacker who may change the input within "
    "the budget above make the model predict a wrong class? It says nothing about other threat models "
    "(larger budgets, other norms, physical or semantic changes, poisoning) or other data."
)
ATTACK_ORDER_NOTE = (
    "Each attack runs only on the samples that are still classified correctly after the attacks "
    "before it; a sample counts as robust only if every attack failed on it."
)


# The per-attack cost table: its columns (after the eps) and what they mean.
ATTACK_COST_HEADER = [
    "attack",
    "robust after",
    "attacked",
    "broken",
    "time",
    "gradient calls",
    "forward passes",
    "queries",
]
ATTACK_COST_NOTE = (
    "'robust after' is cumulative in run order (the worst case so far); 'attacked' counts the samples "
    "still standing when the attack started; gradient calls and forward passes are counted per sample "
    "(one batch of 100 counts 100)."
)


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def config_source(res: AuditResults) -> str:
    """Where the audit's config came from: its file and the command line, as recorded."""
    env = res.environment.to_dict() if res.environment else {}
    cfg = res.config or {}
    src = cfg.get("source") or cfg.get("config_file") or env.get("config_file")
    cmd = env.get("command_line")
    parts = []
    if src:
        parts.append(f"file {src}")
    if cmd:
        parts.append(f"command line '{cmd}'")
    return ", ".join(parts) or "see the appendix"


def scope_pairs(res: AuditResults) -> list[tuple[str, Any]]:
    """The data, norm, eps grid, bounds and attacker of the audit."""
    threat, data, model = res.threat, res.data, res.model
    norm = _or(threat.norm if threat else None, "?")
    eps = (threat.eps if threat else None) or [r.eps for r in res.robust]
    bounds = (threat.bounds if threat else None) or (model.bounds if model else None)
    data_text = "?: ? samples, input shape ?, subset seed n/a"
    if data is not None:
        data_text = (
            f"{_or(data.spec, '?')}: {_or(data.n, '?')} samples, input shape {_or(data.shape, '?')}, "
            f"subset seed {_or(data.seed, 'n/a')}"
        )
    return [
        ("data", data_text),
        ("norm", NORM_TEXT.get(norm, norm)),
        ("eps grid", ", ".join(eps_str(e) for e in eps)),
        ("input bounds", str(bounds)),
        ("attacker", "white-box: knows the model and its gradients; untargeted (any wrong class counts)"),
    ]


def attack_params_text(params: dict[str, Any] | None) -> str:
    """An attack's parameters as 'k=v, ...' ('defaults' when none is set)."""
    shown = ", ".join(f"{k}={v}" for k, v in (params or {}).items() if v is not None)
    return shown or "defaults"


def system_pairs(res: AuditResults) -> list[tuple[str, Any]]:
    """The model, data and software the audit measured."""
    from robustness.core.schema import DataInfo, Environment, ModelInfo

    m = res.model or ModelInfo()
    data = res.data or DataInfo()
    env = res.environment or Environment()
    n_params = m.n_parameters
    return [
        ("model spec", m.spec),
        ("model SHA-256", m.sha256),
        ("parameters", f"{n_params:,}" if isinstance(n_params, int) else n_params),
        ("classes", m.num_classes),
        ("output", "probabilities (gradient attacks are weakened)" if m.outputs_probabilities else "logits"),
        # A model trained with differential privacy (DP-SGD) carries its spent budget in its card.
        *([("differential privacy", m.privacy_text())] if m.epsilon is not None else []),
        ("data spec", data.spec),
        ("data SHA-256", data.sha256),
        ("tool", f"robustness-audit {_or(res.tool_version, '?')}, results schema {res.file_schema_version}"),
        (
            "Python / torch / ART",
            f"{_or(env.python, '?')} / {_or(env.torch, '?')} / {env.art or 'not installed'}",
        ),
        ("device, precision", f"{_or(env.device, '?')}, {_or(env.precision, 'fp32')}"),
        ("platform", env.platform),
    ]


def appendix_pairs(res: AuditResults) -> list[tuple[str, Any]]:
    """What reproduces the audit: command line, seed, versions."""
    from robustness.core.schema import Environment

    env = res.environment or Environment()
    return [
        ("command line", env.command_line),
        ("seed", env.seed),
        ("created", res.created),
        ("tool version", res.tool_version),
        ("results schema", res.file_schema_version),
        (
            "versions",
            f"Python {_or(env.python, '?')}, torch {_or(env.torch, '?')}, ART {env.art or 'not installed'}",
        ),
    ]


def config_text(res: AuditResults) -> str:
    """The resolved config as YAML (as JSON where YAML cannot represent it)."""
    import json

    try:
        import yaml

        return yaml.safe_dump(res.config or {}, sort_keys=False, width=100).rstrip()
    except Exception:  # a config yaml cannot represent still prints
        return json.dumps(res.config or {}, indent=2, default=str).rstrip()
