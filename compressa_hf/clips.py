"""T frames per clip: named sampling policies, short-clip filling, resize + centre crop.

A clip comes out as `SampledClip.frames`, uint8 (T, H, W, 3). Unreadable clips raise `ClipReadError` from
`sample_clip`; `ClipDataset` turns that into a skip record so that one bad file never stops a run.
"""

from __future__ import annotations

import bisect
import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from compressa_hf.sources.base import ClipReadError, ClipRef, VideoInfo, VideoSource

logger = logging.getLogger(__name__)


def uniform_indices(
    num_available: int,
    num_frames: int,
    rng: np.random.Generator | None = None,
    times: Sequence[float] | None = None,
    duration: float | None = None,
) -> list[int]:
    """The centre frame of each of `num_frames` equal segments of the clip, by frame index (TSN-style test sampling).

    That is the frame shown at the centre of each of `num_frames` equal segments in time when the frames are evenly
    spaced (`times=None`): index `int((i + 0.5) * num_available / num_frames)`, computed by index so that no timestamp
    rounding can move it. For a variable-rate clip, `times` (each frame's presentation time, ascending) and `duration`
    (from the first frame to the end of the last) give the segments in seconds, and the frame shown at each centre is
    the last one that starts at or before it: the index rule is the same rule on an even grid. Where the clip holds a
    frame longer than a segment, that frame is shown at two centres and kept twice, as a player (or `ffmpeg -vf fps`)
    would show it.
    """
    if times is None:
        return [int((i + 0.5) * num_available / num_frames) for i in range(num_frames)]
    if len(times) != num_available or duration is None or not duration > 0:
        raise ValueError(f"need {num_available} frame times and a duration > 0, got {len(times)} and {duration}")
    centres = [times[0] + (i + 0.5) * duration / num_frames for i in range(num_frames)]
    # Times are kept to the microsecond: a frame that starts within one of a centre starts at it (float rounding
    # must not move a frame that the index rule, in exact arithmetic, keeps).
    return [max(0, bisect.bisect_right(times, c + 1e-6) - 1) for c in centres]


def fixed_gap_indices(
    num_available: int,
    num_frames: int,
    rng: np.random.Generator,
    gap: int = 4,
    times: Sequence[float] | None = None,
    duration: float | None = None,
) -> list[int]:
    """Every `gap`-th frame by index from a random start (VDSD); uniform by index when the clip is too short.

    By index whatever the frame spacing (VDSD's rule counts frames); the kept frames' timestamps say when they are.
    """
    span = (num_frames - 1) * gap + 1
    if num_available < span:
        return uniform_indices(num_available, num_frames)
    start = int(rng.integers(0, num_available - span + 1))
    return [start + gap * i for i in range(num_frames)]


#: name -> f(num_available, num_frames, rng, times=None, duration=None) -> indices (only called when
#: num_available >= num_frames; `times` / `duration` are given for a variable-rate clip, see `uniform_indices`)
POLICIES: dict[str, Callable[..., list[int]]] = {
    "uniform": uniform_indices,
    "gap4": fixed_gap_indices,
}


#: What a policy does differently on a variable-rate clip, for the cards of sets that hold one.
VARIABLE_RATE_RULES = {
    "uniform": "Variable-rate clips: the frame shown at the centre of each equal segment in time instead.",
    "gap4": "Variable-rate clips too: by index.",
}


def describe_policy(name: str, variable_rate: bool = False) -> str:
    """One line saying what a sampling policy keeps (its function's first docstring line), for cards and reports;
    with `variable_rate`, also what it does on variable-rate clips."""
    line = f"{name}: {POLICIES[name].__doc__.strip().splitlines()[0]}"
    return f"{line} {VARIABLE_RATE_RULES[name]}" if variable_rate and name in VARIABLE_RATE_RULES else line


SHORT_CLIP_MODES = ("loop", "pad")


@dataclass
class ClipConfig:
    """How frames are taken from a clip.

    Args:
        num_frames: T, frames kept per clip.
        size: Output side in pixels: the short side is resized to it, then a centre square crop.
        policy: Name in `POLICIES`: `uniform` (the frame shown at the centre of T equal segments in time) or `gap4`
            (every 4th frame from a random start, as VDSD).
        short_clips: `loop` repeats a clip shorter than T from its start, `pad` repeats its last frame.
        seed: Seeds random policies; the draw for a clip depends only on (seed, clip_id).
    """

    num_frames: int = 16
    size: int = 112
    policy: str = "uniform"
    short_clips: str = "loop"
    seed: int = 0

    def __post_init__(self):
        if self.num_frames < 1:
            raise ValueError(f"`num_frames` must be >= 1, got {self.num_frames}")
        if self.size < 8:
            raise ValueError(f"`size` must be >= 8, got {self.size}")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown sampling policy {self.policy!r}; known: {sorted(POLICIES)}")
        if self.short_clips not in SHORT_CLIP_MODES:
            raise ValueError(f"`short_clips` must be one of {SHORT_CLIP_MODES}, got {self.short_clips!r}")


