"""Old import paths that keep working for one release: the warning their stand-in modules raise.

    # compressa_hf/sft_trainer.py, what is left of a module that moved
    from compressa_hf.qwen.sft_trainer import NoTrainingStepError, VideoSFTTrainer, ...
    from compressa_hf.deprecated_paths import warn_moved

    warn_moved(__name__, "compressa_hf.qwen.sft_trainer")

A stand-in re-exports the old public names from their new modules (the very same objects) and calls `warn_moved` once
at import; Python runs a module once per process, so it warns once.
"""

from __future__ import annotations

import warnings


def warn_moved(old: str, *new: str) -> None:
    """Raise a `DeprecationWarning` saying that module `old` moved to the modules `new` (dotted names).

    Call it from the stand-in module's body: the warning is attributed to the line that imports the stand-in, so
    Python's default filters show it when a script (`__main__`) imports the old path.

    Raises:
        ValueError: no new module given.
    """
    if not new:
        raise ValueError(f"warn_moved({old!r}) needs the module(s) that hold its names now")
    quoted = [f"`{name}`" for name in new]
    where = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    # stacklevel 3: past this function and the stand-in's body, to the import statement (`warnings` skips the import
    # machinery's own frames)
    warnings.warn(
        f"`{old}` is deprecated and will be removed in the next release; import from {where} instead",
        DeprecationWarning,
        stacklevel=3,
    )
