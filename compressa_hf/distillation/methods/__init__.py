"""Every distillation method and baseline behind one registry, all at the same stored bytes (`base.py`).

`METHODS` maps a name to the module that implements it. Each module has `KIND` (the table group), an `Options`
dataclass (its hyperparameters, overridable per run) and `compress(ctx: MethodContext) -> CompressedSet`; a module
with `MULTI_PROCESS = True` runs on every process of a multi-process run (`ctx.accelerator`), the others on one.
Besides its plan and diagnostics, a set's `info` may carry `options` (the options as run, when the method settles
some, e.g. K), `card_diagnostics` (the method's own figures, which the card adds to `diagnostics`) and `card` (keys
the method adds to its card's meta). Modules are imported on first use, so listing
the registry is cheap.

| name | kind | what it stores |
|---|---|---|
| videocompressa | ours | K optimised latent frames per video (Gumbel scorer + latents + guide, jointly) |
| scorer_only | selection | K cached latent frames per video chosen by the Gumbel scorer trained without latent updates |
| uniform | selection | K uniformly spaced cached latent frames per video |
| random_frame | selection | K random cached latent frames per video (the selection floor) |
| pixel_diff | selection | the K frames with the largest pixel change from the previous frame |
| avs | selection | adaptive video sampling: shot-boundary scores, NMS, top-K, in time order |
| random | coreset | all T latent frames of random whole clips |
| herding | coreset | whole clips chosen by herding on proxy-network features |
| forgetting | coreset | whole clips most often forgotten during proxy training |
| grand | coreset | whole clips with the largest expected gradient norm early in proxy training |
| dm | synthesis | synthetic latent clips matched to the real ones by distribution matching |
| lvdd | synthesis | diverse whole clips (k-DPP / k-means on latents) recompressed by Tucker / PCA |
| prism | synthesis | a variable number of latent key frames per synthetic clip, the rest interpolated (PRISM) |
| mtt | synthesis | synthetic latent clips matched to expert training trajectories (MTT, as VDSD runs it) |
| datm | synthesis | MTT with a widening start-epoch window and learned soft labels, stored in the budget (DATM) |
| dm_vdsd | synthesis | VDSD's static frames + 1-channel motion maps + a 3D-conv combiner, learned by DM |
| mtt_vdsd | synthesis | VDSD's static frames + 1-channel motion maps + a 3D-conv combiner, learned by MTT |
| full | reference | every real frame of every clip (the full training split) |
"""

from __future__ import annotations

import importlib
from types import ModuleType

from compressa_hf.distillation.methods.base import CompressedSet, MethodContext

METHODS: dict[str, str] = {
    "videocompressa": "compressa_hf.distillation.methods.videocompressa",
    "scorer_only": "compressa_hf.distillation.methods.scorer_only",
    "uniform": "compressa_hf.distillation.methods.uniform",
    "random_frame": "compressa_hf.distillation.methods.random_frame",
    "pixel_diff": "compressa_hf.distillation.methods.pixel_diff",
    "avs": "compressa_hf.distillation.methods.avs",
    "random": "compressa_hf.distillation.methods.random_coreset",
    "herding": "compressa_hf.distillation.methods.herding",
    "forgetting": "compressa_hf.distillation.methods.forgetting",
    "grand": "compressa_hf.distillation.methods.grand",
    "dm": "compressa_hf.distillation.methods.dm",
    "lvdd": "compressa_hf.distillation.methods.lvdd",
    "prism": "compressa_hf.distillation.methods.prism",
    "mtt": "compressa_hf.distillation.methods.mtt",
    "datm": "compressa_hf.distillation.methods.datm",
    "dm_vdsd": "compressa_hf.distillation.methods.dm_vdsd",
    "mtt_vdsd": "compressa_hf.distillation.methods.mtt_vdsd",
    "full": "compressa_hf.distillation.methods.full",
}


#: The methods that store the planner's K frames per video, so `MethodContext.frames_per_video` (`--frames_per_video`)
#: sets their K; the others choose their own (whole clips, key frames, recompressed clips, VDSD memories).
FIXED_K_METHODS = (
    "videocompressa", "scorer_only", "uniform", "random_frame", "pixel_diff", "avs", "dm", "mtt", "datm",
)  # fmt: skip


def get_method(name: str) -> ModuleType:
    """The module implementing method `name` (`KIND`, `Options`, `compress`)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; registered: {sorted(METHODS)}")
    return importlib.import_module(METHODS[name])


def compress(name: str, ctx: MethodContext) -> CompressedSet:
    """Run method `name` on `ctx`; the result's stored bytes are checked against the budget, and
    `info["diagnostics"]` gets `compressa_hf.distillation.diagnostics.set_diagnostics` (drift from the cached latents in
    storage steps, decoded PSNR, overlap with uniform K) for sets of real frames; `info["diagnostics_s"]` is the
    seconds those took, which a method's cost leaves out (they decode frames the method never needed)."""
    import time

    from compressa_hf.distillation.diagnostics import set_diagnostics
    from compressa_hf.distillation.methods.base import check_budget

    if ctx.frames_per_video is not None and name not in (*FIXED_K_METHODS, "full"):
        raise ValueError(
            f"method {name!r} chooses its own frames per video; --frames_per_video applies to {', '.join(FIXED_K_METHODS)}"
        )
    cset = get_method(name).compress(ctx)
    if cset.method != name:
        raise AssertionError(f"method {name!r} returned a set labelled {cset.method!r}")
    if name == "full":
        return cset
    start = time.perf_counter()
    cset.info["diagnostics"] = set_diagnostics(cset, ctx.latents, ctx.codec)
    cset.info["diagnostics_s"] = time.perf_counter() - start
    return check_budget(cset, ctx.budget_bytes)


__all__ = ["FIXED_K_METHODS", "METHODS", "CompressedSet", "MethodContext", "compress", "get_method"]
