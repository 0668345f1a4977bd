"""What every method shares: its input (`MethodContext`), its output (`CompressedSet`) and the helpers that turn a
choice of videos or frames into a set whose stored bytes fit the budget.

The budget is the paper's: `budget_bytes = floor(ratio / 100 * full_bytes)`, `full_bytes` being the train split
as uint8 clips of T x 3 x H x W. A method's `CompressedSet.stored` holds exactly the tensors it would write (no
hard labels, ids or metadata, which no method in the literature counts either), `stored_bytes` is the sum of their
`nbytes`, and `check_budget` refuses a set above the budget. Teacher soft labels are counted: with
`MethodContext.label_bytes_per_video` > 0 every method leaves that many bytes per kept row free, and
`compressa_hf.distillation.soft_labels.relabel` then stores them as `stored["soft_labels"]`. Methods that store latent
frames go through the planner (`compressa_hf.distillation.budget.plan_budget`), so at one ratio they all keep the same
number of frames:
- frame methods (VideoCompressa, uniform, pixel-difference, AVS, scorer only): the planner's K frames for every
  video, or K = 1 for the same seeded random subset of videos per class when K = 1 for all does not fit;
- whole-clip coresets (random, herding, forgetting, GraNd): all T frames of the v videos per class the budget
  holds, v chosen by each method's ranking;
- synthesis (DM, LVDD, PRISM): their own stored tensors, counted the same way; PRISM's rows hold different numbers
  of key frames (`CompressedSet.frame_counts`), and its index of where they sit is stored and counted too.

How each pays for reserved label bytes: the planner's methods (frame selection, coresets, DM, VideoCompressa) get
them from `ctx.plan()`, which keeps K and drops videos (`budget.py`, rule 5); LVDD adds them to each recompressed
clip's bytes before it counts how many clips per class fit; PRISM reserves them per video before it counts key
frames (`prism.plan_keyframes`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from compressa_hf.distillation.budget import BudgetPlan, counts_per_class, plan_budget


def choose_videos(labels: Sequence[int], videos_per_class: Sequence[int], seed: int) -> list[int]:
    """Positions of the videos kept: all of them, or a seeded random subset of each class (sorted)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    keep: list[int] = []
    for c, n in enumerate(videos_per_class):
        members = np.flatnonzero(labels == c)
        keep += members.tolist() if n >= len(members) else sorted(rng.choice(members, size=n, replace=False).tolist())
    return sorted(keep)


