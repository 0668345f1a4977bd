"""Adaptive video sampling (AVS, "Adaptive Video Sampling", Sec. 3.2.1 of the AVS/SVC long-form video paper):
score each frame by how likely a shot boundary is there (Eq. 3), suppress non-maximal detections (Eq. 4), keep
the top-K frames and sort them in time (Eq. 5).

The paper's shot-boundary detector S_D is a learned network; no such weights are available here (no model hub),
so this baseline puts a training-free content-change detector in its place: PySceneDetect's `ContentDetector`
score (`scenedetect/detectors/content_detector.py`, Breakthrough/PySceneDetect), the weighted mean absolute
difference of the hue, saturation and value channels of consecutive frames in OpenCV's 8-bit HSV (H in [0, 180),
S and V in [0, 255]); its default weights are 1, 1, 1. It is what the paper's detector is trained to find (cuts),
but it also fires on fast motion and flashes, which a learned detector is meant to ignore.

Steps, per video of the planner's videos (`frame_selection_set`):
1. `content_scores`: s_t = content change from frame t - 1 to frame t; frame 0 gets frame 1's score (as in
   `pixel_diff`: PySceneDetect gives it 0, which would rank a clip's opening shot below any jitter).
2. `temporal_nms`: frame t survives iff its score is the maximum within +-`nms_radius` frames; on a tie the earlier
   frame wins, so a plateau keeps only its first frame. `nms_radius = 0` keeps every frame.
3. `avs_select`: the K highest surviving frames; if fewer than K survive, the best suppressed frames fill the
   rest (by score, ties to the earlier frame). Filling by score rather than with uniform frames keeps the method
   one ranking, as the paper's top-k over S'; the cost is that a filler may sit next to a peak.
4. The kept indices are returned in time order; the cached latents of those frames are stored.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import torch

from compressa_hf.distillation.methods.base import CompressedSet, MethodContext, frame_selection_set
from compressa_hf.distillation.methods.pixel_diff import frame_change_scores, score_videos

KIND = "selection"
__all__ = ["KIND", "Options", "avs_select", "compress", "content_scores", "rgb_to_hsv", "temporal_nms"]

logger = logging.getLogger(__name__)


@dataclass
class Options:
    """AVS options.

    Args:
        nms_radius: Frames on each side a surviving frame must beat (0 disables NMS).
        hue_weight: Weight of the hue change in the content score (PySceneDetect's default 1.0).
        sat_weight: Weight of the saturation change (default 1.0).
        lum_weight: Weight of the value (brightness) change (default 1.0).
        batch_videos: Videos scored at once (memory only: the scores do not depend on it).
    """

    nms_radius: int = field(default=1, metadata={"help": "Frames on each side a surviving frame must beat."})
    hue_weight: float = field(default=1.0, metadata={"help": "Weight of the hue change in the content score."})
    sat_weight: float = field(default=1.0, metadata={"help": "Weight of the saturation change."})
    lum_weight: float = field(default=1.0, metadata={"help": "Weight of the value (brightness) change."})
    batch_videos: int = field(default=64, metadata={"help": "Videos scored at once (memory only)."})

    def __post_init__(self):
        if self.nms_radius < 0:
            raise ValueError(f"`nms_radius` must be >= 0, got {self.nms_radius}")
        weights = self.channel_weights
        if min(weights) < 0 or sum(weights) == 0:
            raise ValueError(f"channel weights must be >= 0 and not all 0, got {weights}")
        if self.batch_videos < 1:
            raise ValueError(f"`batch_videos` must be >= 1, got {self.batch_videos}")

    @property
    def channel_weights(self) -> tuple[float, float, float]:
        return (self.hue_weight, self.sat_weight, self.lum_weight)


def rgb_to_hsv(frames: torch.Tensor) -> torch.Tensor:
    """`(..., 3, H, W)` RGB in uint8 levels -> float32 HSV on OpenCV's 8-bit scale (H in [0, 180), S, V in
    [0, 255]), unrounded.

    Hand-written because PySceneDetect needs OpenCV (`cv2.cvtColor`), a large binary dependency for one colour
    conversion, and torchvision's version (`_rgb2hsv`) is private and on a [0, 1] scale. Same formula as OpenCV's
    RGB2HSV: V = max, S = (V - min) / V, H = 60 deg * position within the hue sextant of the max channel (R, then G,
    then B on ties), halved to fit a byte; grey pixels get H = 0.
    """
    x = frames.float()
    r, g, b = x.unbind(-3)
    v = torch.maximum(torch.maximum(r, g), b)
    diff = v - torch.minimum(torch.minimum(r, g), b)
    s = torch.where(v > 0, 255 * diff / v.clamp(min=1e-6), torch.zeros_like(v))
    d = diff.clamp(min=1e-6)
    h = torch.where(v == r, 60 * (g - b) / d, torch.where(v == g, 120 + 60 * (b - r) / d, 240 + 60 * (r - g) / d))
    h = torch.where(diff > 0, h, torch.zeros_like(h))
    h = torch.where(h < 0, h + 360, h) / 2
    return torch.stack([h, s, v], dim=-3)


def content_scores(
    frames: torch.Tensor, channel_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> torch.Tensor:
    """`(B, T, 3, H, W)` uint8 RGB -> `(B, T)` PySceneDetect content scores (weighted mean absolute HSV change from
    the previous frame; hue is compared as a plain number, not on the circle, as PySceneDetect does); frame 0 gets
    frame 1's score."""
    return frame_change_scores(rgb_to_hsv(frames), channel_weights)


