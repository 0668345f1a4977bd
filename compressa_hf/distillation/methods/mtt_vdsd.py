"""MTT+VDSD: VDSD's static / dynamic memory (`compressa_hf.distillation.static_dynamic`) learned by trajectory matching
in latent space, as VDSD's `distill_s2d_ms.py --method MTT` does it on pixels.

The experts and the loop are MTT's (`compressa_hf.distillation.trajectories`; the same expert trajectories as MTT and
DATM, trained once per training split). The synthetic set the student trains on is the memory's slots, each step
making its batch of slots' videos with a random one of their two statics and of their two dynamics (as VDSD); the matching loss updates
the dynamic memory (at `lr_img`), the combiner (at `lr_combiner`) and the student learning rate. The budget buys the
memory (`static_dynamic.plan_memory`); the rows are every video the memory makes, T latent frames each, synthetic.
The learned student learning rate is reported, not stored (as MTT, `mtt.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from compressa_hf.distillation.methods.base import CompressedSet, MethodContext
from compressa_hf.distillation.static_dynamic import (
    MemoryOptions,
    clamp_memory,
    init_memory,
    memory_optimizers,
    memory_set,
    plan_memory,
)
from compressa_hf.distillation.trajectories import MatchOptions, experts_for, match_trajectories, student_for

KIND = "synthesis"
__all__ = ["KIND", "Options", "compress"]

logger = logging.getLogger(__name__)


@dataclass
class Options(MemoryOptions, MatchOptions):
    """MTT+VDSD's hyperparameters: MTT's (`trajectories.MatchOptions`; `lr_img` is the Adam learning rate of the
    dynamic memory) and the memory's (`static_dynamic.MemoryOptions`). The seed is the run's `ctx.seed`.

    Scale. Defaults are MTT's reduced scale (8 experts x 10 epochs of a width-32 latent ConvNet, 60 iterations of 10
    student steps), each student step on `batch_syn` = 24 slots: their videos have T frames where MTT's rows have K,
    and 24 slots keep a step near MTT's cost at k1 (VDSD steps on every slot at one video per class, on 128 of 505 at
    five). VDSD's miniUCF101 scale (`sh/s2d/s2d_MTT_ms.sh` and `sh/baseline/buffer.sh`), for a GPU via
    `--method_config`: `{num_experts: 30, train_epochs: 50, batch_train: 256, width: 128, iterations: 10000,
    syn_steps: 10, expert_epochs: 1, max_start_epoch: 10, batch_syn: 0}`.
    """

    batch_syn: int = field(default=24, metadata={"help": "Memory slots per student step (0: all; VDSD: all)."})

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
    result = match_trajectories(
        experts,
        student_for(ctx, opts),
        lambda slots: (memory.sample(slots, generator), slot_labels[slots.to(ctx.device)]),
        memory.num_slots,
        memory_optimizers(memory, opts, opts.lr_img),
        opts,
        seed=ctx.seed,
        device=ctx.device,
        after_step=lambda: clamp_memory(memory, plan.dtype),
        progress=ctx.progress,
        desc="mtt_vdsd",
    )
    summary = result.summary()
    if result.losses:
        logger.info("mtt_vdsd: matching loss %.4g -> %.4g", summary["loss_start"], summary["loss_end"])
    info = {"mtt_vdsd": {**summary, "experts": expert_record, **init_info}}
    return memory_set(ctx, "mtt_vdsd", memory, plan, info)
