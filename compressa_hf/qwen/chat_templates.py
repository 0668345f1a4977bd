"""The chat templates compressa_hf renders Qwen-VL conversations with, read from the package.

    template = load_chat_template("qwen3_vl")     # the text of chat_templates/qwen3_vl.jinja

The family registry (`families.QwenFamily.chat_template`) names a template and the collator renders with it; both
read it here, so neither imports the other for it. Why each template exists: `chat_templates/README.md`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

#: The chat templates: `chat_templates/` at the repository root (files, so that people can read and diff them),
#: reached through the package's `qwen/templates` link in a checkout and shipped as copies in the wheel.
CHAT_TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


@lru_cache
def load_chat_template(name: str = "qwen2_5_vl") -> str:
    """The text of `chat_templates/<name>.jinja`.

    Raises:
        FileNotFoundError: no such template; the message lists the known ones.
    """
    path = CHAT_TEMPLATE_DIR / f"{name}.jinja"
    if not path.is_file():
        known = sorted(p.stem for p in CHAT_TEMPLATE_DIR.glob("*.jinja"))
        raise FileNotFoundError(f"no chat template {path}; known templates: {known}")
    return path.read_text()
