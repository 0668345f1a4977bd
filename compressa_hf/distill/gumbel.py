"""Gumbel-Softmax frame sampling (VideoCompressa Eq. 3-6) and the deterministic top-K used at the end.

`gumbel_softmax_samples` draws K independent relaxed one-hot vectors over the T frames of each video; a soft
frame is then `sum_t w[k, t] * frame[t]` (Eq. 5). `topk_in_time` is the inference-time selection (Sec. 4.1,
"Downstream Inference"): the K highest logits, returned in temporal order so a stored clip plays forwards.

Noise is drawn on the generator's device (CPU by default) in float32 and then moved to the logits' device, so a
seeded `torch.Generator` gives the same samples on CPU and GPU runs.
"""

from __future__ import annotations

import torch


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
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, T), got shape {tuple(logits.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    b, t = logits.shape
    noise = sample_gumbel((b, k, t), generator).to(device=logits.device, dtype=logits.dtype)
    soft = torch.softmax((logits.unsqueeze(1) + noise) / tau, dim=-1)
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
