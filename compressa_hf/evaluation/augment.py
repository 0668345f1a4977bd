"""Augmentation of the clips a network trains on, DSA-style, one draw per clip for all of its frames.

Why: every image-distillation evaluation since DSA (Zhao & Bilen, "Dataset Condensation with Differentiable Siamese
Augmentation", ICML 2021) trains the student on the small set with random augmentation, and the video methods built
on it (VDSD, Wang et al. CVPR 2024; VideoCompressa) reuse that code with one draw per video, so a clip's frames move
together and its motion stays what it was. `compressa evaluate --augment` reports it as rows of their own
(`<row>+aug`, trained on the very same set as `<row>`), so the paper's protocol (flips only) stays comparable.

Transforms (`TRANSFORMS`), each drawing its parameters once per clip from the caller's generator and applying them to
every frame of the clip, on `(B, K, 3, H, W)` floats in [0, 1]. Magnitudes are DSA's `ParamDiffAug` defaults; DSA
applies them to mean/std-normalised images, so the one additive shift (brightness) is rescaled to [0, 1] units by a
typical channel std of 0.25; the others are scale-free. As in DSA, nothing is clamped back to [0, 1].
- `flip`: horizontal flip with probability 0.5.
- `scale`: independent x / y scale factors in [1/1.2, 1.2] (bilinear, zeros outside).
- `rotate`: rotation by an angle in [-15, 15] degrees (bilinear, zeros outside).
- `crop`: translation by an integer number of pixels in [-0.125 side, +0.125 side] on each axis, zeros shifted in
  (DSA's pad-and-crop).
- `cutout`: a square of half the side set to zero, centred anywhere in the frame (partly outside near an edge).
- `color`: brightness (add a shift in [-0.125, 0.125]), saturation (scale each pixel's deviation from its grey mean
  by a factor in [0, 2]), contrast (scale each frame's deviation from its own mean by a factor in [0.5, 1.5]).
- `temporal`: temporal jitter, not in DSA: shift the clip's frame order by -1, 0 or +1 (the edge frame repeated), so
  a K-frame row is seen at slightly different moments; a one-frame clip is unchanged.
`mode="single"` (DSA's default `aug_mode='S'`) draws one transform of the strategy per batch; `"all"` applies every
transform in the order given (DSA's `'M'`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# DSA's ParamDiffAug defaults (VICO-UoE/DatasetCondensation, utils.py).
SCALE = 1.2
ROTATE_DEGREES = 15.0
CROP_PAD = 0.125
CUTOUT = 0.5
BRIGHTNESS = 1.0 * 0.25  # DSA's 1.0 in normalised units, x 0.25 (a typical channel std) in [0, 1] units
SATURATION = 2.0
CONTRAST = 0.5
FLIP_PROBABILITY = 0.5

#: `dsa`: DSA's default strategy (`color_crop_cutout_flip_scale_rotate`) plus temporal jitter.
DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate_temporal"
MODES = ("single", "all")
AUG_SUFFIX = "+aug"


def aug_name(row: str) -> str:
    """The report row of `row` trained with augmentation: `uniform` -> `uniform+aug`, `full` -> `full+aug`."""
    return row + AUG_SUFFIX


def unaugmented(row: str) -> str:
    """The row whose set `row` trains on: `uniform+soft+aug` -> `uniform+soft`; a row without `+aug` is its own."""
    return row[: -len(AUG_SUFFIX)] if row.endswith(AUG_SUFFIX) else row


def _rand(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator)


def _as_images(x: torch.Tensor) -> torch.Tensor:
    """`(B, K, 3, H, W)` -> `(B, K * 3, H, W)`: one image per clip, so one warp moves every frame alike."""
    b, k, c, h, w = x.shape
    return x.reshape(b, k * c, h, w)


def _warp(x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Each clip through its own 2 x 3 affine map `theta` `(B, 2, 3)` (DSA's affine_grid / grid_sample)."""
    images = _as_images(x)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(images.shape), align_corners=True)
    return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=True).view_as(x)


def flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    chosen = (_rand(len(x), g) < FLIP_PROBABILITY).to(x.device)
    return torch.where(chosen[:, None, None, None, None], x.flip(-1), x)


