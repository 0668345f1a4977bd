"""PRISM ("Progressive Refinement and Insertion for Sparse Motion", CVPR 2026; also circulated as "DFS: Condensing
Videos by Learning Where Motion Matters") in latent space: each synthetic video is a few key frames, every other
frame is the linear interpolation of its two neighbouring key frames, and frames are inserted where the
interpolation cannot follow the loss's gradient. Videos end up with different numbers of key frames under one byte
budget.

What the public sources say (the abstract in `../shared/papers/prism_abstract.txt` and reviews / summaries of the
paper; no code is public): key frames are the only parameters, initialised to the first and last frame of a real
clip; every other frame up to T is the linear interpolation of its two neighbouring key frames; an interpolated frame
is promoted to a key frame when the gradient of the loss with respect to it points against the gradients of both
neighbouring key frames (cosine below epsilon = 0); insertion is paused during a warm-up and a cool-down of 20 % of
the iterations each; the matching objective is described as gradient matching by one source and as distribution
matching by another. Reported: miniUCF 1 video per class 17.9 +- 0.3 (VDSD 17.5), SSv2 3.9 +- 0.2, K400 5 per class
8.1 +- 0.1, with about 70-75 % less storage than VDSD.

What they leave open, and what this module chooses:
1. Space. Key frames are latent frames of the run's codec (as DM here), interpolated in latent space; the codec
   decodes the T interpolated latent frames only when the set is evaluated (`CompressedSet.interpolate_to`).
2. Objective (`objective`). `dm` (default): DM's loss (`dm.py`: a fresh random `LatentEmbedNet` per iteration, the
   squared distance between the class means of real T-frame clips and of the synthetic clips, interpolated to T).
   `gm`: gradient matching as in DC (Zhao et al., ICLR 2021): a fresh classifier per iteration (the same embedding
   net plus a linear head on its temporal mean), the cross-entropy gradients of its weights on a real batch and on
   the synthetic clips of each class matched by DC's layer-wise distance (sum over output units of 1 - cosine;
   1-D weights such as norms and biases skipped), `gm_outer_loop` matching steps per classifier with
   `gm_inner_loop` SGD steps of the classifier on the synthetic clips between them (DC's 1 / 1 for one image per
   class). DM is the default because it is the synthesis method measured best on real clips here (BENCHMARKS.md)
   and needs no second-order gradients.
3. Which gradients the rule compares. The loss's gradient with respect to each of the T frames of a synthetic clip
   (the frame-level gradient, what the frame "wants"), for the interpolated frame and for its two neighbouring key
   frames alike - not the key frames' parameter gradients, which also carry the interpolated frames' gradients and
   so partly contain the frame under test. They are summed over the iterations since the last insertion event, so
   one random network's noise does not decide. A frame is a candidate when both cosines are < `epsilon` (strict;
   a zero gradient has cosine 0 and is never a candidate at epsilon 0); its score is the larger cosine (the more
   negative, the stronger the conflict).
4. Schedule. Insertion events every `insert_every` iterations after the warm-up (`warmup` of the iterations) and
   one at the start of the cool-down (the last `cooldown`); no event in either. At an event at most
   ceil(free key frames left / events left) frames are promoted, best score first and at most one per segment
   between two key frames (after a promotion the segment's other frames have new neighbours, whose gradients were
   not measured), so the budget is spent progressively over the window.
5. A promoted frame starts at its current interpolated value (the clip does not jump) with fresh Adam moments; Adam
   keeps a step count per frame for that reason (`torch.optim.Adam` keeps one per tensor). Key frames are never
   removed (no source describes removal).
6. Videos per class under a byte budget (`videos_per_class`, `initial_share`). The paper fixes videos per class and
   reports the storage that results; a budget needs the opposite. Default: the largest v per class whose videos
   at their two initial key frames (with their index bytes and reserved label bytes) take at most `initial_share`
   (0.5) of the budget, so at least as many bytes are left for inserted frames (on average up to twice the
   initial frames); 1 per class when even that is above the share but fits the budget. The videos are the same
   seeded random subset per class (`choose_videos`) as the other synthesis methods' coresets.
7. Filling the budget (`fill_budget`, default true). The rule alone may promote fewer frames than the budget pays
   for, and a set that leaves bytes unused is handicapped against the others at equal bytes. So at the last event
   the frames still affordable go to the interpolated frames with the lowest scores, whatever epsilon says; the set
   then stores the budget to within one key frame (plus its position byte). `info["prism"]` counts the frames the
   rule promoted and those the fill did; `fill_budget: false` keeps the rule only. On arid6_iid (T = 8, TAEF2 latents
   at 48 px, k1) the rule found no candidate at any event, with either objective and with gradients of one
   iteration (`insert_every: 1`) or summed over five: the neighbouring frames of those clips always get gradients
   that agree with at least one key frame, so there every inserted frame came from the fill (README, "PRISM").

Bytes, exactly (`plan_keyframes`): stored = the key frames of every video at the storage dtype (uint8 with TAESD's
scaling unless the run asks for float16) + the index of where they sit, the cheaper of a T-bit mask per video or a
uint8 position per key frame (`compressa_hf.distillation.keyframes`) + the label bytes reserved per video
(`MethodContext.label_bytes_per_video`, soft labels). `stored["latents"]` holds the key frames of every video one
after another `(sum K, C, h, w)`, `stored["keyframe_mask"]` or `stored["keyframe_positions"]` the index: a reader
rebuilds every row from those two tensors alone (`decode_index`). Memory: the optimised state is `(videos, T, C, h,
w)` float32 and its Adam moments, whatever the key frames.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from compressa_hf.codecs.base import LATENT_MAGNITUDE
from compressa_hf.distillation.budget import DTYPE_BYTES, videos_per_class_cap
from compressa_hf.distillation.keyframes import (
    MAX_POSITION_FRAMES,
    cheapest_index,
    encode_index,
    index_bytes,
    interpolate,
    interpolation_weights,
    mask_to_padded,
)
from compressa_hf.distillation.methods.base import (
    CompressedSet,
    MethodContext,
    check_budget,
    choose_videos,
    store_latents,
)

# DM's embedding net, class gap and loss summary, shared rather than copied (dm.py is the reference for them).
from compressa_hf.distillation.methods.dm import LatentEmbedNet, _class_gap, _summary

KIND = "synthesis"
OBJECTIVES = ("dm", "gm")
__all__ = [
    "KIND",
    "KeyframePlan",
    "Options",
    "choose_insertions",
    "compress",
    "distill_keyframes",
    "gm_distance",
    "insertion_events",
    "insertion_scores",
    "plan_keyframes",
]

logger = logging.getLogger(__name__)

#: Key frames every synthetic video starts with: its source clip's first and last cached frame.
START_FRAMES = 2


@dataclass
class Options:
    """PRISM's hyperparameters (the seed is the run's `ctx.seed`; see the module docstring for each choice).

    Args:
        objective: `dm` (distribution matching, as `dm.py`) or `gm` (gradient matching, as DC).
        iterations: Optimisation iterations, one fresh random network each (DM's 200 here, see `dm.Options`).
        lr: Adam learning rate on the key frames (raw latents), as `dm.Options.lr`.
        batch_real: Real clips drawn per class per iteration.
        width: Channels of the embedding / classifier net's conv layers.
        depth: Conv blocks of that net.
        epsilon: An interpolated frame is a candidate for promotion when the cosines between its gradient and both
            neighbouring key frames' gradients are < epsilon (0: pointing against both).
        warmup: Share of the iterations at the start without insertion.
        cooldown: Share of the iterations at the end without insertion.
        insert_every: Iterations between insertion events (gradients are summed over them).
        videos_per_class: Synthetic videos per class; None chooses by `initial_share`.
        initial_share: With `videos_per_class` None, the largest share of the budget the videos' initial key frames
            may take (the rest pays for inserted frames).
        fill_budget: Spend key frames the rule left unbought on the most conflicting frames at the last event.
        gm_outer_loop: `gm`: matching steps per random classifier.
        gm_inner_loop: `gm`: SGD steps of the classifier on the synthetic clips between two matching steps.
        gm_net_lr: `gm`: learning rate of those classifier steps (DC: 0.01).
    """

    objective: str = field(default="dm", metadata={"help": "Matching objective: dm or gm."})
    iterations: int = field(default=200, metadata={"help": "Iterations (one random network each)."})
    lr: float = field(default=0.01, metadata={"help": "Adam learning rate on the key frames."})
    batch_real: int = field(default=32, metadata={"help": "Real clips per class per iteration."})
    width: int = field(default=128, metadata={"help": "Channels of the net's conv layers."})
    depth: int = field(default=3, metadata={"help": "Conv blocks of the net."})
    epsilon: float = field(default=0.0, metadata={"help": "Cosine threshold of the insertion rule."})
    warmup: float = field(default=0.2, metadata={"help": "Share of iterations without insertion at the start."})
    cooldown: float = field(default=0.2, metadata={"help": "Share of iterations without insertion at the end."})
    insert_every: int = field(default=10, metadata={"help": "Iterations between insertion events."})
    videos_per_class: int | None = field(default=None, metadata={"help": "Synthetic videos per class (None: auto)."})
    initial_share: float = field(default=0.5, metadata={"help": "Budget share of the initial key frames (auto)."})
    fill_budget: bool = field(default=True, metadata={"help": "Fill the budget at the last insertion event."})
    gm_outer_loop: int = field(default=1, metadata={"help": "gm: matching steps per classifier."})
    gm_inner_loop: int = field(default=1, metadata={"help": "gm: classifier steps between matching steps."})
    gm_net_lr: float = field(default=0.01, metadata={"help": "gm: classifier learning rate."})

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"prism: `objective` must be one of {OBJECTIVES}, got {self.objective!r}")
        for name, low in (("iterations", 0), ("batch_real", 1), ("width", 1), ("depth", 1), ("insert_every", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"prism: `{name}` must be >= {low}, got {getattr(self, name)}")
        for name, low in (("gm_outer_loop", 1), ("gm_inner_loop", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"prism: `{name}` must be >= {low}, got {getattr(self, name)}")
        for name in ("lr", "gm_net_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"prism: `{name}` must be > 0, got {getattr(self, name)}")
        if not (0 <= self.warmup < 1 and 0 <= self.cooldown < 1 and self.warmup + self.cooldown < 1):
            raise ValueError(
                f"prism: `warmup` and `cooldown` must be in [0, 1) with a sum < 1, got {self.warmup} and "
                f"{self.cooldown}"
            )
        if self.videos_per_class is not None and self.videos_per_class < 1:
            raise ValueError(f"prism: `videos_per_class` must be >= 1 (or None), got {self.videos_per_class}")
        if not 0 < self.initial_share <= 1:
            raise ValueError(f"prism: `initial_share` must be in (0, 1], got {self.initial_share}")


# ------------------------------------------------------------------------------------------------------------ bytes


@dataclass
class KeyframePlan:
    """What a budget buys PRISM: `videos_per_class` videos, `key_frames` key frames in all, stored as `dtype`.

    `stored_bytes` is what the set stores when it buys all `key_frames` (key frames + index + reserved labels);
    `unused_bytes` the budget left then (below one key frame and its index cost, unless every video already holds
    all T frames).
    """

    budget_bytes: int
    full_bytes: int
    num_frames: int
    latent_shape: tuple[int, ...]
    dtype: str
    bytes_per_frame: int
    videos_per_class: list[int]
    num_videos: int
    start_frames: int
    key_frames: int
    index: str
    index_bytes: int
    label_bytes_per_video: int
    label_bytes: int
    stored_bytes: int
    unused_bytes: int

    @property
    def free_frames(self) -> int:
        """Key frames beyond the initial ones: what insertion may add."""
        return self.key_frames - self.num_videos * self.start_frames

    def to_dict(self) -> dict:
        return asdict(self) | {"free_frames": self.free_frames}

    def describe(self) -> str:
        """A few lines for `compressa distill --method prism --dry-run`."""
        mean = self.key_frames / self.num_videos
        lines = [
            f"budget {self.budget_bytes:,} of {self.full_bytes:,} bytes",
            f"prism: {self.num_videos} synthetic videos (<= {max(self.videos_per_class)} per class), each starting "
            f"with {self.start_frames} key frame(s) of T={self.num_frames}; {self.key_frames} key frames in all "
            f"(mean {mean:.2f} per video, {self.free_frames} to insert), latents {tuple(self.latent_shape)} as "
            f"{self.dtype} ({self.bytes_per_frame:,} bytes/frame)",
            f"index: {self.index} ({self.index_bytes:,} bytes)"
            + (f"; labels: {self.label_bytes:,} bytes reserved" if self.label_bytes else ""),
            f"stored {self.stored_bytes:,} bytes = {100 * self.stored_bytes / self.full_bytes:.4f}% "
            f"({self.unused_bytes:,} bytes of the budget unused)",
        ]
        return "\n".join(lines)


def plan_keyframes(
    budget_bytes: int,
    counts: list[int],
    num_frames: int,
    latent_shape: tuple[int, ...],
    full_bytes: int,
    dtype: str = "uint8",
    label_bytes_per_video: int = 0,
    videos_per_class: int | None = None,
    initial_share: float = 0.5,
) -> KeyframePlan:
    """How many videos per class and key frames in all a budget buys (the module docstring, points 6 and 7).

    Args:
        budget_bytes: The budget.
        counts: Real videos per class (a class keeps at most all of its videos).
        num_frames: T.
        latent_shape: `(C, h, w)` of a latent frame.
        full_bytes: The split's bytes as uint8 clips (for ratios in messages).
        dtype: Key-frame storage, `uint8` or `float16`.
        label_bytes_per_video: Bytes reserved per video for stored labels.
        videos_per_class: Fix v; None chooses it by `initial_share`.
        initial_share: The budget share the initial key frames may take when v is chosen.

    Raises:
        ValueError: not even one video per class with its initial key frames fits, naming the smallest ratio that
            does (or the `videos_per_class` asked for does not fit).
    """
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"prism: key-frame dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
    per_frame = math.prod(latent_shape) * DTYPE_BYTES[dtype]
    start = min(START_FRAMES, num_frames)
    mask_bytes = math.ceil(num_frames / 8)
    start_index = min(mask_bytes, start) if num_frames <= MAX_POSITION_FRAMES else mask_bytes
    start_cost = start * per_frame + start_index + label_bytes_per_video
    if videos_per_class is None:
        share = math.floor(Fraction(str(initial_share)) * budget_bytes)
        v = max(1, videos_per_class_cap(counts, share // start_cost))
    else:
        v = videos_per_class
    kept = [min(v, n) for n in counts]
    videos = sum(kept)

    # Key frames the budget buys under each index encoding; the plan takes the encoding that buys more.
    options = []
    for encoding in ("mask", "positions"):
        if encoding == "positions" and num_frames > MAX_POSITION_FRAMES:
            continue
        per_key = per_frame + (1 if encoding == "positions" else 0)
        fixed = videos * (label_bytes_per_video + (mask_bytes if encoding == "mask" else 0))
        keys = min((budget_bytes - fixed) // per_key, videos * num_frames) if budget_bytes >= fixed else -1
        used = (
            keys * per_frame + index_bytes(encoding, videos, max(keys, 0), num_frames) + videos * label_bytes_per_video
        )
        options.append((keys, -used, encoding == "mask", encoding))  # ties: fewer bytes, then the mask
    keys, neg_used, _, encoding = max(options)
    if keys < videos * start:
        one_each = len(counts) * start_cost
        what = f"{videos_per_class} video(s) per class" if videos_per_class is not None else "one video per class"
        raise ValueError(
            f"prism: {budget_bytes:,} bytes cannot hold {what} at {start} {dtype} key frame(s) of {per_frame:,} "
            f"bytes (+ index{' and label' if label_bytes_per_video else ''} bytes); one video per class needs "
            f"{one_each:,} bytes, a ratio of at least {math.ceil(Fraction(100 * one_each, full_bytes) * 10**6) / 10**6:.6f}%"
        )
    stored = -neg_used
    return KeyframePlan(
        budget_bytes=budget_bytes,
        full_bytes=full_bytes,
        num_frames=num_frames,
        latent_shape=tuple(int(s) for s in latent_shape),
        dtype=dtype,
        bytes_per_frame=per_frame,
        videos_per_class=kept,
        num_videos=videos,
        start_frames=start,
        key_frames=int(keys),
        index=encoding,
        index_bytes=index_bytes(encoding, videos, keys, num_frames),
        label_bytes_per_video=label_bytes_per_video,
        label_bytes=videos * label_bytes_per_video,
        stored_bytes=stored,
        unused_bytes=budget_bytes - stored,
    )


# ------------------------------------------------------------------------------------------------- insertion rule


def insertion_scores(frame_grads: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """`(M, T)` conflict score of every interpolated frame: the larger of the cosines between its gradient and those
    of its two neighbouring key frames (the key frames before and after it); +inf at key frames.

    `frame_grads` `(M, T, *frame)`: the loss's gradient with respect to each frame of the synthetic clips. A frame
    outside the first and last key frame has one neighbour, whose cosine counts twice. A zero gradient has cosine 0.
    """
    m, t = key_mask.shape
    g = frame_grads.reshape(m, t, -1).float()
    pos = torch.arange(t).expand(m, t)
    left = torch.where(key_mask, pos, -1).cummax(dim=1).values
    right = torch.where(key_mask, pos, t).flip(1).cummin(dim=1).values.flip(1)
    left = torch.where(left < 0, right, left)
    right = torch.where(right >= t, left, right)
    rows = torch.arange(m)[:, None]
    cos_left = F.cosine_similarity(g, g[rows, left], dim=-1)
    cos_right = F.cosine_similarity(g, g[rows, right], dim=-1)
    return torch.where(key_mask, torch.full((), math.inf), torch.maximum(cos_left, cos_right))


def choose_insertions(
    scores: torch.Tensor, key_mask: torch.Tensor, epsilon: float = 0.0, limit: int | None = None
) -> torch.Tensor:
    """`(M, T)` bool: the interpolated frames to promote. Candidates have `scores < epsilon`; each segment between
    two key frames gives at most its best (lowest-score) candidate; the `limit` best of those are taken (ties in
    frame order)."""
    m, t = key_mask.shape
    pos = torch.arange(t).expand(m, t)
    segment = torch.arange(m)[:, None] * t + torch.where(key_mask, pos, -1).cummax(dim=1).values
    flat = torch.nonzero(((~key_mask) & (scores < epsilon)).flatten()).flatten()
    order = torch.argsort(scores.flatten()[flat], stable=True)
    flat, seg = flat[order], segment.flatten()[flat[order]]
    chosen = torch.zeros(m * t, dtype=torch.bool)
    if len(flat):
        groups, inverse = torch.unique(seg, return_inverse=True)
        first = torch.full((len(groups),), len(seg)).scatter_reduce(0, inverse, torch.arange(len(seg)), "amin")
        best = flat[first.sort().values]  # one per segment, in score order
        chosen[best[:limit]] = True
    return chosen.view(m, t)


def insertion_events(iterations: int, warmup: float, cooldown: float, every: int) -> list[int]:
    """Iterations (1-based, after which) insertion happens: every `every` after the warm-up, and at the start of the
    cool-down; none with 0 iterations."""
    start = math.floor(warmup * iterations)
    end = iterations - math.floor(cooldown * iterations)
    if end <= start:
        return []
    return sorted({*range(start + every, end + 1, every), end})


# ------------------------------------------------------------------------------------------------------ objectives


def gm_distance(real_grad: torch.Tensor, syn_grad: torch.Tensor) -> torch.Tensor:
    """DC's distance between two gradients of one weight tensor (Zhao et al. 2021, `distance_wb`): the sum over
    output units of 1 - cosine, each unit's weights flattened; 0 for 1-D tensors (biases, norm weights)."""
    if real_grad.dim() == 1:
        return torch.zeros((), device=syn_grad.device)
    r, s = real_grad.flatten(1), syn_grad.flatten(1)
    return (1 - (r * s).sum(-1) / (r.norm(dim=-1) * s.norm(dim=-1) + 1e-6)).sum()


class _Classifier(nn.Module):
    """GM's network: `LatentEmbedNet` and a linear head on its temporal-mean features, every weight trainable."""

    def __init__(self, channels: int, latent_hw: tuple[int, int], num_classes: int, width: int, depth: int):
        super().__init__()
        self.embed = LatentEmbedNet(channels, width, depth)
        features = self.embed(torch.zeros(1, 1, channels, *latent_hw)).shape[1]
        self.head = nn.Linear(features, num_classes)
        self.requires_grad_(True)

    @torch.no_grad()
    def reset(self, generator: torch.Generator) -> _Classifier:
        """Redraw every weight from `generator` as PyTorch's defaults do (`LatentEmbedNet.reset`, `nn.Linear`)."""
        self.embed.reset(generator)
        bound = 1 / math.sqrt(self.head.in_features)
        self.head.weight.copy_(torch.empty(self.head.weight.shape).uniform_(-bound, bound, generator=generator))
        self.head.bias.copy_(torch.empty(self.head.bias.shape).uniform_(-bound, bound, generator=generator))
        return self

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(clips))


