"""The Qwen side of compressa_hf: model families (`families`), raw video read as Qwen's own examples read it
(`video`), packed batches (`packing`) and the offline Qwen3.5 tokenizer (`tokenizer`). The chat samples, collator
and SFT / evaluation helpers that use them are in `compressa_hf.chat`, `compressa_hf.sft` and `compressa_hf.qwen_eval`.
"""

from compressa_hf.qwen.families import (
    FAMILIES,
    TEXT_LINEAR_MODULES,
    VISION_LINEAR_MODULES,
    QwenFamily,
    build_processor,
    family_of,
)

__all__ = ["FAMILIES", "TEXT_LINEAR_MODULES", "VISION_LINEAR_MODULES", "QwenFamily", "build_processor", "family_of"]
