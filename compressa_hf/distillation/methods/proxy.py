"""The proxy network of the model-based whole-clip coresets (herding, forgetting, GraNd), and their shared ranking.

DeepCore and DC-bench score examples with a small network trained on the full training split; here it is a
`compressa_hf.nets` network (default: a ConvNet of width 32) trained on the real clips `ctx.pixels()`, seeing
`frames` uniformly spaced frames of each clip (the ConvNet averages per-frame features over time, so 4 of 16
frames describe a clip at a quarter of the cost). SGD with lr 0.01, momentum 0.9 and weight decay 5e-4, as the
evaluation protocol; no learning-rate decay (the scores are taken early or mid-training, not at convergence).

What it records, for each method:
- `correct[e, i]`: whether clip i was classified correctly in epoch e, read off the training forward pass of
  the minibatch that held it, before the step (as Toneva et al. and DeepCore do: no extra pass);
- after the last epoch, in eval mode: `embeddings` (the network's `embed`, its penultimate features) and
  `logits` (`classifier(embeddings)`) of every clip, on the same frames.

Deterministic for a seed on one machine: initialisation and shuffling draw from RNGs seeded here, inside
`torch.random.fork_rng`, so the caller's RNG state neither matters nor changes; on a GPU, cuDNN is switched to its
deterministic algorithms for the run and back after it (its default convolution backward differs between runs by
enough, ~1e-2 in the features after 2 epochs on an H100, to reorder the scores). That makes the convnet and mlp
proxies bit-identical on an H100 (the convnet's 2 epochs on 2,000 clips x 4 frames: 0.86 s -> 1.09 s); the rnn and
gru proxies are not (cuDNN's recurrent backward), so use them on a CPU where the exact set must be reproduced.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compressa_hf.clips import uniform_indices
from compressa_hf.distillation.methods.base import CompressedSet, MethodContext, whole_clip_set
from compressa_hf.nets import NETS, build_net

logger = logging.getLogger(__name__)

#: Networks with `embed` and a linear `classifier`, which the scores need.
PROXY_NETS = tuple(name for name, cls in NETS.items() if hasattr(cls, "embed"))


@dataclass
class ProxyOptions:
    """How the proxy network is trained; each model-based coreset's `Options` extends it with its own defaults.

    Args:
        net: Proxy network, a name in `compressa_hf.nets.NETS` with `embed` and a linear `classifier`
            (`PROXY_NETS`: convnet, mlp, rnn, gru).
        width: Channels / hidden units of the proxy (32: a quarter of the evaluation networks' 128, enough to rank).
        epochs: Training epochs before the scores are read (0: scores of the untrained network).
        frames: Frames per clip the proxy sees, uniformly spaced (TSN centres); 0 means all T.
        batch_size: Clips per SGD step.
        lr: SGD learning rate.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
    """

    net: str = field(default="convnet", metadata={"help": f"Proxy network, one of {PROXY_NETS}."})
    width: int = field(default=32, metadata={"help": "Channels / hidden units of the proxy network."})
    epochs: int = field(default=10, metadata={"help": "Proxy training epochs before scoring."})
    frames: int = field(default=4, metadata={"help": "Uniformly spaced frames per clip for the proxy; 0 = all."})
    batch_size: int = field(default=64, metadata={"help": "Clips per SGD step."})
    lr: float = field(default=0.01, metadata={"help": "SGD learning rate."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum."})
    weight_decay: float = field(default=5e-4, metadata={"help": "SGD weight decay."})

    def __post_init__(self):
        if self.net not in PROXY_NETS:
            raise ValueError(
                f"`net` must be one of {PROXY_NETS} (a net with `embed` and a linear head), got {self.net!r}"
            )
        for name in ("width", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        for name in ("epochs", "frames"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"`lr` must be > 0, got {self.lr}")


@dataclass
class ProxyResult:
    """What one proxy training run leaves for the scores.

    Attributes:
        correct: `(epochs, N)` bool, clip i classified correctly in epoch e (training forward pass).
        embeddings: `(N, num_features)` float32 penultimate features after the last epoch (eval mode).
        logits: `(N, num_classes)` float32 `classifier(embeddings)`.
        train_accuracy: Per epoch, the fraction of `correct`.
        final_accuracy: Accuracy of `logits` on the training labels.
        frame_indices: The frames of each clip the proxy saw.
        seconds: Wall time of training and the final pass.
    """

    correct: torch.Tensor
    embeddings: torch.Tensor
    logits: torch.Tensor
    train_accuracy: list[float]
    final_accuracy: float
    frame_indices: list[int]
    seconds: float

    def summary(self) -> dict:
        """JSON-ready facts for a set's `info`."""
        return {
            "epochs": len(self.train_accuracy),
            "train_accuracy": [round(a, 4) for a in self.train_accuracy],
            "final_accuracy": round(self.final_accuracy, 4),
            "frame_indices": self.frame_indices,
            "seconds": round(self.seconds, 2),
        }


@contextlib.contextmanager
def _deterministic_cudnn():
    """cuDNN's deterministic algorithms for the duration (the flags are process-wide, so they are restored)."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def _batch(pixels: torch.Tensor, rows: torch.Tensor, frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    # Index rows and frames at once, so only the batch's chosen frames are copied out of the (large) uint8 split.
    return pixels[rows[:, None], frames[None, :]].to(device, non_blocking=True).float().div_(255)


def train_proxy(
    pixels: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    opts: ProxyOptions,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    desc: str = "proxy",
) -> ProxyResult:
    """Train a fresh proxy network on uint8 clips `(N, T, 3, H, W)` and record what the coresets score.

    Hand-written rather than `compressa_hf.evaluation.train.train_and_test`: the scores need each clip's correctness
    in every epoch and the final features, which the evaluation loop does not expose.
    """
    if pixels.dtype != torch.uint8 or pixels.dim() != 5:
        raise ValueError(f"pixels must be uint8 (N, T, 3, H, W), got {pixels.dtype} {tuple(pixels.shape)}")
    if labels.shape != pixels.shape[:1]:
        raise ValueError(f"labels {tuple(labels.shape)} do not match {pixels.shape[0]} clips")
    device = torch.device(device)
    start = time.perf_counter()
    n, t = pixels.shape[:2]
    frame_list = uniform_indices(t, opts.frames) if 0 < opts.frames < t else list(range(t))
    frames = torch.tensor(frame_list, dtype=torch.long)
    labels = labels.to(torch.long).cpu()
    correct = torch.zeros(opts.epochs, n, dtype=torch.bool)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), _deterministic_cudnn() if cuda else contextlib.nullcontext():
        torch.manual_seed(seed)
        net = build_net(opts.net, num_classes, tuple(pixels.shape[-2:]), width=opts.width).to(device)
        if not isinstance(getattr(net, "classifier", None), nn.Linear):
            raise AssertionError(f"proxy net {opts.net!r} has no linear `classifier`")
        opt = torch.optim.SGD(net.parameters(), lr=opts.lr, momentum=opts.momentum, weight_decay=opts.weight_decay)
        generator = torch.Generator().manual_seed(seed)
        epochs = range(opts.epochs)
        if progress:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc=desc, unit="epoch", leave=False)
        for epoch in epochs:
            net.train()
            for rows in torch.split(torch.randperm(n, generator=generator), opts.batch_size):
                y = labels[rows]
                logits = net(_batch(pixels, rows, frames, device))
                correct[epoch, rows] = logits.detach().argmax(1).cpu() == y
                loss = F.cross_entropy(logits, y.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        net.eval()
        embeddings, logits = [], []
        with torch.no_grad():
            for rows in torch.split(torch.arange(n), opts.batch_size):
                emb = net.embed(_batch(pixels, rows, frames, device))
                embeddings.append(emb.float().cpu())
                logits.append(net.classifier(emb).float().cpu())
    embeddings_t, logits_t = torch.cat(embeddings), torch.cat(logits)
    result = ProxyResult(
        correct=correct,
        embeddings=embeddings_t,
        logits=logits_t,
        train_accuracy=correct.float().mean(1).tolist(),
        final_accuracy=float((logits_t.argmax(1) == labels).float().mean()),
        frame_indices=frame_list,
        seconds=time.perf_counter() - start,
    )
    logger.info(
        "%s: %s (width %d) trained %d epoch(s) on %d clips x %d frames in %.1fs; final train accuracy %.3f",
        desc,
        opts.net,
        opts.width,
        opts.epochs,
        n,
        len(frame_list),
        result.seconds,
        result.final_accuracy,
    )
    return result


def proxy_for(ctx: MethodContext, opts: ProxyOptions, seed: int | None = None, desc: str = "proxy") -> ProxyResult:
    """`train_proxy` on the context's real clips (or decoded latents), labels, device and progress setting."""
    return train_proxy(
        ctx.pixels(),
        ctx.labels,
        ctx.num_classes,
        opts,
        seed=ctx.seed if seed is None else seed,
        device=ctx.device,
        progress=ctx.progress,
        desc=desc,
    )


def needs_ranking(ctx: MethodContext) -> bool:
    """False when the budget holds every whole clip, so no proxy needs training (every video is kept anyway)."""
    return ctx.plan(frames_per_video=ctx.num_frames).coreset


def keep_all(ctx: MethodContext, method: str) -> CompressedSet:
    """The set of a budget that holds every whole clip: nothing to rank, so no proxy is trained."""

    def rank(members: torch.Tensor, v: int) -> torch.Tensor:
        raise AssertionError(f"{method}: asked to rank {len(members)} clips although the budget holds them all")

    return whole_clip_set(ctx, method, rank, info={"proxy": "not trained: the budget holds every clip"})


def rank_by_score(scores: torch.Tensor | np.ndarray | Sequence[float], seed: int | Sequence[int]) -> torch.Tensor:
    """Positions sorted by score, highest first (`inf` first of all); ties in a seeded random order.

    Random tie-breaking rather than by position: with few proxy epochs most clips share a score (e.g. 0 forgetting
    events), and the split's order (UCF101's groups, one actor each) would otherwise decide which clips are kept.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError(f"scores contain NaN at positions {np.flatnonzero(np.isnan(scores)).tolist()}")
    tie = np.random.default_rng(seed).permutation(len(scores))
    return torch.from_numpy(np.lexsort((tie, -scores))).to(torch.long)


def class_of(ctx: MethodContext, members: torch.Tensor) -> int:
    """The class of the videos `whole_clip_set` hands to a `rank` callback (they all share it)."""
    return int(ctx.labels[members[0]])


def score_info(videos: Sequence[int], scores: torch.Tensor) -> dict[str, float | None]:
    """`{video: score}` for a set's `info`, with infinite scores as None (JSON has no infinity)."""
    return {str(int(v)): (float(scores[v]) if torch.isfinite(scores[v]) else None) for v in videos}
