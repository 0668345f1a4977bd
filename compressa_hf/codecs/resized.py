"""A codec that stores frames at a smaller side: the latent frame side as a lever of the byte budget.

`resize:<stored>/<size>:<codec spec>` wraps any codec: a `size` x `size` frame is downscaled to `stored` x `stored`
(bilinear with antialiasing) before the inner codec encodes it, and a decoded `stored` frame is upscaled back to
`size` (bilinear), so everything downstream (methods, the evaluation networks, the test clips, the full-data
reference) still sees `size` x `size` frames while each stored latent frame is `(C, stored / 8, stored / 8)`:
`(size / stored)^2` times fewer bytes, so a ratio buys that many more frames or videos, at the cost of detail finer
than the stored side. Why a codec and not a flag of each command: the latent cache, the budget planner (which
counts `codec.latent_shape(size, size)`), every method and every reader of a published set (`load_codec` on the
card's `codec_id`) then handle it with no special case. VDSD and GVD make the same trade (spatial detail for
temporal coverage) by other means.

Example: TAEF2 at 48 px stores 32 x 6 x 6 = 1,152 bytes a uint8 frame; `resize:32/48:tae:taef2` stores 32 x 4 x 4 =
512, so the ratio of one 48-px frame per video (`k1` of the plain codec, 2.083 % at T = 8) buys 2 of them. Compare
the two at a percent ratio: `k<K>` means K frames of the codec in use, so it is smaller with the wrapper.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from compressa_hf.codecs.base import LatentCodec

SPEC = re.compile(r"(\d+)/(\d+):(.+)")


class ResizedCodec(LatentCodec):
    """`inner` applied at `stored` x `stored` pixels to frames of `size` x `size` (see the module docstring).

    Raises:
        ValueError: unless `stored` < `size`, `stored` is a multiple of the inner codec's downscale, and
            `downscale` = inner downscale x size / stored is an integer (so latent and frame sides stay whole).
    """

    def __init__(self, inner: LatentCodec, stored: int, size: int):
        super().__init__()
        if not 0 < stored < size:
            raise ValueError(f"resize codec: the stored side must be below the frame side, got {stored}/{size}")
        if stored % inner.downscale:
            raise ValueError(
                f"resize codec: the stored side {stored} must be a multiple of {inner.codec_id}'s downscale "
                f"{inner.downscale}"
            )
        if (inner.downscale * size) % stored:
            raise ValueError(
                f"resize codec: {stored}/{size} does not give a whole downscale ({inner.downscale} x {size} / {stored}); "
                f"pick a stored side that divides {inner.downscale * size}"
            )
        self.inner, self.stored, self.size = inner, int(stored), int(size)
        self.latent_channels = inner.latent_channels
        self.downscale = inner.downscale * size // stored
        self.codec_id = f"resize:{stored}/{size}:{inner.codec_id}"
        self.weights_source = getattr(inner, "weights_source", "")
        self.revision = getattr(inner, "revision", None)

    @property
    def device(self) -> torch.device:
        return self.inner.device

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.dtype

    def freeze(self) -> ResizedCodec:
        self.inner.freeze()
        self.eval()
        return self

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        if (height, width) != (self.size, self.size):
            raise ValueError(
                f"codec {self.codec_id} takes {self.size} x {self.size} frames, got {height} x {width}; use "
                f"resize:{self.stored}/{height}:... for --size {height}"
            )
        return self.inner.latent_shape(self.stored, self.stored)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        small = F.interpolate(x, size=(self.stored, self.stored), mode="bilinear", antialias=True, align_corners=False)
        return self.inner._encode(small.clamp(0, 1).contiguous(memory_format=torch.channels_last))

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        small = self.inner._decode(z)
        return F.interpolate(small.float(), size=(self.size, self.size), mode="bilinear", align_corners=False).to(
            small.dtype
        )


def load_resized(location: str, device, dtype) -> ResizedCodec:
    """`resize:<stored>/<size>:<inner spec>` (the part after `resize:` is `location`)."""
    from compressa_hf.codecs import load_codec

    match = SPEC.fullmatch(location)
    if not match:
        raise ValueError(
            f"bad resize codec {location!r}: expected resize:<stored>/<size>:<codec spec>, e.g. resize:32/48:tae:taef2"
        )
    stored, size, inner = int(match[1]), int(match[2]), match[3]
    return ResizedCodec(load_codec(inner, device=device, dtype=dtype), stored, size).freeze()