def parse_options(options_cls: type, overrides: dict[str, Any] | None, method: str):
    """`options_cls(**overrides)`, with an error naming the method and the unknown keys."""
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(options_cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for method {method!r}; known: {sorted(known)}")
    return options_cls(**overrides)


@dataclass
class MethodContext:
    """Everything a method may use. Methods read; they never modify these tensors.

    Args:
        latents: `(N, T, C, h, w)` raw latents of the train split (the cache, float16): a tensor, or a lazy row array
            (`compressa_hf.rows.RowConcat` over the cache's shards) that reads the rows a method indexes. Methods
            index it (`ctx.latents[videos]`, `ctx.latents[videos[:, None], frames]`); one that needs every latent at
            once calls `latents_tensor()`.
        labels: `(N,)` int64 class indices.
        num_classes: Number of classes.
        codec: The frozen codec the cache was encoded with (decode latents to frames for networks and scores).
        ratio: Storage budget in percent of the split's uint8 clips.
        seed: Seed of every random choice the method makes.
        frame_size: `(H, W)` of the cached clips.
        pixels_fn: Returns `(N, T, 3, H, W)` uint8 real frames, the same frames the latents encode (for methods
            that score raw video: pixel difference, AVS, the proxy training of herding/forgetting/GraNd), a tensor
            or a lazy row array. Called at most once; None when the caller has no pixels (those methods then decode
            the latents).
        dtype: Latent storage dtype for the planner: "uint8", "float16" or "auto".
        options: Method-specific overrides of its `Options` dataclass.
        work_dir: Folder for the method's checkpoints, or None.
        device: Where methods compute.
        progress: Show progress bars.
        class_names: Label names in label order, for messages; None names classes by index.
        label_bytes_per_video: Bytes to leave free in the budget for the stored labels of each kept row (soft
            labels: classes x itemsize); 0 for hard labels, which are not counted.
        shared_dir: Folder for what a method computes from the training data alone and reuses in every cell of a
            run (other seeds, ratios and methods), kept under a key of what determines it: the expert trajectories
            of `compressa_hf.distillation.trajectories`. None: `work_dir` (or nothing kept when that is None too).
        frames_per_video: K fixed for the methods that store the planner's K frames per video (`FIXED_K_METHODS` of
            the registry: frame selection, VideoCompressa, DM, MTT, DATM), which then keep fewer videos per class
            when K frames of every video do not fit (`plan_budget`, rule 3): the budget spent on frames rather than
            videos. None: the planner's largest K that every video gets.
        accelerator: An `accelerate.Accelerator` when every process runs the method together (a module with
            `MULTI_PROCESS = True` on several processes: each rank takes its share and the results are gathered);
            None: one process.
    """

    latents: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    codec: torch.nn.Module
    ratio: float
    seed: int = 0
    frame_size: tuple[int, int] | None = None
    pixels_fn: Callable[[], torch.Tensor] | None = None
    dtype: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)
    work_dir: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = False
    class_names: list[str] | None = None
    label_bytes_per_video: int = 0
    shared_dir: str | None = None
    frames_per_video: int | None = None
    accelerator: Any = None
    _pixels: torch.Tensor | None = field(default=None, init=False, repr=False)
    _latents_tensor: torch.Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.latents.dim() != 5:
            raise ValueError(f"latents must be (N, T, C, h, w), got shape {tuple(self.latents.shape)}")
        if self.labels.shape != self.latents.shape[:1]:
            raise ValueError(f"labels {tuple(self.labels.shape)} do not match {self.latents.shape[0]} videos")
        if self.frame_size is None:
            down = getattr(self.codec, "downscale", 8)
            self.frame_size = (self.latents.shape[3] * down, self.latents.shape[4] * down)
        self.frame_size = tuple(int(s) for s in self.frame_size)

    @property
    def num_videos(self) -> int:
        return int(self.latents.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.latents.shape[1])

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.latents.shape[2:])

    def counts_per_class(self) -> list[int]:
        names = self.class_names or [f"class {c}" for c in range(self.num_classes)]
        return counts_per_class(self.labels.tolist(), names)

    @property
    def full_bytes(self) -> int:
        h, w = self.frame_size
        return self.num_videos * self.num_frames * 3 * h * w

    @property
    def budget_bytes(self) -> int:
        return math.floor(Fraction(str(self.ratio)) * self.full_bytes / 100)

    def plan(self, frames_per_video: int | None = None, dtype: str | None = None) -> BudgetPlan:
        """The budget plan of this ratio (K frames per video, videos per class, dtype), with
        `label_bytes_per_video` reserved for each kept video; K is `frames_per_video`, else the context's, else the
        planner's choice."""
        return plan_budget(
            self.ratio,
            self.counts_per_class(),
            self.num_frames,
            self.frame_size,
            self.latent_shape,
            frames_per_video=frames_per_video if frames_per_video is not None else self.frames_per_video,
            dtype=dtype or self.dtype,
            label_bytes_per_video=self.label_bytes_per_video,
        )

    def planned_videos(self, plan: BudgetPlan) -> torch.Tensor:
        """Positions of the videos `plan` keeps: all, or the seeded random subset per class (`choose_videos`)."""
        return torch.tensor(
            choose_videos(self.labels.tolist(), list(plan.videos_per_class), self.seed), dtype=torch.long
        )

    def latents_tensor(self) -> torch.Tensor:
        """`latents` as one in-memory tensor (read once from a lazy array)."""
        if self._latents_tensor is None:
            from compressa_hf.rows import in_memory

            self._latents_tensor = in_memory(self.latents)
        return self._latents_tensor

    def pixels(self, lazy: bool = False) -> torch.Tensor:
        """`(N, T, 3, H, W)` uint8 frames: the real ones when `pixels_fn` is set, else the decoded latents. A lazy row
        array from `pixels_fn` is read whole unless `lazy` (full data trains on it batch by batch)."""
        if self._pixels is None:
            if self.pixels_fn is not None:
                self._pixels = self.pixels_fn()
            else:
                self._pixels = decode_latents(self.codec, self.latents_tensor(), device=self.device, track=self.track)
            expected = (self.num_videos, self.num_frames, 3, *self.frame_size)
            if tuple(self._pixels.shape) != expected or self._pixels.dtype != torch.uint8:
                raise ValueError(
                    f"pixels must be uint8 {expected}, got {self._pixels.dtype} {tuple(self._pixels.shape)}"
                )
        if not lazy:
            from compressa_hf.rows import in_memory

            self._pixels = in_memory(self._pixels)
        return self._pixels

    def method_options(self, options_cls: type, method: str):
        return parse_options(options_cls, self.options, method)

    def track(self, iterable, desc: str, total: int | None = None, unit: str = "it"):
        """`iterable` behind a tqdm progress bar when `progress` is set, else as it is: every method's long loop
        goes through it, so no method runs for minutes without a word."""
        if not self.progress:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False)


