"""SVC, the autoencoder token compressor of the AVS/SVC paper (section 3.2.2), and plain 3D average pooling.

    config = TokenCompressorConfig(kind="svc", strides=(4, 4, 4), hidden_size=3584)
    compressor = TokenCompressor(config)
    small = compressor.compress(x)         # (B, D, t, h, w) -> (B, D, ceil(t/4), ceil(h/4), ceil(w/4))
    x_hat = compressor.reconstruct(x)      # the decoder's reconstruction of x from `small`: pre-training's L1 target
    compressor(features, grids)            # per-video (N_i, D) token lists in, compressed lists out (the model hook)
    compressor.save_pretrained("svc")      # compressor_config.json + compressor_model.safetensors, like a PEFT adapter
    TokenCompressor.from_pretrained("svc") # a folder or a Hub model repo

What the paper fixes: a compressor C of cascaded convolutional residual blocks, each 3D convolution factorised into
a 2D spatial convolution that maps the features to fewer channels (a channel bottleneck) and a 1D temporal convolution
that restores them, downsampling by the strides (s_h, s_w) of the 2D and s_t of the 1D convolution (default
4 x 4 x 4 = 64x fewer tokens); its output is added to the 3D average pooling of the same features,
`h = C(f) + avgpool3D(f)` (eq. 10), so that it learns only what pooling loses (without that residual the paper's
autoencoder does not converge, Table 6); a decoder D reconstructs the frozen encoder's features from h, trained with
an L1 loss on video without text (eq. 11).

What the paper leaves open, and what is chosen here:
- Widths. Features (D channels) pass a LayerNorm and a 1 x 1 x 1 convolution to `width` channels (default D / 2);
  inside a block the spatial convolution narrows them to `width / bottleneck_ratio` (default 4) and the temporal one
  restores `width`; a last 1 x 1 x 1 convolution returns to D. For Qwen2.5-VL-7B (D = 3584) that is about 32 M
  parameters in the compressor and as many in the decoder.
- Blocks and kernels. `num_blocks` = 2 pre-norm residual blocks in each of C and D, 3 x 3 spatial and 3-tap temporal
  kernels padded by k // 2, GELU. Each axis's stride is split over the blocks (4 = 2 x 2, 2 = 2 x 1, 8 = 4 x 2: prime
  factors dealt out largest first); a block's skip path is average pooling at its own stride, and a stride-s
  convolution with padding k // 2 gives ceil(n / s) outputs, like the pooling, so the cascade gives exactly the
  pooled grid.
- Scale. C's output (and D's) is multiplied by the root mean square of the grid it read (per video, a constant for
  the gradient): with the LayerNorm at its input, C(a x) = a C(x) for a > 0, like the pooling it corrects, so one
  learning rate suits any token scale (merged tokens of a released checkpoint and of a random tiny model differ by
  orders of magnitude, and Adam's step sizes do not follow the gradient's scale).
- Zero start. C's last convolution starts at zero, so an untrained SVC (and one whose learned weights are all zero)
  is average pooling exactly; SFT with an SVC that was not pre-trained starts from pooling.
- Decoder. The mirror of C: each block first repeats its input (nearest) up to the grid the matching C block received,
  then applies a stride-1 block; its output is added to h repeated up to the input grid (the decoder's side of the
  residual constraint) through a last convolution that also starts at zero.
- Edges. A window that runs past the grid (a 2-group video under temporal stride 4) averages the tokens it covers.

Where it acts on each Qwen-VL family is `compress.attach`'s business; this module sees (B, D, t, h, w) grids.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from compressa_hf.qwen.compress.grid import check_strides, compressed_size

logger = logging.getLogger(__name__)

#: File names of a saved compressor (PEFT names its files adapter_config.json / adapter_model.safetensors; other
#: names keep Trainer from taking a compressor folder inside a checkpoint for a PEFT adapter).
CONFIG_NAME = "compressor_config.json"
WEIGHTS_NAME = "compressor_model.safetensors"

#: Compressor kinds: plain 3D average pooling (no weights) and SVC (pooling plus a learned residual, with a decoder).
KINDS = ("avgpool", "svc")


@dataclass
class TokenCompressorConfig:
    """What a token compressor is; saved as `compressor_config.json` beside its weights.

    Args:
        kind: `avgpool` (3D average pooling, nothing to train) or `svc` (pooling plus the learned residual C, with a
            decoder for pre-training).
        strides: Compression per axis of the language model's token grid, (t, h, w); tokens shrink by about their
            product (exactly, when each divides its axis). The paper's default is 4 x 4 x 4.
        hidden_size: D, channels of the tokens (the merger's output, the language model's hidden size). Needed by
            `svc`; `avgpool` works on any width.
        width: Channels inside C and D; None: hidden_size // 2.
        bottleneck_ratio: The spatial convolution of a block maps `width` to `width // bottleneck_ratio` channels.
        num_blocks: Residual blocks in C and in D.
        spatial_kernel / temporal_kernel: Odd kernel sides of the factorised convolutions.
        family: The Qwen-VL family whose tokens it was built for (`compressa_hf.qwen.FAMILIES`), when known.
        base_model_name_or_path: The checkpoint whose frozen vision tower it was pre-trained on, when it was.
        metadata: Facts about how it was made (pre-training data, steps, final loss), for its card and for readers.
    """

    kind: str = "svc"
    strides: tuple[int, int, int] = (4, 4, 4)
    hidden_size: int | None = None
    width: int | None = None
    bottleneck_ratio: int = 4
    num_blocks: int = 2
    spatial_kernel: int = 3
    temporal_kernel: int = 3
    family: str | None = None
    base_model_name_or_path: str | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"token compressor `kind` must be one of {KINDS}, got {self.kind!r}")
        self.strides = check_strides(self.strides)
        if self.kind == "svc":
            if self.hidden_size is None or self.hidden_size < 1:
                raise ValueError(
                    f"an svc compressor needs `hidden_size` >= 1 (the tokens' width), got {self.hidden_size}"
                )
            if self.width is None:
                self.width = max(1, self.hidden_size // 2)
            if self.bottleneck_ratio < 1 or self.width // self.bottleneck_ratio < 1:
                raise ValueError(
                    f"`bottleneck_ratio` must be >= 1 and leave at least one channel of width {self.width}, got "
                    f"{self.bottleneck_ratio}"
                )
            if self.num_blocks < 1:
                raise ValueError(f"`num_blocks` must be >= 1, got {self.num_blocks}")
            for name in ("spatial_kernel", "temporal_kernel"):
                k = getattr(self, name)
                if k < 1 or k % 2 == 0:
                    raise ValueError(
                        f"`{name}` must be a positive odd integer (padding k // 2 keeps ceil(n / s)), got {k}"
                    )

    @property
    def compression(self) -> int:
        """The product of the strides: how many times fewer tokens a grid divisible by them gets."""
        t, h, w = self.strides
        return t * h * w

    def to_dict(self) -> dict:
        out = asdict(self)
        out["strides"] = list(self.strides)
        return out

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TokenCompressorConfig:
        """Read a `compressor_config.json`; a key this version does not know is an error naming the file."""
        data = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"{path} has keys {unknown} that no TokenCompressorConfig field matches ({sorted(known)})"
            )
        return cls(**data)


def split_stride(stride: int, num_blocks: int) -> list[int]:
    """One axis's stride as `num_blocks` factors whose product is it: prime factors, largest first, each to the
    block whose product is smallest so far (4 -> [2, 2], 8 -> [4, 2], 3 -> [3, 1])."""
    primes, n, p = [], stride, 2
    while n > 1:
        while n % p == 0:
            primes.append(p)
            n //= p
        p += 1
    parts = [1] * num_blocks
    for prime in sorted(primes, reverse=True):
        parts[parts.index(min(parts))] *= prime
    return parts


def avg_pool_tokens(x: torch.Tensor, strides: Sequence[int]) -> torch.Tensor:
    """3D average pooling of a (B, C, t, h, w) token grid with windows = strides: (B, C, ceil(t/st), ...).

    A window that runs past the grid averages the tokens it covers (a 2-long axis under stride 4 is one window of 2).
    """
    if tuple(strides) == (1, 1, 1):
        return x
    kernel = tuple(min(int(n), int(s)) for n, s in zip(x.shape[-3:], strides))
    return F.avg_pool3d(x, kernel_size=kernel, stride=tuple(strides), ceil_mode=True, count_include_pad=False)


def tokens_to_grid(tokens: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """(t * h * w, D) tokens in raster order (as the Qwen-VL mergers emit them) -> a (1, D, t, h, w) grid."""
    t, h, w = (int(v) for v in grid)
    if tokens.shape[0] != t * h * w:
        raise ValueError(f"{tokens.shape[0]} tokens do not fill a {t} x {h} x {w} grid")
    return tokens.reshape(t, h, w, -1).permute(3, 0, 1, 2).unsqueeze(0)


def grid_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(1, D, t, h, w) -> (t * h * w, D) in raster order."""
    return x.squeeze(0).permute(1, 2, 3, 0).reshape(-1, x.shape[1])


