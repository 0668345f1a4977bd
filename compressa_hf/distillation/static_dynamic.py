"""VDSD's static / dynamic memory (Wang et al., "Dancing with Still Images: Video Distillation via Static-Dynamic
Disentanglement", CVPR 2024) in latent space, at a byte budget: what DM+VDSD and MTT+VDSD share.

VDSD's code (yuz1wan/video_distillation, `distill_s2d_ms.py`, `utils.py`: `Conv3DNet`, `MultiStaticSharedDataset`)
distils a class into still images (the static memory, `spc` per class, learned first by DC on single frames and
then frozen: `--no_train_static`) and one-channel motion maps of the clip's length (the dynamic memory, `dpc` per
class, `torch.randn` at the start). One small 3D convolution (the "hallucinator", `Conv3d(3 + 1 -> 3, kernel 3,
padding 1)` on the static image repeated over time concatenated with the motion map) makes a video of them. Video
slot i of class c (`vpc` slots per class, `spc = dpc = 2 vpc` in its scripts) draws, each time it is used, one of
the statics `2i, 2i + 1` of its class and one of the dynamics `2i, 2i + 1`. DM+VDSD and MTT+VDSD then learn the
dynamic memory and the convolution by the base method's loss (SGD, momentum 0.95).

Here, on latent frames `(C, h, w)`:
- static memory: `2 vpc` latent frames per class, `(classes * 2 vpc, C, h, w)`; dynamic memory: `2 vpc` maps of T
  frames per class, `(classes, 2 vpc, T, 1, h, w)`; the combiner: `Conv3d(C + 1 -> C, kernel k, padding k // 2)`.
- Stored, counted byte for byte: the static and dynamic memories at the run's latent dtype (`store_latents`: uint8
  in [-3, 3], or float16; "auto" is uint8) and the combiner's weight and bias as float16. Nothing else is needed
  to use the set: the rows are recomputed from these. `vpc` is the largest count whose memories, plus the
  combiner, fit `ctx.budget_bytes`; with `ctx.label_bytes_per_video` each row also reserves that many label bytes.
- The rows a network trains on: every video the memory can make, all four (static, dynamic) choices of every slot,
  `classes * vpc * 4` rows of T latent frames, computed from the stored (rounded) tensors. VDSD draws one of the
  four at random per slot and epoch; enumerating them is the deterministic equivalent.
- Static memory: real latent frames of the class (seeded random clips, their middle frame first), frozen by
  default as in VDSD. VDSD's static learning stage (DC on single frames) is not run: the project has no DC; pass
  `train_static` to learn the statics with the rest. Dynamic memory: `torch.randn` times `dynamic_init_std`.
- Combiner start: "identity" (default) copies each static channel and ignores the motion map, so learning starts
  from the still frames; "random" is VDSD's (PyTorch's default initialisation). Identity because at the reduced
  scale (a few hundred updates, not VDSD's 5000-10000) a random 3D convolution leaves every row far from any clip.
Latent memories and combiner learn with Adam (as DM and MTT here), not VDSD's SGD with per-dataset learning rates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import torch
from torch import nn

from compressa_hf.clips import uniform_indices
from compressa_hf.distillation.budget import DTYPE_BYTES
from compressa_hf.distillation.methods.base import CompressedSet, check_budget, store_latents

__all__ = [
    "PAIRS",
    "MemoryOptions",
    "MemoryPlan",
    "StaticDynamicMemory",
    "clamp_memory",
    "combiner_params",
    "init_memory",
    "memory_optimizers",
    "memory_set",
    "plan_memory",
]

# VDSD's `2 * idx + randint(2)`: each video slot chooses among 2 statics and 2 dynamics of its class.
PAIRS = 2
COMBINER_DTYPE = torch.float16
COMBINER_INITS = ("identity", "random")


@dataclass
class MemoryOptions:
    """The static / dynamic memory's settings (see the module docstring).

    Args:
        combiner_kernel: Kernel of the combining Conv3d, odd (VDSD 3).
        combiner_init: "identity" (copy the static frame) or "random" (VDSD's PyTorch default).
        lr_combiner: Adam learning rate of the combiner (VDSD's `lr_hal`: 1e-5 to 1e-3 with SGD).
        train_static: Learn the static memory too (VDSD: frozen after its DC stage).
        lr_static: Adam learning rate of the static memory when `train_static`.
        dynamic_init_std: Standard deviation of the dynamic memory's normal start (VDSD 1).
    """

    combiner_kernel: int = field(default=3, metadata={"help": "Kernel of the combining Conv3d (odd)."})
    combiner_init: str = field(default="identity", metadata={"help": "identity or random (VDSD)."})
    lr_combiner: float = field(default=1e-3, metadata={"help": "Adam lr of the combiner."})
    train_static: bool = field(default=False, metadata={"help": "Learn the static memory too."})
    lr_static: float = field(default=0.01, metadata={"help": "Adam lr of the static memory (train_static)."})
    dynamic_init_std: float = field(default=1.0, metadata={"help": "Std of the dynamic memory's normal start."})

    def check_memory(self) -> None:
        """`ValueError` naming the bad value (called by the methods' `__post_init__`)."""
        if self.combiner_kernel < 1 or self.combiner_kernel % 2 == 0:
            raise ValueError(f"`combiner_kernel` must be odd and >= 1, got {self.combiner_kernel}")
        if self.combiner_init not in COMBINER_INITS:
            raise ValueError(f"`combiner_init` must be one of {COMBINER_INITS}, got {self.combiner_init!r}")
        for name in ("lr_combiner", "lr_static"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be > 0, got {getattr(self, name)}")
        if self.dynamic_init_std < 0:
            raise ValueError(f"`dynamic_init_std` must be >= 0, got {self.dynamic_init_std}")


@dataclass
class MemoryPlan:
    """What a budget buys: `videos_per_class` slots per class, each with `PAIRS` statics and dynamics, and their
    exact bytes (`stored_bytes` = memories + combiner + reserved label bytes, never above `budget_bytes`)."""

    videos_per_class: int
    num_classes: int
    num_frames: int
    latent_shape: tuple[int, int, int]
    dtype: str
    kernel: int
    static_bytes: int
    dynamic_bytes: int
    combiner_bytes: int
    label_bytes: int
    stored_bytes: int
    budget_bytes: int
    rows: int

    def to_dict(self) -> dict:
        return asdict(self)


def combiner_params(channels: int, kernel: int) -> int:
    """Weights and biases of `Conv3d(channels + 1 -> channels, kernel)`."""
    return channels * (channels + 1) * kernel**3 + channels


def plan_memory(ctx, kernel: int) -> MemoryPlan:
    """The largest slot count per class whose memories, combiner and reserved label bytes fit `ctx.budget_bytes`.

    Raises `ValueError` (an "n/a" cell in `compressa evaluate`) naming the smallest ratio that holds one slot per
    class, when even that does not fit."""
    c, h, w = ctx.latent_shape
    dtype = "uint8" if ctx.dtype == "auto" else ctx.dtype
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"the VDSD memories are stored as uint8, float16 or auto, got --dtype {ctx.dtype!r}")
    itemsize = DTYPE_BYTES[dtype]
    static = c * h * w * itemsize
    dynamic = ctx.num_frames * h * w * itemsize
    combiner = combiner_params(c, kernel) * COMBINER_DTYPE.itemsize
    per_slot = ctx.num_classes * (PAIRS * static + PAIRS * dynamic + PAIRS**2 * ctx.label_bytes_per_video)
    vpc = (ctx.budget_bytes - combiner) // per_slot
    if vpc < 1:
        need = Fraction(100 * (combiner + per_slot), ctx.full_bytes)
        raise ValueError(
            f"ratio {float(ctx.ratio):.6g}% ({ctx.budget_bytes:,} bytes) cannot hold the static / dynamic memory of "
            f"one video per class ({per_slot:,} bytes for {ctx.num_classes} classes) and its combiner "
            f"({combiner:,} bytes, kernel {kernel}); the smallest ratio that can is "
            f"{math.ceil(need * 10**6) / 10**6:.6f}% (or a smaller combiner_kernel)"
        )
    rows = ctx.num_classes * vpc * PAIRS**2
    return MemoryPlan(
        videos_per_class=int(vpc),
        num_classes=ctx.num_classes,
        num_frames=ctx.num_frames,
        latent_shape=(c, h, w),
        dtype=dtype,
        kernel=kernel,
        static_bytes=static,
        dynamic_bytes=dynamic,
        combiner_bytes=combiner,
        label_bytes=rows * ctx.label_bytes_per_video,
        stored_bytes=combiner + int(vpc) * per_slot,
        budget_bytes=ctx.budget_bytes,
        rows=rows,
    )


class StaticDynamicMemory(nn.Module):
    """The learned tensors: `static` `(classes * 2 vpc, C, h, w)`, `dynamic` `(classes, 2 vpc, T, 1, h, w)` and the
    `combiner` Conv3d; `videos` makes latent clips `(B, T, C, h, w)` of them."""

    def __init__(self, static: torch.Tensor, dynamic: torch.Tensor, kernel: int):
        super().__init__()
        classes, per_class = dynamic.shape[:2]
        if static.shape[0] != classes * per_class or per_class % PAIRS:
            raise ValueError(f"static {tuple(static.shape)} and dynamic {tuple(dynamic.shape)} memories do not pair")
        channels = static.shape[1]
        self.static = nn.Parameter(static.float().clone())
        self.dynamic = nn.Parameter(dynamic.float().clone())
        self.combiner = nn.Conv3d(channels + 1, channels, kernel, padding=kernel // 2)
        self.videos_per_class = per_class // PAIRS

    @property
    def num_slots(self) -> int:
        return self.dynamic.shape[0] * self.videos_per_class

    def slot_labels(self) -> torch.Tensor:
        """`(classes * vpc,)` class of every slot (slots are ordered by class)."""
        return torch.arange(self.dynamic.shape[0]).repeat_interleave(self.videos_per_class)

    def combine(self, static: torch.Tensor, dynamic: torch.Tensor) -> torch.Tensor:
        """Static frames `(B, C, h, w)` and motion maps `(B, T, 1, h, w)` -> latent clips `(B, T, C, h, w)` (VDSD's
        `Conv3DNet`, mode "concat")."""
        t = dynamic.shape[1]
        x = torch.cat([static[:, :, None].expand(-1, -1, t, -1, -1), dynamic.transpose(1, 2)], dim=1)
        return self.combiner(x).transpose(1, 2)

    def videos(self, slots: torch.Tensor, static_pick: torch.Tensor, dynamic_pick: torch.Tensor) -> torch.Tensor:
        """Clips of `slots` `(B,)` made of their statics / dynamics number `static_pick` / `dynamic_pick` (0 or 1)."""
        slots = slots.to(self.static.device)
        label, slot = slots // self.videos_per_class, slots % self.videos_per_class
        per_class = PAIRS * self.videos_per_class
        static = self.static[label * per_class + PAIRS * slot + static_pick.to(slots.device)]
        dynamic = self.dynamic[label, PAIRS * slot + dynamic_pick.to(slots.device)]
        return self.combine(static, dynamic)

    def sample(self, slots: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Clips of `slots`, each with a random one of its statics and of its dynamics (as VDSD draws them)."""
        picks = torch.randint(PAIRS, (2, len(slots)), generator=generator)
        return self.videos(slots, picks[0], picks[1])

    def every_video(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Row order of the set: for every slot, its `PAIRS ** 2` (static, dynamic) choices; returns the slots, static
        picks and dynamic picks, each `(classes * vpc * PAIRS ** 2,)`."""
        slots = torch.arange(self.num_slots).repeat_interleave(PAIRS**2)
        choice = torch.arange(PAIRS**2).repeat(self.num_slots)
        return slots, choice // PAIRS, choice % PAIRS


def _static_frames(ctx, per_class: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (video, frame) of `per_class` real frames per class: seeded random clips in turn, their middle
    frame first (then the other uniform frames when a class has fewer clips than statics)."""
    videos, frames = [], []
    for c in range(ctx.num_classes):
        members = torch.nonzero(ctx.labels == c).flatten()
        if len(members) == 0:
            raise ValueError(f"class {c} has no video; every class needs one for its static memory")
        members = members[torch.randperm(len(members), generator=generator)]
        rounds = uniform_indices(ctx.num_frames, math.ceil(per_class / len(members)))
        for j in range(per_class):
            videos.append(int(members[j % len(members)]))
            frames.append(rounds[j // len(members)])
    return torch.tensor(videos), torch.tensor(frames)


def init_memory(ctx, plan: MemoryPlan, options: MemoryOptions, seed: int) -> tuple[StaticDynamicMemory, dict]:
    """Memory at the start (on `ctx.device`): statics from real latent frames, dynamics normal, combiner as
    `combiner_init`; and where the statics come from (`static_videos`, `static_frames`)."""
    generator = torch.Generator().manual_seed(seed)
    per_class = PAIRS * plan.videos_per_class
    videos, frames = _static_frames(ctx, per_class, generator)
    static = ctx.latents_tensor()[videos, frames].float()
    _, h, w = plan.latent_shape
    shape = (plan.num_classes, per_class, plan.num_frames, 1, h, w)
    dynamic = torch.randn(shape, generator=generator) * options.dynamic_init_std
    memory = StaticDynamicMemory(static, dynamic, plan.kernel)
    weight, bias = memory.combiner.weight, memory.combiner.bias
    with torch.no_grad():
        if options.combiner_init == "identity":
            weight.zero_()
            bias.zero_()
            centre = plan.kernel // 2
            for o in range(weight.shape[0]):
                weight[o, o, centre, centre, centre] = 1.0
        else:  # PyTorch's Conv3d default, drawn from the seeded generator
            w = torch.empty(weight.shape)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator)
            bound = 1 / math.sqrt(w[0].numel())
            weight.copy_(w)
            bias.copy_(torch.empty(bias.shape).uniform_(-bound, bound, generator=generator))
    return memory.to(ctx.device), {"static_videos": videos.tolist(), "static_frames": frames.tolist()}


def memory_optimizers(
    memory: StaticDynamicMemory, options: MemoryOptions, lr_dynamic: float
) -> list[torch.optim.Optimizer]:
    """Adam on the dynamic memory (at the base method's synthetic-data lr, `lr_dynamic`) and the combiner, and on the
    static memory when `train_static` (else frozen)."""
    memory.static.requires_grad_(options.train_static)
    groups = [
        {"params": [memory.dynamic], "lr": lr_dynamic},
        {"params": list(memory.combiner.parameters()), "lr": options.lr_combiner},
    ]
    if options.train_static:
        groups.append({"params": [memory.static], "lr": options.lr_static})
    return [torch.optim.Adam(groups)]


def clamp_memory(memory: StaticDynamicMemory, dtype: str) -> None:
    """Keep the memories in the uint8 store's [-3, 3] (values beyond are lost when stored); float16 is free."""
    from compressa_hf.codecs.base import LATENT_MAGNITUDE

    if dtype == "uint8":
        with torch.no_grad():
            memory.static.clamp_(-LATENT_MAGNITUDE, LATENT_MAGNITUDE)
            memory.dynamic.clamp_(-LATENT_MAGNITUDE, LATENT_MAGNITUDE)


@torch.no_grad()
def memory_set(ctx, method: str, memory: StaticDynamicMemory, plan: MemoryPlan, info: dict) -> CompressedSet:
    """The set of a learned memory: `stored` holds exactly the rounded memories and float16 combiner (their bytes
    checked to equal the plan's, less the reserved label bytes), and its rows are every video made from the read-back
    tensors (`StaticDynamicMemory.every_video`): `(classes * vpc * 4, T, C, h, w)` float32, synthetic
    (`source_videos` -1)."""
    static_stored, static_back = store_latents(memory.static.detach().cpu(), plan.dtype)
    dynamic_stored, dynamic_back = store_latents(memory.dynamic.detach().cpu(), plan.dtype)
    stored = {
        "static": static_stored["latents"],
        "dynamic": dynamic_stored["latents"],
        "combiner.weight": memory.combiner.weight.detach().cpu().to(COMBINER_DTYPE),
        "combiner.bias": memory.combiner.bias.detach().cpu().to(COMBINER_DTYPE),
    }
    readback = StaticDynamicMemory(static_back, dynamic_back, plan.kernel)
    readback.combiner.weight.copy_(stored["combiner.weight"].float())
    readback.combiner.bias.copy_(stored["combiner.bias"].float())
    slots, static_pick, dynamic_pick = readback.every_video()
    rows = torch.cat(
        [readback.videos(s, a, b) for s, a, b in zip(*(t.split(256) for t in (slots, static_pick, dynamic_pick)))]
    )
    labels = readback.slot_labels()[slots]
    cset = CompressedSet(
        method=method,
        labels=labels,
        stored=stored,
        latents=rows.float(),
        source_videos=torch.full((len(labels),), -1, dtype=torch.long),
        frame_indices=torch.arange(plan.num_frames).expand(len(labels), -1).clone(),
        info={"memory_plan": plan.to_dict(), **info},
    )
    if cset.stored_bytes != plan.stored_bytes - plan.label_bytes:
        raise AssertionError(
            f"{method}: stored {cset.stored_bytes} bytes, the memory plan says {plan.stored_bytes - plan.label_bytes}"
        )
    return check_budget(cset, ctx.budget_bytes)
