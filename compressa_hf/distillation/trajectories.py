"""Expert trajectories and trajectory matching in latent space: what MTT, DATM and MTT+VDSD share.

MTT (Cazenavette et al., "Dataset Distillation by Matching Training Trajectories", CVPR 2022), as VDSD's code
(yuz1wan/video_distillation: `buffer.py`, `distill_baseline.py`, `sh/baseline/{buffer,MTT}.sh`) runs it on video:

1. Experts. `num_experts` networks trained from scratch on the real training clips with plain SGD (lr `lr_teacher`
   = 0.01, no momentum, no weight decay, no lr decay: `buffer.sh`), their parameters saved at initialisation and
   after every epoch. VDSD trains 30 experts of 50 epochs each, batch 256, ConvNet3D on pixels.
2. Matching. Each iteration draws an expert (in shuffled order, reshuffled after a pass) and a start epoch s in
   [0, `max_start_epoch`) (`np.random.randint`), starts a student at that expert's parameters theta*_s, takes
   `syn_steps` differentiable SGD steps with a learnable learning rate alpha on batches of the synthetic set
   (cross-entropy; `batch_syn` rows per step, all of them when 0), and minimises the normalised distance
       ||theta_N - theta*_{s+M}||^2 / ||theta*_s - theta*_{s+M}||^2,     M = `expert_epochs`
   over the synthetic data and alpha (SGD on alpha, lr `lr_lr`, momentum 0.5, alpha clipped at >= 0.001 as VDSD).
   VDSD's miniUCF101 setting: `syn_steps` 10, `expert_epochs` 1, `max_start_epoch` 10, 8000 iterations.

"In latent space", as `compressa_hf.distillation.methods.dm`: experts and students are `LatentConvNet`s reading latent
frames (DM's embedding net and a linear layer, per-frame features averaged over the clip as the evaluation's
ConvNet does), so no step decodes a frame. Two departures from the pixel-space code, both to make one setting work
across codecs: the synthetic latents are updated with Adam (as DM here; MTT uses SGD with a learning rate tuned per
pixel dataset, e.g. 1e5 on miniUCF101), and the experts' batch is `batch_train` = 32 clips (VDSD's 256 would be one
step per epoch on a 150-clip split).

Trajectories are computed once per training set and settings (`expert_trajectories`): a folder
`<shared_dir>/experts/<key>/` keyed by a digest of the latents, labels and every setting that changes a trajectory
(`ExpertOptions.settings`), one atomic file per expert, so seeds, ratios and the three methods of one `compressa
evaluate` run (and `compressa distill` runs with one `--work_dir`) train them once, and a killed run keeps the
experts it finished. Expert i is seeded by `expert_seed` and i alone, so asking for more experts later reuses the
first ones.

The learned alpha is reported in a set's `info`, not stored: `compressa evaluate` trains every set with the same
fixed protocol (`compressa_hf.evaluation.train.TrainConfig`), where MTT evaluates a set with its learned alpha.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compressa_hf.distillation.methods.dm import LatentEmbedNet

logger = logging.getLogger(__name__)

__all__ = [
    "ExpertOptions",
    "FlatNet",
    "LatentConvNet",
    "MatchOptions",
    "MatchResult",
    "expert_key",
    "expert_trajectories",
    "experts_for",
    "match_trajectories",
    "student_for",
    "train_expert",
    "trajectory_loss",
]

# Bumped when a change to the expert training would change a saved trajectory, so old folders are not reused.
EXPERT_FORMAT = 1
# The floor VDSD and MTT clip the learnable student learning rate to after each update.
MIN_SYN_LR = 0.001


class LatentConvNet(nn.Module):
    """The experts' and students' classifier on latent clips: DM's `LatentEmbedNet` (conv3x3 -> instance norm ->
    ReLU -> 2x average pooling while both sides are >= 4, per frame; features averaged over the clip's frames) and a
    linear layer. `(B, T, C, h, w)` raw latents -> `(B, num_classes)` logits, for any T.

    Why not `compressa_hf.nets.ConvNet`: it reads pixels and needs sides divisible by 2 ** depth (latents are 6 x 6
    at 48 px). Unlike DM's net, its parameters train.
    """

    def __init__(self, channels: int, num_classes: int, latent_size: Sequence[int], width: int = 32, depth: int = 3):
        super().__init__()
        self.embed = LatentEmbedNet(channels, width, depth)
        with torch.no_grad():
            features = self.embed(torch.zeros(1, 1, channels, *latent_size)).shape[1]
        self.head = nn.Linear(features, num_classes)
        self.requires_grad_(True)

    @torch.no_grad()
    def reset(self, generator: torch.Generator) -> LatentConvNet:
        """PyTorch's default initialisation of every layer, drawn from `generator` (a CPU one)."""
        self.embed.reset(generator)
        weight = torch.empty(self.head.weight.shape)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(weight.shape[1])
        self.head.weight.copy_(weight)
        self.head.bias.copy_(torch.empty(self.head.bias.shape).uniform_(-bound, bound, generator=generator))
        return self

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(clips))


