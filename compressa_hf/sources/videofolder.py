"""A local folder in the Hugging Face `videofolder` layout: `<root>/<split>/<class>/<clip>`."""

from __future__ import annotations

import logging
import os

from compressa_hf.sources.base import ClipRef, SourceError, VideoSource, printable_name

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
SPLIT_ALIASES = {"test": ("test", "validation", "val"), "validation": ("validation", "val", "test")}


def parse_extensions(extensions: str | tuple[str, ...], source: str) -> tuple[str, ...]:
    """File endings as lower-case `.ext` strings; a string (from `--source ...,extensions=.mp4|.webm`) splits on `|`."""
    items = extensions.split("|") if isinstance(extensions, str) else list(extensions)
    items = [e.strip().lower() for e in items if e.strip()]
    if not items:
        raise SourceError(f"{source}: `extensions` names no file ending")
    return tuple(e if e.startswith(".") else f".{e}" for e in items)


def visible(names: list[str]) -> list[str]:
    """`names` less hidden entries (`.DS_Store`, macOS `._*` AppleDouble files, `.git`)."""
    return [n for n in names if not n.startswith(".")]


class SplitClassFolders(VideoSource):
    """A dataset folder `<root>/<split>/<class>/...`: its splits, its class names (the union of the class folders over
    all splits, sorted) and a split's folder. Shared by `videofolder` and `framefolder`, which differ in what a clip is
    below the class folders.

    Any folder name works (spaces, punctuation, non-Latin scripts); names that are not valid UTF-8 become `\\xNN`
    escapes in class names (`printable_name`), while the folders are opened by their real names. Hidden entries
    (`.DS_Store`, `.git`) are skipped.
    """

    #: The layout in the "no split folders" error, e.g. `<root>/train/<class>/...`.
    LAYOUT = "<root>/train/<class>/..."

    def _scan(self, root: str) -> None:
        """Set `root`, the splits and the class names; `SourceError` naming `root` when the layout is not there."""
        if not os.path.isdir(root):
            what = "a file, not a directory" if os.path.exists(root) else "not a directory"
            raise SourceError(f"{self.name} root {root!r} is {what}")
        self.root = os.path.abspath(root)
        self._splits = sorted(d for d in visible(os.listdir(self.root)) if os.path.isdir(os.path.join(self.root, d)))
        if not self._splits:
            raise SourceError(f"{self.name} root {root!r} has no split folders (expected {self.LAYOUT})")
        names = set()
        for split in self._splits:
            split_dir = os.path.join(self.root, split)
            names.update(d for d in visible(os.listdir(split_dir)) if os.path.isdir(os.path.join(split_dir, d)))
        if not names:
            raise SourceError(f"{self.name} root {root!r} has no class folders under {self._splits}")
        # Class names are the folder names as text; a folder name that is not UTF-8 keeps its bytes for opening.
        self._class_dirs = {printable_name(d): d for d in names}
        self._class_names = sorted(self._class_dirs)

    @property
    def class_names(self) -> list[str]:
        return self._class_names

    @property
    def splits(self) -> list[str]:
        return self._splits

    def split_name(self, split: str) -> str:
        """The split folder's own name (`val` for `--split test` when the source has `val/` and no `test/`)."""
        return os.path.basename(self._split_dir(split))

    def _split_dir(self, split: str) -> str:
        for candidate in SPLIT_ALIASES.get(split, (split,)):
            if candidate in self._splits:
                return os.path.join(self.root, candidate)
        raise SourceError(f"split {split!r} not found under {self.root}; available: {self._splits}")


class VideoFolderSource(SplitClassFolders):
    """Clips under `<root>/<split>/<class>/`; class names are the union of class folders over all splits, sorted.

    Any folder and file name works (spaces, punctuation, non-Latin scripts); names that are not valid UTF-8 become
    `\\xNN` escapes in class names and clip ids (`printable_name`), while the files are opened by their real names.

    Args:
        root: The dataset folder (e.g. `../shared/data/arid6`).
        extensions: File endings counted as videos; other files are ignored. On the command line, `|` separates
            several (`videofolder:root=DIR,extensions=.mp4|.webm`).
    """

    name = "videofolder"

    def __init__(self, root: str, extensions: tuple[str, ...] = VIDEO_EXTENSIONS):
        self.extensions = parse_extensions(extensions, "videofolder")
        self._scan(root)

    def list_clips(self, split: str) -> list[ClipRef]:
        split_dir = self._split_dir(split)
        refs = []
        for label, cls in enumerate(self._class_names):
            cls_dir = os.path.join(split_dir, self._class_dirs[cls])
            if not os.path.isdir(cls_dir):
                continue
            for fname in sorted(visible(os.listdir(cls_dir))):
                if fname.lower().endswith(self.extensions):
                    stem = printable_name(os.path.splitext(fname)[0])
                    clip_id = f"{os.path.basename(split_dir)}/{cls}/{stem}"
                    refs.append(ClipRef(clip_id=clip_id, label=label, path=os.path.join(cls_dir, fname)))
        if not refs:
            hint = _layout_hint(split_dir)
            raise SourceError(f"no video files ({', '.join(self.extensions)}) under {split_dir}{hint}")
        return refs

    def describe(self) -> dict:
        return super().describe() | {"root": self.root}


def _layout_hint(split_dir: str) -> str:
    """What a split folder without videos holds instead, when that tells the user what layout they have."""
    for cls in sorted(visible(os.listdir(split_dir))):
        cls_dir = os.path.join(split_dir, cls)
        if not os.path.isdir(cls_dir):
            continue
        entries = visible(os.listdir(cls_dir))
        if any(os.path.isdir(os.path.join(cls_dir, e)) for e in entries):
            return "; its class folders hold folders: clips as folders of frame images are read by `framefolder`"
        images = [e for e in entries if e.lower().endswith(IMAGE_EXTENSIONS)]
        if images:
            return (
                f"; {cls_dir} holds images ({images[0]}, ...): for clips stored as frame images, put each clip's "
                "frames in a folder of its own, `<split>/<class>/<clip>/img_00001.jpg`, and read them with `framefolder`"
            )
    return ""
