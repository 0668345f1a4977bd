"""Random whole clips: all T latent frames of v videos per class drawn at random (the coreset floor).

The draw of class c comes from `numpy.random.default_rng([seed, c])`, so a class's videos do not depend on how
many other classes were drawn before it (classes the budget holds entirely are never drawn).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from compressa_hf.distillation.methods.base import CompressedSet, MethodContext, whole_clip_set
from compressa_hf.distillation.methods.proxy import class_of

KIND = "coreset"
__all__ = ["KIND", "Options", "compress"]


@dataclass
class Options:
    """Random selection has no hyperparameters (`ctx.seed` is its only input)."""


def compress(ctx: MethodContext) -> CompressedSet:
    ctx.method_options(Options, "random")

    def rank(members: torch.Tensor, v: int) -> torch.Tensor:
        rng = np.random.default_rng([ctx.seed, class_of(ctx, members)])
        return members[torch.from_numpy(rng.permutation(len(members))[:v])]

    return whole_clip_set(ctx, "random", rank, info={"seed": ctx.seed})
