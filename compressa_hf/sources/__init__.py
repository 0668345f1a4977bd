"""Video sources behind one interface (`VideoSource`) and a registry of name -> "module:Class".

`build_source("videofolder", root="...")` or `build_source("procedural", num_classes=6)`; `parse_source_spec`
turns the CLI's `--source NAME:key=value,...` or a plain path into the same call.
"""

from __future__ import annotations

import importlib
import os

from compressa_hf.sources.base import ClipReadError, ClipRef, SourceError, VideoSource, printable_name
from compressa_hf.sources.videofolder import visible

# Lazy so that `compressa --help` imports nothing heavy and a missing optional dependency only hits its user.
SOURCES: dict[str, str] = {
    "videofolder": "compressa_hf.sources.videofolder:VideoFolderSource",
    "framefolder": "compressa_hf.sources.framefolder:FrameFolderSource",
    "ucf101": "compressa_hf.sources.ucf101:UCF101Source",
    "hmdb51": "compressa_hf.sources.hmdb51:HMDB51Source",
    "kinetics400": "compressa_hf.sources.kinetics:Kinetics400Source",
    "ssv2": "compressa_hf.sources.ssv2:SomethingSomethingV2Source",
    "hf": "compressa_hf.sources.hf_dataset:HFDatasetSource",
    "procedural": "compressa_hf.sources.procedural:ProceduralSource",
}


def get_source_class(name: str) -> type[VideoSource]:
    if name not in SOURCES:
        raise SourceError(f"unknown source {name!r}; known sources: {sorted(SOURCES)}")
    module, cls = SOURCES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_source(name: str, **kwargs) -> VideoSource:
    cls = get_source_class(name)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise SourceError(f"bad arguments for source {name!r}: {err}") from err


def _coerce(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def _holds_frame_folders(root: str) -> bool:
    """Whether the first clip entry under `<root>/<split>/<class>/` is a folder (frames) rather than a file."""
    for split in sorted(visible(os.listdir(root))):
        split_dir = os.path.join(root, split)
        if not os.path.isdir(split_dir):
            continue
        for cls in sorted(visible(os.listdir(split_dir))):
            cls_dir = os.path.join(split_dir, cls)
            if os.path.isdir(cls_dir):
                for clip in sorted(visible(os.listdir(cls_dir))):
                    return os.path.isdir(os.path.join(cls_dir, clip))
    return False


def parse_source_spec(spec: str) -> VideoSource:
    """`procedural`, `procedural:num_classes=4,seed=1`, `ucf101:root=/data/ucf,fold=2`, or a folder path.

    A bare existing directory is read as a `videofolder`, or as a `framefolder` when its clips are folders of frame
    images (`<root>/<split>/<class>/<clip>/img_00001.jpg`).
    """
    if ":" not in spec and os.path.isdir(spec):
        return build_source("framefolder" if _holds_frame_folders(spec) else "videofolder", root=spec)
    name, _, rest = spec.partition(":")
    if name not in SOURCES and (os.sep in spec or spec.startswith(".")):
        if os.path.exists(spec):
            raise SourceError(f"--source {spec!r} is a file: give the dataset folder (<root>/<split>/<class>/...)")
        raise SourceError(f"--source {spec!r}: no such folder, and not a source name (known: {sorted(SOURCES)})")
    kwargs = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise SourceError(f"bad source option {item!r} in {spec!r}: expected key=value")
        kwargs[key.strip()] = _coerce(value.strip())
    return build_source(name, **kwargs)


__all__ = [
    "SOURCES",
    "ClipReadError",
    "ClipRef",
    "SourceError",
    "VideoSource",
    "build_source",
    "get_source_class",
    "parse_source_spec",
    "printable_name",
]
