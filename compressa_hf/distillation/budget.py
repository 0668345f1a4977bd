"""The ratio planner: turn a storage ratio (percent) into frames per video, videos per class and a latent dtype.

The ratio is the paper's: bytes of the stored latents of the distilled set over bytes of the training split
stored as uint8 clips of T x 3 x H x W. With uint8 latents of 4 x 14 x 14, T = 16 and 112 x 112 frames, K = 4
frames per video gives 4 * 784 / 602112 = 0.5208 % and K = 1 gives 0.1302 % (the paper's UCF101 0.52 / 0.13).

Rules, in order:
1. `budget_bytes = floor(ratio / 100 * full_bytes)`, computed with exact fractions (the ratio is read from its
   decimal string, so 0.52 means 13/2500 and not the nearest binary float).
2. Without `frames_per_video`: the largest K <= T such that every video keeps K frames. If not even K = 1 fits
   for every video, keep K = 1 and keep the same number of videos v per class, the largest v that fits (a class
   with fewer than v videos keeps all of them), v >= 1.
3. With `frames_per_video` fixed: all videos if they fit, else the largest v per class as above.
4. The stored bytes never exceed the budget, so the achieved ratio never exceeds the requested one; a budget that
   cannot hold one frame for one video of every class is an error that says which ratio would work.
5. `label_bytes_per_video` (default 0: hard labels, which no method in the literature counts) reserves bytes per
   kept video for stored labels, e.g. teacher soft labels (`compressa_hf.distillation.soft_labels`: C classes x 2
   bytes at float16). K is still the one the frames alone buy (rule 2), so a soft-label set keeps the hard-label
   set's K; the labels make room by dropping videos: each kept video costs `K * bytes_per_frame + label bytes`,
   and when not every video fits at that K, the largest v per class that does is kept (rule 2's coreset step). The
   reserved bytes are part of `stored_bytes` and `achieved_ratio`.
6. Bytes stored once per set (uint4's per-channel ranges, below) cost videos, not a frame of every video: when
   they alone stop rule 2's K + 1 frames for every video (as at the exact `k<K>` ratios, which buy exactly 2K uint4
   frames a video and not the ranges), the plan keeps that larger K and drops the fewest videos that pay for the
   ranges, one at a time from the class with the most videos left (never a class's last), provided that stores more
   frames than rule 2's K for every video. With TAEF2 at 48 px (128 bytes of ranges, 576-byte frames) that is one
   video of the split.

Note the paper's ratios are rounded: K = 4 needs 0.5208 %, so `--ratio 0.52` yields K = 3 for every video
(0.39 %), and `describe()` says which ratio the next K needs. Ask for the exact value (`ratio_for_frames`) to
reproduce a paper setting.

dtype (`compressa_hf.codecs.storage`): "uint8" stores TAESD-scaled latents (~0.1 dB PSNR cost, FACTS.md),
"float16" raw latents at twice the bytes, "uint4" 4-bit codes (half uint8's bytes, so twice the frames) under
per-channel ranges that cost `set_bytes` (4 bytes a latent channel) once per set: the budget less those bytes is what
rules 2-3 share out (rule 6 says who pays for them), and they are part of `stored_bytes`. "auto" means uint8 (twice
the frames for a 0.1 dB loss), except where float16 gives exactly the same K and videos - only when the budget
already holds all T frames of every video twice over - where the extra precision is free; uint4 is never chosen by
"auto" (ask for it, or let `--method auto` compare it on a validation split).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction

from compressa_hf.codecs.storage import BITS, frame_bytes, set_bytes

#: Bytes per value of the formats with whole bytes (the methods that index bytes per value accept these only).
DTYPE_BYTES = {"uint8": 1, "float16": 2}


def counts_per_class(labels: Sequence[int], class_names: Sequence[str], hint: str = "") -> list[int]:
    """Videos per class, in label order; raises `ValueError` naming every class without a video (and `hint`).

    The planner and every method keep each class, so a class with no video in the split is an error, not a
    silently smaller label space.
    """
    counts = [0] * len(class_names)
    for y in labels:
        counts[int(y)] += 1
    missing = [f"{name!r} (label {c})" for c, name in enumerate(class_names) if counts[c] == 0]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(class_names)} classes have no video in the split: {', '.join(missing[:10])}"
            + (" ..." if len(missing) > 10 else "")
            + "; every class needs one (check the split lists, or that those clips were readable: skipped.jsonl"
            + (f"; {hint})" if hint else ")")
        )
    return counts


# Qwen2.5-VL video geometry (FACTS.md): 14-pixel patches, 2 frames per temporal patch, 2x2 spatial merge.
QWEN_PATCH = 14
QWEN_TEMPORAL_PATCH = 2
QWEN_MERGE = 2


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _as_fraction(ratio: float | str | Fraction) -> Fraction:
    if isinstance(ratio, Fraction):
        return ratio
    try:
        return Fraction(str(ratio))
    except ValueError as err:
        raise ValueError(f"ratio must be a number (percent), got {ratio!r}") from err


def qwen_visual_tokens(frames: int, frame_size: int | Sequence[int]) -> int:
    """Visual tokens Qwen2.5-VL spends on a clip of `frames` frames, with the processor's size bounds set so frames
    are not rescaled beyond the 28-pixel grid: grid (ceil(K/2), H'/14, W'/14) with H', W' rounded to a multiple of
    28, tokens = prod(grid) / 4. 4 frames at 112 x 112 -> 32 tokens."""
    h, w = _pair(frame_size)
    factor = QWEN_PATCH * QWEN_MERGE
    h_bar = max(factor, round(h / factor) * factor)
    w_bar = max(factor, round(w / factor) * factor)
    grid_t = math.ceil(frames / QWEN_TEMPORAL_PATCH)
    return grid_t * (h_bar // QWEN_PATCH) * (w_bar // QWEN_PATCH) // (QWEN_MERGE * QWEN_MERGE)


def ratio_for_frames(
    frames_per_video: int,
    num_frames: int,
    frame_size: int | Sequence[int],
    latent_shape: Sequence[int],
    dtype: str = "uint8",
    num_videos: int | None = None,
) -> Fraction:
    """Exact ratio (percent) of keeping `frames_per_video` latent frames of every video. A uint4 set also pays its
    per-channel ranges once: with `num_videos` (the split's) the ratio includes their share; without it, not."""
    h, w = _pair(frame_size)
    per_frame = frame_bytes(latent_shape, dtype)
    if num_videos is None:
        return Fraction(100 * frames_per_video * per_frame, num_frames * 3 * h * w)
    once = set_bytes(latent_shape, dtype)
    return Fraction(100 * (num_videos * frames_per_video * per_frame + once), num_videos * num_frames * 3 * h * w)


def check_ratio_token(token: str) -> str:
    """`token` stripped if it is a ratio the CLI takes: a percent > 0 (`0.52`), an exact fraction of a percent
    (`25/12`, what `k<K>` resolves to, for comparing codecs at one exact budget) or `k<K>` (`k1`); else `ValueError`.

    `k<K>` is the exact ratio of K uint8 latent frames per video of the codec in use; it means the same K whatever
    the codec, where a percent buys 8x fewer frames with TAEF2's 32 latent channels than with TAESD's 4.
    """
    token = str(token).strip()
    if token.startswith("k") and token[1:].isdigit() and int(token[1:]) >= 1:
        return token
    numerator, slash, denominator = token.partition("/")
    if slash and numerator.isdigit() and denominator.isdigit() and int(numerator) > 0 and int(denominator) > 0:
        return token
    try:
        if float(token) > 0:
            return token
    except ValueError:
        pass
    raise ValueError(
        f"bad ratio {token!r}: give a percent > 0 (e.g. 0.52, or exactly 25/12) or k<K> (e.g. k1: one latent frame "
        "per video)"
    )


def resolve_ratio(
    token: str, num_frames: int, frame_size: int | Sequence[int], latent_shape: Sequence[int]
) -> Fraction:
    """A ratio token (see `check_ratio_token`) as an exact percent: `k<K>` via `ratio_for_frames` with uint8."""
    token = check_ratio_token(token)
    if token.startswith("k"):
        return ratio_for_frames(int(token[1:]), num_frames, frame_size, latent_shape, "uint8")
    return Fraction(token)


@dataclass
class BudgetPlan:
    """What a ratio buys: K frames for `videos_per_class` videos per class, stored as `dtype`.

    `videos_per_class` follows the input's form (a list by class index, or a dict with the same keys).
    `stored_bytes` is the latents' bytes plus `label_bytes` (`label_bytes_per_video` reserved for each kept video,
    0 with hard labels) plus `set_bytes` (stored once per set: uint4's per-channel ranges; 0 for uint8 / float16). `achieved_ratio` is `stored_bytes / full_bytes * 100`, correctly rounded from the exact
    fraction, and never above `ratio`. `coreset` is True when some videos are dropped.
    """

    ratio: float
    frames_per_video: int
    videos_per_class: list[int] | dict
    total_videos: int
    num_videos: int
    dtype: str
    bytes_per_frame: int
    stored_bytes: int
    full_bytes: int
    budget_bytes: int
    achieved_ratio: float
    coreset: bool
    visual_tokens_per_sample: int
    num_frames: int
    frame_size: tuple[int, int]
    latent_shape: tuple[int, ...]
    next_frames_ratio: float | None = None
    label_bytes_per_video: int = 0
    label_bytes: int = 0
    set_bytes: int = 0
    set_bytes_videos: int = 0

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("set_bytes", "set_bytes_videos"):  # only uint4 plans have them; others keep the keys they had
            if not out[key]:
                del out[key]
        return out

    def describe(self) -> str:
        """A few lines for `--dry-run`."""
        h, w = self.frame_size
        kept = (
            f"all {self.num_videos} videos"
            if not self.coreset
            else f"{self.total_videos} of {self.num_videos} videos (<= {max(self._counts(), default=0)} per class)"
        )
        lines = [
            f"ratio {self.ratio:.6g}% of {self.num_videos} clips x {self.num_frames} x 3 x {h} x {w} uint8 "
            f"= {self.budget_bytes:,} of {self.full_bytes:,} bytes",
            f"plan: K={self.frames_per_video} frame(s) per video for {kept}, latents {tuple(self.latent_shape)} "
            f"as {self.dtype} ({self.bytes_per_frame:,} bytes/frame"
            + (f", + {self.set_bytes:,} bytes of per-channel ranges once)" if self.set_bytes else ")"),
            f"stored {self.stored_bytes:,} bytes = {self.achieved_ratio:.4f}% (requested {self.ratio:.6g}%)",
            *(
                [f"labels: {self.label_bytes_per_video} bytes reserved per kept video ({self.label_bytes:,} in all)"]
                if self.label_bytes_per_video
                else []
            ),
            f"Qwen2.5-VL visual tokens per sample: {self.visual_tokens_per_sample}",
        ]
        if self.set_bytes_videos:
            every = max(1, (self.budget_bytes - self.set_bytes) // self.bytes_per_frame // self.num_videos)
            lines.append(
                f"the {self.set_bytes:,} bytes of per-channel ranges cost {self.set_bytes_videos} video(s), not a "
                f"frame of every video (K={every} for all {self.num_videos} would store {every * self.num_videos:,} "
                f"frames, these {self.frames_per_video * self.total_videos:,})"
            )
        if self.next_frames_ratio is not None:
            lines.append(
                f"K={self.frames_per_video + 1} for every video would need ratio >= {self.next_frames_ratio:.6f}%"
            )
        return "\n".join(lines)

    def _counts(self) -> list[int]:
        v = self.videos_per_class
        return list(v.values()) if isinstance(v, Mapping) else list(v)


def videos_per_class_cap(counts: list[int], frames_budget: int) -> int:
    """Largest v with sum(min(v, n_c)) <= frames_budget (v frames of one per-video unit each)."""
    lo, hi = 0, max(counts)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(min(mid, n) for n in counts) <= frames_budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def drop_fewest(counts: Sequence[int], drop: int) -> list[int] | None:
    """`counts` less `drop` videos, each taken from the class that has the most left (the lowest label of a tie),
    the coreset step's order (`videos_per_class_cap` trims the largest classes first); None if a class would lose its
    last video."""
    kept = list(counts)
    for _ in range(max(drop, 0)):
        c = max(range(len(kept)), key=lambda i: (kept[i], -i))
        if kept[c] <= 1:
            return None
        kept[c] -= 1
    return kept


def plan_budget(
    ratio: float | str | Fraction,
    num_videos_per_class: Sequence[int] | Mapping,
    num_frames: int,
    frame_size: int | Sequence[int],
    latent_shape: Sequence[int],
    frames_per_video: int | None = None,
    dtype: str = "auto",
    label_bytes_per_video: int = 0,
) -> BudgetPlan:
    """Plan K, videos per class and dtype for a storage `ratio` (percent); see the module docstring for the rules.

    Args:
        ratio: Requested ratio in percent, e.g. 0.52.
        num_videos_per_class: Training videos per class, a list by class index or a dict keyed by class.
        num_frames: T, frames per cached clip (the denominator's clip length).
        frame_size: H or (H, W) of the cached clips.
        latent_shape: (C, h, w) of one latent frame.
        frames_per_video: Fix K instead of taking the largest that fits.
        dtype: "uint8", "float16", "uint4" or "auto".
        label_bytes_per_video: Bytes reserved for the stored labels of each kept video (rule 5); 0 for hard labels.
    """
    if dtype not in (*BITS, "auto"):
        raise ValueError(f"dtype must be one of {[*BITS, 'auto']}, got {dtype!r}")
    exact_ratio = _as_fraction(ratio)
    if exact_ratio <= 0:
        raise ValueError(f"ratio must be > 0 (percent), got {ratio}")
    keys = list(num_videos_per_class) if isinstance(num_videos_per_class, Mapping) else None
    counts = (
        [int(num_videos_per_class[k]) for k in keys] if keys is not None else [int(n) for n in num_videos_per_class]
    )
    if not counts or any(n < 1 for n in counts):
        raise ValueError(f"every class needs at least one video, got counts {counts}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if frames_per_video is not None and not 1 <= frames_per_video <= num_frames:
        raise ValueError(f"frames_per_video must be in [1, T={num_frames}], got {frames_per_video}")
    label_bytes = int(label_bytes_per_video)
    if label_bytes < 0:
        raise ValueError(f"label_bytes_per_video must be >= 0, got {label_bytes_per_video}")
    h, w = _pair(frame_size)
    latent_shape = tuple(int(s) for s in latent_shape)
    num_videos = sum(counts)
    full_bytes = num_videos * num_frames * 3 * h * w
    budget_bytes = math.floor(exact_ratio * full_bytes / 100)

    def plan_for(dt: str) -> tuple[int, list[int] | None, bool]:
        """(K, videos kept per class or None for all, whether rule 6 made it) under dtype `dt`; all zeros when
        nothing fits."""
        per_frame = frame_bytes(latent_shape, dt)
        once = set_bytes(latent_shape, dt)
        room = budget_bytes - once  # what the frames (and labels) share
        # K from the frames alone (rules 2-3); the labels (rule 5) only ever cost videos.
        k = min(num_frames, max(room, 0) // per_frame // num_videos) if frames_per_video is None else frames_per_video
        k = max(k, 1)
        per_video = k * per_frame + label_bytes
        if num_videos * per_video > room:
            cap = videos_per_class_cap(counts, max(room, 0) // per_video)
            return k, [min(cap, n) for n in counts], False
        if once and frames_per_video is None:  # rule 6: the once-per-set bytes cost videos, not a frame of each
            k_free = min(num_frames, budget_bytes // per_frame // num_videos)
            if k_free > k:
                kept = drop_fewest(counts, num_videos - room // (k_free * per_frame + label_bytes))
                if kept is not None and sum(kept) * k_free > num_videos * k:  # only if it stores more frames
                    return k_free, kept, True
        return k, None, False

    chosen = "uint8" if dtype == "auto" else dtype
    k, kept, rule_6 = plan_for(chosen)
    if dtype == "auto" and kept is None and plan_for("float16") == (k, None, False):
        chosen = "float16"  # same K and videos at higher precision costs nothing
    per_frame = frame_bytes(latent_shape, chosen)
    once = set_bytes(latent_shape, chosen)
    if kept is not None and max(kept) < 1:
        one_each = Fraction(100 * (len(counts) * (k * per_frame + label_bytes) + once), full_bytes)
        ways = ["fewer frames per video"] if k > 1 else []
        ways += ["uint8 storage (--dtype uint8)"] if chosen == "float16" else []
        ways += ["fewer label bytes (uint8 soft labels, or hard labels)"] if label_bytes else []
        labels = f" and its {label_bytes} label bytes" if label_bytes else ""
        raise ValueError(
            f"ratio {float(exact_ratio):.6g}% ({budget_bytes:,} bytes) cannot hold {k} {chosen} latent "
            f"frame(s){labels} for one video of each of the {len(counts)} classes; the smallest ratio that can is "
            f"{math.ceil(one_each * 10**6) / 10**6:.6f}%" + (f" (or use {' / '.join(ways)})" if ways else "")
        )
    coreset = kept is not None and sum(kept) < num_videos
    kept = counts if kept is None else kept
    stored = sum(kept) * (k * per_frame + label_bytes) + once
    assert stored <= budget_bytes, (stored, budget_bytes)  # the rules above guarantee it
    next_ratio = None
    if not coreset and k < num_frames:
        next_ratio = float(Fraction(100 * (num_videos * ((k + 1) * per_frame + label_bytes) + once), full_bytes))
    return BudgetPlan(
        ratio=float(exact_ratio),
        frames_per_video=k,
        videos_per_class=dict(zip(keys, kept)) if keys is not None else kept,
        total_videos=sum(kept),
        num_videos=num_videos,
        dtype=chosen,
        bytes_per_frame=per_frame,
        stored_bytes=stored,
        full_bytes=full_bytes,
        budget_bytes=budget_bytes,
        achieved_ratio=float(Fraction(100 * stored, full_bytes)),
        coreset=coreset,
        visual_tokens_per_sample=qwen_visual_tokens(k, (h, w)),
        num_frames=num_frames,
        frame_size=(h, w),
        latent_shape=latent_shape,
        next_frames_ratio=next_ratio,
        label_bytes_per_video=label_bytes,
        label_bytes=sum(kept) * label_bytes,
        set_bytes=once,
        set_bytes_videos=num_videos - sum(kept) if rule_6 else 0,
    )
