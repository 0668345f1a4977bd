"""madebyollin's tiny autoencoders (TAESD, TAEF1, TAEF2) in their raw `taesd.py` layout, as a `LatentCodec`.

This module is hand-written rather than a thin wrapper over diffusers' `AutoencoderTiny` because TAEF2 (the FLUX.2
latent space, 32 channels) adds a GroupNorm "pool" branch to its mid blocks, and `AutoencoderTiny` has no such
branch: it cannot hold TAEF2's weights. The raw layout below (an `nn.Sequential` encoder and decoder, as in
github.com/madebyollin/taesd `taesd.py`) loads every variant's `<name>_encoder` / `<name>_decoder` state dicts with
`strict=True`, so a wrong file fails loudly instead of decoding noise.

Images are in [0, 1] on both sides (TAESD's own convention, no [-1, 1] shift); latents are raw, in about [-3, 3].
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from compressa_hf.codecs.base import LatentCodec

WIDTH = 64  # every TAE variant is 64 channels wide
DOWNSCALE = 8  # three stride-2 convs


@dataclass(frozen=True)
class TAEVariant:
    """What distinguishes the TAE variants structurally: the latent width and the mid-block GroupNorm branch."""

    latent_channels: int
    midblock_gn: bool


VARIANTS: dict[str, TAEVariant] = {
    "taesd": TAEVariant(latent_channels=4, midblock_gn=False),  # SD 1.x/2.x (taesdxl has the same shape)
    "taef1": TAEVariant(latent_channels=16, midblock_gn=False),  # FLUX.1 (taesd3 has the same shape)
    "taef2": TAEVariant(latent_channels=32, midblock_gn=True),  # FLUX.2
}


def conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of the decoder input to (-3, 3), so out-of-range latents (e.g. mid-optimisation) stay decodable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Residual conv block; with `midblock_gn`, TAEF2's GroupNorm branch is first added to the input."""

    def __init__(self, n_in: int, n_out: int, midblock_gn: bool = False):
        super().__init__()
        self.conv = nn.Sequential(conv(n_in, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()
        self.pool = None
        if midblock_gn:
            n_gn = 4 * n_in
            # Not inplace (upstream uses ReLU(inplace=True)): the distillation backpropagates through this decoder.
            self.pool = nn.Sequential(
                nn.Conv2d(n_in, n_gn, 1, bias=False),
                nn.GroupNorm(4, n_gn),
                nn.ReLU(),
                nn.Conv2d(n_gn, n_in, 1, bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def build_encoder(latent_channels: int, midblock_gn: bool = False) -> nn.Sequential:
    c, mid = WIDTH, midblock_gn
    return nn.Sequential(
        conv(3, c), Block(c, c),
        conv(c, c, stride=2, bias=False), Block(c, c), Block(c, c), Block(c, c),
        conv(c, c, stride=2, bias=False), Block(c, c), Block(c, c), Block(c, c),
        conv(c, c, stride=2, bias=False), Block(c, c, mid), Block(c, c, mid), Block(c, c, mid),
        conv(c, latent_channels),
    )  # fmt: skip


def build_decoder(latent_channels: int, midblock_gn: bool = False) -> nn.Sequential:
    c, mid = WIDTH, midblock_gn
    return nn.Sequential(
        Clamp(), conv(latent_channels, c), nn.ReLU(),
        Block(c, c, mid), Block(c, c, mid), Block(c, c, mid), nn.Upsample(scale_factor=2), conv(c, c, bias=False),
        Block(c, c), Block(c, c), Block(c, c), nn.Upsample(scale_factor=2), conv(c, c, bias=False),
        Block(c, c), Block(c, c), Block(c, c), nn.Upsample(scale_factor=2), conv(c, c, bias=False),
        Block(c, c), conv(c, 3),
    )  # fmt: skip


# Index of the encoder's last conv and the decoder's first conv in the Sequentials above.
_ENCODER_OUT = "14.weight"
_DECODER_IN = "1.weight"


def variant_name(arch: TAEVariant) -> str:
    """The first variant with this structure, or `tae<C>` for an unlisted one (the structure still loads)."""
    return next((name for name, v in VARIANTS.items() if v == arch), f"tae{arch.latent_channels}")


def detect_variant(state_dict: dict[str, torch.Tensor], part: str) -> TAEVariant:
    """Structure of an encoder or decoder state dict: latent width from its latent-side conv, GroupNorm branch."""
    key = {"encoder": _ENCODER_OUT, "decoder": _DECODER_IN}[part]
    if key not in state_dict:
        raise ValueError(
            f"not a TAE {part} state dict: key {key!r} missing (first keys: {list(state_dict)[:4]}); "
            f"expected madebyollin's raw taesd.py layout (<name>_{part}.pth / .safetensors)"
        )
    weight = state_dict[key]
    latent_channels = weight.shape[0] if part == "encoder" else weight.shape[1]
    midblock_gn = any(".pool." in k for k in state_dict)
    return TAEVariant(latent_channels=int(latent_channels), midblock_gn=midblock_gn)


class TinyAutoencoder(LatentCodec):
    """A frozen TAE (taesd / taef1 / taef2 structure) used frame by frame: [0, 1] RGB <-> raw latents.

    Build one with `load_tae` for real weights; `TinyAutoencoder("taef2")` gives a randomly initialised one (tests).
    """

    downscale = DOWNSCALE

    def __init__(
        self, variant: str | TAEVariant = "taesd", name: str | None = None, weights_source: str = "random-init"
    ):
        super().__init__()
        if isinstance(variant, str):
            if variant not in VARIANTS:
                raise ValueError(f"unknown TAE variant {variant!r}; pick one of {sorted(VARIANTS)}")
            variant = VARIANTS[variant]
        self.arch = variant
        self.variant = variant_name(variant)
        self.latent_channels = variant.latent_channels
        self.encoder = build_encoder(variant.latent_channels, variant.midblock_gn)
        self.decoder = build_decoder(variant.latent_channels, variant.midblock_gn)
        self.codec_id = f"tae:{name or self.variant}"
        self.weights_source = weights_source
        self.freeze()

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


_SUFFIXES = (".safetensors", ".pth")  # preference order: safetensors cannot carry code at all


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A tensor-only state dict from `.safetensors`, or from `.pth` through `torch.load(weights_only=True)`.

    `weights_only=True` makes the unpickler refuse any global that is not a tensor building block, so a `.pth`
    holding an object whose unpickling would run code raises instead of running it.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state_dict = load_file(str(path), device="cpu")
    elif path.suffix == ".pth":
        with open(path, "rb") as f:
            state_dict = torch.load(f, map_location="cpu", weights_only=True)
    else:
        raise ValueError(f"unsupported weights file {path}: expected .safetensors or .pth")
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise TypeError(f"{path} does not hold a state dict of tensors (got {type(state_dict).__name__})")
    return state_dict


def find_tae_files(directory: str | os.PathLike) -> tuple[Path, Path]:
    """The `<name>_encoder` / `<name>_decoder` pair in a directory, safetensors preferred over pth."""
    directory = Path(directory)
    names = sorted(
        {m.group(1) for p in directory.iterdir() if (m := re.fullmatch(r"(.+)_encoder\.(safetensors|pth)", p.name))}
    )
    if not names:
        raise FileNotFoundError(f"no <name>_encoder.safetensors / <name>_encoder.pth in {directory}")
    if len(names) > 1:
        raise ValueError(
            f"{directory} holds several TAEs ({names}); pass one encoder file, e.g. {directory / names[0]}_encoder.pth"
        )
    encoder = next(path for s in _SUFFIXES if (path := directory / f"{names[0]}_encoder{s}").exists())
    return _pair_for(encoder)


def _pair_for(encoder: Path) -> tuple[Path, Path]:
    stem = encoder.name[: -len(encoder.suffix)]
    if not stem.endswith("_encoder"):
        raise ValueError(
            f"cannot find the decoder for {encoder}: name it <name>_encoder{encoder.suffix}, or pass decoder="
        )
    base = stem[: -len("_encoder")]
    for suffix in (encoder.suffix, *_SUFFIXES):
        decoder = encoder.with_name(f"{base}_decoder{suffix}")
        if decoder.exists():
            return encoder, decoder
    raise FileNotFoundError(f"no {base}_decoder.safetensors / .pth beside {encoder}")


def load_tae(
    path_or_dir: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    decoder: str | os.PathLike | None = None,
) -> TinyAutoencoder:
    """Load a frozen TAE from a directory holding `<name>_encoder.*` + `<name>_decoder.*`, or from explicit files.

    `path_or_dir` is the directory, or the encoder file (the decoder is then the `<name>_decoder` file beside it
    unless `decoder` is given). The variant is read off the state dicts, and both must agree.
    """
    path = Path(path_or_dir).expanduser()
    if path.is_dir():
        if decoder is not None:
            raise ValueError(f"pass an encoder file, not the directory {path}, together with decoder={decoder}")
        encoder_file, decoder_file = find_tae_files(path)
    elif path.is_file():
        encoder_file, decoder_file = (path, Path(decoder)) if decoder is not None else _pair_for(path)
    else:
        raise FileNotFoundError(f"TAE weights not found: {path} is neither a directory nor a file")

    encoder_sd, decoder_sd = read_state_dict(encoder_file), read_state_dict(decoder_file)
    arch = detect_variant(encoder_sd, "encoder")
    if (decoder_arch := detect_variant(decoder_sd, "decoder")) != arch:
        raise ValueError(
            f"encoder {encoder_file} is {arch} but decoder {decoder_file} is {decoder_arch}; pass a matching pair"
        )

    # The file name tells taesd from taesdxl (same structure, different latent spaces); the structure cannot.
    named = re.fullmatch(r"(.+)_encoder\.\w+", encoder_file.name)
    source = f"{encoder_file.resolve()}, {decoder_file.resolve()}"
    codec = TinyAutoencoder(arch, name=named.group(1) if named else None, weights_source=source)
    codec.encoder.load_state_dict(encoder_sd, strict=True)
    codec.decoder.load_state_dict(decoder_sd, strict=True)
    return codec.to(device=device, dtype=dtype).freeze()
