"""Gumbel-Softmax frame sampling (VideoCompressa Eq. 3-6) and the deterministic top-K used at the end.

`gumbel_softmax_samples` draws K independent relaxed one-hot vectors over the T frames of each video; a soft
frame is then `sum_t w[k, t] * frame[t]` (Eq. 5). `topk_in_time` is the inference-time selection (Sec. 4.1,
"Downstream Inference"): the K highest logits, returned in temporal order so a stored clip plays forwards.

Segment-constrained sampling (ours, not the paper's): `segment_gumbel_samples` draws sample k only among the frames
of the k-th of K temporal segments, and `segment_argmax` keeps the best-scored frame of each segment. The segments
are centred on the uniform (TSN) frames of `compressa_hf.clips.uniform_indices`, and a tie inside a segment goes
to the frame nearest its centre, so a scorer that is indifferent (equal logits) keeps exactly the uniform frames:
the selection can only move away from uniform where the scorer has learnt a reason to. Free sampling can put all
K samples on one stretch of the clip; segments keep the temporal coverage that makes uniform a strong baseline.

Noise is drawn on the generator's device (CPU by default) in float32 and then moved to the logits' device, so a
seeded `torch.Generator` gives the same samples on CPU and GPU runs.
"""

from __future__ import annotations

import torch

from compressa_hf.clips import uniform_indices


def sample_gumbel(shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise `-log(-log(u))`, u ~ U(0, 1) (Eq. 3), as float32 on the generator's device."""
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
    # torch.rand is in [0, 1): only u == 0 needs guarding (-log(0) = inf); u just below 1 gives a finite value.
    u = u.clamp_(min=torch.finfo(torch.float32).tiny)
    return -torch.log(-torch.log(u))


def gumbel_softmax_samples(
    logits: torch.Tensor,
    k: int,
    tau: float = 1.0,
    hard: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """K independent Gumbel-Softmax samples per row of `logits`.

    Args:
        logits: `(B, T)` frame scores q.
        k: Number of independent samples (the frame budget K).
        tau: Temperature (the paper uses 1.0).
        hard: Straight-through: the forward value is the one-hot argmax of each sample, the gradient is the soft
            sample's (Theorem 2's g_ST).
        generator: Optional seeded generator for reproducible noise.

    Returns:
        `(B, k, T)` weights; every `[b, j]` row sums to 1.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return _relaxed_samples(logits, k, tau, hard, generator)


def _relaxed_samples(
    logits: torch.Tensor,
    k: int,
    tau: float,
    hard: bool,
    generator: torch.Generator | None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """`(B, k, T)` Gumbel-Softmax samples of `logits`; sample j only over the frames where `mask[j]` `(k, T)` is True."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, T), got shape {tuple(logits.shape)}")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    b, t = logits.shape
    noise = sample_gumbel((b, k, t), generator).to(device=logits.device, dtype=logits.dtype)
    scores = (logits.unsqueeze(1) + noise) / tau
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    soft = torch.softmax(scores, dim=-1)
    if not hard:
        return soft
    one_hot = torch.zeros_like(soft).scatter_(-1, soft.argmax(dim=-1, keepdim=True), 1.0)
    return one_hot - soft.detach() + soft


def topk_in_time(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the `k` highest logits per row, ascending in time; ties go to the earlier frame.

    A stable descending sort (rather than `torch.topk`, whose tie order is unspecified) keeps the result the same
    across devices and runs.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, T), got shape {tuple(logits.shape)}")
    if not 1 <= k <= logits.shape[1]:
        raise ValueError(f"k must be in [1, T={logits.shape[1]}], got {k}")
    order = torch.argsort(logits, dim=1, descending=True, stable=True)
    return order[:, :k].sort(dim=1).values


def segment_bounds(t: int, k: int) -> list[tuple[int, int]]:
    """K contiguous segments `[start, end)` covering frames 0..T-1, segment j containing uniform frame j.

    Boundaries lie halfway between consecutive uniform frames (`uniform_indices(T, K)`), so every segment holds
    its centre and at least one frame. Raises ValueError unless 1 <= K <= T.
    """
    if not 1 <= k <= t:
        raise ValueError(f"k must be in [1, T={t}], got {k}")
    centres = uniform_indices(t, k)
    cuts = [0, *[(a + b + 1) // 2 for a, b in zip(centres, centres[1:])], t]
    return list(zip(cuts, cuts[1:]))


def segment_mask(t: int, k: int, device=None) -> torch.Tensor:
    """`(K, T)` bool: row j is True on the frames of segment j (`segment_bounds`)."""
    mask = torch.zeros(k, t, dtype=torch.bool, device=device)
    for j, (start, end) in enumerate(segment_bounds(t, k)):
        mask[j, start:end] = True
    return mask


def segment_gumbel_samples(
    logits: torch.Tensor,
    k: int,
    tau: float = 1.0,
    hard: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One Gumbel-Softmax sample per temporal segment: sample j is a relaxed one-hot over segment j's frames.

    Same arguments and `(B, k, T)` result as `gumbel_softmax_samples`; weights outside a sample's segment are
    exactly 0. The noise is drawn for all T frames (as there), so a seeded generator advances the same way.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, T), got shape {tuple(logits.shape)}")
    return _relaxed_samples(logits, k, tau, hard, generator, segment_mask(logits.shape[1], k, device=logits.device))


def segment_argmax(logits: torch.Tensor, k: int) -> torch.Tensor:
    """`(B, K)` ascending frame indices: the highest logit of each segment; ties go to the frame nearest the
    segment's uniform centre (then the earlier one), so equal logits give `uniform_indices(T, K)` exactly."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, T), got shape {tuple(logits.shape)}")
    t = logits.shape[1]
    out = []
    for (start, end), centre in zip(segment_bounds(t, k), uniform_indices(t, k)):
        seg = logits[:, start:end]
        is_max = seg == seg.max(dim=1, keepdim=True).values
        dist = (torch.arange(start, end, device=logits.device) - centre).abs().to(torch.float32)
        dist = dist.expand_as(seg).masked_fill(~is_max, float("inf"))
        out.append(dist.argmin(dim=1) + start)  # argmin takes the first minimum: the earlier of two equal distances
    return torch.stack(out, dim=1)