def scale(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    sx = _rand(len(x), g) * (SCALE - 1 / SCALE) + 1 / SCALE
    sy = _rand(len(x), g) * (SCALE - 1 / SCALE) + 1 / SCALE
    zero = torch.zeros(len(x))
    theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
    return _warp(x, theta)


def rotate(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    angle = (_rand(len(x), g) - 0.5) * 2 * math.radians(ROTATE_DEGREES)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros(len(x))
    theta = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
    return _warp(x, theta)


def crop(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    b, _, _, h, w = x.shape
    sh, sw = int(h * CROP_PAD + 0.5), int(w * CROP_PAD + 0.5)
    dy = torch.randint(-sh, sh + 1, (b,), generator=g)
    dx = torch.randint(-sw, sw + 1, (b,), generator=g)
    # Integer shifts by index arithmetic (not a resampling warp): pixel (i, j) reads (i + dy, j + dx), zero outside.
    rows = torch.arange(h)[None, :] + dy[:, None]  # (B, H)
    cols = torch.arange(w)[None, :] + dx[:, None]  # (B, W)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (B, H, W)
    rows, cols = rows.clamp(0, h - 1).to(x.device), cols.clamp(0, w - 1).to(x.device)
    batch = torch.arange(b, device=x.device)[:, None, None]
    images = _as_images(x).permute(0, 2, 3, 1)  # (B, H, W, K * 3)
    out = images[batch, rows[:, :, None], cols[:, None, :]]
    out = out * inside.to(x.device, x.dtype)[..., None]
    return out.permute(0, 3, 1, 2).reshape(x.shape)


def cutout(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    b, _, _, h, w = x.shape
    ch, cw = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)
    cy = torch.randint(0, h + (1 - h % 2), (b,), generator=g)  # DSA's centres
    cx = torch.randint(0, w + (1 - w % 2), (b,), generator=g)
    rows = torch.arange(h)[None, :] - (cy[:, None] - ch // 2)
    cols = torch.arange(w)[None, :] - (cx[:, None] - cw // 2)
    hole = ((rows >= 0) & (rows < ch))[:, :, None] & ((cols >= 0) & (cols < cw))[:, None, :]  # (B, H, W)
    return x * (~hole).to(x.device, x.dtype)[:, None, None]


def color(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = len(x)
    shift = ((_rand(n, g) - 0.5) * BRIGHTNESS).to(x.device, x.dtype)
    x = x + shift[:, None, None, None, None]
    grey = x.mean(dim=2, keepdim=True)
    factor = (_rand(n, g) * SATURATION).to(x.device, x.dtype)
    x = (x - grey) * factor[:, None, None, None, None] + grey
    mean = x.mean(dim=(2, 3, 4), keepdim=True)  # each frame's own mean, as DSA's per image
    factor = (_rand(n, g) + CONTRAST).to(x.device, x.dtype)
    return (x - mean) * factor[:, None, None, None, None] + mean


def temporal(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    b, k = x.shape[:2]
    shift = torch.randint(-1, 2, (b,), generator=g)
    if k == 1:
        return x
    index = (torch.arange(k)[None, :] + shift[:, None]).clamp(0, k - 1).to(x.device)  # (B, K)
    return x[torch.arange(b, device=x.device)[:, None], index]


#: Registry of the transforms, by the names a strategy joins with `_`.
TRANSFORMS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "color": color,
    "crop": crop,
    "cutout": cutout,
    "flip": flip,
    "scale": scale,
    "rotate": rotate,
    "temporal": temporal,
}


@dataclass(frozen=True)
class Augmentation:
    """A DSA-style augmentation of training clips (see the module docstring).

    Args:
        strategy: Transform names joined by `_` (`TRANSFORMS`), or `dsa` (`DSA_STRATEGY`).
        mode: `single` (one transform of the strategy per batch, DSA's default) or `all` (every one, in order).

    Raises:
        ValueError: naming an unknown transform or mode.
    """

    strategy: str = "dsa"
    mode: str = "single"

    def __post_init__(self):
        unknown = [t for t in self.transforms if t not in TRANSFORMS]
        if not self.transforms or unknown:
            raise ValueError(
                f"unknown augmentation(s) {unknown or [self.strategy]} in {self.strategy!r}; give `dsa` or names "
                f"joined by '_' from {sorted(TRANSFORMS)}"
            )
        if self.mode not in MODES:
            raise ValueError(f"augmentation mode must be one of {MODES}, got {self.mode!r}")

    @property
    def transforms(self) -> list[str]:
        spec = DSA_STRATEGY if self.strategy == "dsa" else self.strategy
        return [t for t in spec.split("_") if t]

    def settings(self) -> dict:
        return {"strategy": self.strategy, "mode": self.mode}

    def __call__(self, clips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """`(B, K, 3, H, W)` float clips -> augmented clips of the same shape; every draw comes from `generator` (a
        CPU generator), so a seeded run repeats itself on any device."""
        if clips.dim() != 5:
            raise ValueError(f"clips must be (B, K, 3, H, W), got shape {tuple(clips.shape)}")
        names = self.transforms
        if self.mode == "single":
            names = [names[int(torch.randint(len(names), (1,), generator=generator))]]
        for name in names:
            clips = TRANSFORMS[name](clips, generator)
        return clips