def pool_token_lists(
    features: Sequence[torch.Tensor], grids: torch.Tensor, strides: Sequence[int]
) -> list[torch.Tensor]:
    """`avg_pool_tokens` on each video of a list of (N_i, D) token sets with (t, h, w) grids."""
    return [grid_to_tokens(avg_pool_tokens(tokens_to_grid(f, g), strides)) for f, g in zip(features, grids.tolist())]


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, t, h, w) grid: each token normalised on its own, as in a transformer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class FactorisedBlock(nn.Module):
    """A pre-norm residual block whose 3D convolution is factorised: a 2D spatial convolution (`width` -> `width /
    ratio` channels, stride (s_h, s_w)), GELU, a 1D temporal convolution back to `width` (stride s_t). The skip path
    is average pooling at the block's stride."""

    def __init__(self, width: int, bottleneck: int, stride: Sequence[int], spatial_kernel: int, temporal_kernel: int):
        super().__init__()
        st, sh, sw = stride
        self.stride = (st, sh, sw)
        self.norm = ChannelNorm(width)
        self.spatial = nn.Conv3d(
            width,
            bottleneck,
            (1, spatial_kernel, spatial_kernel),
            (1, sh, sw),
            (0, spatial_kernel // 2, spatial_kernel // 2),
        )
        self.temporal = nn.Conv3d(bottleneck, width, (temporal_kernel, 1, 1), (st, 1, 1), (temporal_kernel // 2, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool_tokens(x, self.stride) + self.temporal(F.gelu(self.spatial(self.norm(x))))


def token_scale(x: torch.Tensor) -> torch.Tensor:
    """The root mean square of each grid of a (B, C, t, h, w) batch, (B, 1, 1, 1, 1), as a constant (no gradient)."""
    return x.detach().float().pow(2).mean(dim=(1, 2, 3, 4), keepdim=True).sqrt().clamp_min(1e-12).to(x.dtype)


def _block_strides(config: TokenCompressorConfig) -> list[tuple[int, int, int]]:
    per_axis = [split_stride(s, config.num_blocks) for s in config.strides]
    return [tuple(axis[i] for axis in per_axis) for i in range(config.num_blocks)]


class SVCEncoder(nn.Module):
    """C: the learned part of the compressor; `compress` adds it to the average pooling (eq. 10)."""

    def __init__(self, config: TokenCompressorConfig):
        super().__init__()
        bottleneck = config.width // config.bottleneck_ratio
        self.norm = ChannelNorm(config.hidden_size)
        self.proj_in = nn.Conv3d(config.hidden_size, config.width, 1)
        self.blocks = nn.ModuleList(
            FactorisedBlock(config.width, bottleneck, s, config.spatial_kernel, config.temporal_kernel)
            for s in _block_strides(config)
        )
        self.proj_out = nn.Conv3d(config.width, config.hidden_size, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = token_scale(x)
        x = self.proj_in(self.norm(x))
        for block in self.blocks:
            x = block(x)
        return scale * self.proj_out(x)


class SVCDecoder(nn.Module):
    """D: reconstructs the (B, D, t, h, w) features from the compressed grid, for pre-training (eq. 11)."""

    def __init__(self, config: TokenCompressorConfig):
        super().__init__()
        bottleneck = config.width // config.bottleneck_ratio
        self.block_strides = _block_strides(config)
        self.norm = ChannelNorm(config.hidden_size)
        self.proj_in = nn.Conv3d(config.hidden_size, config.width, 1)
        self.blocks = nn.ModuleList(
            FactorisedBlock(config.width, bottleneck, (1, 1, 1), config.spatial_kernel, config.temporal_kernel)
            for _ in self.block_strides
        )
        self.proj_out = nn.Conv3d(config.width, config.hidden_size, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, h: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        sizes = [tuple(int(n) for n in size)]  # the grid each compressor block received, outermost first
        for stride in self.block_strides[:-1]:
            sizes.append(compressed_size(sizes[-1], stride))
        scale = token_scale(h)
        x = self.proj_in(self.norm(h))
        for block, target in zip(self.blocks, reversed(sizes)):
            x = block(F.interpolate(x, size=target, mode="nearest"))
        return F.interpolate(h, size=sizes[0], mode="nearest") + scale * self.proj_out(x)


class TokenCompressor(nn.Module):
    """A token compressor for the language model's video tokens: 3D average pooling, or SVC (pooling + C, with D).

    `compress(x)` maps a (B, D, t, h, w) grid to (B, D, ceil(t/s_t), ceil(h/s_h), ceil(w/s_w)); calling the module
    does the same for per-video (N_i, D) token lists with their (t, h, w) grids (what `compress.attach` puts between
    a Qwen-VL vision tower and its language model). Inputs are cast to the compressor's dtype and results back to
    theirs.
    """

    def __init__(self, config: TokenCompressorConfig):
        super().__init__()
        self.config = config
        self.encoder = SVCEncoder(config) if config.kind == "svc" else None
        self.decoder = SVCDecoder(config) if config.kind == "svc" else None

    @property
    def strides(self) -> tuple[int, int, int]:
        return self.config.strides

    def _dtype(self, x: torch.Tensor) -> torch.dtype:
        return next(self.parameters()).dtype if self.encoder is not None else x.dtype

    def compress(self, x: torch.Tensor) -> torch.Tensor:
        """h = avgpool3D(x) + C(x) for SVC, avgpool3D(x) for avgpool; (B, D, t, h, w) in, compressed grid out."""
        pooled = avg_pool_tokens(x, self.strides)
        if self.encoder is None:
            return pooled
        out = pooled.to(self._dtype(x)) + self.encoder(x.to(self._dtype(x)))
        return out.to(x.dtype)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """D(compress(x)) at x's grid (SVC only): what the pre-training L1 loss compares with x."""
        if self.decoder is None:
            raise ValueError("an avgpool compressor has no decoder to reconstruct with; use kind svc")
        h = self.compress(x.to(self._dtype(x)))
        return self.decoder(h, x.shape[-3:])

    def forward(self, features: Sequence[torch.Tensor], grids: torch.Tensor) -> list[torch.Tensor]:
        """Per-video (t*h*w, D) tokens with their (N, 3) token grids -> per-video compressed tokens, raster order."""
        return [grid_to_tokens(self.compress(tokens_to_grid(f, g))) for f, g in zip(features, grids.tolist())]

    # -- saving and loading, like a PEFT adapter -----------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike, state_dict: dict | None = None) -> None:
        """Write `compressor_config.json` and, for SVC, `compressor_model.safetensors` into `save_directory`.

        Each file is replaced atomically. `state_dict` overrides the module's own (gathered ZeRO-3 weights)."""
        from safetensors.torch import save_file

        from compressa_hf.io import atomic_write_json

        os.makedirs(save_directory, exist_ok=True)
        if self.encoder is not None:
            state = state_dict if state_dict is not None else self.state_dict()
            tmp = os.path.join(save_directory, f".{WEIGHTS_NAME}.tmp")
            save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, tmp, metadata={"format": "pt"})
            os.replace(tmp, os.path.join(save_directory, WEIGHTS_NAME))
        atomic_write_json(os.path.join(save_directory, CONFIG_NAME), self.config.to_dict())

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, revision: str | None = None, token: str | bool | None = None
    ) -> TokenCompressor:
        """A compressor from a folder written by `save_pretrained`, or from a Hub model repo holding one.

        Raises FileNotFoundError naming the folder when its config or (SVC) weights are missing.
        """
        from safetensors.torch import load_file

        folder = Path(path)
        if not folder.is_dir():
            if os.path.isabs(os.fspath(path)) or str(path).startswith((".", "~")):
                raise FileNotFoundError(f"no token compressor folder {path}")
            from huggingface_hub import snapshot_download

            folder = Path(
                snapshot_download(
                    str(path), revision=revision, token=token, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "README.md"]
                )
            )
        config_file = folder / CONFIG_NAME
        if not config_file.is_file():
            raise FileNotFoundError(
                f"{folder} has no {CONFIG_NAME}: not a token compressor saved by compressa_hf "
                "(recipes/pretrain_svc.py writes one, and recipes/sft_qwen.py one into <output_dir>/token_compressor)"
            )
        compressor = cls(TokenCompressorConfig.from_file(config_file))
        if compressor.encoder is not None:
            weights = folder / WEIGHTS_NAME
            if not weights.is_file():
                raise FileNotFoundError(f"{folder} has an svc {CONFIG_NAME} but no {WEIGHTS_NAME}")
            compressor.load_state_dict(load_file(str(weights)))
        return compressor