class _FrameAdam:
    """Adam (torch's update rule, no weight decay) over the key frames of `(M, T, D)` state, with one step count per
    frame: a frame promoted late starts like a new parameter (bias correction from its own first step), which one
    `torch.optim.Adam` over the whole tensor, counting steps per tensor, would not do."""

    def __init__(self, shape: tuple[int, ...], lr: float, device, betas=(0.9, 0.999), eps: float = 1e-8):
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.m = torch.zeros(shape, device=device)
        self.v = torch.zeros(shape, device=device)
        self.steps = torch.zeros(shape[:2], dtype=torch.long, device=device)

    @torch.no_grad()
    def step(self, params: torch.Tensor, grad: torch.Tensor, key_mask: torch.Tensor) -> None:
        k = key_mask
        self.steps[k] += 1
        self.m[k] = self.beta1 * self.m[k] + (1 - self.beta1) * grad[k]
        self.v[k] = self.beta2 * self.v[k] + (1 - self.beta2) * grad[k] ** 2
        steps = self.steps[k].double().view(-1, *[1] * (self.m.dim() - 2))  # broadcast over a frame's values
        bc1 = (1 - self.beta1**steps).float()
        bc2 = (1 - self.beta2**steps).float().sqrt()
        params[k] -= self.lr / bc1 * self.m[k] / (self.v[k].sqrt() / bc2 + self.eps)

    def reset(self, frames: torch.Tensor) -> None:
        """Fresh moments for the frames `frames` `(M, T)` bool (just promoted)."""
        self.m[frames], self.v[frames], self.steps[frames] = 0, 0, 0


