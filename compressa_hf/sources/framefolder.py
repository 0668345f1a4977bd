"""Clips stored as folders of frame images: `<root>/<split>/<class>/<clip>/<frame>.jpg` (mmaction2's "rawframes").

Many UCF101, HMDB51 and Something-Something copies are kept this way (frames extracted once with `ffmpeg` or
mmaction2's `build_rawframes.py`), and a folder of JPEGs needs no video decoder: Pillow reads it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterator

import numpy as np

from compressa_hf.decode import VideoInfo
from compressa_hf.sources.base import ClipReadError, ClipRef, SourceError, printable_name
from compressa_hf.sources.videofolder import IMAGE_EXTENSIONS, SplitClassFolders, parse_extensions, visible

logger = logging.getLogger(__name__)

_NUMBER = re.compile(r"(\d+)")
DEFAULT_FPS = 30.0
#: mmaction2's `build_rawframes.py --task both` writes optical flow (`flow_x_00001.jpg`, `flow_y_...`) beside the RGB
#: frames (`img_00001.jpg`): those are not frames of the clip.
FLOW_PREFIXES = ("flow_x", "flow_y")


def _frame_order(name: str) -> tuple:
    """Sort key that orders `img_2.jpg` before `img_10.jpg` (numbers compared as numbers, the rest as text)."""
    return tuple(int(part) if part.isdigit() else part for part in _NUMBER.split(name))


class FrameFolderSource(SplitClassFolders):
    """Clips under `<root>/<split>/<class>/<clip>/`, each clip a folder of frame images in display order.

    Frames are ordered by the numbers in their file names (`img_00001.jpg`, `frame_2.png`, `00010.jpg`), so unpadded
    numbering works too. Hidden files (`.DS_Store`, macOS `._img_00001.jpg`), other files, and mmaction2's optical
    flow images (`flow_x_*`, `flow_y_*`) are not frames (for flow named otherwise, e.g. denseflow's `x_*`, give
    `prefix=img_`). A clip folder without images is skipped with a
    warning; an image that cannot be read, or one of another size than the clip's other frames, makes its clip fail
    with an error naming the image (the cache pass skips that clip and lists it, as it does a broken video file).
    EXIF orientation is applied, so frames come out upright; grey, palette, RGBA and 16-bit images become 8-bit RGB.

    Args:
        root: The dataset folder.
        fps: The rate the frames were extracted at, in frames per second: frame i is shown at `i / fps` seconds. A
            folder of images does not record it; without it, each clip's rate comes from `<root>/frames.json`
            (`"fps": {"<split>/<class>/<clip>": rate}`, as `bench/gpu/frames.py` writes), else 30 is assumed (and
            said once in the log). It sets only the timestamps of chat samples (`<t seconds>`) and the card's
            frame rates, not which frames are taken.
        prefix: Only files whose names start with it are frames (`prefix=img_`); default: every image but flow.
        extensions: File endings counted as frames (on the command line, `|` separates several: `.jpg|.png`).
    """

    name = "framefolder"
    LAYOUT = "<root>/train/<class>/<clip>/"

    def __init__(
        self,
        root: str,
        fps: float | None = None,
        prefix: str = "",
        extensions: str | tuple[str, ...] = IMAGE_EXTENSIONS,
    ):
        self.fps = None if fps is None else _rate(fps, "fps")
        self.prefix = str(prefix)
        self.extensions = parse_extensions(extensions, "framefolder")
        self._scan(root)
        self._rates = _recorded_rates(self.root) if self.fps is None else {}
        self._said_assumed = False
        self._frames: dict[str, list[str]] = {}  # clip folder -> its frame files in order (listed once per process)

    def _is_frame(self, name: str) -> bool:
        if not name.lower().endswith(self.extensions):
            return False
        return name.startswith(self.prefix) if self.prefix else not name.lower().startswith(FLOW_PREFIXES)

    def frame_files(self, clip_dir: str) -> list[str]:
        """The frame images of one clip folder, in display order (full paths)."""
        if clip_dir not in self._frames:
            try:
                names = os.listdir(clip_dir)
            except OSError as err:
                raise ClipReadError(f"cannot list clip folder {clip_dir}: {err}") from err
            images = sorted((n for n in visible(names) if self._is_frame(n)), key=_frame_order)
            self._frames[clip_dir] = [os.path.join(clip_dir, n) for n in images]
        return self._frames[clip_dir]

    def list_clips(self, split: str) -> list[ClipRef]:
        split_dir = self._split_dir(split)
        refs, empty = [], []
        for label, cls in enumerate(self._class_names):
            cls_dir = os.path.join(split_dir, self._class_dirs[cls])
            if not os.path.isdir(cls_dir):
                continue
            for clip in sorted(visible(os.listdir(cls_dir))):
                clip_dir = os.path.join(cls_dir, clip)
                if not os.path.isdir(clip_dir):
                    continue
                if not self.frame_files(clip_dir):
                    empty.append(clip_dir)
                    continue
                clip_id = f"{os.path.basename(split_dir)}/{cls}/{printable_name(clip)}"
                refs.append(
                    ClipRef(clip_id=clip_id, label=label, path=clip_dir, extra={"folder": _key(self.root, clip_dir)})
                )
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

    def rate(self, ref: ClipRef) -> float:
        """The clip's frame rate: `fps`, else the one `frames.json` records, else 30 (assumed)."""
        if self.fps is not None:
            return self.fps
        rate = self._rates.get(ref.extra.get("folder", ""))
        if rate is not None:
            return rate
        if not self._said_assumed:
            self._said_assumed = True
            logger.warning(
                "framefolder %s: no frame rate given (`fps=`) or recorded (frames.json); timestamps assume %g fps",
                self.root,
                DEFAULT_FPS,
            )
        return DEFAULT_FPS

    def probe(self, ref: ClipRef) -> VideoInfo:
        return VideoInfo(num_frames=len(self.frame_files(ref.path)), fps=self.rate(ref), start=0.0)

    def read_frames(self, ref: ClipRef, indices: list[int]) -> Iterator[tuple[int, np.ndarray, float]]:
        """`(index, uint8 (H, W, 3) RGB frame, index / fps)` for the sorted unique `indices` in range."""
        from PIL import Image, ImageOps

        files = self.frame_files(ref.path)
        fps = self.rate(ref)
        shape = None
        for i in sorted(set(indices)):
            if not 0 <= i < len(files):
                continue
            try:
                with Image.open(files[i]) as image:
                    frame = _rgb8(ImageOps.exif_transpose(image))
            except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
                raise ClipReadError(f"cannot read frame image {files[i]}: {err}") from err
            if shape is not None and frame.shape != shape:
                raise ClipReadError(
                    f"frame image {files[i]} is {frame.shape[1]}x{frame.shape[0]}, the clip's earlier frames "
                    f"{shape[1]}x{shape[0]}: every frame of a clip must have one size"
                )
            shape = frame.shape
            yield i, frame, i / fps

    def describe(self) -> dict:
        fps = self.fps if self.fps is not None else ("frames.json" if self._rates else f"{DEFAULT_FPS:g} (assumed)")
        return super().describe() | {"root": self.root, "fps": fps, **({"prefix": self.prefix} if self.prefix else {})}


def _key(root: str, clip_dir: str) -> str:
    """`<split>/<class>/<clip>` of a clip folder, `/`-separated: its key in frames.json."""
    return os.path.relpath(clip_dir, root).replace(os.sep, "/")


def _rate(value, what: str) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = float("nan")
    if not (math.isfinite(rate) and rate > 0):
        raise SourceError(f"framefolder {what} must be a finite number > 0, got {value!r}")
    return rate


def _recorded_rates(root: str) -> dict[str, float]:
    """Per-clip frame rates from `<root>/frames.json` (`bench/gpu/frames.py` writes them), or {}."""
    path = os.path.join(root, "frames.json")
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            rates = json.load(f).get("fps", {})
        return {str(k): _rate(v, f"fps of {k!r} in {path}") for k, v in rates.items()}
    except (OSError, ValueError, AttributeError) as err:
        raise SourceError(f"cannot read the frame rates in {path}: {err}") from err


def _rgb8(image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of any Pillow image; 16- and 32-bit grey (PNG's I;16 / I modes) scaled, not clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode != "I" or values.max() > 255 else 255.0
        grey = np.clip(np.round(values * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"))
