"""Key-frame rows: a clip of T latent frames stored as a few of them (its key frames) at known positions, every other
frame being the linear interpolation, in latent space, of its two neighbouring key frames (PRISM's representation;
`compressa_hf.distillation.methods.prism`), and the index that says where the key frames sit, in the fewest bytes.

Shapes: a set of M clips of T frames is held either as
- a key mask `(M, T)` bool with the frames `(M, T, *frame)` (values at non-key positions are ignored), as PRISM
  optimises it, or
- padded rows `(M, K_max, *frame)` with positions `(M, K_max)` (ascending, -1 after a row's own K) and counts
  `(M,)`, as `CompressedSet` holds rows of different K, or
- the stored form: the key frames of every row one after another `(sum K, *frame)` and an index (`encode_index`).

The index costs `index_bytes`: a T-bit mask per clip (`ceil(T / 8)` bytes each, `numpy.packbits`, most significant
bit first), or one uint8 position per key frame (T <= 256). `cheapest_index` picks the smaller; the mask wins
whenever clips hold at least T / 8 key frames on average (always for T <= 16 with the first and last frame kept).
Position rows are told apart without counts because every row starts at position 0 (PRISM keeps each clip's first
frame), so a 0 opens the next row.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Index encodings of key-frame positions (see the module docstring).
INDEX_ENCODINGS = ("mask", "positions")

#: Longest clip whose positions fit in one uint8 each.
MAX_POSITION_FRAMES = 256


def _check_mask(key_mask: torch.Tensor) -> None:
    if key_mask.dim() != 2 or key_mask.dtype != torch.bool:
        raise ValueError(f"key mask must be bool (M, T), got {key_mask.dtype} {tuple(key_mask.shape)}")
    if key_mask.shape[0] and not bool(key_mask.any(dim=1).all()):
        empty = torch.nonzero(~key_mask.any(dim=1)).flatten()[:5].tolist()
        raise ValueError(f"every clip needs at least one key frame; clips {empty} have none")


def interpolation_weights(key_mask: torch.Tensor) -> torch.Tensor:
    """`(M, T, T)` float32 weights W with `clip[m, t] = sum_s W[m, t, s] * keys[m, s]`.

    A key frame copies itself; a frame between key frames l < t < r is `(1 - a) keys[l] + a keys[r]` with
    `a = (t - l) / (r - l)`; a frame before the first key frame (or after the last) copies that key frame. Columns of
    non-key frames are zero, so `W^T` maps frame gradients onto key frames only.
    """
    _check_mask(key_mask)
    m, t = key_mask.shape
    pos = torch.arange(t).expand(m, t)
    left = torch.where(key_mask, pos, -1).cummax(dim=1).values
    right = torch.where(key_mask, pos, t).flip(1).cummin(dim=1).values.flip(1)
    left = torch.where(left < 0, right, left)
    right = torch.where(right >= t, left, right)
    span = (right - left).clamp_min(1).float()
    alpha = torch.where(right > left, (pos - left).float() / span, torch.zeros(()))
    weights = torch.zeros(m, t, t)
    weights.scatter_add_(2, left[..., None], (1 - alpha)[..., None])
    weights.scatter_add_(2, right[..., None], alpha[..., None])
    return weights


def interpolate(frames: torch.Tensor, key_mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """`(M, T, *frame)` clips from `frames` `(M, T, *frame)` whose key frames (`key_mask`) are kept and whose other
    frames are rebuilt by linear interpolation (`interpolation_weights`, or the `weights` already computed)."""
    weights = interpolation_weights(key_mask) if weights is None else weights
    flat = frames.flatten(2)
    return torch.einsum("mts,msd->mtd", weights.to(flat), flat).view(frames.shape)


def padded_to_mask(positions: torch.Tensor, counts: torch.Tensor, num_frames: int) -> torch.Tensor:
    """`(M, T)` key mask of padded rows: `positions` `(M, K_max)` among `num_frames`, `counts` `(M,)` valid each."""
    m, width = positions.shape
    valid = torch.arange(width).expand(m, width) < counts[:, None]
    if bool((positions[valid] < 0).any()) or bool((positions[valid] >= num_frames).any()):
        raise ValueError(f"key-frame positions must be in [0, {num_frames}), got {positions[valid].tolist()[:8]}")
    mask = torch.zeros(m, num_frames, dtype=torch.bool)
    rows = torch.arange(m)[:, None].expand(m, width)
    mask[rows[valid], positions[valid].long()] = True
    if not torch.equal(mask.sum(1), counts.long()):
        raise ValueError("key-frame positions repeat within a row")
    return mask


def expand_rows(latents: torch.Tensor, positions: torch.Tensor, counts: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Padded key-frame rows `(M, K_max, *frame)` -> the `(M, T, *frame)` clips they stand for (key frames at their
    `positions`, the rest interpolated)."""
    mask = padded_to_mask(positions, counts, num_frames)
    m, width = positions.shape
    valid = torch.arange(width).expand(m, width) < counts[:, None]
    rows = torch.arange(m)[:, None].expand(m, width)
    full = torch.zeros(m, num_frames, *latents.shape[2:], dtype=latents.dtype)
    full[rows[valid], positions[valid].long()] = latents[valid]
    return interpolate(full, mask)


