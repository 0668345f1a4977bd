"""VideoCompressa as a method of the registry: the planner's K frames per video, jointly optimised
(`compressa_hf.distill.videocompressa`), stored at the planner's dtype. Options are `VideoCompressaConfig`'s fields
(K comes from the plan and the seed from the run)."""

from __future__ import annotations

import dataclasses
import os

from compressa_hf.distill.methods.base import CompressedSet, MethodContext, parse_options, planned_set
from compressa_hf.distill.videocompressa import VideoCompressaConfig, distill

KIND = "ours"
Options = VideoCompressaConfig


def run_distill(ctx: MethodContext, method: str, **forced) -> tuple:
    """Plan, pick the videos, distil them; returns (plan, videos, DistillResult)."""
    cfg = parse_options(VideoCompressaConfig, ctx.options, method)
    plan = ctx.plan(frames_per_video=cfg.frames_per_video)
    cfg = dataclasses.replace(cfg, frames_per_video=plan.frames_per_video, seed=ctx.seed, **forced)
    videos = ctx.planned_videos(plan)
    result = distill(
        ctx.latents[videos],
        ctx.labels[videos],
        ctx.codec,
        cfg,
        num_classes=ctx.num_classes,
        progress=ctx.progress,
        checkpoint_dir=os.path.join(ctx.work_dir, method) if ctx.work_dir else None,
        resume=ctx.work_dir is not None,
    )
    return plan, videos, result


def compress(ctx: MethodContext) -> CompressedSet:
    plan, videos, result = run_distill(ctx, "videocompressa")
    return planned_set(
        ctx, "videocompressa", plan, videos, result.latents, result.frame_indices, {"distill": result.summary()}
    )
