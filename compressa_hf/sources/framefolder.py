"""Clips stored as folders of frame images: `<root>/<split>/<class>/<clip>/<frame>.jpg` (mmaction2's "rawframes").

Many UCF101, HMDB51 and Something-Something copies are kept this way (frames extracted once with `ffmpeg` or
mmaction2's `build_rawframes.py`), and a folder of JPEGs needs no video decoder: Pillow reads it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator

import numpy as np

from compressa_hf.decode import VideoInfo
from compressa_hf.sources.base import ClipReadError, ClipRef, SourceError, VideoSource, printable_name
from compressa_hf.sources.videofolder import SPLIT_ALIASES

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
_NUMBER = re.compile(r"(\d+)")


def _frame_order(name: str) -> tuple:
    """Sort key that orders `img_2.jpg` before `img_10.jpg` (numbers compared as numbers, the rest as text)."""
    return tuple(int(part) if part.isdigit() else part for part in _NUMBER.split(name))


class FrameFolderSource(VideoSource):
    """Clips under `<root>/<split>/<class>/<clip>/`, each clip a folder of frame images in display order.

    Frames are ordered by the numbers in their file names (`img_00001.jpg`, `frame_2.png`, `00010.jpg`), so unpadded
    numbering works too; other files in a clip folder are ignored. A clip folder without images is skipped with a
    warning; an image that cannot be read makes its clip fail with an error naming the image (the cache pass skips
    that clip and lists it, as it does a broken video file). EXIF orientation is applied, so frames come out upright.

    Args:
        root: The dataset folder.
        fps: The rate the frames were extracted at, in frames per second: frame i is shown at `i / fps` seconds.
            A folder of images does not record it; it only sets the timestamps of chat samples (`<t seconds>`), not
            which frames are taken. Default 30.0.
        extensions: File endings counted as frames.
    """

    name = "framefolder"

    def __init__(self, root: str, fps: float = 30.0, extensions: tuple[str, ...] = IMAGE_EXTENSIONS):
        if not os.path.isdir(root):
            raise SourceError(f"framefolder root {root!r} is not a directory")
        if not float(fps) > 0:
            raise SourceError(f"framefolder fps must be > 0, got {fps!r}")
        self.root = os.path.abspath(root)
        self.fps = float(fps)
        self.extensions = tuple(e.lower() for e in extensions)
        self._splits = sorted(d for d in os.listdir(self.root) if os.path.isdir(os.path.join(self.root, d)))
        if not self._splits:
            raise SourceError(
                f"framefolder root {root!r} has no split folders (expected <root>/train/<class>/<clip>/)"
            )
        names = set()
        for split in self._splits:
            split_dir = os.path.join(self.root, split)
            names.update(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
        if not names:
            raise SourceError(f"framefolder root {root!r} has no class folders under {self._splits}")
        self._class_dirs = {printable_name(d): d for d in names}
        self._class_names = sorted(self._class_dirs)
        self._frames: dict[str, list[str]] = {}  # clip folder -> its frame files in order (listed once per process)

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

    def frame_files(self, clip_dir: str) -> list[str]:
        """The frame images of one clip folder, in display order (full paths)."""
        if clip_dir not in self._frames:
            try:
                names = os.listdir(clip_dir)
            except OSError as err:
                raise ClipReadError(f"cannot list clip folder {clip_dir}: {err}") from err
            images = sorted((n for n in names if n.lower().endswith(self.extensions)), key=_frame_order)
            self._frames[clip_dir] = [os.path.join(clip_dir, n) for n in images]
        return self._frames[clip_dir]

    def list_clips(self, split: str) -> list[ClipRef]:
        split_dir = self._split_dir(split)
        refs, empty = [], []
        for label, cls in enumerate(self._class_names):
            cls_dir = os.path.join(split_dir, self._class_dirs[cls])
            if not os.path.isdir(cls_dir):
                continue
            for clip in sorted(os.listdir(cls_dir)):
                clip_dir = os.path.join(cls_dir, clip)
                if not os.path.isdir(clip_dir):
                    continue
                if not self.frame_files(clip_dir):
                    empty.append(clip_dir)
                    continue
                clip_id = f"{os.path.basename(split_dir)}/{cls}/{printable_name(clip)}"
                refs.append(ClipRef(clip_id=clip_id, label=label, path=clip_dir))
        if empty:
            logger.warning(
                "framefolder %s: %d clip folders hold no %s images and are left out (first: %s)",
                split,
                len(empty),
                "/".join(self.extensions),
                empty[0],
            )
        if not refs:
            raise SourceError(f"no clip folders with frame images ({', '.join(self.extensions)}) under {split_dir}")
        return refs

    def probe(self, ref: ClipRef) -> VideoInfo:
        return VideoInfo(num_frames=len(self.frame_files(ref.path)), fps=self.fps, start=0.0)

    def read_frames(self, ref: ClipRef, indices: list[int]) -> Iterator[tuple[int, np.ndarray, float]]:
        """`(index, uint8 (H, W, 3) RGB frame, index / fps)` for the sorted unique `indices` in range."""
        from PIL import Image, ImageOps

        files = self.frame_files(ref.path)
        shape = None
        for i in sorted(set(indices)):
            if not 0 <= i < len(files):
                continue
            try:
                with Image.open(files[i]) as image:
                    frame = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
            except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
                raise ClipReadError(f"cannot read frame image {files[i]}: {err}") from err
            if shape is not None and frame.shape != shape:
                raise ClipReadError(
                    f"frame image {files[i]} is {frame.shape[1]}x{frame.shape[0]}, the clip's earlier frames "
                    f"{shape[1]}x{shape[0]}: every frame of a clip must have one size"
                )
            shape = frame.shape
            yield i, frame, i / self.fps

    def describe(self) -> dict:
        return super().describe() | {"root": self.root, "fps": self.fps}
