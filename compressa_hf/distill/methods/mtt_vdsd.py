"""MTT+VDSD: VDSD's static / dynamic memory (`compressa_hf.distill.static_dynamic`) learned by trajectory matching
in latent space, as VDSD's `distill_s2d_ms.py --method MTT` does it on pixels.

The experts and the loop are MTT's (`compressa_hf.distill.trajectories`; the same expert trajectories as MTT and
DATM, trained once per training split). The synthetic set the student trains on is the memory's slots, each batch
making every slot's video with a random one of its two statics and of its two dynamics; the matching loss updates
the dynamic memory (at `lr_img`), the combiner (at `lr_combiner`) and the student learning rate. The budget buys the
memory (`static_dynamic.plan_memory`); the rows are every video the memory makes, T latent frames each, synthetic.
The learned student learning rate is reported, not stored (as MTT, `mtt.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from compressa_hf.distill.methods.base import CompressedSet, MethodContext
from compressa_hf.distill.static_dynamic import (
    PAIRS,
    MemoryOptions,
    clamp_memory,
    init_memory,
    memory_optimizers,
    memory_set,
    plan_memory,
)
from compressa_hf.distill.trajectories import MatchOptions, experts_for, match_trajectories, student_for

KIND = "synthesis"
__all__ = ["KIND", "Options", "compress"]

logger = logging.getLogger(__name__)


@dataclass
class Options(MemoryOptions, MatchOptions):
    """MTT+VDSD's hyperparameters: MTT's (`trajectories.MatchOptions`; `lr_img` is the Adam learning rate of the
    dynamic memory) and the memory's (`static_dynamic.MemoryOptions`). The seed is the run's `ctx.seed`.

    Scale. Defaults are MTT's reduced scale (8 experts x 10 epochs of a width-32 latent ConvNet, 150 iterations of 10
    student steps on all slots). VDSD's miniUCF101 scale (`sh/s2d/s2d_MTT_ms.sh` and `sh/baseline/buffer.sh`), for a
    GPU via `--method_config`: `{num_experts: 30, train_epochs: 50, batch_train: 256, width: 128, iterations: 10000,
    syn_steps: 10, expert_epochs: 1, max_start_epoch: 10}`.
    """

    def __post_init__(self):
        MatchOptions.__post_init__(self)
        self.check_memory()


def compress(ctx: MethodContext) -> CompressedSet:
    opts = ctx.method_options(Options, "mtt_vdsd")
    plan = plan_memory(ctx, opts.combiner_kernel)
    memory, init_info = init_memory(ctx, plan, opts, ctx.seed)
    experts, expert_record = experts_for(ctx, opts)
    logger.info(
        "mtt_vdsd: %d video slots per class (%d rows of %d latent frames), %d iterations of %d student steps",
        plan.videos_per_class,
        plan.rows,
        plan.num_frames,
        opts.iterations,
        opts.syn_steps,
    )
    generator = torch.Generator().manual_seed(ctx.seed)
    slot_labels = memory.slot_labels().to(ctx.device)
    made: dict[str, torch.Tensor] = {}

    def make_every_video():
        # All PAIRS ** 2 videos of every slot once per iteration, in the graph: the student's steps then pick one per
        # slot at random, as VDSD draws them, without running the combiner again at every step.
        made["videos"] = memory.videos(*memory.every_video()).unflatten(0, (memory.num_slots, PAIRS**2))

    def synthesize(slots: torch.Tensor):
        picks = torch.randint(PAIRS**2, (len(slots),), generator=generator)
        slots = slots.to(ctx.device)
        return made["videos"][slots, picks.to(ctx.device)], slot_labels[slots]

    result = match_trajectories(
        experts,
        student_for(ctx, opts),
        synthesize,
        memory.num_slots,
        memory_optimizers(memory, opts, opts.lr_img),
        opts,
        seed=ctx.seed,
        device=ctx.device,
        after_step=lambda: clamp_memory(memory, plan.dtype),
        before_iteration=make_every_video,
        progress=ctx.progress,
        desc="mtt_vdsd",
    )
    summary = result.summary()
    if result.losses:
        logger.info("mtt_vdsd: matching loss %.4g -> %.4g", summary["loss_start"], summary["loss_end"])
    info = {"mtt_vdsd": {**summary, "experts": expert_record, **init_info}}
    return memory_set(ctx, "mtt_vdsd", memory, plan, info)