def mask_to_padded(frames: torch.Tensor, key_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(M, T, *frame)` frames and their key mask -> padded rows `(M, K_max, *frame)` (zeros after a row's K),
    positions `(M, K_max)` (-1 after a row's K) and counts `(M,)`."""
    _check_mask(key_mask)
    counts = key_mask.sum(dim=1)
    width = int(counts.max()) if len(counts) else 0
    m = len(key_mask)
    slots = torch.arange(width).expand(m, width) < counts[:, None]
    padded = torch.zeros(m, width, *frames.shape[2:], dtype=frames.dtype)
    padded[slots] = frames[key_mask]
    positions = torch.full((m, width), -1, dtype=torch.long)
    positions[slots] = torch.nonzero(key_mask)[:, 1]
    return padded, positions, counts


def index_bytes(encoding: str, num_videos: int, num_keyframes: int, num_frames: int) -> int:
    """Bytes of the index of `num_keyframes` key frames over `num_videos` clips of `num_frames` frames."""
    if encoding == "mask":
        return num_videos * math.ceil(num_frames / 8)
    if encoding == "positions":
        if num_frames > MAX_POSITION_FRAMES:
            raise ValueError(f"uint8 positions hold T <= {MAX_POSITION_FRAMES} frames, got T = {num_frames}")
        return num_keyframes
    raise ValueError(f"index encoding must be one of {INDEX_ENCODINGS}, got {encoding!r}")


def cheapest_index(num_videos: int, num_keyframes: int, num_frames: int) -> str:
    """The encoding with the fewer `index_bytes` (the mask on a tie)."""
    if num_frames > MAX_POSITION_FRAMES:
        return "mask"
    mask = index_bytes("mask", num_videos, num_keyframes, num_frames)
    return "mask" if mask <= index_bytes("positions", num_videos, num_keyframes, num_frames) else "positions"


def encode_index(key_mask: torch.Tensor, encoding: str) -> torch.Tensor:
    """The stored uint8 index of `key_mask` `(M, T)`: `(M, ceil(T / 8))` packed bits or `(sum K,)` positions."""
    _check_mask(key_mask)
    if encoding == "mask":
        return torch.from_numpy(np.packbits(key_mask.numpy(), axis=1))
    if encoding == "positions":
        index_bytes("positions", 0, 0, key_mask.shape[1])  # T fits uint8
        if len(key_mask) and not bool(key_mask[:, 0].all()):
            raise ValueError("the positions index needs every clip's first frame as a key frame (a 0 opens a row)")
        return torch.nonzero(key_mask)[:, 1].to(torch.uint8)
    raise ValueError(f"index encoding must be one of {INDEX_ENCODINGS}, got {encoding!r}")


def decode_index(index: torch.Tensor, encoding: str, num_videos: int, num_frames: int) -> torch.Tensor:
    """The `(M, T)` key mask an index stands for (the inverse of `encode_index`)."""
    if index.dtype != torch.uint8:
        raise ValueError(f"a key-frame index is uint8, got {index.dtype}")
    if encoding == "mask":
        bits = np.unpackbits(index.numpy(), axis=1, count=num_frames)
        mask = torch.from_numpy(bits.astype(bool)).view(num_videos, num_frames)
    elif encoding == "positions":
        pos = index.long()
        row = torch.cumsum(pos == 0, dim=0) - 1
        if len(pos) and (int(pos[0]) != 0 or int(row[-1]) != num_videos - 1):
            raise ValueError(
                f"positions index holds {int(row[-1]) + 1 if len(pos) else 0} rows, expected {num_videos}"
            )
        mask = torch.zeros(num_videos, num_frames, dtype=torch.bool)
        mask[row, pos] = True
    else:
        raise ValueError(f"index encoding must be one of {INDEX_ENCODINGS}, got {encoding!r}")
    _check_mask(mask)
    return mask
