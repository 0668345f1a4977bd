"""Old import paths that keep working for one release: the warning their stand-in modules raise.

    # compressa_hf/sft_trainer.py, what is left of a module that moved
    from compressa_hf.qwen.sft_trainer import NoTrainingStepError, VideoSFTTrainer, ...
    from compressa_hf.deprecated_paths import warn_moved

    warn_moved(__name__, "compressa_hf.qwen.sft_trainer")

A stand-in re-exports the old public names from their new modules (the very same objects) and calls `warn_moved` once
at import; Python runs a module once per process, so it warns once.

Two whole packages moved: `compressa_hf.distill.*` -> `compressa_hf.distillation.*` and `compressa_hf.evaluate.*` ->
`compressa_hf.evaluation.*`, because the package root's `distill` and `evaluate` are now the API's functions
(`compressa_hf.api`). `install_moved_packages` (called by the package root) keeps `from compressa_hf.distill.methods
import METHODS` and `import compressa_hf.distill.methods` working, with the warning, giving the very module at the new
path. Python resolves `import compressa_hf.distill.methods as m` and `compressa_hf.distill.methods.X` through the
attribute `compressa_hf.distill`, which is the function, so each old subpackage loaded this way is also set as an
attribute of that function (`compressa_hf.distill.methods`) for the release the old paths live.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

#: Whole packages that moved: old dotted name -> new.
MOVED_PACKAGES = {
    "compressa_hf.distill": "compressa_hf.distillation",
    "compressa_hf.evaluate": "compressa_hf.evaluation",
}


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


def moved_name(fullname: str) -> str | None:
    """The new dotted name of a module under a moved package (`MOVED_PACKAGES`), or None."""
    for old, new in MOVED_PACKAGES.items():
        if fullname == old or fullname.startswith(old + "."):
            return new + fullname[len(old) :]
    return None


class _MovedPackage(types.ModuleType):
    """What `sys.modules` holds under a moved package's old name: a package whose attributes (and submodules) are the
    new package's, with the warning once."""

    def __init__(self, old: str, new: str):
        super().__init__(old, f"Deprecated: moved to `{new}`.")
        self.__path__: list[str] = []  # a package; its submodules are found by `_MovedFinder`
        self._new, self._warned = new, False

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if not self._warned:
            self._warned = True
            warn_moved(self.__name__, self._new)
        target = importlib.import_module(self._new)
        if not hasattr(target, name) and importlib.util.find_spec(f"{self._new}.{name}") is not None:
            importlib.import_module(f"{self._new}.{name}")
        return getattr(target, name)


class _AliasLoader(importlib.abc.Loader):
    """Loads an old name as the module at its new path (one module object, its own spec kept)."""

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def __init__(self, target: str, old: str):
        self.target, self.old, self._spec = target, old, None

    def exec_module(self, module) -> None:
        module.__spec__ = self._spec  # the import system set the alias's spec on it; the module keeps its own
        package, _, child = self.old.rpartition(".")
        if package in MOVED_PACKAGES:  # `import compressa_hf.distill.methods as m` reads the root's attribute
            root, _, name = package.rpartition(".")
            holder = getattr(sys.modules[root], name, None)
            if holder is not None and not isinstance(holder, types.ModuleType):
                setattr(holder, child, module)


class _MovedFinder(importlib.abc.MetaPathFinder):
    """Finds `compressa_hf.distill.X` as `compressa_hf.distillation.X` (and so on), warning once per old name.

    Why our own finder: the standard library has no module alias that warns, and an entry in `sys.modules` under the
    old name alone would make Python load a second copy of each submodule (two method registries, two of every
    class)."""

    def find_spec(self, fullname, path=None, target=None):
        new = moved_name(fullname)
        if new is None or fullname in MOVED_PACKAGES or importlib.util.find_spec(new) is None:
            return None
        # (stacklevel 3 from warn_moved: past it and this method; `warnings` skips the import system's own frames)
        warn_moved(fullname, new)
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new, fullname))


def install_moved_packages() -> None:
    """Register the moved packages' old names (so importing one never replaces the package root's function of that
    name) and their finder. Idempotent."""
    for old, new in MOVED_PACKAGES.items():
        sys.modules.setdefault(old, _MovedPackage(old, new))
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
