"""What a compressed set did to the frames it keeps: how far its latents moved from the cached ones (in storage
steps and as decoded PSNR) and how much its choice of frames overlaps the uniform one.

Why these: a latent refinement below the storage's resolution is a no-op once the set is written, whatever its
loss curve says, so drift is counted on the stored grid: one step of uint8 storage is 2 x 3 / 255 = 0.0235 of a raw
latent (`compressa_hf.codecs.base`: latents in [-3, 3] mapped to 0..255). Float16 sets are counted on the same
uint8 grid, so their numbers compare with uint8 sets (a float16 set can move by less than one step). The overlap
with uniform says whether a learnt selector chose anything uniform would not have.
"""

from __future__ import annotations

import math

import torch

from compressa_hf.clips import uniform_indices
from compressa_hf.codecs.base import latents_to_uint8


def latent_drift(original: torch.Tensor, refined: torch.Tensor) -> dict[str, float]:
    """Drift of `refined` from `original` (same shape, raw latents) in uint8 storage steps.

    Returns `mean_steps`, `p99_steps`, `max_steps` (over every stored value) and `share_changed` (values moved by
    at least one step), plus `mean_abs` in raw latent units. Raises ValueError on a shape mismatch.
    """
    if original.shape != refined.shape:
        raise ValueError(f"original {tuple(original.shape)} and refined {tuple(refined.shape)} latents differ")
    if original.numel() == 0:
        return {"mean_steps": 0.0, "p99_steps": 0.0, "max_steps": 0.0, "share_changed": 0.0, "mean_abs": 0.0}
    steps = (latents_to_uint8(refined).int() - latents_to_uint8(original).int()).abs().flatten().float()
    return {
        "mean_steps": float(steps.mean()),
        "p99_steps": float(torch.quantile(steps[: 2**24], 0.99)),  # quantile's input limit; a prefix suffices
        "max_steps": float(steps.max()),
        "share_changed": float((steps >= 1).float().mean()),
        "mean_abs": float((refined.float() - original.float()).abs().mean()),
    }


#: Frames `decoded_psnr` decodes at most (evenly spread over those that differ): a mean over 64 frames is within a
#: fraction of a dB of the mean over all, and decoding every kept frame twice cost more than many methods themselves
#: (310 TAEF2 frames at 48 px: 12 s in float32 on one CPU core, 104 s in bfloat16).
PSNR_MAX_FRAMES = 64


@torch.no_grad()
def decoded_psnr(
    codec, original: torch.Tensor, refined: torch.Tensor, batch: int = 256, max_frames: int | None = PSNR_MAX_FRAMES
) -> float | None:
    """Mean PSNR (dB, frames in [0, 1]) of the decoded `refined` latent frames against the decoded `original` ones,
    over frames whose latents differ (at most `max_frames` of them, evenly spread; None: all); None when no frame
    differs (the PSNR would be infinite)."""
    flat_o, flat_r = original.flatten(0, -4), refined.flatten(0, -4)
    differ = (flat_o != flat_r).flatten(1).any(dim=1)
    if not differ.any():
        return None
    chosen = differ.nonzero().flatten()
    if max_frames is not None and len(chosen) > max_frames:
        chosen = chosen[torch.linspace(0, len(chosen) - 1, max_frames).round().long()]
    device = getattr(codec, "device", None) or next(codec.parameters()).device
    values = []
    for o, r in zip(torch.split(flat_o[chosen], batch), torch.split(flat_r[chosen], batch)):
        a = codec.decode(o.to(device)).float().clamp(0, 1)
        b = codec.decode(r.to(device)).float().clamp(0, 1)
        mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12)
        values.append((10 * torch.log10(1 / mse)).cpu())
    return float(torch.cat(values).mean())


def uniform_overlap(frame_indices: torch.Tensor, num_frames: int, counts: torch.Tensor | None = None) -> float:
    """Share of kept frames `(M, K)` (positions among `num_frames`) that uniform K would also keep. With `counts`
    `(M,)` (rows of different K, padded), row i's first `counts[i]` frames are compared with uniform `counts[i]`."""
    m, k = frame_indices.shape
    if m == 0:
        return math.nan
    if counts is None:
        uniform = torch.zeros(num_frames, dtype=torch.bool)
        uniform[uniform_indices(num_frames, k)] = True
        return float(uniform[frame_indices].float().mean())
    hits = 0
    for n in counts.unique().tolist():  # one uniform choice per distinct K
        uniform = torch.zeros(num_frames, dtype=torch.bool)
        uniform[uniform_indices(num_frames, n)] = True
        hits += int(uniform[frame_indices[counts == n][:, :n]].sum())
    return hits / int(counts.sum())


def set_diagnostics(cset, cache_latents: torch.Tensor, codec=None) -> dict[str, float | None]:
    """Diagnostics of a `CompressedSet` whose rows start from real cached frames (`source_videos >= 0` and
    `frame_indices`): drift of its latents (as read back from storage) from the cached latents at those frames,
    decoded PSNR (when `codec` is given) and the overlap with uniform K. Empty for pixel sets or synthetic rows."""
    if cset.latents is None or cset.frame_indices is None or cset.source_videos is None:
        return {}
    if (cset.source_videos < 0).any():
        return {}
    counts = cset.frame_counts
    if counts is None:
        original, refined = cache_latents[cset.source_videos[:, None], cset.frame_indices].float(), cset.latents
    else:  # rows of different K: only each row's own frames, not its padding
        valid = torch.arange(cset.frame_indices.shape[1]) < counts[:, None]
        rows = cset.source_videos[:, None].expand_as(cset.frame_indices)
        original = cache_latents[rows[valid], cset.frame_indices[valid]].float()
        refined = cset.latents[valid]
    out: dict[str, float | None] = {f"drift_{k}": v for k, v in latent_drift(original, refined).items()}
    if codec is not None:
        out["decoded_psnr_db"] = decoded_psnr(codec, original, refined.float())
    out["uniform_overlap"] = uniform_overlap(cset.frame_indices, int(cache_latents.shape[1]), counts)
    return out
