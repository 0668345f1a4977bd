"""Deprecated: `compressa_hf.sft_trainer` moved to `compressa_hf.qwen.sft_trainer`.

This path keeps working, with a `DeprecationWarning`, until the next release; import from the new modules.
"""

from compressa_hf.deprecated_paths import warn_moved
from compressa_hf.qwen.sft_trainer import (
    NoTrainingStepError,
    VideoSFTTrainer,
    logged_train_loss,
    parameter_groups,
    score_labelled_positions_only_on_cpu,
)

__all__ = [
    "NoTrainingStepError",
    "VideoSFTTrainer",
    "logged_train_loss",
    "parameter_groups",
    "score_labelled_positions_only_on_cpu",
]

warn_moved(__name__, "compressa_hf.qwen.sft_trainer")
