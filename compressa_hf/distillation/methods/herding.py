"""Herding (Welling 2009; as in iCaRL, DeepCore and VDSD's coreset code): per class, greedily add the clip that
brings the mean of the selected clips' proxy features closest to the class mean.

Features are the proxy network's `embed` (its penultimate layer, the clip's per-frame features averaged over time)
after `epochs` epochs of training on the whole split (`proxy.py`). Clips are kept in the order herding picks them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from compressa_hf.distillation.methods.base import CompressedSet, MethodContext, whole_clip_set
from compressa_hf.distillation.methods.proxy import ProxyOptions, class_of, keep_all, needs_ranking, proxy_for

KIND = "coreset"
__all__ = ["KIND", "Options", "compress", "herding_order"]

logger = logging.getLogger(__name__)


@dataclass
class Options(ProxyOptions):
    """Herding's hyperparameters: the proxy's (`ProxyOptions`: net, width, epochs, frames, batch_size, lr, momentum,
    weight_decay; defaults convnet, 32, 10, 4, 64, 0.01, 0.9, 5e-4) and:

    Args:
        l2_normalize: L2-normalise the features before herding, as iCaRL does (DeepCore and VDSD herd the raw
            features, the default).
    """

    l2_normalize: bool = field(default=False, metadata={"help": "L2-normalise features before herding (iCaRL)."})


def herding_order(features: torch.Tensor, k: int) -> torch.Tensor:
    """The first `k` rows herding picks from `features` `(n, d)`, in pick order.

    Step i (0-based) picks, among the rows not yet picked, the row f minimising
    `|| (i + 1) * mean - (sum of picked rows) - f ||`, i.e. the one that brings the mean of the i + 1 picked rows
    closest to the mean of all rows. Exact ties go to the lowest row.
    """
    if features.dim() != 2:
        raise ValueError(f"features must be (n, d), got shape {tuple(features.shape)}")
    n = features.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"cannot herd {k} of {n} rows")
    features = features.double()
    mean = features.mean(0)
    picked: list[int] = []
    available = torch.ones(n, dtype=torch.bool)
    total = torch.zeros_like(mean)
    for i in range(k):
        dist = torch.linalg.vector_norm((i + 1) * mean - total - features, dim=1)
        dist[~available] = float("inf")
        j = int(torch.argmin(dist))
        picked.append(j)
        available[j] = False
        total += features[j]
    return torch.tensor(picked, dtype=torch.long)


def compress(ctx: MethodContext) -> CompressedSet:
    opts = ctx.method_options(Options, "herding")
    start = time.perf_counter()
    if not needs_ranking(ctx):
        return keep_all(ctx, "herding")
    proxy = proxy_for(ctx, opts, desc="herding proxy")
    features = F.normalize(proxy.embeddings, dim=1) if opts.l2_normalize else proxy.embeddings
    order: dict[str, list[int]] = {}

    def rank(members: torch.Tensor, v: int) -> torch.Tensor:
        chosen = members[herding_order(features[members], v)]
        order[str(class_of(ctx, members))] = chosen.tolist()
        return chosen

    cset = whole_clip_set(ctx, "herding", rank, info={"proxy": proxy.summary()})
    cset.info["pick_order"] = order
    cset.info["seconds"] = round(time.perf_counter() - start, 2)
    logger.info("herding kept %d clips in %.1fs", cset.num_rows, cset.info["seconds"])
    return cset
