"""How latent frames are stored, and what each format costs in bytes: `uint8`, `float16` and `uint4`.

The budget counts these bytes exactly (`compressa_hf.distillation.budget`), and every reader of a set (the evaluation,
`compressa show`, the chat samples) turns them back into raw latents with `dequantise`.

- `uint8`: TAESD's 8-bit convention (`codecs.base.latents_to_uint8`): raw latents in [-3, 3] mapped to 0..255,
  1 byte per value, no side information. ~0.1 dB decoded PSNR cost (FACTS.md).
- `float16`: the raw latents, 2 bytes per value.
- `uint4`: 4 bits per value, two values per byte, with an affine range per latent channel for the whole set: each
  channel c has `lo_c = min`, `hi_c = max` of the set's values (stored as float16, `(C, 2)`, 4 bytes per channel,
  counted once per set), and a value z becomes `q = round((z - lo_c) / (hi_c - lo_c) * 15)` in 0..15. A frame's
  codes are packed in C x h x w order, two per byte (the first in the low nibble), the last byte half empty when the
  count is odd: `ceil(C h w / 2)` bytes a frame. Why per channel and per set: TAEF2's 32 channels have different
  spreads, and a fixed [-3, 3] range at 16 levels (a step of 0.4) wastes most levels on values no channel takes;
  per-set ranges cost 128 bytes for TAEF2 (0.07 % of arid6_iid's k1 budget), per-frame ones would cost 11 % of a
  576-byte frame. The choice is ours: LVDD (the latent-space paper that recompresses) uses PCA / Tucker instead
  (`compressa_hf.distillation.methods.lvdd`).
A published set's rows hold uint4 codes unpacked, one uint8 (0..15) per value, so every reader indexes them like
uint8 latents; the card records the format and the ranges (`latent_ranges`), and the stored bytes the budget counts
are the packed ones (the parquet file's dictionary encoding keeps the unpacked column near 4 bits per value).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from compressa_hf.codecs.base import latents_to_uint8, uint8_to_latents

#: Bits per stored latent value of each format.
BITS = {"uint8": 8, "float16": 16, "uint4": 4}
UINT4_LEVELS = 15
RANGES_KEY = "latent_ranges"


def check_format(dtype: str) -> str:
    """`dtype` if it is a storage format, else `ValueError` listing them."""
    if dtype not in BITS:
        raise ValueError(f"latent storage dtype must be one of {sorted(BITS)}, got {dtype!r}")
    return dtype


def frame_bytes(latent_shape: Sequence[int], dtype: str) -> int:
    """Bytes of one stored latent frame `(C, h, w)`: `ceil(C h w bits / 8)`."""
    return math.ceil(math.prod(latent_shape) * BITS[check_format(dtype)] / 8)


def set_bytes(latent_shape: Sequence[int], dtype: str) -> int:
    """Bytes a set stores once besides its frames: uint4's per-channel ranges (`C x 2` float16), else 0."""
    return 4 * int(latent_shape[0]) if check_format(dtype) == "uint4" else 0


def _channel_ranges(latents: torch.Tensor) -> torch.Tensor:
    """`(C, 2)` float16 [min, max] of each channel over every frame of `(..., C, h, w)` latents (max > min: a constant
    channel gets a width of one float16 step). The float16 rounding of the ends moves them by at most 2^-11 of their
    size; a value outside the rounded range is clamped to the end code."""
    c = latents.shape[-3]
    if latents.numel() == 0:
        return torch.tensor([[0.0, 1.0]] * c, dtype=torch.float16)
    per_channel = latents.detach().float().movedim(-3, 0).reshape(c, -1)
    lo, hi = per_channel.amin(1).half(), per_channel.amax(1).half()
    hi = torch.where(hi > lo, hi, lo.nextafter(torch.tensor(math.inf, dtype=torch.float16)))
    return torch.stack([lo, hi], 1)


