"""Robustness assertions for a project's own test suite.

    from robustness.testing import assert_robust

    def test_classifier_is_robust(model, val_data):
        assert_robust(model, val_data, attack="apgd-ce", eps=8 / 255, min_accuracy=0.4)

The import is light (torch is imported when an assertion runs), because the pytest plugin
that exposes this module loads in every pytest run of the environment.
"""

from __future__ import annotations

from typing import Any

JUDGES = ("ci_low", "point")


def _as_data(data: Any, n_examples: int | None, seed: int, bounds, num_classes):
    """A Dataset from a Dataset, a data spec, ``(x, y)`` tensors/arrays or a dict with ``x``/``y``."""
    import torch

    from robustness.core.data import Dataset, load_data

    if isinstance(data, tuple | list) and len(data) == 2:
        data = {"x": data[0], "y": data[1]}
    if isinstance(data, dict):
        x = torch.as_tensor(data["x"], dtype=torch.float32)
        y = torch.as_tensor(data["y"], dtype=torch.long)
        ids = [str(i) for i in data.get("ids", range(len(y)))]
        data = Dataset(x, y, ids, "<tensors>")
    return load_data(data, n_examples=n_examples, seed=seed, bounds=bounds, num_classes=num_classes)


def assert_robust(
    model: Any,
    data: Any,
    attack: str = "apgd-ce",
    eps: float = 0.1,
    min_accuracy: float = 0.5,
    norm: str = "linf",
    n_examples: int | None = None,
    *,
    judge: str = "ci_low",
    seed: int = 0,
    batch_size: int | None = None,
    **attack_params: Any,
) -> dict[str, Any]:
    """Fail (AssertionError) unless robust accuracy under ``attack`` at ``eps`` reaches ``min_accuracy``.

    ``model``: a ModelUnderTest, an ``nn.Module`` or a model spec; ``data``: a Dataset, a data
    spec, ``(x, y)`` tensors or a dict with ``x``/``y``. ``n_examples`` evaluates a reproducible
    subset. Like the audit's gates, the threshold is compared with the lower end of the exact
    95% Clopper-Pearson interval (``judge="ci_low"``) unless ``judge="point"``: a small sample
    must not pass on luck. Misclassified clean samples count as not robust. Extra keyword
    arguments are the attack's hyper-parameters. Returns the attack's summary (with ``passed``).
    """
    from attacks.registry import get_attack
    from robustness.core.errors import UsageError
    from robustness.core.metrics import clopper_pearson
    from robustness.core.model import ModelUnderTest, load_model

    if judge not in JUDGES:
        raise UsageError(
            f"judge must be one of {JUDGES}, got {judge!r}", field="judge", fix="Use 'ci_low' or 'point'."
        )
    if not 0.0 <= float(min_accuracy) <= 1.0:
        raise UsageError(
            f"min_accuracy must be a fraction in [0, 1], got {min_accuracy}",
            field="min_accuracy",
            fix="Use e.g. 0.5 for 50%.",
        )
    mut = model if isinstance(model, ModelUnderTest) else load_model(model)
    ds = _as_data(data, n_examples, seed, mut.bounds, mut.num_classes)
    result = get_attack(attack, **attack_params)(
        mut, ds.x, ds.y, eps=float(eps), norm=norm, seed=seed, batch_size=batch_size
    )
    n = result.n
    k = int(result.robust.sum())
    clean_ok = int((result.clean_pred == result.y).sum())
    lo, hi = clopper_pearson(k, n)
    acc = k / n if n else 0.0
    value = lo if judge == "ci_low" else acc
    passed = value >= float(min_accuracy)
    summary = {
        **result.summary(),
        "robust_accuracy_ci": [lo, hi],
        "n_robust": k,
        "n_clean_correct": clean_ok,
        "n_broken": clean_ok - k,
        "min_accuracy": float(min_accuracy),
        "judge": judge,
        "passed": passed,
    }
    if not passed:
        on = "the lower end of its 95% CI" if judge == "ci_low" else "the point estimate"
        raise AssertionError(
            f"not robust enough under {attack} at {norm} eps {float(eps):g}: robust accuracy {acc:.1%} "
            f"(95% CI [{lo:.1%}, {hi:.1%}]) is below the required {float(min_accuracy):.1%} "
            f"(judged on {on}). {clean_ok - k} of {clean_ok} correctly classified samples were broken"
            f" ({n - clean_ok} of {n} were misclassified before any attack)."
        )
    return summary


def load_results(path: Any) -> Any:
    """An audit's results.json (or its output folder) as the typed result, read as ``robustness
    report`` reads it: an older schema migrated, impossible numbers refused (``ResultsError``).

    For tests that judge a stored audit: ``load_results("runs/audit").robust[0].accuracy``.
    """
    from robustness.core.schema import load_results as load

    return load(path)
