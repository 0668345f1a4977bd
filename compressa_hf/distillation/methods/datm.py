"""DATM (Guo et al., "Towards Lossless Dataset Distillation via Difficulty-Aligned Trajectory Matching", ICLR 2024)
adapted to video in latent space: MTT with a start-epoch window that widens during distillation, learned soft
labels, and initial clips the experts already classify correctly.

What DATM does on images (its code, NUS-HPC-AI-Lab/DATM `distill/DATM.py` and `configs/`), and how it is carried
over here:
1. Matching is MTT's (`compressa_hf.distillation.trajectories`, the experts MTT and MTT+VDSD use too), with the student
   trained on the soft cross-entropy to `softmax(label logits)`, and the start epoch drawn from
   `[min_start_epoch, upper)`, `upper = current_max_start_epoch + (max_start_epoch - current_max_start_epoch) * it /
   expansion_end_iteration` (capped at `max_start_epoch`): early, easy segments first, later ones as distillation
   goes on ("Sequential Generation"). An iteration whose loss exceeds `threshold` updates nothing.
2. Initial clips are real ones the experts classify correctly (`pix_init: samples_predicted_correctly`). DATM takes,
   per class, images expert 0 (at its last epoch) predicts right, then expert 1's, and so on. Here a clip is its
   planner's K uniform latent frames (what is distilled); among each class's clips in seeded random order, those
   expert 0 gets right come first, then expert 1's, ..., then the rest, and the first `videos_per_class` of the
   plan are kept. When the plan keeps every clip, nothing is left to choose.
3. Soft labels start from the mean logits of the experts (last epoch) that classify the clip correctly (all experts
   for a clip none gets right, where DATM would divide by zero) and are learned by SGD (`lr_y`, momentum
   `momentum_y`). The learned student learning rate is reported, not stored (as MTT, `mtt.py`).
What differs: DATM's experts are trained with GSAM, ZCA whitening and differentiable augmentation, its images
updated by SGD; these experts are MTT's plain-SGD ones (shared with MTT) and the latents learn with Adam.

Storage: the learned labels are paid from the budget. The plan (`ctx.plan()` with `label_bytes_per_video` = C x 2)
keeps K, and drops videos to make room for `stored["soft_labels"]` `(M, C)` float16 probabilities
`softmax(logits)` (`compressa_hf.distillation.soft_labels.quantise`), on which `compressa evaluate` trains. The set
already stores its own soft labels, so a teacher's relabelling (`datm+soft`) does not apply.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import torch

from compressa_hf.distillation.methods.base import CompressedSet, MethodContext, check_budget, planned_set
from compressa_hf.distillation.methods.mtt import clamp_after_step, initial_clips
from compressa_hf.distillation.soft_labels import label_bytes, quantise
from compressa_hf.distillation.trajectories import FlatNet, MatchOptions, experts_for, match_trajectories, student_for

KIND = "synthesis"
__all__ = ["KIND", "Options", "compress", "correct_first", "expert_logits", "start_window"]

logger = logging.getLogger(__name__)

LABEL_DTYPE = "float16"


@dataclass
class Options(MatchOptions):
    """DATM's hyperparameters: `compressa_hf.distillation.trajectories.MatchOptions` (experts and matching loop; here
    `max_start_epoch` is the window's final upper bound) and DATM's own below.

    Scale. Defaults are MTT's reduced scale (8 experts x 10 epochs, 60 iterations of 10 student steps), the window
    widening from [0, 5) to [0, 10) over the first 30 iterations. DATM has no video setting; its image settings
    (CIFAR-10, 10 images per class, `configs/CIFAR-10/ConvIN/IPC10.yaml`), for a GPU via `--method_config`:
    `{num_experts: 100, train_epochs: 100, iterations: 10000, syn_steps: 80, expert_epochs: 2, min_start_epoch: 0,
    current_max_start_epoch: 10, max_start_epoch: 20, expansion_end_iteration: 1000, lr_y: 2.0, momentum_y: 0.9,
    threshold: 1.0}`.

    Args:
        min_start_epoch: Lower bound of the start epoch (DATM 0).
        current_max_start_epoch: Upper bound (exclusive) at the first iteration (DATM 10-20).
        expansion_end_iteration: Iteration at which the upper bound reaches `max_start_epoch` (DATM 1000-3000).
        lr_y: SGD learning rate of the label logits (DATM 2-10).
        momentum_y: SGD momentum of the label logits (DATM 0.9).
        threshold: Skip the update of an iteration whose normalised loss is above this (DATM 1.0-1.1).
    """

    min_start_epoch: int = field(default=0, metadata={"help": "Lowest start epoch."})
    current_max_start_epoch: int = field(default=5, metadata={"help": "Start-epoch upper bound at iteration 0."})
    expansion_end_iteration: int = field(default=30, metadata={"help": "Iteration the window reaches its end."})
    lr_y: float = field(default=2.0, metadata={"help": "SGD lr of the label logits."})
    momentum_y: float = field(default=0.9, metadata={"help": "SGD momentum of the label logits."})
    threshold: float = field(default=1.0, metadata={"help": "Skip updates of iterations with a larger loss."})

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.min_start_epoch < self.current_max_start_epoch <= self.max_start_epoch:
            raise ValueError(
                "datm needs 0 <= min_start_epoch < current_max_start_epoch <= max_start_epoch, got "
                f"{self.min_start_epoch}, {self.current_max_start_epoch}, {self.max_start_epoch}"
            )
        if self.expansion_end_iteration < 1:
            raise ValueError(f"`expansion_end_iteration` must be >= 1, got {self.expansion_end_iteration}")
        if not self.lr_y > 0 or not 0 <= self.momentum_y < 1 or not self.threshold > 0:
            raise ValueError(
                f"datm needs lr_y > 0, 0 <= momentum_y < 1 and threshold > 0, got {self.lr_y}, {self.momentum_y}, "
                f"{self.threshold}"
            )


def start_window(options: Options, iteration: int) -> tuple[int, int]:
    """`[low, high)` of the start epoch at `iteration` (DATM's `Sequential_Generation`)."""
    span = options.max_start_epoch - options.current_max_start_epoch
    upper = options.current_max_start_epoch + int(span * iteration / options.expansion_end_iteration)
    return options.min_start_epoch, min(upper, options.max_start_epoch)


@torch.no_grad()
def expert_logits(
    student: FlatNet, experts, clips: torch.Tensor, device: torch.device | str = "cpu", batch: int = 256
) -> torch.Tensor:
    """Logits `(E, M, classes)` of every expert at its last epoch on latent clips `(M, K, C, h, w)` (CPU)."""
    out = []
    for trajectory in experts:
        final = trajectory[-1].to(device)
        out.append(torch.cat([student(final, c.to(device).float()).cpu() for c in torch.split(clips, batch)]))
    return torch.stack(out)


def correct_first(labels: torch.Tensor, correct: torch.Tensor, videos_per_class, seed: int) -> torch.Tensor:
    """Positions of the clips kept: per class, `videos_per_class[c]` of them in the order of the first expert that
    classifies each correctly (`correct` `(E, N)` bool), clips no expert gets right last, ties in seeded random
    order. Sorted."""
    generator = torch.Generator().manual_seed(seed)
    experts = correct.shape[0]
    first = torch.where(correct.any(dim=0), correct.float().argmax(dim=0), torch.full_like(labels, experts))
    keep = []
    for c, v in enumerate(videos_per_class):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        order = torch.sort(first[members], stable=True).indices
        keep += members[order][: int(v)].tolist()
    return torch.tensor(sorted(keep), dtype=torch.long)


def compress(ctx: MethodContext) -> CompressedSet:
    opts = ctx.method_options(Options, "datm")
    if ctx.label_bytes_per_video:
        raise ValueError(
            "datm learns and stores its own soft labels, so a teacher's relabelling (datm+soft) does not apply; "
            "evaluate datm without --soft_labels, or read its row as already soft-labelled"
        )
    row_label_bytes = label_bytes(ctx.num_classes, LABEL_DTYPE)
    plan = dataclasses.replace(ctx, label_bytes_per_video=row_label_bytes).plan()
    experts, expert_record = experts_for(ctx, opts)
    student = student_for(ctx, opts)

    # Initial clips: all videos at the plan's K frames, scored by every expert, the plan's count kept per class.
    every = torch.arange(ctx.num_videos)
    candidates, candidate_frames = initial_clips(ctx, every, plan.frames_per_video)
    logits = expert_logits(student, experts, candidates, ctx.device)
    correct = logits.argmax(dim=2) == ctx.labels[None]
    videos = correct_first(ctx.labels, correct, list(plan.videos_per_class), ctx.seed)
    init, frame_indices = candidates[videos], candidate_frames[videos]
    right = correct[:, videos].float()
    any_right = right.sum(dim=0) > 0
    weights = torch.where(any_right, right, torch.ones_like(right))
    init_logits = (logits[:, videos] * weights[..., None]).sum(dim=0) / weights.sum(dim=0)[:, None]
    logger.info(
        "datm: %d synthetic clips of %d latent frames (%d of them classified correctly by an expert), %d iterations",
        len(videos),
        plan.frames_per_video,
        int(any_right.sum()),
        opts.iterations,
    )

    syn = init.to(ctx.device).requires_grad_(True)
    label_logits = init_logits.to(ctx.device).requires_grad_(True)

    def synthesize(rows: torch.Tensor):
        rows = rows.to(ctx.device)
        return syn[rows], torch.softmax(label_logits[rows], dim=1)

    result = match_trajectories(
        experts,
        student,
        synthesize,
        len(videos),
        [
            torch.optim.Adam([syn], lr=opts.lr_img),
            torch.optim.SGD([label_logits], lr=opts.lr_y, momentum=opts.momentum_y),
        ],
        opts,
        seed=ctx.seed,
        device=ctx.device,
        window=lambda it: start_window(opts, it),
        threshold=opts.threshold,
        after_step=clamp_after_step(syn, plan.dtype),
        progress=ctx.progress,
        desc="datm",
    )
    summary = result.summary()
    if result.losses:
        logger.info(
            "datm: matching loss %.4g -> %.4g (%d updates skipped)",
            summary["loss_start"],
            summary["loss_end"],
            result.skipped,
        )
    probs = torch.softmax(label_logits.detach().float().cpu(), dim=1)
    info = {
        "datm": {
            **summary,
            "experts": expert_record,
            "init": "real latents at uniform frames, correctly classified by an expert first",
            "init_correct": int(any_right.sum()),
            "label_agreement": float((probs.argmax(dim=1) == ctx.labels[videos]).float().mean()),
            "mean_max_probability": float(probs.max(dim=1).values.mean()),
        }
    }
    cset = planned_set(ctx, "datm", plan, videos, syn.detach().cpu(), frame_indices, info)
    cset.stored["soft_labels"] = quantise(probs, LABEL_DTYPE)
    if cset.stored_bytes != plan.stored_bytes:
        raise AssertionError(f"datm: stored {cset.stored_bytes} bytes, the plan says {plan.stored_bytes}")
    return check_budget(cset, ctx.budget_bytes)
