"""Trigger-set watermarks (Adi et al. 2018): the key, the ownership test, and embedding.

- :mod:`defenses.watermark.key`: the secret key file, the trigger set it regenerates, its size
  limits, and whether a key fits a model.
- :mod:`defenses.watermark.ownership`: the exact binomial test of a suspect model against a key.
- :mod:`defenses.watermark.embed`: marking a model by fine-tuning through the trainer.

Removal attacks and the audit's survival table are the roof's (:mod:`robustness.watermark`).
"""

from defenses.watermark.embed import (
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    DEFAULT_TRIGGER_SHARE,
    MAX_CLEAN_ACCURACY_COST,
    EmbedResult,
    add_card_entry,
    architecture_of,
    embed_watermark,
    trigger_training_set,
)
from defenses.watermark.key import (
    DEFAULT_N_TRIGGERS,
    KEY_FORMAT,
    KEY_FORMAT_VERSION,
    SCHEME,
    KeyFileError,
    WatermarkKey,
    check_compatible,
    generate_labels,
    generate_triggers,
    load_key,
)
from defenses.watermark.ownership import (
    DEFAULT_ALPHA,
    binomial_p_value,
    check_alpha,
    decide,
    max_class_share,
    trigger_predictions,
    verify,
)

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_EPOCHS",
    "DEFAULT_LR",
    "DEFAULT_N_TRIGGERS",
    "DEFAULT_TRIGGER_SHARE",
    "KEY_FORMAT",
    "KEY_FORMAT_VERSION",
    "MAX_CLEAN_ACCURACY_COST",
    "SCHEME",
    "EmbedResult",
    "KeyFileError",
    "WatermarkKey",
    "add_card_entry",
    "architecture_of",
    "binomial_p_value",
    "check_alpha",
    "check_compatible",
    "decide",
    "embed_watermark",
    "generate_labels",
    "generate_triggers",
    "load_key",
    "max_class_share",
    "trigger_predictions",
    "trigger_training_set",
    "verify",
]
