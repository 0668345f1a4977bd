"""Full data: every real frame of every training clip, as uint8 pixels (no codec). The reference column.

It is not a method at a ratio: its stored bytes are the denominator of every ratio (100 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from compressa_hf.distillation.methods.base import CompressedSet, MethodContext

KIND = "reference"


@dataclass
class Options:
    """Full data has no hyperparameters."""


def compress(ctx: MethodContext) -> CompressedSet:
    ctx.method_options(Options, "full")
    pixels = ctx.pixels(lazy=True)  # a lazy row array stays one: training reads it batch by batch
    return CompressedSet(
        method="full",
        labels=ctx.labels.clone(),
        stored={"pixels": pixels},
        pixels=pixels,
        source_videos=torch.arange(ctx.num_videos),
        frame_indices=torch.arange(ctx.num_frames).expand(ctx.num_videos, -1).clone(),
        budget_bytes=ctx.full_bytes,
        info={"source": "real frames" if ctx.pixels_fn is not None else "decoded cached latents"},
    )
