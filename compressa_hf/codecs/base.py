"""The latent codec interface: a frozen tiny VAE that maps RGB frames in [0, 1] to latents and back."""

from __future__ import annotations

import torch
from torch import nn

# TAESD's convention for 8-bit latent storage (madebyollin/taesd README): raw latents live in about [-3, 3];
# x / (2 * 3) + 0.5 maps them into [0, 1], where uint8 quantisation costs ~0.1 dB PSNR.
LATENT_MAGNITUDE = 3.0
LATENT_SHIFT = 0.5


def scale_latents(z: torch.Tensor) -> torch.Tensor:
    """Raw latents -> [0, 1] (clamped), ready for uint8 storage."""
    return z.div(2 * LATENT_MAGNITUDE).add(LATENT_SHIFT).clamp(0, 1)


def unscale_latents(z: torch.Tensor) -> torch.Tensor:
    """[0, 1] latents -> raw latents."""
    return z.sub(LATENT_SHIFT).mul(2 * LATENT_MAGNITUDE)


def latents_to_uint8(z: torch.Tensor) -> torch.Tensor:
    return scale_latents(z.float()).mul(255).round().to(torch.uint8)


def uint8_to_latents(q: torch.Tensor) -> torch.Tensor:
    return unscale_latents(q.float().div(255))


class LatentCodec(nn.Module):
    """A frozen image autoencoder used frame by frame.

    Subclasses set `codec_id` (what a dataset card records so a reader can rebuild the codec from the registry),
    `latent_channels` and `downscale`, and implement `_encode` / `_decode` on raw tensors. Gradients flow through
    `decode` (the distillation optimises latents through the frozen decoder); parameters never require grad.
    """

    codec_id: str = ""
    latent_channels: int = 4
    downscale: int = 8

    def freeze(self) -> LatentCodec:
        """Eval mode, no parameter gradients, channels-last weights.

        Channels-last (NHWC) lets oneDNN and cuDNN pick their fast convolution kernels: a TAEF2 decode of a 112x112
        frame on 2 CPU cores takes ~48 ms instead of ~67 ms in fp32, and ~22 ms in bf16 (`bench/distill.py`).
        """
        self.eval()
        self.requires_grad_(False)
        self.to(memory_format=torch.channels_last)
        return self

    @staticmethod
    def _nhwc(x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        if height % self.downscale or width % self.downscale:
            raise ValueError(
                f"frame size {height}x{width} is not a multiple of the codec's downscale {self.downscale}; "
                f"pick a --size that is (e.g. 112 or 64)"
            )
        return (self.latent_channels, height // self.downscale, width // self.downscale)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """(N, 3, H, W) floats in [0, 1] -> (N, C, H/8, W/8) raw latents (float32), in batches."""
        out = [
            self._encode(self._nhwc(chunk.to(self.device, self.dtype))).float().contiguous()
            for chunk in torch.split(images, batch_size)
        ]
        return torch.cat(out) if out else images.new_zeros((0, *self.latent_shape(*images.shape[-2:])))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) raw latents -> (N, 3, 8h, 8w) images in [0, 1]; differentiable w.r.t. `latents`."""
        return self._decode(self._nhwc(latents.to(self.dtype))).float().clamp(0, 1).contiguous()

    def _encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _decode(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
