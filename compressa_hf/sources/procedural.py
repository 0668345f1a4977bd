"""A built-in, generated action set where *which frames are kept* decides the accuracy.

Every clip is one of `num_scenes` static, cluttered scenes (colour gradient and rectangles) shared by all classes,
with a grey distractor disc drifting across it the whole time, plus sensor noise that differs in every frame. The
class shows only during a short event of `event_length` frames at a random time: a bright shape, one per class,
moves across the scene from a random place in a random direction. Scenes are shared so that nothing outside the
event tells the classes apart or identifies a clip: a network can only learn the label from event frames.
All other frames are redundant and carry no label information, so a uniform K-of-T sample that misses the event
leaves a network at chance for that clip, while a selector that finds the event frame recovers the label.

Deterministic by `seed`: the same arguments give the same pixels on any machine, in any process.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from compressa_hf.decode import VideoInfo
from compressa_hf.sources.base import ClipRef, SourceError, VideoSource

SHAPES = ("square", "disc", "cross", "triangle", "hbar", "vbar", "ring", "diamond")
_SPLIT_IDS = {"train": 0, "test": 1}


def _shape_mask(shape: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    if shape == "square":
        return (np.abs(dy) <= r) & (np.abs(dx) <= r)
    if shape == "disc":
        return dy**2 + dx**2 <= r**2
    if shape == "cross":
        return ((np.abs(dy) <= r / 3) & (np.abs(dx) <= r)) | ((np.abs(dx) <= r / 3) & (np.abs(dy) <= r))
    if shape == "triangle":
        return (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) / 2)
    if shape == "hbar":
        return (np.abs(dy) <= r / 3) & (np.abs(dx) <= 1.4 * r)
    if shape == "vbar":
        return (np.abs(dx) <= r / 3) & (np.abs(dy) <= 1.4 * r)
    if shape == "ring":
        d2 = dy**2 + dx**2
        return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    if shape == "diamond":
        return np.abs(dy) + np.abs(dx) <= 1.2 * r
    raise ValueError(shape)


class ProceduralSource(VideoSource):
    """Generated clips: redundant scenes with one short class-defining motion event.

    Args:
        num_classes: Number of classes (each a different event shape), 2 to 8.
        train_per_class / test_per_class: Clips per class in each split.
        length: Frames per clip.
        event_length: Frames during which the class shape is visible and moving.
        frame_size: Side of the generated square frames in pixels.
        noise: Standard deviation of per-pixel sensor noise (0-255 scale), different in every frame.
        num_scenes: Backgrounds (scene + distractor path) shared across classes; each clip draws one.
        fps: Frame rate the clips are said to have (timestamps and chat metadata); frames are the same at any rate.
        seed: Seeds everything.
    """

    name = "procedural"

    def __init__(
        self,
        num_classes: int = 6,
        train_per_class: int = 20,
        test_per_class: int = 10,
        length: int = 64,
        event_length: int = 4,
        frame_size: int = 112,
        noise: float = 6.0,
        num_scenes: int = 4,
        fps: float = 30.0,
        seed: int = 0,
    ):
        if not 2 <= num_classes <= len(SHAPES):
            raise SourceError(f"procedural `num_classes` must be in [2, {len(SHAPES)}], got {num_classes}")
        if not 1 <= event_length <= length:
            raise SourceError(f"procedural `event_length` must be in [1, length={length}], got {event_length}")
        if num_scenes < 1:
            raise SourceError(f"procedural `num_scenes` must be >= 1, got {num_scenes}")
        if frame_size < 16:
            raise SourceError(f"procedural `frame_size` must be >= 16, got {frame_size}")
        self.num_classes, self.length, self.event_length = num_classes, length, event_length
        self.per_class = {"train": train_per_class, "test": test_per_class}
        if not fps > 0:
            raise SourceError(f"procedural `fps` must be > 0, got {fps}")
        self.frame_size, self.noise, self.num_scenes, self.seed = frame_size, noise, num_scenes, seed
        self.fps = float(fps)

    @property
    def class_names(self) -> list[str]:
        return [f"{shape}_event" for shape in SHAPES[: self.num_classes]]

    def describe(self) -> dict:
        return super().describe() | {
            "length": self.length,
            "event_length": self.event_length,
            "frame_size": self.frame_size,
            "per_class": self.per_class,
            "num_scenes": self.num_scenes,
            "fps": self.fps,
            "seed": self.seed,
        }

    def list_clips(self, split: str) -> list[ClipRef]:
        split = "test" if split == "validation" else split
        if split not in _SPLIT_IDS:
            raise SourceError(f"procedural source has splits {list(_SPLIT_IDS)}, not {split!r}")
        refs = []
        for label in range(self.num_classes):
            for j in range(self.per_class[split]):
                key = (self.seed, _SPLIT_IDS[split], label, j)
                rng = np.random.default_rng(key)
                start = int(rng.integers(0, self.length - self.event_length + 1))
                scene = int(rng.integers(0, self.num_scenes))
                refs.append(
                    ClipRef(
                        clip_id=f"{split}/{label:02d}_{j:05d}",
                        label=label,
                        path=f"procedural://{split}/{label:02d}_{j:05d}",
                        extra={"key": key, "event_start": start, "scene": scene},
                    )
                )
        return refs

    def event_frames(self, ref: ClipRef) -> range:
        """Source frame indices during which the class event is visible."""
        start = ref.extra["event_start"]
        return range(start, start + self.event_length)

    def probe(self, ref: ClipRef) -> VideoInfo:
        return VideoInfo(num_frames=self.length, fps=self.fps)

    def read_frames(self, ref: ClipRef, indices: list[int]) -> Iterator[tuple[int, np.ndarray, float]]:
        scene = self._scene(ref)
        for t in sorted(set(indices)):
            if 0 <= t < self.length:
                yield t, self._frame(ref, scene, t), round(t / self.fps, 6)

    def _scene(self, ref: ClipRef) -> dict:
        s = self.frame_size
        rng = np.random.default_rng((self.seed, 7, ref.extra["scene"]))  # shared by every clip of this scene
        clip_rng = np.random.default_rng((*ref.extra["key"], 1))
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        c0, c1 = rng.uniform(40, 150, size=(2, 3))
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / s
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
        bg = c0 + (c1 - c0) * ramp[..., None]
        for _ in range(4):  # static clutter, the same in every frame
            y0, x0 = rng.integers(0, s - s // 6, size=2)
            h, w = rng.integers(s // 10, s // 4, size=2)
            bg[y0 : y0 + h, x0 : x0 + w] = rng.uniform(30, 170, size=3)
        return {
            "yy": yy,
            "xx": xx,
            "bg": bg,
            "distractor": rng.uniform(0.2 * s, 0.8 * s, size=2),
            "drift": rng.normal(0, 0.25, size=2),
            "event_from": clip_rng.uniform(0.3 * s, 0.7 * s, size=2),
            "event_dir": clip_rng.normal(0, 1, size=2),
        }

    def _frame(self, ref: ClipRef, scene: dict, t: int) -> np.ndarray:
        s = self.frame_size
        yy, xx = scene["yy"], scene["xx"]
        img = scene["bg"].copy()
        dy, dx = scene["distractor"] + t * scene["drift"]
        img[(yy - dy) ** 2 + (xx - dx) ** 2 <= (0.09 * s) ** 2] = 120.0
        start = ref.extra["event_start"]
        if start <= t < start + self.event_length:
            direction = scene["event_dir"] / (np.linalg.norm(scene["event_dir"]) + 1e-6)
            progress = (t - start + 0.5) / self.event_length - 0.5
            cy, cx = scene["event_from"] + direction * progress * 0.3 * s
            img[_shape_mask(SHAPES[ref.label], yy, xx, cy, cx, 0.13 * s)] = (245.0, 235.0, 90.0)
        noise = np.random.default_rng((*ref.extra["key"], 2, t)).normal(0, self.noise, size=img.shape)
        return np.clip(img + noise, 0, 255).astype(np.uint8)
