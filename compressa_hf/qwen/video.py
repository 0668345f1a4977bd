"""Raw video the way Qwen's own examples read it: qwen-vl-utils' frame count, frame indices and frame size.

Qwen's examples feed a video through `qwen_vl_utils.process_vision_info` / `fetch_video`: frames at `fps` (2) per
second, at least `min_frames` (4) and at most `max_frames` (768), an even count, spread evenly over the whole clip
(`linspace(0, N - 1, n).round()`); each frame resized, aspect kept, onto the model's pixel grid (28 px for patch 14,
32 for patch 16) within `min_pixels` (128 visual tokens' worth), `max_pixels` (768 tokens' worth) and a share of
`total_pixels`; bicubic with antialiasing. `sample_qwen_clip` applies exactly that, through qwen-vl-utils' own
functions and constants (`smart_nframes`, `smart_resize`, `VIDEO_MIN_TOKEN_NUM`, ...), to any compressa_hf source,
and returns the frames with the metadata (`fps`, `frames_indices`, `total_num_frames`) `fetch_video` returns.

Why not call `fetch_video` on the file: its readers are torchcodec (needs the system FFmpeg libraries), decord (Linux
x86-64 wheels of 2021) or `torchvision.io.read_video` (gone from torchvision 0.24 on; torchvision 0.29 here has none).
compressa_hf's sources decode with PyAV, which ships its own FFmpeg, and also serve clips that are not files
(procedural clips, rows of a `datasets` video set) and annotated windows. So frames are decoded by the source and
chosen and sized by qwen-vl-utils' rules; `tests/test_qwen_video.py` checks the result against `fetch_video` itself
(decord backend) on the same MPEG-4 and H.264 files: same indices, metadata and size, and the same pixels, bit for
bit. The rule for the pixel bounds mirrors `fetch_video`'s lines (qwen-vl-utils 0.0.14); that test is what catches a
qwen-vl-utils release that changes them.

Where `fetch_video` is wrong, this reader is not: it counts only the frames a player shows (an mp4's edit list can
hide stored pictures, which decord counts and then repeats), and for a variable-rate clip it counts 2 frames per
second of the real duration and spreads them evenly in time, not in index (`qwen_frame_indices`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from compressa_hf.clips import SampledClip
from compressa_hf.sources.base import ClipReadError, ClipRef, VideoSource


@dataclass
class QwenVideoConfig:
    """The video settings of a qwen-vl-utils message block (`{"type": "video", "video": ..., "fps": 2.0, ...}`).

    Defaults are qwen-vl-utils' own (0.0.14: `FPS`, `FPS_MIN_FRAMES`, `FPS_MAX_FRAMES`, `VIDEO_MIN_TOKEN_NUM`,
    `VIDEO_MAX_TOKEN_NUM`, `MODEL_SEQ_LEN`); `tests/test_qwen_video.py` checks them against the installed package.

    Args:
        fps: Frames sampled per second of video. Ignored when `nframes` is set (qwen-vl-utils takes one or the other).
        nframes: Exact frame count instead of `fps` (rounded to an even number by qwen-vl-utils).
        min_frames / max_frames: Bounds on the count that `fps` gives.
        min_pixels: Least pixels per frame; None: 128 visual tokens' worth (128 x 28 x 28 at patch 14).
        max_pixels: Most pixels per frame; None: 768 visual tokens' worth, or less when `total_pixels` is shared
            among many frames.
        total_pixels: Pixel budget of the whole video (per-frame cap: `total_pixels / frames * 2`); None: qwen-vl-utils'
            `MODEL_SEQ_LEN` (128,000 tokens, or the `MODEL_SEQ_LEN` environment variable) x 0.9 tokens' worth.
        image_patch_size: The model's patch size: 14 for Qwen2-VL and Qwen2.5-VL, 16 for Qwen3-VL
            (`compressa_hf.qwen.FAMILIES[name].patch_size`); sets the pixel grid and the pixel bounds.
    """

    fps: float = 2.0
    nframes: int | None = None
    min_frames: int = 4
    max_frames: int = 768
    min_pixels: int | None = None
    max_pixels: int | None = None
    total_pixels: int | None = None
    image_patch_size: int = 14

    def __post_init__(self):
        if not self.fps > 0:
            raise ValueError(f"`fps` must be > 0, got {self.fps}")
        if self.nframes is not None and self.nframes < 2:
            raise ValueError(f"`nframes` must be >= 2 (qwen-vl-utils' minimum), got {self.nframes}")
        if self.min_frames < 1 or self.max_frames < self.min_frames:
            raise ValueError(f"need 1 <= min_frames <= max_frames, got {self.min_frames} and {self.max_frames}")
        for name in ("min_pixels", "max_pixels", "total_pixels"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1 or None, got {getattr(self, name)}")
        if self.image_patch_size < 1:
            raise ValueError(f"`image_patch_size` must be >= 1, got {self.image_patch_size}")
        if self.max_pixels is not None and self.max_pixels < self.least_pixels():
            # qwen-vl-utils would fail an assert deep inside smart_resize
            raise ValueError(
                f"`max_pixels` {self.max_pixels} is below the least pixels per frame {self.least_pixels()}; set "
                f"`min_pixels` too (at most {self.max_pixels})"
            )

    def least_pixels(self) -> int:
        """`min_pixels`, or qwen-vl-utils' default for the patch size (128 visual tokens' worth)."""
        if self.min_pixels is not None:
            return self.min_pixels
        from qwen_vl_utils import vision_process as qv

        return qv.VIDEO_MIN_TOKEN_NUM * (self.image_patch_size * qv.SPATIAL_MERGE_SIZE) ** 2

    def element(self, video) -> dict:
        """The qwen-vl-utils message block for `video` (a path, for `process_vision_info` / `fetch_video`)."""
        out = {"type": "video", "video": video}
        out |= {"nframes": self.nframes} if self.nframes is not None else {"fps": self.fps}
        out |= {"min_frames": self.min_frames, "max_frames": self.max_frames}
        for name in ("min_pixels", "max_pixels", "total_pixels"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


def qwen_frame_size(num_frames: int, height: int, width: int, element: dict, image_patch_size: int) -> tuple[int, int]:
    """(height, width) `fetch_video` resizes `num_frames` frames of `height` x `width` to, for a message block.

    The lines of `qwen_vl_utils.fetch_video` (0.0.14) that bound the pixels per frame, then its `smart_resize`.
    """
    from qwen_vl_utils import vision_process as qv

    factor = image_patch_size * qv.SPATIAL_MERGE_SIZE
    if "resized_height" in element and "resized_width" in element:
        return qv.smart_resize(element["resized_height"], element["resized_width"], factor=factor)
    min_pixels = element.get("min_pixels", qv.VIDEO_MIN_TOKEN_NUM * factor * factor)
    total_pixels = element.get("total_pixels", qv.MODEL_SEQ_LEN * factor * factor * 0.9)
    max_pixels = max(
        min(qv.VIDEO_MAX_TOKEN_NUM * factor * factor, total_pixels / num_frames * qv.FRAME_FACTOR),
        int(min_pixels * 1.05),
    )
    max_pixels = min(element.get("max_pixels", max_pixels), max_pixels)
    return qv.smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)


def qwen_frame_indices(
    num_frames: int, fps: float, config: QwenVideoConfig, times: Sequence[float] | None = None
) -> list[int]:
    """The source frames qwen-vl-utils keeps of a clip of `num_frames` frames at `fps`.

    `smart_nframes` decides how many (from the duration `num_frames / fps`); they are spread as its decord and
    torchcodec readers spread them, evenly over the frame indices, which for evenly spaced frames is evenly over time.
    For a variable-rate clip, `times` (each frame's presentation time, ascending) moves them to the frames nearest to
    the same count of evenly spaced times from the first frame to the last, so that they are evenly spaced in time
    as qwen-vl-utils means them to be; a frame held longer than the sampling step is then kept more than once. Raises
    ValueError (qwen-vl-utils') when the clip has fewer frames than it asks for (`nframes` above the clip's length,
    or a clip of one frame).
    """
    from qwen_vl_utils import vision_process as qv

    count = qv.smart_nframes(config.element(None), total_frames=num_frames, video_fps=fps)
    if times is None:
        return torch.linspace(0, num_frames - 1, count).round().long().tolist()
    if len(times) != num_frames:
        raise ValueError(f"{len(times)} frame times for {num_frames} frames")
    targets = torch.linspace(times[0], times[-1], count, dtype=torch.float64).tolist()
    out = []
    for target in targets:
        after = min(bisect.bisect_left(times, target), num_frames - 1)
        out.append(after - 1 if after > 0 and target - times[after - 1] <= times[after] - target else after)
    return out


def resize_bicubic(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (F, H, W, 3) -> uint8 (F, height, width, 3), bicubic with antialiasing, as `fetch_video` resizes."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    video = TF.resize(video, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return video.permute(0, 2, 3, 1).contiguous().numpy()


def sample_qwen_clip(
    source: VideoSource, ref: ClipRef, config: QwenVideoConfig, fps: float | None = None
) -> SampledClip:
    """The frames qwen-vl-utils would give for one clip of `source`, with where they come from.

    Args:
        source: Any compressa_hf source (it decodes; PyAV for files).
        ref: The clip.
        config: qwen-vl-utils' settings.
        fps: Overrides the clip's frame rate (for the sampling and in the result); None reads it from the source.

    Returns:
        A `SampledClip` whose `frames` are uint8 (F, H', W', 3), F even, H' and W' on the model's pixel grid, and whose
        `frame_indices`, `fps` and `num_source_frames` are the `frames_indices`, `fps` and `total_num_frames` of the
        metadata `fetch_video` returns for evenly spaced frames. For a variable-rate clip `fps` is its real average
        rate (the count is 2 per second of its real duration), the frames are evenly spaced in time, and `start` /
        `timestamps` say when each one is (`samples.video_metadata` turns them into Qwen's metadata).

    Raises:
        ClipReadError: naming the file, when the clip cannot be decoded or is too short for the settings.
    """
    info = source.probe(ref)
    rate = float(fps) if fps is not None else info.fps
    times = info.times if fps is None else None  # an explicit rate says the frames are evenly spaced at it
    try:
        indices = qwen_frame_indices(info.num_frames, rate, config, times)
    except ValueError as err:
        raise ClipReadError(
            f"{ref.path}: qwen-vl-utils takes no frames from {info.num_frames} frames at {rate:g} fps with "
            f"{config.element(None)}: {err}"
        ) from err
    got = {i: (frame, t) for i, frame, t in source.read_frames(ref, sorted(set(indices)))}
    if not got:
        raise ClipReadError(f"no decodable frame in {ref.path}")
    filled = 0
    if len(got) < len(set(indices)):
        # The container announced more frames than it decodes (truncated file): reuse the last good frame.
        last = max(got)
        filled = sum(1 for i in indices if i not in got)
        indices = [i if i in got else last for i in indices]
    frames = np.stack([got[i][0] for i in indices])
    height, width = qwen_frame_size(len(frames), *frames.shape[1:3], config.element(ref.path), config.image_patch_size)
    frames = resize_bicubic(frames, height, width)
    timestamps = [got[i][1] for i in indices]
    start = info.start if times is not None else None
    return SampledClip(
        ref.clip_id, ref.label, ref.path, frames, indices, timestamps, rate, info.num_frames, filled, start
    )
