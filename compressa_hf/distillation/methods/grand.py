"""GraNd (Paul et al., NeurIPS 2021): keep, per class, the clips with the largest expected gradient norm early in
training, averaged over `repeats` proxy networks (seeds `ctx.seed + r`), each trained `epochs` epochs (`proxy.py`).

The norm is that of the last layer's gradient, in closed form, as DeepCore computes it (Paul et al. take all
parameters, which needs one backward pass per clip): for a linear head `logits = W f + b` and cross-entropy, the
per-example gradient is `(p - y) f^T` for W and `p - y` for b, so its norm is `||p - y|| * sqrt(||f||^2 + 1)`, with
`p = softmax(logits)` and `y` the one-hot label. Ties (rare: the scores are continuous) go in a seeded random order.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from compressa_hf.distillation.methods.base import CompressedSet, MethodContext, whole_clip_set
from compressa_hf.distillation.methods.proxy import (
    ProxyOptions,
    class_of,
    keep_all,
    needs_ranking,
    proxy_for,
    rank_by_score,
    score_info,
)

KIND = "coreset"
__all__ = ["KIND", "Options", "compress", "last_layer_grad_norm"]

logger = logging.getLogger(__name__)


@dataclass
class Options(ProxyOptions):
    """GraNd's hyperparameters: the proxy's (`ProxyOptions`: net, width, frames, batch_size, lr, momentum,
    weight_decay; defaults convnet, 32, 4, 64, 0.01, 0.9, 5e-4), with an early `epochs`, and:

    Args:
        epochs: Proxy epochs before the gradient norms are read ("early in training"; Paul et al. use 10 of 200 on
            CIFAR-10; 0 scores at initialisation).
        repeats: Proxy networks whose scores are averaged (the expectation over initialisations; the paper: 10).
    """

    epochs: int = field(default=3, metadata={"help": "Proxy epochs before the gradient norms are read."})
    repeats: int = field(default=4, metadata={"help": "Proxy initialisations averaged (seeds seed + r)."})

    def __post_init__(self):
        super().__post_init__()
        if self.repeats < 1:
            raise ValueError(f"`repeats` must be >= 1, got {self.repeats}")


def last_layer_grad_norm(embeddings: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example norm of the cross-entropy gradient w.r.t. a linear head's weight and bias.

    Args:
        embeddings: `(N, d)` the head's inputs f.
        logits: `(N, C)` the head's outputs `W f + b`.
        labels: `(N,)` class indices.
    """
    if embeddings.shape[0] != logits.shape[0] or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"embeddings {tuple(embeddings.shape)}, logits {tuple(logits.shape)} and labels {tuple(labels.shape)} "
            "must have the same number of rows"
        )
    residual = logits.double().softmax(1) - F.one_hot(labels.long(), logits.shape[1]).double()
    return torch.linalg.vector_norm(residual, dim=1) * (embeddings.double().pow(2).sum(1) + 1).sqrt()


def compress(ctx: MethodContext) -> CompressedSet:
    opts = ctx.method_options(Options, "grand")
    start = time.perf_counter()
    if not needs_ranking(ctx):
        return keep_all(ctx, "grand")
    scores = torch.zeros(ctx.num_videos, dtype=torch.float64)
    proxies = []
    for r in range(opts.repeats):
        proxy = proxy_for(ctx, opts, seed=ctx.seed + r, desc=f"grand proxy {r + 1}/{opts.repeats}")
        scores += last_layer_grad_norm(proxy.embeddings, proxy.logits, ctx.labels)
        proxies.append(proxy.summary())
    scores /= opts.repeats

    def rank(members: torch.Tensor, v: int) -> torch.Tensor:
        return members[rank_by_score(scores[members], seed=[ctx.seed, class_of(ctx, members)])[:v]]

    cset = whole_clip_set(ctx, "grand", rank, info={"proxies": proxies})
    cset.info.update(
        grand_scores=score_info(cset.source_videos.tolist(), scores),
        mean_score=float(scores.mean()),
        seconds=round(time.perf_counter() - start, 2),
    )
    logger.info("grand kept %d clips in %.1fs", cset.num_rows, cset.info["seconds"])
    return cset
