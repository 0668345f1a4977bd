"""A local folder in the Hugging Face `videofolder` layout: `<root>/<split>/<class>/<clip>`."""

from __future__ import annotations

import logging
import os

from compressa_hf.sources.base import ClipRef, SourceError, VideoSource, printable_name

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg")
SPLIT_ALIASES = {"test": ("test", "validation", "val"), "validation": ("validation", "val", "test")}


class VideoFolderSource(VideoSource):
    """Clips under `<root>/<split>/<class>/`; class names are the union of class folders over all splits, sorted.

    Any folder and file name works (spaces, punctuation, non-Latin scripts); names that are not valid UTF-8 become
    `\\xNN` escapes in class names and clip ids (`printable_name`), while the files are opened by their real names.

    Args:
        root: The dataset folder (e.g. `../shared/data/arid6`).
        extensions: File endings counted as videos; other files are ignored.
    """

    name = "videofolder"

    def __init__(self, root: str, extensions: tuple[str, ...] = VIDEO_EXTENSIONS):
        if not os.path.isdir(root):
            raise SourceError(f"videofolder root {root!r} is not a directory")
        self.root = os.path.abspath(root)
        self.extensions = tuple(e.lower() for e in extensions)
        self._splits = sorted(d for d in os.listdir(self.root) if os.path.isdir(os.path.join(self.root, d)))
        if not self._splits:
            raise SourceError(f"videofolder root {root!r} has no split folders (expected <root>/train/<class>/...)")
        names = set()
        for split in self._splits:
            names.update(
                d
                for d in os.listdir(os.path.join(self.root, split))
                if os.path.isdir(os.path.join(self.root, split, d))
            )
        if not names:
            raise SourceError(f"videofolder root {root!r} has no class folders under {self._splits}")
        # Class names are the folder names as text; a folder name that is not UTF-8 keeps its bytes for opening.
        self._class_dirs = {printable_name(d): d for d in names}
        self._class_names = sorted(self._class_dirs)

    @property
    def class_names(self) -> list[str]:
        return self._class_names

    @property
    def splits(self) -> list[str]:
        return self._splits

    def _split_dir(self, split: str) -> str:
        for candidate in SPLIT_ALIASES.get(split, (split,)):
            if candidate in self._splits:
                return os.path.join(self.root, candidate)
        raise SourceError(f"split {split!r} not found under {self.root}; available: {self._splits}")

    def list_clips(self, split: str) -> list[ClipRef]:
        split_dir = self._split_dir(split)
        refs = []
        for label, cls in enumerate(self._class_names):
            cls_dir = os.path.join(split_dir, self._class_dirs[cls])
            if not os.path.isdir(cls_dir):
                continue
            for fname in sorted(os.listdir(cls_dir)):
                if fname.lower().endswith(self.extensions):
                    stem = printable_name(os.path.splitext(fname)[0])
                    clip_id = f"{os.path.basename(split_dir)}/{cls}/{stem}"
                    refs.append(ClipRef(clip_id=clip_id, label=label, path=os.path.join(cls_dir, fname)))
        if not refs:
            raise SourceError(f"no video files ({', '.join(self.extensions)}) under {split_dir}")
        return refs

    def describe(self) -> dict:
        return super().describe() | {"root": self.root}
