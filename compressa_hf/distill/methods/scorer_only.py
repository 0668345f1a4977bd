"""The Gumbel frame scorer without latent updates (the paper's selection-only ablation): VideoCompressa's scorer
and guide are trained exactly as in the method, but the latents stay the cached ones, so the set is a pure frame
selection (K cached frames per video, chosen by the trained scorer). Options are `VideoCompressaConfig`'s."""

from __future__ import annotations

import torch

from compressa_hf.distill.methods.base import CompressedSet, MethodContext, frame_selection_set
from compressa_hf.distill.methods.videocompressa import Options, run_distill

KIND = "selection"
__all__ = ["KIND", "Options", "compress"]


def compress(ctx: MethodContext) -> CompressedSet:
    plan, videos, result = run_distill(ctx, "scorer_only", update_latents=False)

    def select(chosen: torch.Tensor, k: int) -> torch.Tensor:
        # frame_selection_set re-derives the same plan and the same seeded videos; check, then hand back.
        if not torch.equal(chosen, videos) or k != plan.frames_per_video:
            raise AssertionError("scorer_only: the plan changed between distillation and storage")
        return result.frame_indices

    return frame_selection_set(ctx, "scorer_only", select, info={"distill": result.summary()})
