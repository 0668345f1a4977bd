"""The frame scorer phi of VideoCompressa (arXiv 2511.18831, Sec. 4.1 and 11): one importance logit per decoded
frame."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FrameScorer(nn.Module):
    """The frame scorer phi: one importance logit per decoded frame, `(B, T, 3, H, W) -> (B, T)`.

    Two 3x3 conv layers and a linear layer (Sec. 4.1 / 11). Left open by the paper and chosen here: `width`
    channels in both convs, stride 2 in both (cheap next to the decoder), ReLU after each, no normalisation,
    adaptive average pooling to `pool x pool` before the linear layer (any frame size, coarse layout kept).
    Frames are scored independently; the softmax over a video's logits makes the scores relative.
    """

    def __init__(self, channels: int = 3, width: int = 32, pool: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.head = nn.Linear(width * pool * pool, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        x = frames.reshape(b * t, *frames.shape[2:])
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.head(self.pool(x).flatten(1)).view(b, t)
