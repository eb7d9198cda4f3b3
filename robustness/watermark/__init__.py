"""Watermark survival in the audit: removal attacks and the ``watermark`` section.

- :mod:`robustness.watermark.removal`: the surrogates an attacker derives to lose the mark
  (fine-tuning, pruning, int8 quantization, extraction), trained through the defenses trainer.
- :mod:`robustness.watermark.survival`: the ``watermark:`` config block, the survival table and
  the ``watermark`` key of ``results.json``.

The key, the ownership test and embedding are :mod:`defenses.watermark`'s.
"""

from robustness.watermark.removal import (
    DEFAULT_SURROGATES,
    REMOVAL_MAX_ACCURACY_DROP,
    SurrogateSpec,
    make_surrogate,
    parse_surrogate,
    train_on_labels,
)
from robustness.watermark.survival import (
    WatermarkConfig,
    split_attack_data,
    survival_table,
    watermark_section,
)

__all__ = [
    "DEFAULT_SURROGATES",
    "REMOVAL_MAX_ACCURACY_DROP",
    "SurrogateSpec",
    "WatermarkConfig",
    "make_surrogate",
    "parse_surrogate",
    "split_attack_data",
    "survival_table",
    "train_on_labels",
    "watermark_section",
]
