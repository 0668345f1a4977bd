"""MTT (Cazenavette et al., CVPR 2022) in latent space, as VDSD's code runs it on video: synthetic latent clips
whose few SGD steps carry a student network along a segment of an expert's training trajectory.

The experts and the matching loop are `compressa_hf.distillation.trajectories` (shared with DATM and MTT+VDSD; the
trajectories are trained once per training split and reused by every seed, ratio and method of a run). Storage
is DM's (`compressa_hf.distillation.methods.dm`): the planner's K latent frames for the planner's videos
(`ctx.plan()`), stored at the plan's dtype, each synthetic clip starting from one real video's latents at K
uniformly spaced frames (VDSD's `--init real`); `source_videos` / `frame_indices` say where. The set stores the
latents only: the learned student learning rate is reported in `info["mtt"]["syn_lr"]`, since `compressa
evaluate` trains every set with its fixed protocol rather than with a set's own learning rate as MTT evaluates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from compressa_hf.clips import uniform_indices
from compressa_hf.codecs.base import LATENT_MAGNITUDE
from compressa_hf.distillation.methods.base import CompressedSet, MethodContext, planned_set
from compressa_hf.distillation.trajectories import MatchOptions, experts_for, match_trajectories, student_for

KIND = "synthesis"
__all__ = ["KIND", "Options", "clamp_after_step", "compress", "initial_clips"]

logger = logging.getLogger(__name__)


@dataclass
class Options(MatchOptions):
    """MTT's hyperparameters: every field of `compressa_hf.distillation.trajectories.MatchOptions` (the experts and the
    matching loop; the seed is the run's `ctx.seed`, K and the videos come from the planner).

    Scale. Defaults are a reduced scale that two CPU cores run inside Table 1's `compressa evaluate` setting: 8
    experts x 10 epochs (batch 32) of a width-32 latent ConvNet, then 60 iterations of 10 student steps on all
    synthetic rows. VDSD's miniUCF101 scale (`sh/baseline/{buffer,MTT}.sh`), for a GPU via `--method_config`:
    `{num_experts: 30, train_epochs: 50, batch_train: 256, width: 128, iterations: 8000, syn_steps: 10,
    expert_epochs: 1, max_start_epoch: 10}`.
    """


def clamp_after_step(latents: torch.Tensor, dtype: str) -> Callable[[], None]:
    """What to run after each update of learned latents stored as `dtype`: keep them in the uint8 store's [-3, 3]
    (beyond it is lost when stored); nothing for float16."""

    def clamp():
        if dtype == "uint8":
            with torch.no_grad():
                latents.clamp_(-LATENT_MAGNITUDE, LATENT_MAGNITUDE)

    return clamp


def initial_clips(
    ctx: MethodContext, videos: torch.Tensor, frames_per_video: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 latents `(len(videos), K, C, h, w)` of `videos` at K uniformly spaced frames, and those frames'
    positions `(len(videos), K)`: where DM, MTT and DATM start their synthetic clips."""
    frames = torch.tensor(uniform_indices(ctx.num_frames, frames_per_video), dtype=torch.long)
    return ctx.latents[videos][:, frames].float(), frames.expand(len(videos), -1).clone()


def compress(ctx: MethodContext) -> CompressedSet:
    opts = ctx.method_options(Options, "mtt")
    plan = ctx.plan()
    videos = ctx.planned_videos(plan)
    init, frame_indices = initial_clips(ctx, videos, plan.frames_per_video)
    experts, expert_record = experts_for(ctx, opts)
    logger.info(
        "mtt: %d synthetic clips of %d latent frames, %d iterations of %d student steps over %d experts",
        len(videos),
        plan.frames_per_video,
        opts.iterations,
        opts.syn_steps,
        len(experts),
    )
    syn = init.to(ctx.device).requires_grad_(True)
    labels = ctx.labels[videos].to(ctx.device)
    result = match_trajectories(
        experts,
        student_for(ctx, opts),
        lambda rows: (syn[rows.to(ctx.device)], labels[rows.to(ctx.device)]),
        len(videos),
        [torch.optim.Adam([syn], lr=opts.lr_img)],
        opts,
        seed=ctx.seed,
        device=ctx.device,
        after_step=clamp_after_step(syn, plan.dtype),
        progress=ctx.progress,
        desc="mtt",
    )
    summary = result.summary()
    if result.losses:
        logger.info("mtt: matching loss %.4g -> %.4g", summary["loss_start"], summary["loss_end"])
    info = {"mtt": {**summary, "experts": expert_record, "init": "real latents at uniform frames"}}
    return planned_set(ctx, "mtt", plan, videos, syn.detach().cpu(), frame_indices, info)
