"""Deprecated: `compressa_hf.chat.prompts` moved to `compressa_hf.qwen.prompts`.

This path keeps working, with a `DeprecationWarning`, until the next release; import from the new modules.
"""

from compressa_hf.deprecated_paths import warn_moved
from compressa_hf.qwen.prompts import PROMPT_STYLES, PromptTemplate, humanize_class_name

__all__ = ["PROMPT_STYLES", "PromptTemplate", "humanize_class_name"]

warn_moved(__name__, "compressa_hf.qwen.prompts")
