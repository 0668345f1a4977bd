"""Deprecated: `compressa_hf.chat.collator` moved to `compressa_hf.qwen.collator`, its chat-template loader to
`compressa_hf.qwen.chat_templates`.

This path keeps working, with a `DeprecationWarning`, until the next release; import from the new modules.
"""

from compressa_hf.deprecated_paths import warn_moved
from compressa_hf.qwen.chat_templates import CHAT_TEMPLATE_DIR, load_chat_template
from compressa_hf.qwen.collator import IGNORE_INDEX, TRAIN_ON, QwenVideoCollator, qwen_side

__all__ = ["CHAT_TEMPLATE_DIR", "IGNORE_INDEX", "QwenVideoCollator", "TRAIN_ON", "load_chat_template", "qwen_side"]

warn_moved(__name__, "compressa_hf.qwen.collator", "compressa_hf.qwen.chat_templates")
