"""The train-from-scratch protocol: a fresh network trained on a compressed set, tested on real clips.

As in the paper (and DC-bench / VDSD): SGD with lr 0.01, momentum 0.9, weight decay 5e-4, batch 256, 100 epochs,
the learning rate divided by 10 at half the epochs (DC-bench's `evaluate_synset`, which VDSD and VideoCompressa
reuse); cross-entropy; the network sees each training clip's K frames and each test clip's T uniformly sampled
frames (every network averages or pools over time, so K and T may differ). With `train_targets` (a set's teacher
soft labels, `compressa_hf.distillation.soft_labels`) the loss is the cross-entropy to those probabilities,
-sum_c p_c log q_c averaged over the batch: the KL divergence from the teacher to the network plus the targets' own
entropy, a constant, so the gradients are KL's (Hinton et al.'s distillation loss at temperature 1, without the
hard-label term, as in SRe2L / RDED's relabelled training). With `augment` (`compressa evaluate --augment`, rows
`<row>+aug`) each training batch is augmented DSA-style, one draw per clip (`compressa_hf.evaluation.augment`).
The reported number is the accuracy after the LAST epoch: no checkpoint is picked on the test set (the peer code
that reports its best test epoch overstates every method, most of all the noisiest).

Deterministic for a seed on a given machine: the initialisation, the shuffling and dropout draw from RNGs seeded
here, inside `torch.random.fork_rng`, so the caller's RNG state neither matters nor changes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from compressa_hf.evaluation.augment import Augmentation
from compressa_hf.nets import NETS, build_net
from compressa_hf.threads import beside_workers

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Hyperparameters of the evaluation run (one per network trained from scratch).

    Args:
        epochs: Passes over the compressed set (the paper: 100).
        batch_size: Clips per SGD step (the paper: 256; a set smaller than a batch is one step per epoch).
        lr: SGD learning rate.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        lr_decay_at: Fraction of `epochs` after which the learning rate is multiplied by 0.1 (DC-bench: 0.5);
            1.0 or more disables the decay.
        width: Channels (or hidden units) of the evaluation networks.
        flip: Random horizontal flips of training clips (the same flip for all frames of a clip).
        test_batch_size: Test clips per forward pass.
        loader_workers: DataLoader worker processes reading the training batches (0: read in the training process).
            Training clips may be a lazy row array on disk (`compressa_hf.rows`), read batch by batch; workers read
            ahead. Results do not depend on it (the batches and their order are drawn before loading).
    """

    epochs: int = field(default=100, metadata={"help": "Training epochs (the paper: 100)."})
    batch_size: int = field(default=256, metadata={"help": "Clips per SGD step."})
    lr: float = field(default=0.01, metadata={"help": "SGD learning rate."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum."})
    weight_decay: float = field(default=5e-4, metadata={"help": "SGD weight decay."})
    lr_decay_at: float = field(default=0.5, metadata={"help": "Fraction of epochs after which lr *= 0.1."})
    width: int = field(default=128, metadata={"help": "Channels / hidden units of the evaluation networks."})
    flip: bool = field(default=False, metadata={"help": "Random horizontal flips of training clips."})
    test_batch_size: int = field(default=64, metadata={"help": "Test clips per forward pass."})
    loader_workers: int = field(default=0, metadata={"help": "DataLoader workers reading training batches."})

    def __post_init__(self):
        for name in ("epochs", "batch_size", "width", "test_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.loader_workers < 0:
            raise ValueError(f"`loader_workers` must be >= 0, got {self.loader_workers}")
        if not self.lr > 0:
            raise ValueError(f"`lr` must be > 0, got {self.lr}")


@dataclass
class RunResult:
    """One trained network's outcome.

    Attributes:
        accuracy: Test accuracy (0-1) after the last epoch.
        correct: Per test clip, whether it was classified correctly (for paired statistics across methods).
        predictions: Per test clip, the predicted class.
        train_accuracy: Accuracy on the training set (in eval mode) after the last epoch.
        final_loss: Mean training loss of the last epoch.
        seconds: Wall time of training and testing.
        epoch_seconds: Wall time of each training epoch (the loss is read every step, so GPU work is included).
    """

    accuracy: float
    correct: list[bool]
    predictions: list[int]
    train_accuracy: float
    final_loss: float
    seconds: float
    epoch_seconds: list[float] = field(default_factory=list)


def _to_float(frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    return frames.to(device, non_blocking=True).float().div_(255)


@torch.no_grad()
def predict(net: torch.nn.Module, frames: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Class predictions for uint8 clips `(M, T, 3, H, W)` (a tensor or a lazy row array, read a batch at a time),
    in eval mode."""
    net.eval()
    out = [
        net(_to_float(frames[i : i + batch_size], device)).argmax(1).cpu() for i in range(0, len(frames), batch_size)
    ]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


class _Batches(torch.utils.data.Dataset):
    """Item i is batch i's clips, read from a tensor or a lazy row array (`compressa_hf.rows`)."""

    def __init__(self, frames, batches: list[torch.Tensor]):
        self.frames, self.batches = frames, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.frames[self.batches[i]]


def check_targets(targets: torch.Tensor, rows: int, num_classes: int, atol: float = 1e-3) -> torch.Tensor:
    """`(rows, num_classes)` class probabilities as float32; `ValueError` naming the problem otherwise.

    Rows must be finite, non-negative and sum to 1 within `atol` (quantised soft labels are renormalised when they
    are read back, so they sum to 1 within float32 rounding).
    """
    if targets.shape != (rows, num_classes) or not targets.is_floating_point():
        raise ValueError(
            f"train_targets must be float ({rows}, {num_classes}) probabilities, got {targets.dtype} "
            f"{tuple(targets.shape)}"
        )
    targets = targets.float()
    sums = targets.sum(dim=1)
    if not torch.isfinite(targets).all() or (targets < 0).any() or ((sums - 1).abs() > atol).any():
        worst = int((sums - 1).abs().nan_to_num(float("inf")).argmax())
        raise ValueError(
            f"train_targets rows must be finite, >= 0 and sum to 1; row {worst} sums to {float(sums[worst]):.6g}"
        )
    return targets


def train_network(
    train_frames: torch.Tensor,
    train_labels: torch.Tensor,
    num_classes: int,
    arch: str = "convnet",
    cfg: TrainConfig | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    train_targets: torch.Tensor | None = None,
    augment: Augmentation | None = None,
) -> tuple[torch.nn.Module, float, list[float]]:
    """Train a fresh `arch` network on uint8 clips `(M, K, 3, H, W)` with the protocol of the module docstring.

    Returns the trained network (in eval mode, on `device`), the mean loss of the last epoch and each epoch's wall
    time. `train_targets` `(M, num_classes)` class probabilities replace the hard `train_labels` in the loss (see
    the module docstring); the labels are still checked. `augment` transforms each training batch after the flips
    (`compressa_hf.evaluation.augment`), drawing from the run's seeded generator. Arguments as in `train_and_test`.
    """
    cfg = cfg or TrainConfig()
    if arch not in NETS:
        raise ValueError(f"unknown evaluation network {arch!r}; registered: {sorted(NETS)}")
    if train_frames.dtype != torch.uint8 or train_frames.dim() != 5:
        raise ValueError(
            f"train_frames must be uint8 (M, T, 3, H, W), got {train_frames.dtype} {tuple(train_frames.shape)}"
        )
    if len(train_frames) == 0:
        raise ValueError("no training clips")
    if train_labels.shape != train_frames.shape[:1]:
        raise ValueError(f"train_labels {tuple(train_labels.shape)} do not match {len(train_frames)} clips")
    if train_targets is not None:
        train_targets = check_targets(train_targets, len(train_frames), num_classes)
    device = torch.device(device)
    size = tuple(train_frames.shape[-2:])
    decay_epoch = int(cfg.epochs * cfg.lr_decay_at)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), beside_workers(cfg.loader_workers):
        torch.manual_seed(seed)
        net = build_net(arch, num_classes, size, width=cfg.width).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        generator = torch.Generator().manual_seed(seed)
        n = len(train_frames)
        epochs = range(cfg.epochs)
        if progress:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc=f"train {arch}", unit="epoch", leave=False)
        loss_sum, epoch_seconds = 0.0, []
        for epoch in epochs:
            epoch_start = time.perf_counter()
            if epoch == decay_epoch and 0 < cfg.lr_decay_at < 1:
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * 0.1
            net.train()
            perm = torch.randperm(n, generator=generator)
            loss_sum, seen = 0.0, 0
            batches = list(torch.split(perm, cfg.batch_size))
            loader = torch.utils.data.DataLoader(
                _Batches(train_frames, batches), batch_size=None, shuffle=False, num_workers=cfg.loader_workers
            )
            for batch, clips in zip(batches, loader):
                x = _to_float(clips, device)
                if cfg.flip:
                    flips = torch.rand(len(batch), generator=generator) < 0.5
                    x[flips.to(device)] = x[flips.to(device)].flip(-1)
                if augment is not None:
                    x = augment(x, generator)
                y = (train_labels if train_targets is None else train_targets)[batch].to(device)
                loss = F.cross_entropy(net(x), y)  # class indices, or probabilities (soft cross-entropy)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.item() * len(batch)
                seen += len(batch)
            loss_sum /= max(seen, 1)
            epoch_seconds.append(time.perf_counter() - epoch_start)
            if not torch.isfinite(torch.tensor(loss_sum)):
                logger.warning("%s diverged at epoch %d (loss %s)", arch, epoch, loss_sum)
    return net.eval(), float(loss_sum), epoch_seconds


def train_and_test(
    train_frames: torch.Tensor,
    train_labels: torch.Tensor,
    test_frames: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    arch: str = "convnet",
    cfg: TrainConfig | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    train_targets: torch.Tensor | None = None,
    augment: Augmentation | None = None,
) -> RunResult:
    """Train a fresh `arch` network on `train_frames` and test it on `test_frames`.

    Args:
        train_frames: `(M, K, 3, H, W)` uint8 training clips (a compressed set, decoded).
        train_labels: `(M,)` int64 (the hard labels; `train_accuracy` is measured against them).
        test_frames: `(N, T, 3, H, W)` uint8 real test clips.
        test_labels: `(N,)` int64.
        num_classes: Output classes.
        arch: Network name in `compressa_hf.nets.NETS`.
        cfg: Hyperparameters (defaults: the paper's).
        seed: Seeds initialisation, shuffling, flips and dropout.
        device: Where to train.
        progress: Show a progress bar over epochs.
        train_targets: Optional `(M, num_classes)` class probabilities (teacher soft labels) to train on instead of
            `train_labels`: the loss is then the cross-entropy to them (see the module docstring). None: hard labels.
        augment: Optional DSA-style augmentation of every training batch, one draw per clip for all its frames
            (`compressa_hf.evaluation.augment.Augmentation`). None: the protocol's flips only (`cfg.flip`).
    """
    if test_frames.dtype != torch.uint8 or test_frames.dim() != 5:
        raise ValueError(
            f"test_frames must be uint8 (M, T, 3, H, W), got {test_frames.dtype} {tuple(test_frames.shape)}"
        )
    if train_frames.shape[-2:] != test_frames.shape[-2:]:
        raise ValueError(
            f"training frames are {tuple(train_frames.shape[-2:])} but test frames {tuple(test_frames.shape[-2:])}"
        )
    cfg = cfg or TrainConfig()
    device = torch.device(device)
    start = time.perf_counter()
    net, final_loss, epoch_seconds = train_network(
        train_frames, train_labels, num_classes, arch, cfg, seed, device, progress, train_targets, augment
    )
    train_pred = predict(net, train_frames, cfg.test_batch_size, device)
    test_pred = predict(net, test_frames, cfg.test_batch_size, device)
    correct = (test_pred == test_labels.cpu()).tolist()
    return RunResult(
        accuracy=sum(correct) / max(len(correct), 1),
        correct=correct,
        predictions=test_pred.tolist(),
        train_accuracy=float((train_pred == train_labels.cpu()).float().mean()),
        final_loss=final_loss,
        seconds=time.perf_counter() - start,
        epoch_seconds=epoch_seconds,
    )
