"""What a published set may say about the machine that made it: nothing machine-local.

A distilled set's rows, card and `meta/*.json` go to the Hub. Paths there are written relative to the source's root
(`train/Jump/clip1.mp4`), a source folder by its name (`arid6`), and any other absolute path in a command line by
its last component. `find_local_paths` is the check `compressa push` runs over everything it would upload.
"""

from __future__ import annotations

import os
import re
import shlex

# An absolute POSIX path of two or more components not inside a URL (`https://host/...` is preceded by ':' or '/'),
# a home-relative path, or a Windows drive path.
_LOCAL_PATH = re.compile(
    r"(?<![\w.:/\\-])(?:/[^/\s\"'`,;)\]]+){2,}|(?<![\w])~/[^\s\"'`,;)\]]+|\b[A-Za-z]:\\[^\s\"'`,;)\]]+"
)


def public_path(path: str, root: str | None) -> str:
    """`path` relative to `root` when it lies inside it, else its last component when absolute, else as given."""
    if root and os.path.isabs(path):
        rel = os.path.relpath(path, root)
        if not rel.startswith(os.pardir):
            return rel.replace(os.sep, "/")
    return os.path.basename(path) if os.path.isabs(path) else path


def _public_value(value: str) -> str:
    return os.path.basename(os.path.normpath(value)) if os.path.isabs(os.path.expanduser(value)) else value


def public_spec(spec: str) -> str:
    """A `--source` / `--codec` spec with local folders named by their last component.

    `/data/arid6` -> `arid6`, `ucf101:root=/data/ucf101,fold=1` -> `ucf101:root=ucf101,fold=1`,
    `tae:/home/me/taef2` -> `tae:taef2`; Hub ids, names and relative paths are kept.
    """
    if ":" not in spec or os.path.isabs(os.path.expanduser(spec)):
        return _public_value(spec)
    name, _, rest = spec.partition(":")
    items = []
    for item in rest.split(","):
        key, eq, value = item.partition("=")
        items.append(f"{key}={_public_value(value)}" if eq else _public_value(item))
    return f"{name}:{','.join(items)}"


def public_command(command: str) -> str:
    """A command line with every absolute path (also inside `--source` specs) shortened to its last component."""
    try:
        tokens = shlex.split(command)
    except ValueError:
        tokens = command.split()
    out = []
    for token in tokens:
        flag, eq, value = token.partition("=")
        if token.startswith("-"):
            out.append(f"{flag}={public_spec(value)}" if eq else token)
        else:
            out.append(public_spec(token))
    return shlex.join(out)


def public_info(info: dict) -> dict:
    """A source's `describe()` with absolute path values shortened to their last component."""
    return {k: _public_value(v) if isinstance(v, str) else v for k, v in info.items()}


def public_text(text: str) -> str:
    """`text` with every machine-local path in it (`find_local_paths`) shortened to its last component: for free text
    such as a description naming a local folder, where `public_command` and `public_spec` do not apply."""
    for path in sorted(set(find_local_paths(text)), key=len, reverse=True):
        text = text.replace(path, os.path.basename(os.path.normpath(os.path.expanduser(path))) or path)
    return text


def find_local_paths(text: str) -> list[str]:
    """The machine-local paths in `text` (absolute, home-relative or Windows drive paths), in order of appearance."""
    return [m.group(0) for m in _LOCAL_PATH.finditer(text)]
