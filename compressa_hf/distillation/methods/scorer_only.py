"""The Gumbel frame scorer without latent updates (the paper's selection-only ablation): VideoCompressa's scorer
and guide are trained exactly as in the method, but the latents stay the cached ones, so the set is a pure frame
selection (K cached frames per video, chosen by the trained scorer). Options are `VideoCompressaConfig`'s."""

from __future__ import annotations

from compressa_hf.distillation.methods.base import CompressedSet, MethodContext, planned_set
from compressa_hf.distillation.methods.videocompressa import Options, run_distill

KIND = "selection"
__all__ = ["KIND", "Options", "compress"]


def compress(ctx: MethodContext) -> CompressedSet:
    plan, videos, result, _ = run_distill(ctx, "scorer_only", update_latents=False)
    cached = ctx.latents[videos[:, None], result.frame_indices].float()
    return planned_set(ctx, "scorer_only", plan, videos, cached, result.frame_indices, {"distill": result.summary()})
