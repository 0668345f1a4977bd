"""Chat samples for Qwen-VL models: distilled rows and raw clips -> messages + frames + metadata, and the SFT collator
(one for every family in `compressa_hf.qwen.FAMILIES`: Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5; the processor names it).

    from compressa_hf.chat import QwenVideoCollator, load_chat_dataset
    ds = load_chat_dataset("outputs/arid6_distilled", "ratio_1.1")     # rows decode to chat samples on access
    batch = QwenVideoCollator(processor)([ds[0], ds[1]])              # input_ids, labels, pixel_values_videos, ...

The sample format is fixed in `compressa_hf.chat.samples`.
"""

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
    "IGNORE_INDEX",
    "PROMPT_STYLES",
    "DistilledChatTransform",
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
