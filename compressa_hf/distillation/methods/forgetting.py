"""Forgetting (Toneva et al., ICLR 2019): keep, per class, the clips the proxy network forgets most often.

A forgetting event is a clip classified correctly in one epoch and wrongly in the next (correctness read off the
training forward pass, `proxy.py`). Clips never classified correctly in any epoch are unlearned and count as
infinitely forgettable, as in the paper, so they are kept first. Ties (frequent with few epochs: many clips are
never forgotten) are broken in a seeded random order (`proxy.rank_by_score`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

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
__all__ = ["KIND", "Options", "compress", "forgetting_events"]

logger = logging.getLogger(__name__)


@dataclass
class Options(ProxyOptions):
    """Forgetting's hyperparameters: the proxy's (`ProxyOptions`: net, width, epochs, frames, batch_size, lr,
    momentum, weight_decay; defaults convnet, 32, 10, 4, 64, 0.01, 0.9, 5e-4). At least 2 epochs are needed for a
    clip to be forgotten at all; Toneva et al. count over a whole training run (200 epochs on CIFAR-10), 10 keeps the
    proxy cheap while leaving room for events.
    """

    epochs: int = field(default=10, metadata={"help": "Proxy training epochs over which events are counted (>= 2)."})

    def __post_init__(self):
        super().__post_init__()
        if self.epochs < 2:
            raise ValueError(f"forgetting counts events between epochs, so `epochs` must be >= 2, got {self.epochs}")


def forgetting_events(correct: torch.Tensor) -> torch.Tensor:
    """Forgetting events per example from an `(epochs, N)` bool correctness matrix: the number of epochs e >= 1
    with `correct[e - 1] and not correct[e]`, as float, `inf` for examples never correct in any epoch."""
    if correct.dim() != 2:
        raise ValueError(f"correct must be (epochs, N), got shape {tuple(correct.shape)}")
    correct = correct.bool()
    events = (correct[:-1] & ~correct[1:]).sum(0).double()
    events[~correct.any(0)] = float("inf")
    return events


def compress(ctx: MethodContext) -> CompressedSet:
    opts = ctx.method_options(Options, "forgetting")
    start = time.perf_counter()
    if not needs_ranking(ctx):
        return keep_all(ctx, "forgetting")
    proxy = proxy_for(ctx, opts, desc="forgetting proxy")
    events = forgetting_events(proxy.correct)

    def rank(members: torch.Tensor, v: int) -> torch.Tensor:
        return members[rank_by_score(events[members], seed=[ctx.seed, class_of(ctx, members)])[:v]]

    cset = whole_clip_set(ctx, "forgetting", rank, info={"proxy": proxy.summary()})
    finite = events[torch.isfinite(events)]
    cset.info.update(
        forgetting_events=score_info(cset.source_videos.tolist(), events),
        never_learned=int((~torch.isfinite(events)).sum()),
        mean_events_of_learned=float(finite.mean()) if len(finite) else None,
        seconds=round(time.perf_counter() - start, 2),
    )
    logger.info(
        "forgetting kept %d clips (%d of the split never learned) in %.1fs",
        cset.num_rows,
        cset.info["never_learned"],
        cset.info["seconds"],
    )
    return cset
