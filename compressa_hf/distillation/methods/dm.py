"""Distribution Matching (DM; Zhao & Bilen, WACV 2023) in latent space: synthetic latent clips whose mean embedding
under randomly initialised networks matches the real clips', class by class.

"In latent space" means the embedding networks read latent frames (C x h x w, e.g. 4 x 14 x 14) directly: the
codec's decoder is never in the loop, so a step costs a few small convolutions per latent frame instead of a decode
to pixels and a pixel ConvNet. The distilled latents are decoded once, when the set is evaluated.

Storage is VideoCompressa's plan (`ctx.plan()`): K latent frames for the planner's videos per class, stored at the
plan's dtype with `store_latents`, so at a ratio DM stores exactly VideoCompressa's bytes. Each synthetic clip
starts from one real video's latents at K uniformly spaced frames - the same seeded per-class subset
(`choose_videos`) as VideoCompressa when the plan is a coreset. When the plan keeps every video, DM has one
synthetic clip per real video: it then moves each video's K frames towards its class's frame distribution rather
than summarising many videos in few clips. `source_videos` / `frame_indices` record where each clip started.

One step (DM's Algorithm 1): sample a freshly initialised embedding network; for every class draw `batch_real` real
clips of the class and minimise ||mean emb(real clips) - mean emb(synthetic clips)||^2, summed over classes. Real
clips contribute all T latent frames; a clip's embedding is the temporal mean of its per-frame embeddings (as
`nets.ConvNet.embed`), so a class mean over K-frame synthetic clips and one over T-frame real clips compare like
with like.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from compressa_hf.clips import uniform_indices
from compressa_hf.codecs.base import LATENT_MAGNITUDE
from compressa_hf.distillation.methods.base import CompressedSet, MethodContext, planned_set

KIND = "synthesis"
__all__ = ["KIND", "LatentEmbedNet", "Options", "compress", "distribution_matching", "matching_loss"]

logger = logging.getLogger(__name__)

# Points kept of the per-step loss in `info` (the loss of every step would bloat the report at 20k steps).
CURVE_POINTS = 50


@dataclass
class Options:
    """DM's hyperparameters (the seed is the run's `ctx.seed`; K and the videos come from the planner).

    Args:
        iterations: Optimisation steps, one fresh random network each. DM runs 20k in pixel space; 200 keeps the
            baseline cheap (58 s for 101 classes x 20 clips on one H100, 0.3 s a step, launch-bound) and lowered
            the per-step matching loss about threefold on synthetic smooth latents of that size.
        lr: Adam learning rate on the raw latents. Adam rather than DM's SGD (lr 1, momentum 0.5): DM tuned that
            lr for normalised pixels and a fixed ConvNet, whereas the size of the matching gradient here depends on
            the codec's latent shape and the net's width and depth; Adam's step is about `lr` per element whatever
            that size, so one value works across codecs. 0.01 is ~0.2 % of the latent range [-3, 3] per step.
        batch_real: Real clips drawn per class per step (all of a class when it has fewer). DM draws 256 images;
            32 clips of T frames are 512 frames at T = 16.
        width: Channels of every conv layer of the embedding net (128 in DM's ConvNet).
        depth: Conv blocks of the embedding net (3 in DM's ConvNet).
    """

    iterations: int = field(default=200, metadata={"help": "Optimisation steps (one random embedding net each)."})
    lr: float = field(default=0.01, metadata={"help": "Adam learning rate on the raw latents."})
    batch_real: int = field(default=32, metadata={"help": "Real clips per class per step."})
    width: int = field(default=128, metadata={"help": "Channels of the embedding net's conv layers."})
    depth: int = field(default=3, metadata={"help": "Conv blocks of the embedding net."})

    def __post_init__(self):
        for name in ("iterations", "batch_real", "width", "depth"):
            value = getattr(self, name)
            if value < (0 if name == "iterations" else 1):
                raise ValueError(f"dm: `{name}` must be >= {0 if name == 'iterations' else 1}, got {value}")
        if not self.lr > 0:
            raise ValueError(f"dm: `lr` must be > 0, got {self.lr}")


class LatentEmbedNet(nn.Module):
    """DM's randomly initialised ConvNet on latent frames: `depth` blocks of conv3x3 -> instance norm -> ReLU ->
    2x average pooling, flattened per frame and averaged over the clip's frames.

    Pooling halves a side (rounding up) only while both sides are >= 4, so 2 x 2 latents (16-pixel test frames) and
    14 x 14 ones (112-pixel frames) both work, and instance norm never sees a 1 x 1 map, which it would zero out.
    `nets.ConvNet` cannot be reused here: it needs sides divisible by 2 ** depth and has a classifier DM never uses.
    Parameters never require grad: DM only differentiates with respect to the synthetic latents.
    """

    def __init__(self, channels: int, width: int = 128, depth: int = 3):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(channels if i == 0 else width, width, kernel_size=3, padding=1) for i in range(depth)
        )
        # GroupNorm(width, width) is instance norm with affine parameters, as in DM's ConvNet.
        self.norms = nn.ModuleList(nn.GroupNorm(width, width) for _ in range(depth))
        self.requires_grad_(False)

    @torch.no_grad()
    def reset(self, generator: torch.Generator) -> LatentEmbedNet:
        """Redraw every weight as PyTorch's `Conv2d` default initialisation does, from `generator` (a CPU one),
        so a run is reproducible without touching the global RNG; norms restart at identity."""
        for conv in self.convs:
            weight = torch.empty(conv.weight.shape)
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
            bound = 1 / math.sqrt(weight[0].numel())
            bias = torch.empty(conv.bias.shape).uniform_(-bound, bound, generator=generator)
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
        for norm in self.norms:
            norm.weight.fill_(1)
            norm.bias.zero_()
        return self

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """`(B, T, C, h, w)` latent clips -> `(B, features)`: per-frame features averaged over time."""
        b, t = clips.shape[:2]
        x = clips.flatten(0, 1)
        for conv, norm in zip(self.convs, self.norms):
            x = torch.relu(norm(conv(x)))
            if min(x.shape[-2:]) >= 4:
                x = nn.functional.adaptive_avg_pool2d(x, [math.ceil(s / 2) for s in x.shape[-2:]])
        return x.reshape(b, t, -1).mean(dim=1)


def _class_gap(net: LatentEmbedNet, real: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
    """||mean emb(real) - mean emb(syn)||^2 for one class; no graph through the real side."""
    with torch.no_grad():
        real_mean = net(real).mean(dim=0)
    return (real_mean - net(syn).mean(dim=0)).pow(2).sum()


def matching_loss(
    net: LatentEmbedNet,
    real: torch.Tensor,
    real_labels: torch.Tensor,
    syn: torch.Tensor,
    syn_labels: torch.Tensor,
    num_classes: int,
) -> float:
    """DM's objective under one network over every given real clip: sum over classes of the squared distance
    between the mean embeddings of the real and the synthetic clips of the class."""
    with torch.no_grad():
        return sum(
            _class_gap(net, real[real_labels == c].float(), syn[syn_labels == c].float()).item()
            for c in range(num_classes)
        )


def distribution_matching(
    real: torch.Tensor,
    real_labels: torch.Tensor,
    init: torch.Tensor,
    init_labels: torch.Tensor,
    num_classes: int,
    options: Options,
    seed: int,
    clamp: float | None = LATENT_MAGNITUDE,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[torch.Tensor, list[float]]:
    """Optimise synthetic latent clips `init` `(M, K, C, h, w)` so that, class by class, their mean embedding under
    random `LatentEmbedNet`s matches that of the `real` clips `(N, T, C, h, w)`.

    Returns the optimised latents (float32, on the CPU) and the loss of every step (summed over classes; each
    step has its own random network, so the curve is noisy). `clamp` keeps latents in [-clamp, clamp] after every
    step (the uint8 store clamps there anyway, so optimising beyond it would be lost); None leaves them free.
    Deterministic for a seed on the CPU (the network weights and real batches come from one seeded CPU
    generator); on a GPU, cuDNN's convolution kernels may differ in the last bits between runs.
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    members = [torch.nonzero(real_labels == c).flatten() for c in range(num_classes)]
    rows = [torch.nonzero(init_labels == c).flatten().to(device) for c in range(num_classes)]
    empty = [c for c in range(num_classes) if len(members[c]) == 0 or len(rows[c]) == 0]
    if empty:
        raise ValueError(f"dm: classes {empty} have no real or no synthetic clip; every class needs both")
    syn = nn.Parameter(init.detach().to(device, torch.float32).clone())
    optimizer = torch.optim.Adam([syn], lr=options.lr)
    net = LatentEmbedNet(init.shape[2], options.width, options.depth)
    real = real.to(device)
    losses: list[float] = []
    steps = range(options.iterations)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="dm", unit="step")
    for _ in steps:
        net.reset(generator).to(device)
        optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        for c in range(num_classes):
            pick = members[c][torch.randperm(len(members[c]), generator=generator)[: options.batch_real]]
            # One backward per class, as DM does, so memory holds one class's graph at a time.
            loss = _class_gap(net, real[pick.to(device)].float(), syn[rows[c]])
            loss.backward()
            total += loss.detach()
        optimizer.step()
        if clamp is not None:
            with torch.no_grad():
                syn.clamp_(-clamp, clamp)
        losses.append(total.item())
    return syn.detach().float().cpu(), losses


def _summary(losses: list[float]) -> dict:
    """Start / end of the loss curve (means over the first and last 10 % of steps) and a thinned curve."""
    if not losses:
        return {"iterations": 0}
    window = max(1, len(losses) // 10)
    stride = max(1, math.ceil(len(losses) / CURVE_POINTS))
    return {
        "iterations": len(losses),
        "loss_start": sum(losses[:window]) / window,
        "loss_end": sum(losses[-window:]) / window,
        "loss_curve": {"stride": stride, "values": losses[::stride]},
    }


def compress(ctx: MethodContext) -> CompressedSet:
    opts = ctx.method_options(Options, "dm")
    plan = ctx.plan()
    videos = ctx.planned_videos(plan)
    frames = torch.tensor(uniform_indices(ctx.num_frames, plan.frames_per_video), dtype=torch.long)
    labels = ctx.labels[videos].clone()
    init = ctx.latents[videos][:, frames].float()
    logger.info(
        "dm: %d synthetic clips of %d latent frames, %d steps in latent space",
        len(videos),
        plan.frames_per_video,
        opts.iterations,
    )
    latents, losses = distribution_matching(
        ctx.latents_tensor(),
        ctx.labels,
        init,
        labels,
        ctx.num_classes,
        opts,
        seed=ctx.seed,
        clamp=LATENT_MAGNITUDE if plan.dtype == "uint8" else None,
        device=ctx.device,
        progress=ctx.progress,
    )
    summary = _summary(losses)
    if losses:
        logger.info("dm: matching loss %.4g -> %.4g", summary["loss_start"], summary["loss_end"])
    frame_indices = frames.expand(len(videos), -1).clone()
    info = {"dm": {**summary, "init": "real latents at uniform frames", "lr": opts.lr}}
    return planned_set(ctx, "dm", plan, videos, latents, frame_indices, info)
