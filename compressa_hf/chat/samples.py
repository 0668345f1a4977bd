"""Deprecated: `compressa_hf.chat.samples` moved to `compressa_hf.qwen.samples`.

This path keeps working, with a `DeprecationWarning`, until the next release; import from the new modules.
"""

from compressa_hf.deprecated_paths import warn_moved
from compressa_hf.qwen.samples import (
    CARD_KEYS,
    DEFAULT_FPS,
    TIME_GRID_FPS,
    TRANSFORM_COLUMNS,
    DistilledChatTransform,
    RawChatDataset,
    card_config,
    check_codec_id,
    distilled_chat_transform,
    load_chat_dataset,
    make_chat_sample,
    raw_chat_samples,
    read_card_config,
    read_raw_clip,
    resolve_fps,
    video_metadata,
)

__all__ = [
    "CARD_KEYS",
    "DEFAULT_FPS",
    "DistilledChatTransform",
    "RawChatDataset",
    "TIME_GRID_FPS",
    "TRANSFORM_COLUMNS",
    "card_config",
    "check_codec_id",
    "distilled_chat_transform",
    "load_chat_dataset",
    "make_chat_sample",
    "raw_chat_samples",
    "read_card_config",
    "read_raw_clip",
    "resolve_fps",
    "video_metadata",
]

warn_moved(__name__, "compressa_hf.qwen.samples")
