"""DM+VDSD: VDSD's static / dynamic memory (`compressa_hf.distillation.static_dynamic`) learned by Distribution Matching
in latent space, as VDSD's `distill_s2d_ms.py --method DM` does it on pixels.

Each iteration draws a freshly initialised embedding net (DM's `LatentEmbedNet`), makes one video per slot (each
slot with a random one of its two statics and of its two dynamics), and minimises, summed over classes,
||mean emb(real clips of c) - mean emb(videos of c)||^2 (`dm._class_gap`, `batch_real` real clips per class; one
backward for the whole sum, as VDSD), updating the dynamic memory (at `lr`) and the combiner (at `lr_combiner`).
The budget buys the memory (`static_dynamic.plan_memory`), not the planner's K frames; the rows are every video the
memory makes, T latent frames each, synthetic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from compressa_hf.distillation.methods import (
    dm,
)  # its embedding net, class gap and loss summary, shared rather than copied
from compressa_hf.distillation.methods.base import CompressedSet, MethodContext
from compressa_hf.distillation.static_dynamic import (
    MemoryOptions,
    clamp_memory,
    init_memory,
    memory_optimizers,
    memory_set,
    plan_memory,
)

KIND = "synthesis"
__all__ = ["KIND", "Options", "compress"]

logger = logging.getLogger(__name__)


@dataclass
class Options(MemoryOptions, dm.Options):
    """DM+VDSD's hyperparameters: DM's (`dm.Options`; `lr` is the Adam learning rate of the dynamic memory) and the
    memory's (`static_dynamic.MemoryOptions`). The seed is the run's `ctx.seed`.

    Scale. Defaults are a reduced scale two CPU cores run inside Table 1's `compressa evaluate` setting, DM's there
    (`bench/table1.py`): 100 iterations, 16 real clips per class, an embedding net of width 64. VDSD's miniUCF101
    scale (`sh/s2d/s2d_DM_ms.sh`), for a GPU via `--method_config`: `{iterations: 5000, batch_real: 64, width: 128}`
    (VDSD's SGD learning rates, 1e-4 for the dynamic memory and 1e-5 for the combiner, are for its pixel scale and
    optimiser, not these Adam ones).
    """

    iterations: int = field(default=100, metadata={"help": "Optimisation steps (one random embedding net each)."})
    batch_real: int = field(default=16, metadata={"help": "Real clips per class per step."})
    width: int = field(default=64, metadata={"help": "Channels of the embedding net's conv layers."})

    def __post_init__(self):
        dm.Options.__post_init__(self)
        self.check_memory()


def compress(ctx: MethodContext) -> CompressedSet:
    opts = ctx.method_options(Options, "dm_vdsd")
    plan = plan_memory(ctx, opts.combiner_kernel)
    memory, init_info = init_memory(ctx, plan, opts, ctx.seed)
    optimizers = memory_optimizers(memory, opts, opts.lr)
    logger.info(
        "dm_vdsd: %d video slots per class (%d rows of %d latent frames), %d steps in latent space",
        plan.videos_per_class,
        plan.rows,
        plan.num_frames,
        opts.iterations,
    )
    device = ctx.device
    generator = torch.Generator().manual_seed(ctx.seed)
    real = ctx.latents_tensor().to(device)
    members = [torch.nonzero(ctx.labels == c).flatten() for c in range(ctx.num_classes)]
    slots = torch.arange(memory.num_slots)
    slot_labels = memory.slot_labels().to(device)
    net = dm.LatentEmbedNet(plan.latent_shape[0], opts.width, opts.depth)
    losses: list[float] = []
    steps = range(opts.iterations)
    if ctx.progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="dm_vdsd", unit="step")
    for _ in steps:
        net.reset(generator).to(device)
        videos = memory.sample(slots, generator)
        loss = torch.zeros((), device=device)
        for c in range(ctx.num_classes):
            pick = members[c][torch.randperm(len(members[c]), generator=generator)[: opts.batch_real]]
            loss = loss + dm._class_gap(net, real[pick.to(device)].float(), videos[slot_labels == c])
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()
        clamp_memory(memory, plan.dtype)
        losses.append(loss.item())
    summary = dm._summary(losses)
    if losses:
        logger.info("dm_vdsd: matching loss %.4g -> %.4g", summary["loss_start"], summary["loss_end"])
    return memory_set(ctx, "dm_vdsd", memory, plan, {"dm_vdsd": {**summary, **init_info}})