@dataclass
class SampledClip:
    """T frames of one clip and where they come from.

    Args:
        frames: uint8 (T, size, size, 3), upright.
        frame_indices: Source frame of each kept frame, numbered from the clip's first frame (its window's, for an
            annotated window) in presentation order.
        timestamps: Seconds of each kept frame on the container's timeline (from the file's start, not the window's).
        fps: The clip's frame rate: the stream's declared rate for evenly spaced frames, the real average
            `num_source_frames / duration` for a variable-rate clip (`decode.VideoInfo.fps`).
        num_source_frames: Frames in the clip (its window).
        filled: Frames of T that repeat an earlier frame because the clip was short.
        start: For a variable-rate clip only, seconds on the container's timeline at which its first frame is shown
            (each kept frame is then `timestamps[i] - start` into the clip); None when frame i is at `i / fps`.
    """

    clip_id: str
    label: int
    path: str
    frames: np.ndarray
    frame_indices: list[int]
    timestamps: list[float]
    fps: float
    num_source_frames: int
    filled: int
    start: float | None = None

    @property
    def duration(self) -> float:
        """Seconds the clip's frames are shown (its window's span)."""
        return self.num_source_frames / self.fps


def choose_indices(
    num_available: int, cfg: ClipConfig, clip_id: str, info: VideoInfo | None = None
) -> tuple[list[int], int]:
    """Source indices for T frames and how many of them are filler (clip shorter than T).

    `info` (the clip's probe) gives a variable-rate clip's frame times to the policy.
    """
    if num_available >= cfg.num_frames:
        rng = np.random.default_rng([cfg.seed, zlib.crc32(clip_id.encode("utf-8", "surrogateescape"))])
        timing = {"times": info.times, "duration": info.duration} if info is not None and info.variable_rate else {}
        return POLICIES[cfg.policy](num_available, cfg.num_frames, rng, **timing), 0
    filled = cfg.num_frames - num_available
    if cfg.short_clips == "loop":
        return [i % num_available for i in range(cfg.num_frames)], filled
    return [min(i, num_available - 1) for i in range(cfg.num_frames)], filled


def resize_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size, size, 3) uint8: antialiased resize of the short side, centre crop."""
    t, h, w, _ = frames.shape
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[:, :, top : top + size, left : left + size]
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def sample_clip(source: VideoSource, ref: ClipRef, cfg: ClipConfig) -> SampledClip:
    """Decode T frames of one clip. Raises `ClipReadError` naming the file when it cannot."""
    info = source.probe(ref)
    indices, filled = choose_indices(info.num_frames, cfg, ref.clip_id, info)
    got = {i: (frame, t) for i, frame, t in source.read_frames(ref, indices)}
    if not got:
        raise ClipReadError(f"no decodable frame in {ref.path}")
    if len(got) < len(set(indices)):
        # The container announced more frames than it decodes (truncated file): reuse the last good frame.
        last = max(got)
        filled += sum(1 for i in indices if i not in got)
        indices = [i if i in got else last for i in indices]
    frames = resize_crop(np.stack([got[i][0] for i in indices]), cfg.size)
    timestamps = [got[i][1] for i in indices]
    start = info.start if info.variable_rate else None
    return SampledClip(
        ref.clip_id, ref.label, ref.path, frames, indices, timestamps, info.fps, info.num_frames, filled, start
    )


class ClipDataset(torch.utils.data.Dataset):
    """Map-style dataset over clip refs for parallel decoding in DataLoader workers.

    Items are dicts; a clip that fails to decode, for whatever reason, comes back as `{"error": reason, ...}` naming
    its path instead of raising, so the consumer can report and skip it. Use `collate_fn=list`.
    """

    def __init__(self, source: VideoSource, refs: list[ClipRef], cfg: ClipConfig):
        self.source, self.refs, self.cfg = source, refs, cfg

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> dict:
        ref = self.refs[i]
        try:
            return asdict(sample_clip(self.source, ref, self.cfg)) | {"position": i}
        except ClipReadError as err:
            return {"position": i, "clip_id": ref.clip_id, "path": ref.path, "error": str(err)}
        except Exception as err:  # noqa: BLE001 - one clip that breaks a decoder in an unforeseen way is still one clip
            logger.debug("unexpected error on %s", ref.path, exc_info=True)
            reason = f"{type(err).__name__} while reading {ref.path}: {err}"
            return {"position": i, "clip_id": ref.clip_id, "path": ref.path, "error": reason}
