"""A no-weights stand-in codec: 8x8 average pooling of RGB. It is NOT a learned VAE."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from compressa_hf.codecs.base import LATENT_MAGNITUDE, LATENT_SHIFT, LatentCodec


class PixelCodec(LatentCodec):
    """The fallback for machines with no VAE weights at all; it is not a learned VAE and not the paper's codec.

    "Latents" are the 8x8 block means of the RGB frame (3 channels), mapped from [0, 1] into the raw-latent range
    [-3, 3] so that `scale_latents` / `latents_to_uint8` store them like a real codec's (exactly invertible, no
    clamping inside [0, 1]). Decoding is bilinear upsampling, which is differentiable, so the distillation runs end
    to end; but everything finer than 8 pixels is lost, so results with it say nothing about a learned codec.
    """

    codec_id = "pixel:avgpool8"
    latent_channels = 3
    downscale = 8
    weights_source = "none (no learned weights: 8x8 average pooling)"

    def __init__(self):
        super().__init__()
        # No parameters, so the base class's device/dtype (read off the first parameter) come from this buffer;
        # `.to(device, dtype)` moves and casts it like a weight.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)
        self.freeze()

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def dtype(self) -> torch.dtype:
        return self._anchor.dtype

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x, kernel_size=self.downscale)
        return (pooled - LATENT_SHIFT) * (2 * LATENT_MAGNITUDE)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        # The affine inverse of `_encode`, not `base.scale_latents`, whose clamp would zero gradients out of range.
        rgb = z / (2 * LATENT_MAGNITUDE) + LATENT_SHIFT
        return F.interpolate(rgb, scale_factor=self.downscale, mode="bilinear", align_corners=False)