@torch.no_grad()
def decode_latents(codec, latents: torch.Tensor, device=None, batch: int = 256, track=None) -> torch.Tensor:
    """`(M, K, C, h, w)` raw latents -> `(M, K, 3, H, W)` uint8 frames, decoded in batches of frames. `track` wraps
    the loop over batches (`MethodContext.track`: a progress bar)."""
    m, k = latents.shape[:2]
    device = device if device is not None else codec.device
    out = []
    chunks = torch.split(latents.flatten(0, 1), batch)
    for chunk in track(chunks, "decode latents", len(chunks), "batch") if track else chunks:
        out.append(codec.decode(chunk.to(device)).mul(255).round().to("cpu", torch.uint8))
    if not out:
        return torch.zeros(m, k, 3, *(s * codec.downscale for s in latents.shape[3:]), dtype=torch.uint8)
    return torch.cat(out).view(m, k, *out[0].shape[1:])


def store_latents(latents: torch.Tensor, dtype: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Round raw latents to their storage dtype: (the tensors stored, the float32 latents read back from them); see
    `compressa_hf.codecs.storage.quantise` (uint8, float16, uint4 with its per-channel ranges)."""
    from compressa_hf.codecs.storage import quantise

    return quantise(latents, dtype)


@dataclass
class CompressedSet:
    """A method's output: what it stores, and what the evaluation trains on.

    Attributes:
        method: Registry name of the method.
        labels: `(M,)` int64 labels of the rows.
        stored: Exactly the tensors the method would write; `stored_bytes` is the sum of their sizes. A set
            relabelled by a teacher (`compressa_hf.distillation.soft_labels.relabel`) also stores `soft_labels` `(M, C)`
            (float16 or uint8 probabilities), which the evaluation trains on instead of `labels`.
        latents: `(M, K, C, h, w)` float32 raw latents as read back from `stored` (decoded by the codec to train),
            or None when `pixels` is given.
        pixels: `(M, K, 3, H, W)` uint8 frames trained on directly (the full-data reference), or None.
        source_videos: `(M,)` positions in the train split each row comes from (-1 for synthetic rows).
        frame_indices: `(M, K)` positions among the T cached frames of the kept frames, when rows are real frames.
        budget_bytes: The budget the set was made for.
        info: JSON-ready facts for the report (plan, iterations, scores, ...).
        frame_counts: `(M,)` frames of each row when rows hold different numbers K_i of frames (PRISM's key frames):
            `latents` is then padded with zeros to the widest row and `frame_indices` with -1. None: every row holds
            `latents.shape[1]` frames (every fixed-K method).
        interpolate_to: T when each row is the key frames (at `frame_indices`, positions among T) of a T-frame clip
            whose other frames are the linear interpolation, in latent space, of their neighbouring key frames
            (`compressa_hf.distillation.keyframes`); what trains is that clip (`frames`). None: the rows' own frames train.
    """

    method: str
    labels: torch.Tensor
    stored: dict[str, torch.Tensor]
    latents: torch.Tensor | None = None
    pixels: torch.Tensor | None = None
    source_videos: torch.Tensor | None = None
    frame_indices: torch.Tensor | None = None
    budget_bytes: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    frame_counts: torch.Tensor | None = None
    interpolate_to: int | None = None

    def __post_init__(self):
        if (self.latents is None) == (self.pixels is None):
            raise ValueError("a CompressedSet holds either latents or pixels, exactly one of them")
        rows = (self.latents if self.latents is not None else self.pixels).shape[0]
        if self.labels.shape != (rows,):
            raise ValueError(f"labels {tuple(self.labels.shape)} do not match {rows} rows")
        width = (self.latents if self.latents is not None else self.pixels).shape[1]
        if self.frame_counts is not None:
            if self.frame_counts.shape != (rows,) or self.frame_indices is None:
                raise ValueError(
                    f"frame_counts must be ({rows},) and come with frame_indices, got "
                    f"{tuple(self.frame_counts.shape)} and {self.frame_indices is not None}"
                )
            if rows and (int(self.frame_counts.min()) < 1 or int(self.frame_counts.max()) > width):
                raise ValueError(f"frame_counts must be in [1, {width}], got {self.frame_counts.tolist()[:8]}")
        if self.interpolate_to is not None and (self.frame_indices is None or self.latents is None):
            raise ValueError("interpolate_to needs latent rows with frame_indices (their positions among T)")

    @property
    def stored_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.stored.values())

    @property
    def num_rows(self) -> int:
        return int(self.labels.shape[0])

    @property
    def frames_per_row(self) -> int:
        """K of a fixed-K set; for rows of different K (`frame_counts`) the widest row (see `row_frames`)."""
        return int((self.latents if self.latents is not None else self.pixels).shape[1])

    @property
    def variable_frames(self) -> bool:
        """Whether rows may hold different numbers of frames (`frame_counts` is set)."""
        return self.frame_counts is not None

    @property
    def row_frames(self) -> torch.Tensor:
        """`(M,)` frames each row holds."""
        if self.frame_counts is not None:
            return self.frame_counts
        return torch.full((self.num_rows,), self.frames_per_row, dtype=torch.long)

    def frame_stats(self) -> dict[str, float | int]:
        """Frames per row: `mean`, `min`, `max` (all K for a fixed-K set)."""
        counts = self.row_frames.double()
        if not len(counts):
            return {"mean": 0.0, "min": 0, "max": 0}
        return {"mean": float(counts.mean()), "min": int(counts.min()), "max": int(counts.max())}

    def frames(self, codec, device=None) -> torch.Tensor:
        """`(M, K, 3, H, W)` uint8 frames to train on; `(M, T, 3, H, W)` for key-frame rows (`interpolate_to`): the
        key frames interpolated back to T latent frames, then decoded."""
        if self.pixels is not None:
            return self.pixels
        if self.interpolate_to is not None:
            from compressa_hf.distillation.keyframes import expand_rows

            clips = expand_rows(self.latents, self.frame_indices, self.row_frames, self.interpolate_to)
            return decode_latents(codec, clips, device=device)
        if self.frame_counts is not None and bool((self.frame_counts != self.frames_per_row).any()):
            raise ValueError(
                f"method {self.method!r}: rows of different K train only as key frames of a T-frame clip; set "
                "interpolate_to"
            )
        return decode_latents(codec, self.latents, device=device)

    def save(self, path: str) -> None:
        """One safetensors file (tensors + JSON info in its metadata), written atomically."""
        from safetensors.torch import save_file

        tensors = {f"stored.{k}": v.contiguous() for k, v in self.stored.items()}
        tensors["labels"] = self.labels.contiguous()
        for name in ("latents", "pixels", "source_videos", "frame_indices", "frame_counts"):
            value = getattr(self, name)
            if value is not None:
                tensors[name] = value.contiguous()
        meta = {"method": self.method, "budget_bytes": json.dumps(self.budget_bytes), "info": json.dumps(self.info)}
        if self.interpolate_to is not None:
            meta["interpolate_to"] = str(self.interpolate_to)
        tmp = f"{path}.tmp.{os.getpid()}"
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> CompressedSet:
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return cls(
            method=meta["method"],
            labels=tensors["labels"],
            stored={k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("stored.")},
            latents=tensors.get("latents"),
            pixels=tensors.get("pixels"),
            source_videos=tensors.get("source_videos"),
            frame_indices=tensors.get("frame_indices"),
            budget_bytes=json.loads(meta["budget_bytes"]),
            info=json.loads(meta["info"]),
            frame_counts=tensors.get("frame_counts"),
            interpolate_to=int(meta["interpolate_to"]) if "interpolate_to" in meta else None,
        )


def check_budget(cset: CompressedSet, budget_bytes: int) -> CompressedSet:
    """Refuse a set whose stored bytes exceed the budget; record the budget on it."""
    if cset.stored_bytes > budget_bytes:
        raise AssertionError(
            f"method {cset.method!r} stores {cset.stored_bytes:,} bytes, above its budget of {budget_bytes:,}"
        )
    cset.budget_bytes = budget_bytes
    return cset


def planned_set(
    ctx: MethodContext,
    method: str,
    plan: BudgetPlan,
    videos: torch.Tensor,
    latents: torch.Tensor,
    frame_indices: torch.Tensor,
    info: dict[str, Any] | None = None,
) -> CompressedSet:
    """The set of a method that stores `plan`'s latent frames: `latents` `(len(videos), K, C, h, w)` rounded to the
    plan's dtype, with its stored bytes checked to equal the plan's (less the label bytes it reserves, which
    `soft_labels.relabel` fills) and to fit the budget."""
    stored, readback = store_latents(latents, plan.dtype)
    cset = CompressedSet(
        method=method,
        labels=ctx.labels[videos].clone(),
        stored=stored,
        latents=readback,
        source_videos=videos,
        frame_indices=frame_indices,
        info={"plan": plan.to_dict(), **(info or {})},
    )
    if cset.stored_bytes != plan.stored_bytes - plan.label_bytes:
        raise AssertionError(
            f"{method}: stored {cset.stored_bytes} bytes, the plan says {plan.stored_bytes - plan.label_bytes}"
        )
    return check_budget(cset, ctx.budget_bytes)


def frame_selection_set(
    ctx: MethodContext,
    method: str,
    select: Callable[[torch.Tensor, int], torch.Tensor],
    info: dict[str, Any] | None = None,
) -> CompressedSet:
    """K cached latent frames per video, chosen by `select(videos, K) -> (len(videos), K)` ascending positions.

    K and the videos come from the planner (all videos, or the same seeded random subset per class as
    VideoCompressa when K = 1 for every video does not fit).
    """
    plan = ctx.plan()
    videos = ctx.planned_videos(plan)
    indices = select(videos, plan.frames_per_video).to(torch.long)
    if indices.shape != (len(videos), plan.frames_per_video):
        raise AssertionError(
            f"{method}: selection shape {tuple(indices.shape)}, expected {(len(videos), plan.frames_per_video)}"
        )
    chosen = ctx.latents[videos[:, None], indices].float()
    return planned_set(ctx, method, plan, videos, chosen, indices, info)


def whole_clip_set(
    ctx: MethodContext,
    method: str,
    rank: Callable[[torch.Tensor, int], torch.Tensor],
    info: dict[str, Any] | None = None,
) -> CompressedSet:
    """All T latent frames of the v best videos of each class, v from the planner with K = T.

    `rank(members, v) -> positions` gets the positions (in the split) of one class's videos and returns the v it
    keeps, best first; methods rank within classes, as in DC-bench and DeepCore.
    """
    plan = ctx.plan(frames_per_video=ctx.num_frames)
    keep: list[int] = []
    per_class = ctx.track(enumerate(plan.videos_per_class), f"{method}: rank", len(plan.videos_per_class), "class")
    for c, v in per_class:
        members = torch.nonzero(ctx.labels == c).flatten()
        chosen = members if v >= len(members) else rank(members, int(v))
        if len(chosen) != min(v, len(members)):
            raise AssertionError(f"{method}: class {c} kept {len(chosen)} videos, the plan says {v}")
        keep += chosen.tolist()
    videos = torch.tensor(sorted(keep), dtype=torch.long)
    whole = torch.arange(ctx.num_frames).expand(len(videos), -1).clone()
    return planned_set(ctx, method, plan, videos, ctx.latents[videos].float(), whole, info)