def pack_uint4(codes: torch.Tensor) -> torch.Tensor:
    """`(..., C, h, w)` uint8 codes 0..15 -> `(..., ceil(C h w / 2))` bytes, two codes a byte (first = low nibble)."""
    flat = codes.to(torch.uint8).flatten(-3)
    if flat.shape[-1] % 2:
        flat = torch.cat([flat, flat.new_zeros((*flat.shape[:-1], 1))], -1)
    return flat[..., 0::2] | (flat[..., 1::2] << 4)


def unpack_uint4(packed: torch.Tensor, latent_shape: Sequence[int]) -> torch.Tensor:
    """Inverse of `pack_uint4`: `(..., ceil(C h w / 2))` bytes -> `(..., C, h, w)` uint8 codes."""
    n = math.prod(latent_shape)
    codes = torch.stack([packed & 0xF, packed >> 4], -1).flatten(-2)[..., :n]
    return codes.reshape(*packed.shape[:-1], *latent_shape)


def quantise(latents: torch.Tensor, dtype: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Raw latents `(..., C, h, w)` -> (the tensors stored in `dtype`, the float32 raw latents read back from them).

    Stored tensors: `latents` (uint8 values; float16 values; uint4: `(..., ceil(C h w / 2))` packed bytes) and, for
    uint4, `latent_ranges` `(C, 2)` float16. Their `nbytes` sum is what the budget counts (`frame_bytes` per frame +
    `set_bytes`).
    """
    check_format(dtype)
    if dtype == "uint8":
        q = latents_to_uint8(latents)
        return {"latents": q}, uint8_to_latents(q)
    if dtype == "float16":
        h = latents.to(torch.float16)
        return {"latents": h}, h.float()
    ranges = _channel_ranges(latents)
    codes = uint4_codes(latents, ranges)
    return {"latents": pack_uint4(codes), RANGES_KEY: ranges}, uint4_to_latents(codes, ranges)


def uint4_codes(latents: torch.Tensor, ranges: torch.Tensor) -> torch.Tensor:
    """`(..., C, h, w)` raw latents -> uint8 codes 0..15 under the per-channel `ranges` `(C, 2)`."""
    lo, hi = (ranges[:, i].float()[:, None, None] for i in (0, 1))
    return ((latents.float() - lo) / (hi - lo) * UINT4_LEVELS).round().clamp(0, UINT4_LEVELS).to(torch.uint8)


def uint4_to_latents(codes: torch.Tensor, ranges: torch.Tensor) -> torch.Tensor:
    """uint8 codes 0..15 `(..., C, h, w)` -> float32 raw latents: `lo + q / 15 (hi - lo)` per channel."""
    lo, hi = (torch.as_tensor(ranges)[:, i].float()[:, None, None] for i in (0, 1))
    return lo + codes.float() / UINT4_LEVELS * (hi - lo)


def stored_codes(stored: dict[str, torch.Tensor], dtype: str, latent_shape: Sequence[int]) -> torch.Tensor:
    """The per-value view of stored latents that a published row holds: uint8 / float16 as stored, uint4 unpacked
    to one uint8 code (0..15) per value, shaped `(..., C, h, w)`."""
    if check_format(dtype) == "uint4":
        return unpack_uint4(stored["latents"], latent_shape)
    return stored["latents"]


def dequantise(values, dtype: str, ranges=None) -> torch.Tensor:
    """A published row's latents (an array of uint8 / float16 values, or uint4 codes as uint8) -> float32 raw latents
    `(..., C, h, w)`. `ranges` `(C, 2)` (the card's `latent_ranges`) is required for uint4 and ignored otherwise."""
    check_format(dtype)
    if dtype == "uint4":
        if ranges is None:
            raise ValueError("uint4 latents need their per-channel ranges (the card's `latent_ranges`)")
        return uint4_to_latents(torch.as_tensor(np.asarray(values, dtype=np.uint8)), torch.as_tensor(ranges))
    z = torch.as_tensor(np.asarray(values, dtype=np.uint8 if dtype == "uint8" else np.float16))
    return uint8_to_latents(z) if dtype == "uint8" else z.float()
