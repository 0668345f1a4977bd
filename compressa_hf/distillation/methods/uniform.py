"""Uniform K: the centre frame of each of K equal segments of the T cached frames (TSN-style), no optimisation.

The simplest frame-selection baseline; at K = 1 it is the "1 uniform frame per clip" row of FACTS.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from compressa_hf.clips import uniform_indices
from compressa_hf.distillation.methods.base import CompressedSet, MethodContext, frame_selection_set

KIND = "selection"


@dataclass
class Options:
    """Uniform selection has no hyperparameters."""


def compress(ctx: MethodContext) -> CompressedSet:
    ctx.method_options(Options, "uniform")

    def select(videos: torch.Tensor, k: int) -> torch.Tensor:
        row = torch.tensor(uniform_indices(ctx.num_frames, k), dtype=torch.long)
        return row.expand(len(videos), k).clone()

    return frame_selection_set(ctx, "uniform", select)
