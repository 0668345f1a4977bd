"""Random K: K distinct frames per clip drawn uniformly at random, kept in temporal order (the frame-selection
floor). Every learnt or heuristic selector should beat it; how far it stays above it says how much its choice of
frames, rather than keeping one frame of every clip, is worth.

The draw is `numpy.random.default_rng([seed, video])` per video, so a clip's frames do not depend on which other
clips the plan keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from compressa_hf.distillation.methods.base import CompressedSet, MethodContext, frame_selection_set

KIND = "selection"
__all__ = ["KIND", "Options", "compress"]


@dataclass
class Options:
    """Random frame selection has no hyperparameters (`ctx.seed` is its only input)."""


def compress(ctx: MethodContext) -> CompressedSet:
    ctx.method_options(Options, "random_frame")

    def select(videos: torch.Tensor, k: int) -> torch.Tensor:
        rows = [
            np.sort(np.random.default_rng([ctx.seed, int(v)]).choice(ctx.num_frames, k, replace=False)) for v in videos
        ]
        return torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, k, dtype=torch.long)

    return frame_selection_set(ctx, "random_frame", select, info={"seed": ctx.seed})