def temporal_nms(scores: torch.Tensor, radius: int) -> torch.Tensor:
    """`(B, T)` bool: frame t survives iff its score is above every earlier and at least every later score within
    `radius` frames (ties go to the earlier frame, so a plateau keeps one frame). Every row keeps >= 1 frame."""
    if scores.dim() != 2:
        raise ValueError(f"scores must be (B, T), got shape {tuple(scores.shape)}")
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    keep = torch.ones_like(scores, dtype=torch.bool)
    for d in range(1, min(radius, scores.shape[1] - 1) + 1):
        keep[:, d:] &= scores[:, d:] > scores[:, :-d]
        keep[:, :-d] &= scores[:, :-d] >= scores[:, d:]
    return keep


def avs_select(scores: torch.Tensor, k: int, nms_radius: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort(Top_k(NMS(S))): `(B, k)` ascending frame indices, and the `(B, T)` NMS mask.

    Surviving frames rank first, by score; suppressed frames fill in after them, by score; ties go to the earlier
    frame. Two stable sorts give that order exactly, with no offset added to the scores that could merge close ones.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be (B, T), got shape {tuple(scores.shape)}")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be in [1, T={scores.shape[1]}], got {k}")
    kept = temporal_nms(scores, nms_radius)
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    survivors_first = torch.argsort(kept.gather(1, order).to(torch.uint8), dim=1, descending=True, stable=True)
    order = order.gather(1, survivors_first)
    return order[:, :k].sort(dim=1).values, kept


def compress(ctx: MethodContext) -> CompressedSet:
    opts = ctx.method_options(Options, "avs")
    stats: dict[str, float | int] = {}

    def select(videos: torch.Tensor, k: int) -> torch.Tensor:
        scores = score_videos(ctx, videos, lambda x: content_scores(x, opts.channel_weights), opts.batch_videos)
        indices, kept = avs_select(scores, k, opts.nms_radius)
        peaks = kept.sum(1)
        stats["nms_peaks_mean"] = float(peaks.float().mean()) if len(peaks) else 0.0
        stats["filled_videos"] = int((peaks < k).sum())
        if stats["filled_videos"]:
            logger.info(
                "avs: NMS (radius %d) left fewer than K=%d frames in %d of %d videos; filled with the best "
                "suppressed frames",
                opts.nms_radius,
                k,
                stats["filled_videos"],
                len(videos),
            )
        return indices

    cset = frame_selection_set(ctx, "avs", select, info={"options": asdict(opts)})
    cset.info.update(stats)
    return cset
