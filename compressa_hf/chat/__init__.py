"""Deprecated: `compressa_hf.chat` moved to the chat samples (`compressa_hf.qwen.samples`), the collator
(`compressa_hf.qwen.collator`), the prompts (`compressa_hf.qwen.prompts`) and the chat-template loader
(`compressa_hf.qwen.chat_templates`).

This path keeps working, with a `DeprecationWarning`, until the next release; import from the new modules.
"""

from compressa_hf.deprecated_paths import warn_moved
from compressa_hf.qwen.chat_templates import load_chat_template
from compressa_hf.qwen.collator import IGNORE_INDEX, QwenVideoCollator
from compressa_hf.qwen.prompts import PROMPT_STYLES, PromptTemplate, humanize_class_name
from compressa_hf.qwen.samples import (
    DEFAULT_FPS,
    DistilledChatTransform,
    RawChatDataset,
    check_codec_id,
    distilled_chat_transform,
    load_chat_dataset,
    make_chat_sample,
    raw_chat_samples,
    video_metadata,
)

__all__ = [
    "DEFAULT_FPS",
    "DistilledChatTransform",
    "IGNORE_INDEX",
    "PROMPT_STYLES",
    "PromptTemplate",
    "QwenVideoCollator",
    "RawChatDataset",
    "check_codec_id",
    "distilled_chat_transform",
    "humanize_class_name",
    "load_chat_dataset",
    "load_chat_template",
    "make_chat_sample",
    "raw_chat_samples",
    "video_metadata",
]

warn_moved(
    __name__,
    "compressa_hf.qwen.samples",
    "compressa_hf.qwen.collator",
    "compressa_hf.qwen.prompts",
    "compressa_hf.qwen.chat_templates",
)