class FlatNet:
    """`net` run with its parameters taken from one flat vector, so that a loss can be differentiated through SGD
    steps on them (`torch.func.functional_call`; MTT's `ReparamModule` does the same by hand)."""

    def __init__(self, net: nn.Module):
        self.net = net
        named = list(net.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]

    @property
    def num_params(self) -> int:
        return sum(self.sizes)

    def flatten(self) -> torch.Tensor:
        """The module's own parameters as one detached float32 vector on the CPU."""
        return torch.cat([p.detach().reshape(-1) for p in self.net.parameters()]).float().cpu()

    def __call__(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if flat.numel() != self.num_params:
            raise ValueError(f"flat parameters have {flat.numel()} values, the network {self.num_params}")
        params = {n: t.view(s) for n, t, s in zip(self.names, flat.split(self.sizes), self.shapes)}
        return torch.func.functional_call(self.net, params, (x,))


@dataclass
class ExpertOptions:
    """How the experts are trained (VDSD's `buffer.py`; see the module docstring). Defaults are the reduced scale
    two CPU cores run inside `compressa evaluate`'s Table 1 setting; VDSD's values in brackets.

    Args:
        num_experts: Expert trajectories (VDSD 30).
        train_epochs: Epochs each expert trains; `max_start_epoch - 1 + expert_epochs` at least (VDSD 50).
        lr_teacher: The experts' SGD learning rate, and the start value of the learnable student lr (VDSD 0.01).
        batch_train: Real clips per expert SGD step (VDSD 256; 32 is the evaluation protocol's batch here).
        width: Channels of the experts' and students' `LatentConvNet` (MTT's ConvNet: 128).
        depth: Conv blocks of that net (3).
        expert_seed: Seeds expert i as `expert_seed`, i (not the run's seed: experts are shared by its seeds).
    """

    num_experts: int = field(default=8, metadata={"help": "Expert trajectories (VDSD: 30)."})
    train_epochs: int = field(default=10, metadata={"help": "Epochs per expert (VDSD: 50)."})
    lr_teacher: float = field(default=0.01, metadata={"help": "Expert SGD lr and initial student lr."})
    batch_train: int = field(default=32, metadata={"help": "Real clips per expert SGD step (VDSD: 256)."})
    width: int = field(default=32, metadata={"help": "Channels of the experts' latent ConvNet."})
    depth: int = field(default=3, metadata={"help": "Conv blocks of the experts' latent ConvNet."})
    expert_seed: int = field(default=0, metadata={"help": "Seed of the experts (shared by the run's seeds)."})

    def __post_init__(self):
        for name in ("num_experts", "train_epochs", "batch_train", "width", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if not self.lr_teacher > 0:
            raise ValueError(f"`lr_teacher` must be > 0, got {self.lr_teacher}")
        if self.expert_seed < 0:
            raise ValueError(f"`expert_seed` must be >= 0, got {self.expert_seed}")

    def settings(self) -> dict:
        """Everything besides the data that determines a trajectory (the key of the expert folder)."""
        keys = ("train_epochs", "lr_teacher", "batch_train", "width", "depth", "expert_seed")
        return {"format": EXPERT_FORMAT, **{k: getattr(self, k) for k in keys}}


@dataclass
class MatchOptions(ExpertOptions):
    """The matching loop (MTT as VDSD runs it; see the module docstring), on top of `ExpertOptions`. Reduced-scale
    defaults; VDSD's miniUCF101 values in brackets.

    Args:
        iterations: Outer steps, one expert segment each (VDSD MTT 8000, MTT+VDSD 10000).
        syn_steps: Differentiable student SGD steps per iteration (10).
        expert_epochs: Expert epochs M the student's steps must cover (1).
        max_start_epoch: Start epochs are drawn from [0, max_start_epoch) (10).
        lr_img: Adam learning rate of the synthetic latents (MTT: SGD, momentum 0.5, lr 1e5 on miniUCF101 pixels).
        train_lr: Learn the student lr alpha (VDSD's `--train_lr`: on).
        lr_lr: SGD learning rate (momentum 0.5) of alpha (1e-5).
        batch_syn: Synthetic rows per student step; 0 takes all of them (VDSD's default).
    """

    iterations: int = field(default=60, metadata={"help": "Matching iterations (VDSD: 8000-10000)."})
    syn_steps: int = field(default=10, metadata={"help": "Student steps per iteration (VDSD: 10)."})
    expert_epochs: int = field(default=1, metadata={"help": "Expert epochs matched (VDSD: 1)."})
    max_start_epoch: int = field(default=10, metadata={"help": "Start epochs in [0, this) (VDSD: 10)."})
    lr_img: float = field(default=0.01, metadata={"help": "Adam lr of the synthetic latents."})
    train_lr: bool = field(default=True, metadata={"help": "Learn the student learning rate."})
    lr_lr: float = field(default=1e-5, metadata={"help": "SGD lr (momentum 0.5) of the student learning rate."})
    batch_syn: int = field(default=0, metadata={"help": "Synthetic rows per student step (0: all)."})

    def __post_init__(self):
        super().__post_init__()
        for name in ("syn_steps", "expert_epochs", "max_start_epoch"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        for name in ("iterations", "batch_syn"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        for name in ("lr_img", "lr_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be > 0, got {getattr(self, name)}")
        last = self.max_start_epoch - 1 + self.expert_epochs
        if last > self.train_epochs:
            raise ValueError(
                f"start epochs up to {self.max_start_epoch - 1} plus `expert_epochs` {self.expert_epochs} reach epoch "
                f"{last}, beyond the experts' `train_epochs` {self.train_epochs}; raise train_epochs to {last} or "
                "lower max_start_epoch"
            )


def expert_key(latents: torch.Tensor, labels: torch.Tensor, num_classes: int, settings: dict) -> str:
    """16 hex digits of SHA-256 over the training latents' bytes, the labels and `settings` (what determines a
    trajectory)."""
    digest = hashlib.sha256()
    head = {"shape": list(latents.shape), "dtype": str(latents.dtype), "classes": num_classes, **settings}
    digest.update(json.dumps(head, sort_keys=True).encode())
    digest.update(latents.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(labels.detach().to(torch.int64).contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def train_expert(
    latents: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    options: ExpertOptions,
    index: int,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, float]:
    """Train expert `index` on real latent clips `(N, T, C, h, w)` and return its trajectory `(train_epochs + 1, P)`
    float32 (row e: the flat parameters after e epochs) and its training accuracy in the last epoch.

    Deterministic for (`expert_seed`, `index`) on the CPU: initialisation and batch order come from one generator.
    """
    device = torch.device(device)
    state = np.random.SeedSequence([options.expert_seed, index]).generate_state(1, np.uint64)[0]
    generator = torch.Generator().manual_seed(int(state) % 2**63)
    net = LatentConvNet(latents.shape[2], num_classes, latents.shape[3:], options.width, options.depth)
    net = net.reset(generator).to(device)
    flat = FlatNet(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=options.lr_teacher)
    trajectory = [flat.flatten()]
    correct = 0
    for _ in range(options.train_epochs):
        correct = 0
        for batch in torch.split(torch.randperm(len(labels), generator=generator), options.batch_train):
            x = latents[batch].to(device, torch.float32)
            y = labels[batch].to(device)
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            correct += int((logits.argmax(dim=1) == y).sum())
        trajectory.append(flat.flatten())
    return torch.stack(trajectory), correct / len(labels)


def expert_trajectories(
    latents: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    options: ExpertOptions,
    folder: str | None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[list[torch.Tensor], dict]:
    """The `num_experts` trajectories of `train_expert` on these clips: read from `<folder>/<key>/` when they are
    there, else trained one at a time and each saved there atomically (`expert_<i>.safetensors`); `folder` None
    trains them in memory.

    Returns the trajectories (float32, CPU) and a JSON-ready record: `key`, `folder`, `trained` / `reused` counts,
    `train_accuracy` (each expert's, last epoch) and `seconds` (training time of the ones trained now).
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    settings = options.settings()
    key = expert_key(latents, labels, num_classes, settings)
    where = os.path.join(folder, key) if folder else None
    if where:
        from compressa_hf.io import atomic_write_json

        os.makedirs(where, exist_ok=True)
        # What the key stands for, for a reader of the folder (the key itself is what is checked).
        info_path = os.path.join(where, "settings.json")
        if not os.path.exists(info_path):
            atomic_write_json(info_path, {"key": key, "clips": len(labels), "shape": list(latents.shape), **settings})
    trajectories, accuracies, trained, start = [], [], 0, time.perf_counter()
    indices = range(options.num_experts)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="experts", unit="expert")
    for i in indices:
        path = os.path.join(where, f"expert_{i:04d}.safetensors") if where else None
        if path and os.path.exists(path):
            with safe_open(path, "pt") as f:
                meta = f.metadata()
                trajectory = f.get_tensor("trajectory")
            if meta.get("key") != key or trajectory.shape[0] != options.train_epochs + 1:
                # Not a ValueError: `compressa evaluate` reads those as "this method cannot meet the budget".
                raise RuntimeError(f"{path} is not an expert of key {key}; delete {where} to train its experts again")
            accuracies.append(float(meta["train_accuracy"]))
        else:
            trajectory, accuracy = train_expert(latents, labels, num_classes, options, i, device)
            accuracies.append(accuracy)
            trained += 1
            if path:
                tmp = f"{path}.tmp.{os.getpid()}"
                meta = {"key": key, "index": str(i), "train_accuracy": repr(accuracy)}
                save_file({"trajectory": trajectory.contiguous()}, tmp, metadata=meta)
                os.replace(tmp, path)
        trajectories.append(trajectory)
    seconds = time.perf_counter() - start
    if trained:
        logger.info(
            "experts: trained %d, reused %d (%s), %.1f s; last-epoch train accuracy %.1f %%",
            trained,
            options.num_experts - trained,
            where or "in memory",
            seconds,
            100 * sum(accuracies) / len(accuracies),
        )
    record = {
        "key": key,
        "folder": where,
        "trained": trained,
        "reused": options.num_experts - trained,
        "train_accuracy": accuracies,
        "seconds": seconds if trained else 0.0,
    }
    return trajectories, record


def experts_for(ctx, options: ExpertOptions) -> tuple[list[torch.Tensor], dict]:
    """`expert_trajectories` of a method's context: the whole training split, kept under `ctx.shared_dir` (else
    `ctx.work_dir`) in `experts/`."""
    root = ctx.shared_dir or ctx.work_dir
    return expert_trajectories(
        ctx.latents_tensor(),
        ctx.labels,
        ctx.num_classes,
        options,
        os.path.join(root, "experts") if root else None,
        ctx.device,
        ctx.progress,
    )


def student_for(ctx, options: ExpertOptions) -> FlatNet:
    """A `FlatNet` of the experts' architecture on `ctx.device` (its own weights are never used: a student starts
    from an expert's)."""
    c, h, w = ctx.latent_shape
    return FlatNet(LatentConvNet(c, ctx.num_classes, (h, w), options.width, options.depth).to(ctx.device))


def trajectory_loss(
    student: FlatNet,
    start: torch.Tensor,
    target: torch.Tensor,
    batches,
    syn_lr: torch.Tensor,
) -> torch.Tensor:
    """MTT's normalised parameter distance after SGD steps on `batches` (an iterable of `(x, y)`: latent clips and
    class indices or class probabilities) from `start`, the graph kept through every step:
    `||theta_N - target||^2 / ||start - target||^2` (MTT divides both by the parameter count, which cancels)."""
    params = start.detach().clone().requires_grad_(True)
    for x, y in batches:
        loss = F.cross_entropy(student(params, x), y)
        (grad,) = torch.autograd.grad(loss, params, create_graph=True)
        params = params - syn_lr * grad
    return (params - target).pow(2).sum() / (start - target).pow(2).sum()


@dataclass
class MatchResult:
    """What `match_trajectories` did: the loss of every iteration, the start epochs drawn, how many updates a
    threshold skipped, and the student learning rate at the end."""

    losses: list[float]
    start_epochs: list[int]
    skipped: int
    syn_lr: float

    def summary(self) -> dict:
        from compressa_hf.distillation.methods.dm import _summary

        starts = self.start_epochs
        return {
            **_summary(self.losses),
            "skipped_updates": self.skipped,
            "syn_lr": self.syn_lr,
            "start_epoch_mean": sum(starts) / len(starts) if starts else None,
            "start_epoch_max": max(starts) if starts else None,
        }


def match_trajectories(
    experts: Sequence[torch.Tensor],
    student: FlatNet,
    synthesize: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    num_rows: int,
    optimizers: Sequence[torch.optim.Optimizer],
    options: MatchOptions,
    seed: int,
    device: torch.device | str = "cpu",
    window: Callable[[int], tuple[int, int]] | None = None,
    threshold: float | None = None,
    after_step: Callable[[], None] | None = None,
    progress: bool = False,
    desc: str = "mtt",
) -> MatchResult:
    """The matching loop of the module docstring over whatever the caller learns.

    Args:
        experts: Trajectories `(epochs + 1, P)` of `expert_trajectories`.
        student: The experts' architecture (`student_for`).
        synthesize: Row positions `(B,)` (CPU, int64) -> `(x, y)` on `device`: the synthetic latent clips of those
            rows, built from the learned tensors (so gradients reach them), and their class indices or
            probabilities.
        num_rows: Rows of the synthetic set.
        optimizers: Of everything the method learns besides the student lr; stepped after each backward.
        options: `options.iterations` iterations of `options.syn_steps` steps, and the student lr's settings.
        seed: Seeds the expert order, the start epochs and the batches (a CPU generator).
        window: Iteration -> `[low, high)` of the start epoch (DATM's moving window); None: `[0, max_start_epoch)`.
        threshold: Skip the update of an iteration whose loss is above it (DATM); None: never skip.
        after_step: Called after each update (e.g. to clamp latents to the storable range).
        progress: Progress bar over iterations, labelled `desc`.
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    syn_lr = torch.tensor(float(options.lr_teacher), device=device).requires_grad_(options.train_lr)
    lr_optimizer = torch.optim.SGD([syn_lr], lr=options.lr_lr, momentum=0.5) if options.train_lr else None
    batch = options.batch_syn or num_rows
    order: list[int] = []
    chunks: list[torch.Tensor] = []

    def next_rows() -> torch.Tensor:
        if not chunks:  # a fresh permutation once every row was used, as MTT's `indices_chunks`
            chunks.extend(torch.split(torch.randperm(num_rows, generator=generator), batch))
        return chunks.pop()

    def batches():
        for _ in range(options.syn_steps):
            yield synthesize(next_rows())

    losses, starts, skipped = [], [], 0
    steps = range(options.iterations)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=desc, unit="it")
    for it in steps:
        if not order:
            order.extend(torch.randperm(len(experts), generator=generator).tolist())
        trajectory = experts[order.pop()]
        low, high = window(it) if window is not None else (0, options.max_start_epoch)
        start_epoch = int(torch.randint(low, high, (1,), generator=generator))
        start = trajectory[start_epoch].to(device)
        target = trajectory[start_epoch + options.expert_epochs].to(device)
        loss = trajectory_loss(student, start, target, batches(), syn_lr)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        if lr_optimizer is not None:
            lr_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if threshold is not None and loss.item() > threshold:
            skipped += 1
        else:
            for opt in optimizers:
                opt.step()
            if lr_optimizer is not None:
                lr_optimizer.step()
                with torch.no_grad():
                    syn_lr.clamp_(min=MIN_SYN_LR)
            if after_step is not None:
                after_step()
        losses.append(loss.item())
        starts.append(start_epoch)
    return MatchResult(losses=losses, start_epochs=starts, skipped=skipped, syn_lr=float(syn_lr.detach()))