# ----------------------------------------------------------------------------------------------------------- method


@dataclass
class KeyframeResult:
    """`distill_keyframes`' output: the state `(M, T, C, h, w)` float32 (on the CPU) whose key frames (`key_mask`)
    are the set, the loss of every matching step, and one record per insertion event."""

    frames: torch.Tensor
    key_mask: torch.Tensor
    losses: list[float]
    events: list[dict]

    @property
    def promoted(self) -> dict[str, int]:
        return {
            "rule": sum(e["by_rule"] for e in self.events),
            "fill": sum(e["by_fill"] for e in self.events),
        }


def distill_keyframes(
    real: torch.Tensor,
    real_labels: torch.Tensor,
    init: torch.Tensor,
    key_mask: torch.Tensor,
    init_labels: torch.Tensor,
    num_classes: int,
    options: Options,
    capacity: int,
    seed: int,
    clamp: float | None = LATENT_MAGNITUDE,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> KeyframeResult:
    """Optimise the key frames of synthetic clips `init` `(M, T, C, h, w)` (values at `key_mask` `(M, T)`; the other
    frames are their interpolation) against real clips `real` `(N, T, C, h, w)` with `options.objective`, promoting
    interpolated frames by the insertion rule until the clips hold `capacity` key frames in all (the module
    docstring, points 3-7).

    Deterministic for a seed on the CPU (networks, real batches and ties come from one seeded CPU generator).
    `clamp` keeps key frames in [-clamp, clamp] (where uint8 storage clamps); None leaves them free.
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    members = [torch.nonzero(real_labels == c).flatten() for c in range(num_classes)]
    rows = [torch.nonzero(init_labels == c).flatten() for c in range(num_classes)]
    empty = [c for c in range(num_classes) if len(members[c]) == 0 or len(rows[c]) == 0]
    if empty:
        raise ValueError(f"prism: classes {empty} have no real or no synthetic clip; every class needs both")
    m, t = key_mask.shape
    state = init.detach().to(device, torch.float32).clone()
    key_mask = key_mask.clone().to(device)
    weights = interpolation_weights(key_mask.cpu()).to(device)
    real = real.to(device)
    adam = _FrameAdam((m, t, *state.shape[2:]), options.lr, device)
    acc = torch.zeros_like(state)  # frame gradients since the last event (the rule's votes)
    channels, latent_hw = state.shape[2], tuple(state.shape[3:])
    if options.objective == "dm":
        net = LatentEmbedNet(channels, options.width, options.depth).to(device)
    else:
        net = _Classifier(channels, latent_hw, num_classes, options.width, options.depth).to(device)
    events = insertion_events(options.iterations, options.warmup, options.cooldown, options.insert_every)
    warmup_end = math.floor(options.warmup * options.iterations)
    losses: list[float] = []
    log: list[dict] = []
    it_range = range(1, options.iterations + 1)
    if progress:
        from tqdm.auto import tqdm

        it_range = tqdm(it_range, desc="prism", unit="it")

    def real_batch(c: int) -> torch.Tensor:
        pick = members[c][torch.randperm(len(members[c]), generator=generator)[: options.batch_real]]
        return real[pick.to(device)].float()

    def matching_step(step_loss) -> None:
        """One Adam step from `step_loss(clips) -> (loss, frame gradients)`, the gradients voting after warm-up."""
        clips = interpolate(state, key_mask, weights)
        loss, frame_grad = step_loss(clips)
        key_grad = torch.einsum("mts,mtd->msd", weights, frame_grad.flatten(2)).view(state.shape)
        adam.step(state, key_grad, key_mask)
        if clamp is not None:
            state.clamp_(-clamp, clamp)
        if it > warmup_end:
            acc.add_(frame_grad)
        losses.append(loss)

    def dm_loss(clips):
        frame_grad = torch.zeros_like(clips)
        total = 0.0
        for c in range(num_classes):
            syn = clips[rows[c]].detach().requires_grad_(True)
            loss = _class_gap(net, real_batch(c), syn)
            (frame_grad[rows[c]],) = torch.autograd.grad(loss, syn)
            total += loss.item()
        return total, frame_grad

    def gm_loss(clips):
        params = [p for p in net.parameters()]
        frame_grad = torch.zeros_like(clips)
        total = 0.0
        for c in range(num_classes):
            real_c = real_batch(c)
            target = torch.full((len(real_c),), c, device=device)
            real_grads = torch.autograd.grad(F.cross_entropy(net(real_c), target), params)
            syn = clips[rows[c]].detach().requires_grad_(True)
            syn_target = torch.full((len(syn),), c, device=device)
            syn_grads = torch.autograd.grad(F.cross_entropy(net(syn), syn_target), params, create_graph=True)
            loss = sum(gm_distance(r.detach(), s) for r, s in zip(real_grads, syn_grads))
            (frame_grad[rows[c]],) = torch.autograd.grad(loss, syn)
            total += loss.item()
        return total, frame_grad

    labels_dev = init_labels.to(device)
    for it in it_range:
        net.reset(generator).to(device)
        if options.objective == "dm":
            matching_step(dm_loss)
        else:
            for outer in range(options.gm_outer_loop):
                matching_step(gm_loss)
                if outer == options.gm_outer_loop - 1:
                    break
                opt = torch.optim.SGD(net.parameters(), lr=options.gm_net_lr)
                clips = interpolate(state, key_mask, weights).detach()
                for _ in range(options.gm_inner_loop):
                    opt.zero_grad(set_to_none=True)
                    F.cross_entropy(net(clips), labels_dev).backward()
                    opt.step()
        if it in events:
            left = len(events) - events.index(it)
            remaining = capacity - int(key_mask.sum())
            mask_cpu = key_mask.cpu().clone()  # (`.cpu()` of a CPU tensor is the tensor, which promotion changes)
            scores = insertion_scores(acc.cpu(), mask_cpu)
            pick = choose_insertions(scores, mask_cpu, options.epsilon, math.ceil(max(remaining, 0) / left))
            by_rule = int(pick.sum())
            fill = torch.zeros_like(pick)
            if options.fill_budget and left == 1 and remaining > by_rule:
                # The last event: what the budget still pays for goes to the most conflicting frames left.
                free = torch.nonzero((~mask_cpu & ~pick).flatten()).flatten()
                order = torch.argsort(scores.flatten()[free], stable=True)
                fill.view(-1)[free[order][: remaining - by_rule]] = True
            promote = (pick | fill).to(device)
            if promote.any():
                clips = interpolate(state, key_mask, weights)
                state[promote] = clips[promote]  # a promoted frame starts where the interpolation had it
                adam.reset(promote)
                key_mask |= promote
                weights = interpolation_weights(key_mask.cpu()).to(device)
            candidates = int(((~mask_cpu) & (scores < options.epsilon)).sum())
            log.append({"iteration": it, "candidates": candidates, "by_rule": by_rule, "by_fill": int(fill.sum())})
            acc.zero_()
    return KeyframeResult(state.cpu(), key_mask.cpu(), losses, log)


def compress(ctx: MethodContext) -> CompressedSet:
    opts = ctx.method_options(Options, "prism")
    if ctx.dtype == "uint4":  # its key frames are indexed by whole bytes per value (`plan_keyframes`)
        raise ValueError("prism stores key frames as uint8 or float16; --dtype uint4 is not supported by this method")
    dtype = "float16" if ctx.dtype == "float16" else "uint8"  # uint8 buys twice the key frames (0.1 dB, FACTS.md)
    plan = plan_keyframes(
        ctx.budget_bytes,
        ctx.counts_per_class(),
        ctx.num_frames,
        ctx.latent_shape,
        ctx.full_bytes,
        dtype=dtype,
        label_bytes_per_video=ctx.label_bytes_per_video,
        videos_per_class=opts.videos_per_class,
        initial_share=opts.initial_share,
    )
    videos = torch.tensor(choose_videos(ctx.labels.tolist(), plan.videos_per_class, ctx.seed), dtype=torch.long)
    labels = ctx.labels[videos].clone()
    t = ctx.num_frames
    key_mask = torch.zeros(len(videos), t, dtype=torch.bool)
    key_mask[:, [0, t - 1]] = True
    init = torch.zeros(len(videos), t, *ctx.latent_shape)
    init[:, [0, t - 1]] = ctx.latents[videos[:, None], torch.tensor([0, t - 1])].float()
    logger.info(
        "prism (%s): %d synthetic videos of T=%d, %d key frames to buy (%d to insert), %d iterations in latent space",
        opts.objective,
        len(videos),
        t,
        plan.key_frames,
        plan.free_frames,
        opts.iterations,
    )
    result = distill_keyframes(
        ctx.latents_tensor(),
        ctx.labels,
        init,
        key_mask,
        labels,
        ctx.num_classes,
        opts,
        capacity=plan.key_frames,
        seed=ctx.seed,
        clamp=LATENT_MAGNITUDE if dtype == "uint8" else None,
        device=ctx.device,
        progress=ctx.progress,
    )
    mask = result.key_mask
    stored_frames, readback = store_latents(result.frames[mask], dtype)
    keys = int(mask.sum())
    encoding = cheapest_index(len(videos), keys, t)
    stored = {"latents": stored_frames["latents"], f"keyframe_{encoding}": encode_index(mask, encoding)}
    full = torch.zeros(len(videos), t, *ctx.latent_shape)
    full[mask] = readback
    padded, positions, counts = mask_to_padded(full, mask)
    summary = _summary(result.losses)
    stats = {"mean": float(counts.double().mean()), "min": int(counts.min()), "max": int(counts.max())}
    info = {
        "plan": plan.to_dict(),
        "prism": {
            **summary,
            "objective": opts.objective,
            "init": "first and last cached frame of a real clip, interpolated between",
            "key_frames": keys,
            "key_frames_per_video": stats,
            "promoted": result.promoted,
            "events": result.events,
            "index": encoding,
            "index_bytes": index_bytes(encoding, len(videos), keys, t),
        },
    }
    cset = CompressedSet(
        method="prism",
        labels=labels,
        stored=stored,
        latents=padded,
        source_videos=videos,
        frame_indices=positions,
        frame_counts=counts,
        interpolate_to=t,
        info=info,
    )
    expected = keys * plan.bytes_per_frame + index_bytes(encoding, len(videos), keys, t)
    if cset.stored_bytes != expected or expected + plan.label_bytes > ctx.budget_bytes:
        raise AssertionError(f"prism: stored {cset.stored_bytes} bytes, expected {expected} (+ {plan.label_bytes})")
    info["prism"]["unused_bytes"] = ctx.budget_bytes - expected - plan.label_bytes
    logger.info(
        "prism: %d key frames (per video mean %.2f, min %d, max %d; %d by the rule, %d by the fill), %s bytes of %s",
        keys,
        stats["mean"],
        stats["min"],
        stats["max"],
        result.promoted["rule"],
        result.promoted["fill"],
        f"{expected + plan.label_bytes:,}",
        f"{ctx.budget_bytes:,}",
    )
    return check_budget(cset, ctx.budget_bytes)
