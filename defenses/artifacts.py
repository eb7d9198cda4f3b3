"""What a training run leaves behind: a model folder that ``--model DIR`` loads, and its curve.

``model.safetensors`` (weights), ``model.json`` (the model card: architecture to rebuild it,
bounds, mean/std, classes, training config, data spec and hash, final metrics, tool version)
and ``training_curve.png``. The card is the format :func:`robustness.core.model.load_model_dir` reads.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustness.core.io import atomic_write, atomic_write_json, sha256_file
from robustness.core.model import MODEL_CARD

WEIGHTS = "model.safetensors"
CURVE = "training_curve.png"
LOG = "train_log.jsonl"


def write_weights(folder: Path, module: nn.Module) -> Path:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    return atomic_write(folder / WEIGHTS, lambda tmp: save_file(state, tmp))


def write_card(folder: Path, card: dict[str, Any]) -> Path:
    from robustness import __version__

    full = {
        **card,
        "weights": WEIGHTS,
        "weights_sha256": sha256_file(folder / WEIGHTS),
        "tool_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
    }
    return atomic_write_json(folder / MODEL_CARD, full)


def write_curve(folder: Path, log: list[dict[str, Any]], title: str) -> Path | None:
    """Loss and validation accuracies per epoch as a PNG (matplotlib, Agg backend)."""
    if not log:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in log]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_loss.plot(epochs, [r["loss"] for r in log], marker=".", color="tab:gray")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    for key, label, color in (
        ("train_accuracy", "train (on training inputs)", "tab:gray"),
        ("val_clean_accuracy", "validation, clean", "tab:blue"),
        ("val_robust_accuracy", "validation, robust (PGD)", "tab:red"),
        ("val_noisy_accuracy", "validation, under the training noise", "tab:green"),
    ):
        pts = [(r["epoch"], r[key]) for r in log if r.get(key) is not None]
        if pts:
            ax_acc.plot(*zip(*pts), marker=".", label=label, color=color)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02), title="accuracy")
    ax_acc.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()

    def _save(tmp: str) -> None:
        fig.savefig(tmp, format="png", dpi=110)

    try:
        return atomic_write(folder / CURVE, _save)
    finally:
        plt.close(fig)
