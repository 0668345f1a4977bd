"""VideoCompressa as a method of the registry: the planner's K frames per video, jointly optimised
(`compressa_hf.distill.videocompressa`), stored at the planner's dtype. Options are `VideoCompressaConfig`'s fields
(K comes from the plan and the seed from the run)."""

from __future__ import annotations

import dataclasses
import os

import torch

from compressa_hf.distill.methods.base import (
    CompressedSet,
    MethodContext,
    check_budget,
    choose_videos,
    parse_options,
    store_latents,
)
from compressa_hf.distill.videocompressa import VideoCompressaConfig, distill

KIND = "ours"
Options = VideoCompressaConfig


def run_distill(ctx: MethodContext, method: str, **forced) -> tuple:
    """Plan, pick the videos, distil them; returns (plan, videos, DistillResult)."""
    cfg = parse_options(VideoCompressaConfig, ctx.options, method)
    plan = ctx.plan(frames_per_video=cfg.frames_per_video)
    cfg = dataclasses.replace(cfg, frames_per_video=plan.frames_per_video, seed=ctx.seed, **forced)
    videos = torch.tensor(choose_videos(ctx.labels.tolist(), list(plan.videos_per_class), ctx.seed), dtype=torch.long)
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
    stored, readback = store_latents(result.latents, plan.dtype)
    cset = CompressedSet(
        method="videocompressa",
        labels=ctx.labels[videos].clone(),
        stored=stored,
        latents=readback,
        source_videos=videos,
        frame_indices=result.frame_indices,
        info={"plan": plan.to_dict(), "distill": result.summary()},
    )
    if cset.stored_bytes != plan.stored_bytes:
        raise AssertionError(f"videocompressa: stored {cset.stored_bytes} bytes, the plan says {plan.stored_bytes}")
    return check_budget(cset, ctx.budget_bytes)
