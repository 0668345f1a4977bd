"""Video classifiers used to guide distillation and to evaluate distilled sets, chosen by name from `NETS`.

All take clips as `(B, T, 3, H, W)` floats in [0, 1] and return `(B, num_classes)` logits, for any number of
frames T (a distilled set has K frames per clip, a full clip T), and share the constructor signature
`(num_classes, channels=3, size=112, width=128, ..., norm=...)`, so `build_net(name, num_classes, size, width=w)`
builds any of them. The five are the cross-architecture set of VDSD and VideoCompressa's Table 2.

- `ConvNet`: the dataset-distillation standard (DC / DM / MTT code): `depth` blocks of conv3x3 -> norm -> ReLU ->
  avgpool2, then flatten and a linear layer, applied to every frame; per-frame features are averaged over time
  before the linear layer ("temporal mean pooling", VDSD's `VideoConvNetMean`). `instancenorm` is, as in that
  code, `GroupNorm(width, width)`; `groupnorm` is `GroupNorm(4, width)`.
- `ConvNet3D`: VDSD's 3D ConvNet: three conv3d blocks (kernel (3, 7, 7), stride (1, 2, 2), padding (1, 3, 3);
  64 then `width` channels) with ReLU and max-pooling ((1, 2, 2) after the first block, 2 after the others), no
  normalisation, then average pooling, dropout, a 1x1x1 conv to the classes and a max over time.
- `MLP`: DC-bench's three-layer perceptron (flatten -> `width` -> `width` -> classes, ReLU) on every frame, the
  second hidden layer averaged over time before the last layer. No convolution, no normalisation.
- `RNN` / `GRU`: VDSD's `VideoConvNetRNN` / `VideoConvNetGRU` idea, made lighter: the ConvNet stem on every frame,
  adaptively average-pooled to a `grid` x `grid` map, flattened and fed in time order to a one-layer `nn.RNN` (tanh)
  or `nn.GRU` with `width` hidden units; the outputs are averaged over time before the linear layer. With
  ConvNet3D, the nets whose logits depend on the order of the frames.

`ConvNet`, `MLP`, `RNN` and `GRU` also expose `embed(x) -> (B, num_features)` and a linear `classifier`, with
`forward(x) == classifier(embed(x))`; the model-based coresets (herding, GraNd) rely on that split.

Registry: `NETS` maps a name to a class; `build_net(name, num_classes, size, **kw)` builds one. A new
architecture is one class and one entry.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("instancenorm", "groupnorm", "batchnorm", "none")


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _check_clips(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() == 4:  # one frame per clip, (B, 3, H, W)
        x = x.unsqueeze(1)
    if x.dim() != 5:
        raise ValueError(f"{name} takes clips shaped (B, T, C, H, W), got a tensor of shape {tuple(x.shape)}")
    return x


def _norm_layer(norm: str, width: int) -> nn.Module:
    if norm == "instancenorm":
        return nn.GroupNorm(width, width, affine=True)
    if norm == "groupnorm":
        return nn.GroupNorm(4, width, affine=True)
    if norm == "batchnorm":
        return nn.BatchNorm2d(width)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; pick one of {NORMS}")


def _conv_stem(channels: int, width: int, depth: int, norm: str) -> nn.Sequential:
    """`depth` blocks of conv3x3 -> norm -> ReLU -> avgpool2 (the DC / DM / MTT ConvNet's feature extractor)."""
    layers: list[nn.Module] = []
    in_ch = channels
    for _ in range(depth):
        layers += [
            nn.Conv2d(in_ch, width, kernel_size=3, padding=1),
            _norm_layer(norm, width),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(kernel_size=2, stride=2),
        ]
        in_ch = width
    return nn.Sequential(*layers)


def _check_frames(x: torch.Tensor, name: str, channels: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """`_check_clips`, plus the channel count and (for nets with a fixed flatten size) the frame size."""
    x = _check_clips(x, name)
    if x.shape[2] != channels:
        raise ValueError(f"this {name} was built for {channels}-channel frames, got {x.shape[2]} channels")
    if size is not None and tuple(x.shape[3:]) != size:
        raise ValueError(f"this {name} was built for {size[0]}x{size[1]} frames, got {x.shape[3]}x{x.shape[4]}")
    return x


class ConvNet(nn.Module):
    """Per-frame 2D ConvNet with temporal mean pooling (the distillation literature's default network).

    Args:
        num_classes: Number of output logits.
        channels: Input channels (3 for RGB frames).
        size: Frame size, `int` or `(H, W)`; both must be multiples of `2 ** depth`. The flatten size of the
            classifier is computed from it, so a net built for 112 refuses 64x64 frames.
        width: Channels of every conv layer (128 in DC/DM/MTT).
        depth: Number of conv blocks (3 in the paper).
        norm: One of `NORMS`; `instancenorm` (default, as in DC/DM/MTT) is `GroupNorm(width, width)`.
    """

    def __init__(
        self,
        num_classes: int,
        channels: int = 3,
        size: int | tuple[int, int] = 112,
        width: int = 128,
        depth: int = 3,
        norm: str = "instancenorm",
    ):
        super().__init__()
        height, wide = _pair(size)
        if height % 2**depth or wide % 2**depth:
            raise ValueError(
                f"ConvNet with depth {depth} needs a frame size that is a multiple of {2**depth}, got {height}x{wide}"
            )
        self.features = _conv_stem(channels, width, depth, norm)
        self.size = (height, wide)
        self.num_features = width * (height // 2**depth) * (wide // 2**depth)
        self.classifier = nn.Linear(self.num_features, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, num_features): per-frame features averaged over time."""
        x = _check_clips(x, "ConvNet")
        b, t, c, h, w = x.shape
        if (h, w) != self.size:
            raise ValueError(f"this ConvNet was built for {self.size[0]}x{self.size[1]} frames, got {h}x{w}")
        feats = self.features(x.reshape(b * t, c, h, w)).reshape(b, t, -1)
        return feats.mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class ConvNet3D(nn.Module):
    """VDSD's 3D ConvNet (Wang et al., CVPR 2024), without normalisation.

    Three blocks of conv3d (kernel (3, 7, 7), stride (1, 2, 2), padding (1, 3, 3)) -> ReLU -> max-pool; the first
    block has 64 channels and pools (1, 2, 2), the others have `width` channels and pool 2 in time and space.
    Then spatial average pooling, dropout, a 1x1x1 conv to the classes and a max over the remaining time steps.

    Two departures from VDSD's code, both forced by short clips (a distilled clip has K = 1..4 frames):
    - the temporal pooling kernel is `min(2, frames left)`, and pools use `ceil_mode=True`, so T = 1 works and an
      odd number of frames keeps its last one (VDSD pools a fixed 2 and floors, which fails below 4 frames);
    - the final pooling is adaptive over space only (VDSD uses a fixed (2, 2, 2) or (2, 1, 1) window, which also
      needs T >= 8 after its poolings), so any H, W and T give one spatial position per remaining time step.

    Args:
        num_classes: Number of output logits.
        channels: Input channels (3 for RGB).
        size: Frame size, `int` or `(H, W)`; only checked to be at least 8 (the net is size-agnostic).
        width: Channels of the second and third block (128 in VDSD).
        dropout: Dropout probability before the classifier (VDSD's `dropout_keep_prob=0.5` is passed to
            `nn.Dropout`, i.e. it is a drop probability).
        norm: Must be "none": VDSD's 3D ConvNet has no normalisation. Accepted so that `build_net` can pass a
            shared keyword set.
    """

    def __init__(
        self,
        num_classes: int,
        channels: int = 3,
        size: int | tuple[int, int] = 112,
        width: int = 128,
        dropout: float = 0.5,
        norm: str = "none",
    ):
        super().__init__()
        if norm != "none":
            raise ValueError(f"ConvNet3D (VDSD) has no normalisation layers; pass norm='none', got {norm!r}")
        height, wide = _pair(size)
        if min(height, wide) < 8:
            raise ValueError(f"ConvNet3D needs frames of at least 8x8, got {height}x{wide}")
        geometry = dict(kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3))
        self.convs = nn.ModuleList(
            [
                nn.Conv3d(channels, 64, **geometry),
                nn.Conv3d(64, width, **geometry),
                nn.Conv3d(width, width, **geometry),
            ]
        )
        self.dropout = nn.Dropout(dropout)
        self.logit = nn.Conv3d(width, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_clips(x, "ConvNet3D").permute(0, 2, 1, 3, 4)  # (B, C, T, H, W)
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            kt = 1 if i == 0 else min(2, x.shape[2])
            x = F.max_pool3d(x, kernel_size=(kt, 2, 2), stride=(kt, 2, 2), ceil_mode=True)
        x = F.adaptive_avg_pool3d(x, (x.shape[2], 1, 1))
        logits = self.logit(self.dropout(x)).flatten(3).squeeze(3)  # (B, classes, T')
        return logits.max(dim=2).values


class MLP(nn.Module):
    """Per-frame three-layer perceptron with temporal mean pooling (DC-bench's MLP, applied to every frame).

    Every frame is flattened and goes through Linear(`width`) -> ReLU -> Linear(`width`) -> ReLU; the second hidden
    layer is averaged over time (as ConvNet averages its features) and a linear layer gives the logits. VDSD's own
    "MLP" (`VideoConvNetMLP`) is a ConvNet with a learned weighting of exactly 16 frames, which cannot take the 1-4
    frames of a distilled clip; this is the frame-count-free reading used here.

    Args:
        num_classes: Number of output logits.
        channels: Input channels (3 for RGB).
        size: Frame size, `int` or `(H, W)`; the first layer has `channels * H * W` inputs, so a net built for 112
            refuses 64x64 frames.
        width: Hidden units of both hidden layers (128 in DC-bench).
        norm: Must be "none": the MLP has no normalisation layers. Accepted so that `build_net` can pass a shared
            keyword set.
    """

    def __init__(
        self,
        num_classes: int,
        channels: int = 3,
        size: int | tuple[int, int] = 112,
        width: int = 128,
        norm: str = "none",
    ):
        super().__init__()
        if norm != "none":
            raise ValueError(f"MLP has no normalisation layers; pass norm='none', got {norm!r}")
        self.size = _pair(size)
        self.channels = channels
        self.num_features = width
        self.fc1 = nn.Linear(channels * self.size[0] * self.size[1], width)
        self.fc2 = nn.Linear(width, width)
        self.classifier = nn.Linear(width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, width): the second hidden layer of every frame, averaged over time."""
        x = _check_frames(x, "MLP", self.channels, self.size)
        b, t = x.shape[:2]
        hidden = F.relu(self.fc2(F.relu(self.fc1(x.reshape(b * t, -1)))))
        return hidden.reshape(b, t, -1).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class _RecurrentNet(nn.Module):
    """ConvNet stem per frame -> `grid` x `grid` adaptive average pooling -> a one-layer recurrent net over time.

    The classifier reads the mean of the recurrent outputs over time (as VDSD's `VideoConvNetRNN` / `GRU` do), not
    the last hidden state: every frame then gets a direct path to the loss (a plain tanh RNN's last state mostly
    forgets the first frames of a 16-frame test clip).

    Departures from VDSD, both to keep the net small at any frame size: the hidden size is `width` (VDSD: the
    flattened feature size / 8, 1024 at 64x64), and the stem's map is pooled to `grid` x `grid` before flattening
    (VDSD flattens the whole 8x8 map), which also keeps the RNN's input small enough that its tanh does not start
    saturated.

    Args:
        num_classes: Number of output logits.
        channels: Input channels (3 for RGB).
        size: Frame size, `int` or `(H, W)`; at least `2 ** depth` (the adaptive pooling makes the net otherwise
            size-agnostic).
        width: Channels of the stem and hidden units of the recurrent layer.
        depth: Conv blocks of the stem (3, as in ConvNet).
        norm: Normalisation of the stem, one of `NORMS` (default `instancenorm`, as VDSD's ConvNet stem).
        grid: Side of the pooled map fed to the recurrent layer (`width * grid ** 2` inputs per frame).
    """

    cell: type[nn.RNNBase]
    name: str

    def __init__(
        self,
        num_classes: int,
        channels: int = 3,
        size: int | tuple[int, int] = 112,
        width: int = 128,
        depth: int = 3,
        norm: str = "instancenorm",
        grid: int = 4,
    ):
        super().__init__()
        height, wide = _pair(size)
        if min(height, wide) < 2**depth:
            raise ValueError(
                f"{self.name} with depth {depth} needs frames of at least {2**depth}, got {height}x{wide}"
            )
        if grid < 1:
            raise ValueError(f"{self.name} needs grid >= 1, got {grid}")
        self.channels, self.min_size = channels, 2**depth
        self.features = _conv_stem(channels, width, depth, norm)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.recurrent = self.cell(width * grid * grid, width, num_layers=1, batch_first=True)
        self.num_features = width
        self.classifier = nn.Linear(width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, width): recurrent outputs over the frames in time order, averaged over time."""
        x = _check_frames(x, self.name, self.channels)
        b, t, c, h, w = x.shape
        if min(h, w) < self.min_size:
            raise ValueError(f"{self.name} needs frames of at least {self.min_size}x{self.min_size}, got {h}x{w}")
        feats = self.pool(self.features(x.reshape(b * t, c, h, w))).reshape(b, t, -1)
        outputs, _ = self.recurrent(feats)
        return outputs.mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class RNN(_RecurrentNet):
    """ConvNet stem + a one-layer tanh `nn.RNN` over time (VDSD's `VideoConvNetRNN`, lighter; see `_RecurrentNet`)."""

    cell = nn.RNN
    name = "RNN"


class GRU(_RecurrentNet):
    """ConvNet stem + a one-layer `nn.GRU` over time (VDSD's `VideoConvNetGRU`, lighter; see `_RecurrentNet`)."""

    cell = nn.GRU
    name = "GRU"


NETS: dict[str, type[nn.Module]] = {"convnet": ConvNet, "convnet3d": ConvNet3D, "mlp": MLP, "rnn": RNN, "gru": GRU}


def build_net(name: str, num_classes: int, size: int | tuple[int, int], **kw) -> nn.Module:
    """Build the network registered as `name` for `num_classes` classes and `size` frames."""
    if name not in NETS:
        raise ValueError(f"unknown network {name!r}; registered: {sorted(NETS)}")
    return NETS[name](num_classes=num_classes, size=size, **kw)
