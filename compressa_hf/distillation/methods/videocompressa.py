"""VideoCompressa as a method of the registry: the planner's K frames per video, jointly optimised
(`compressa_hf.distillation.videocompressa`), stored at the planner's dtype. Options are `VideoCompressaConfig`'s fields
(K comes from the plan and the seed from the run).

It runs on every process of a multi-process run (`MULTI_PROCESS`): each rank distils its strided share of the kept
videos and the results are gathered (`distill(..., accelerator=ctx.accelerator)`). Its checkpoints live in
`ctx.work_dir` and resume whenever they are there (the caller clears it for a fresh run).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict

import torch

from compressa_hf.distillation.methods.base import CompressedSet, MethodContext, parse_options, planned_set
from compressa_hf.distillation.videocompressa import VideoCompressaConfig, distill

KIND = "ours"
Options = VideoCompressaConfig
MULTI_PROCESS = True


def run_distill(ctx: MethodContext, method: str, **forced) -> tuple:
    """Plan, pick the videos, distil them; returns (plan, videos, DistillResult, the config as run)."""
    cfg = parse_options(VideoCompressaConfig, ctx.options, method)
    plan = ctx.plan(frames_per_video=cfg.frames_per_video)
    cfg = dataclasses.replace(cfg, frames_per_video=plan.frames_per_video, seed=ctx.seed, **forced)
    videos = ctx.planned_videos(plan)
    # A lazy cache (`compressa_hf.rows.RowConcat`) stays lazy: with `state_storage="disk"` the kept videos' rows are
    # read as the optimisation asks for them, so memory is bounded by the batch, not the split.
    latents = ctx.latents[videos] if isinstance(ctx.latents, torch.Tensor) else ctx.latents.select(videos)
    checkpoint_dir = ctx.work_dir  # the context's own folder: `checkpoints_<config>` of distill, a cell's of evaluate
    result = distill(
        latents,
        ctx.labels[videos],
        ctx.codec,
        cfg,
        num_classes=ctx.num_classes,
        progress=ctx.progress,
        checkpoint_dir=checkpoint_dir,
        resume=checkpoint_dir is not None,
        accelerator=ctx.accelerator,
    )
    return plan, videos, result, cfg


def compress(ctx: MethodContext) -> CompressedSet:
    plan, videos, result, cfg = run_distill(ctx, "videocompressa")
    info = {"distill": result.summary(), "options": asdict(cfg)}
    if result.history:  # where the scorer and the guide ended, for the card
        info["card_diagnostics"] = {
            "scorer_entropy": result.history[-1]["scorer_entropy"],
            "guide_acc": result.history[-1]["acc"],
        }
    # The card keeps the options under `hyperparameters` too (cards written before `--method` existed read them
    # there), and the ratio the plan achieves with the room it left for labels.
    info["card"] = {"hyperparameters": asdict(cfg), "achieved_ratio": plan.achieved_ratio}
    return planned_set(ctx, "videocompressa", plan, videos, result.latents, result.frame_indices, info)
