"""Pixel difference: the K frames of each video that change most from the frame before, in time order.

A training-free selection baseline. Frame t's score is the mean absolute difference of its uint8 RGB pixels from
frame t - 1's (`pixel_diff_scores`); the K highest are kept in temporal order (`topk_in_time`, ties to the earlier
frame). It reads the real frames (`ctx.pixels()`), the same frames the cached latents encode, and stores the cached
latents of the frames it keeps through the shared planner (`frame_selection_set`), so at one ratio it keeps as
many frames as every other selection method.

Frame 0 has no previous frame; it gets frame 1's score (the change between frames 0 and 1), so a clip that opens
on a cut or on a static shot neither favours nor penalises its first frame against its second. A one-frame clip
scores 0. `frame_change_scores` is the per-channel form AVS reuses on HSV frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from compressa_hf.distillation.gumbel import topk_in_time
from compressa_hf.distillation.methods.base import CompressedSet, MethodContext, frame_selection_set

KIND = "selection"
__all__ = ["KIND", "Options", "compress", "frame_change_scores", "pixel_diff_scores", "score_videos"]


@dataclass
class Options:
    """Pixel-difference selection options.

    Args:
        batch_videos: Videos scored at once (memory only: the scores do not depend on it).
    """

    batch_videos: int = field(default=64, metadata={"help": "Videos scored at once (memory only)."})

    def __post_init__(self):
        if self.batch_videos < 1:
            raise ValueError(f"`batch_videos` must be >= 1, got {self.batch_videos}")


def frame_change_scores(frames: torch.Tensor, channel_weights: Sequence[float] | None = None) -> torch.Tensor:
    """Per-frame change from the previous frame: the weighted mean over channels of each channel's mean absolute
    difference, `s_t = sum_c w_c * mean_hw |x_t,c - x_{t-1},c| / sum_c |w_c|` (PySceneDetect's content score form).

    Args:
        frames: `(B, T, C, H, W)` frames, any real dtype (uint8 is widened before subtracting).
        channel_weights: One weight per channel; None weighs every channel equally.

    Returns:
        `(B, T)` float32 scores; frame 0 gets frame 1's score and a one-frame clip scores 0.
    """
    if frames.dim() != 5:
        raise ValueError(f"frames must be (B, T, C, H, W), got shape {tuple(frames.shape)}")
    b, t, c = frames.shape[:3]
    weights = torch.ones(c) if channel_weights is None else torch.as_tensor(channel_weights, dtype=torch.float32)
    if weights.shape != (c,):
        raise ValueError(f"need one weight per channel ({c}), got {weights.tolist()}")
    if weights.abs().sum() == 0:
        raise ValueError(f"channel weights must not all be 0, got {weights.tolist()}")
    if t < 2:
        return torch.zeros(b, t, device=frames.device)
    x = frames.float()
    per_channel = (x[:, 1:] - x[:, :-1]).abs().mean(dim=(-2, -1))  # (B, T-1, C)
    weights = weights.to(per_channel.device)
    deltas = (per_channel * weights).sum(-1) / weights.abs().sum()
    return torch.cat([deltas[:, :1], deltas], dim=1)


def pixel_diff_scores(frames: torch.Tensor) -> torch.Tensor:
    """`(B, T, 3, H, W)` uint8 frames -> `(B, T)` mean absolute RGB difference of each frame from the previous one
    (in uint8 levels, 0-255), frame 0 scored as frame 1."""
    return frame_change_scores(frames)


def score_videos(
    ctx: MethodContext,
    videos: torch.Tensor,
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    batch_videos: int = 64,
) -> torch.Tensor:
    """`(len(videos), T)` CPU scores of the real frames of `videos`, computed on `ctx.device` a few videos at a time
    so a whole split's frames are never widened to float at once."""
    pixels = ctx.pixels()
    chunks = torch.split(videos.to(torch.long), batch_videos)
    out = [
        score_fn(pixels[chunk].to(ctx.device)).float().cpu()
        for chunk in ctx.track(chunks, "score frames", len(chunks), "batch")
    ]
    return torch.cat(out) if out else torch.zeros(0, ctx.num_frames)


def compress(ctx: MethodContext) -> CompressedSet:
    opts = ctx.method_options(Options, "pixel_diff")

    def select(videos: torch.Tensor, k: int) -> torch.Tensor:
        return topk_in_time(score_videos(ctx, videos, pixel_diff_scores, opts.batch_videos), k)

    return frame_selection_set(ctx, "pixel_diff", select, info={"options": asdict(opts)})
