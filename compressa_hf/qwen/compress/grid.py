"""Token-grid arithmetic of a compressed video: one set of rules for the prompt text and the model's positions.

A Qwen-VL video of F frames at H x W pixels reaches the language model as a grid of `t x h x w` visual tokens:
`t = ceil(F / temporal_patch)`, `h = H / (patch * merge)`, `w = W / (patch * merge)`. The processor's
`video_grid_thw` counts patches, `(t, h * merge, w * merge)`. A token compressor with strides `(st, sh, sw)` turns it
into `(ceil(t / st), ceil(h / sh), ceil(w / sw))`: a window that runs past the edge of the grid averages the tokens
it covers (`avg_pool_tokens`), so a 2 x 4 x 4 grid (K = 4 frames at 112 px) under 4 x 4 x 4 strides is one token.

Both sides of the model read these functions: `compress.attach.compressed_processor` writes that many
`<|video_pad|>` tokens (and, for Qwen3-VL, one `<t.t seconds>` text per compressed temporal group), and
`compress.attach.attach_token_compressor` gives `get_rope_index` the compressed grid, so the two always agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Strides = tuple[int, int, int]


def ceil_div(n: int, d: int) -> int:
    return -(-n // d)


def check_strides(strides: Sequence[int]) -> Strides:
    """`strides` as a (t, h, w) tuple of positive ints; ValueError naming the value otherwise."""
    values = tuple(strides)
    if len(values) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in values):
        raise ValueError(f"token compressor strides must be three positive integers (t h w), got {list(values)}")
    return values


def compressed_size(grid: Sequence[int], strides: Sequence[int]) -> tuple[int, int, int]:
    """The (t, h, w) token grid after compression: `ceil(n / s)` on each axis."""
    return tuple(ceil_div(int(n), int(s)) for n, s in zip(grid, strides))


def merged_grids(video_grid_thw: torch.Tensor, merge_size: int) -> torch.Tensor:
    """(N, 3) token grids `(t, h, w)` the language model sees, from the processor's (N, 3) patch grids."""
    out = video_grid_thw.clone()
    out[:, 1:] = out[:, 1:] // merge_size
    return out


def compressed_patch_grids(video_grid_thw: torch.Tensor, strides: Sequence[int], merge_size: int) -> torch.Tensor:
    """The processor-style (N, 3) patch grids of the compressed token grids: what `get_rope_index` and the
    processor's placeholder expansion read (`(t', h' * merge, w' * merge)`)."""
    rows = [compressed_size((t, h // merge_size, w // merge_size), strides) for t, h, w in video_grid_thw.tolist()]
    out = torch.tensor(rows, dtype=video_grid_thw.dtype, device=video_grid_thw.device)
    out[:, 1:] *= merge_size
    return out


def compressed_tokens(video_grid_thw: Sequence[int], strides: Sequence[int], merge_size: int) -> int:
    """Visual tokens of one video, from its processor grid (patches), after compression."""
    t, h, w = (int(v) for v in video_grid_thw)
    ct, ch, cw = compressed_size((t, h // merge_size, w // merge_size), strides)
    return ct * ch * cw


def window_frame_indices(frames_indices: Sequence[int], temporal_patch_size: int, temporal_stride: int) -> list[int]:
    """Frame indices that make Qwen3-VL's timestamp rule give one time per compressed temporal group.

    Qwen3-VL's processor gives each temporal group of `temporal_patch_size` frames the mean time of its first and
    last frame (after repeating the last frame to fill the final group). A compressed group covers `temporal_stride`
    groups; this returns, per compressed group, its first frame followed by its last frame repeated, so the same
    rule gives the mean time of the compressed group's first and last frame.
    """
    window = temporal_patch_size * temporal_stride
    indices = list(frames_indices)
    if not indices:
        raise ValueError("a video with no frames_indices has no timestamps")
    indices += [indices[-1]] * ((-len(indices)) % window)
    out = []
    for lo in range(0, len(indices), window):
        out += [indices[lo]] + [indices[lo + window - 1]] * (temporal_patch_size - 1)
    return out


def choose_strides(grid: Sequence[int], target_tokens: int) -> Strides:
    """Strides that bring a (t, h, w) token grid closest to `target_tokens`, for equal-token comparisons.

    Among strides no larger than their axis, the closest count wins; at equal distance a count not above the target,
    then strides that divide their axes (no window past the edge), then the most balanced strides (the AVS/SVC
    paper's Table 4: balanced spatio-temporal ratios beat heavy ones at equal compression; the smallest
    largest-to-smallest stride ratio), then equal height and width strides, then the larger temporal stride (a
    distilled set keeps fewer frames, not smaller ones), then the smallest windows.
    """
    if target_tokens < 1:
        raise ValueError(f"target_tokens must be >= 1, got {target_tokens}")
    t, h, w = (int(v) for v in grid)
    best = None
    for st in range(1, t + 1):
        for sh in range(1, h + 1):
            for sw in range(1, w + 1):
                ct, ch, cw = compressed_size((t, h, w), (st, sh, sw))
                tokens = ct * ch * cw
                ragged = (t % st != 0) + (h % sh != 0) + (w % sw != 0)
                balance = max(st, sh, sw) / min(st, sh, sw)
                key = (
                    abs(tokens - target_tokens),
                    tokens > target_tokens,
                    ragged,
                    balance,
                    abs(sh - sw),
                    -st,
                    st * sh * sw,
                )
                if best is None or key < best[0]:
                    best = (key, (st, sh, sw))
    return best[1]
