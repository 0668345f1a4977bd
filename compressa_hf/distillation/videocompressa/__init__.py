"""VideoCompressa (arXiv 2511.18831, Sec. 4 and Algorithm 1): learn which K frames of each video to keep, and
refine their latents, jointly with a frame scorer and a guide classifier.

Algorithm 1 as implemented here. Z (N x T latent frames, from the cache, float32) is learnable. Each step takes a
mini-batch of videos, decodes their frames with the frozen codec, scores every frame with the scorer phi
(q, B x T), draws K Gumbel-Softmax samples per video (`gumbel.py`, Eq. 3-4), forms K soft frames
sum_t w[k, t] * frame[t] (Eq. 5), classifies them with the guide network theta, and takes one backward pass of the
cross-entropy into Z, phi and theta (Eq. 8). After the last pass the final scorer ranks the final decoded frames
and the K best per video (in temporal order) are kept with their optimised latents.

Choices the paper leaves open, and why:
- Frame scorer: per frame, conv3x3(3 -> w, stride 2) -> ReLU -> conv3x3(w -> w, stride 2) -> ReLU -> adaptive
  average pool to 4x4 -> linear(16 w -> 1), w = 32, no normalisation: "two 3x3 conv layers followed by a linear
  projection" producing "a scalar importance logit for each frame". The strides and the pooling keep it cheap next
  to the decoder and independent of the frame size; 4x4 pooling keeps a coarse layout.
- The scorer's input is detached from Z: the paper says the gradient through q "update[s] only the parameters of
  phi". Z receives gradient through the soft frames (Eq. 5) only.
- "4 optimisation steps" (Sec. 11) are read as 4 passes (epochs) over the videos: the sensitivity study counts
  "training steps" 0/1/2/4/8 with a large gain after one, which one mini-batch step of a large set cannot give.
- Guide network: the per-frame ConvNet (`compressa_hf.nets`), randomly initialised once and trained jointly,
  with Adam at 1e-3 by default. The paper names no optimiser for it. Adam is what it uses for the other two
  learnables, and the guide must learn fast for its gradients to carry a class signal back to phi within 4 passes:
  on the tests' synthetic set (3 data seeds) the scorer's event-frame hit rate after 4 passes is 0.78-0.97 with
  Adam 1e-3 and 0.63-0.89 with the evaluation protocol's SGD 0.01 / momentum 0.9 (both reach 0.94-1.0 after 8).
  SGD is available (`guide_optimizer="sgd"`).
- Latent optimiser: Adam at 1e-2 applied per latent frame ("lazy" row-wise Adam, `LazyRowAdam`): a frame's
  moments and bias correction advance only when it receives gradient, as if every latent frame were its own Adam
  parameter. A dense Adam over one N x T tensor would keep moving every video's latents on every step along
  momentum from its last visit; with row-wise updates a frame changes only when it is trained, which is also
  what makes the decoded-frame cache below exact.
- Mini-batches: a seeded permutation per pass split into ceil(N / batch_size) near-equal batches (no tiny tail).

Efficiency (the paper decodes and back-propagates all T frames of every video at every step). Two exact
bookkeeping devices and one documented approximation:
1. Decoded-frame cache: the decoded frames of the current Z are kept (`frame_cache_dtype`, float16 by default:
   rounding a [0, 1] frame to float16 changes it by < 5e-4, an eighth of a uint8 step). Because the latent
   optimiser only touches rows that received gradient, only those rows go stale; a stale frame is re-decoded
   (without grad) the next time its video is in a batch, or at the end. The scorer and the forward pass read the
   cache, so the forward loss and the gradients to q, phi and theta are exactly those of the paper's algorithm
   (given float16 frames).
2. Two-phase backward: the loss is first back-propagated to the decoded frames (cheap); then the frames chosen
   for a latent gradient are re-decoded with grad in chunks of `grad_chunk` and their frame gradients pushed
   through the decoder. This is gradient checkpointing at the decoder's output: the same gradient as one graph,
   with memory bounded by the chunk (one graph over 64 videos x 16 frames of TAESD at 112 x 112 needs ~55 GB).
3. The approximation: only `grad_frames` = G frames per video get a latent gradient each step; each of them gets
   its exact gradient, the others none this step. Which ones (`grad_select`):
   - "scores" (default): the G frames with the highest scorer logits q, i.e. the frames Stage 3 would store if
     training stopped now. Once the scorer settles, the frames that end up in the distilled set receive their
     exact gradient at every visit, and the work is not spent on frames that are thrown away.
   - "weights": the G frames with the largest Gumbel weight sum_k w[k, t] this step, the dropped gradient being
     the smallest (a frame's gradient is w[., t]-weighted); with `hard=True` and G = K this is exact.
   The share of the Gumbel weight mass whose latent gradient is kept is logged as `grad_weight_coverage`.
   `grad_frames=0` sends gradient to all T frames (the paper's algorithm, the tests' reference).
   Default G = K, the number of frames that will be stored. The scale of the refinement: with lr 1e-2 and one
   Adam step per frame per pass, 4 passes move a latent by at most ~0.04, under two steps of uint8 storage (6/255),
   so the selection, not the refinement, carries most of the result; `grad_frames=1` is the setting for speed.

Decoder work per video, in frame decodes (a backward costs about one decode): the paper's algorithm with P
passes costs 2 P T + T; this one costs T (first visit) + 3 P G (re-decode after an update, decode with grad,
backward): T = 16, P = 4, K = 4 gives 144 -> 64 (G = 4) or 28 (G = 1). `DistillResult.timings` counts decodes.
What remains is bounded below by one decode of every cached frame (the scorer needs them) plus the guide network
(K frames per video per pass): on 2 CPU cores at 112 x 112 the width-128 ConvNet guide alone costs about as much
as encoding the clips once.

Multi-process: with an `accelerate.Accelerator` of several processes, rank r owns videos r, r + W, r + 2W, ...
(strided, so every rank sees every class even when the cache is sorted by class), keeps its videos' latents,
moments and frame cache, and runs the same number of steps per pass as the others (batches split near-equally);
scorer and guide are DDP-wrapped so their gradients are averaged. At the end the results are gathered in video
order on every rank. `batch_size` is per process.

Checkpoints (`checkpoint_dir`, `resume=True`) continue a run bit-identically, after every pass and every
`checkpoint_steps` steps (`checkpoint.py`). Bounded memory: the state can live in files instead of memory
(`state_storage="disk"`, or "auto" by its estimated size), with the same bytes; `state.py` says how, and how a killed
disk-backed run resumes to them.

The package, by concern:
- `config.py`: `VideoCompressaConfig`, the hyperparameters.
- `scorer.py`: `FrameScorer`, the frame scorer phi.
- `optimizers.py`: the row-wise optimisers of Z (`LazyRowAdam`, `DenseAdam`, `RowSGD`; `LATENT_OPTIMIZERS`).
- `state.py`: the state's size (`state_bytes`), where it lives (`choose_state_storage`) and its allocator.
- `checkpoint.py`: what a checkpoint holds, its atomic write and what resuming checks (`CHECKPOINT_VERSION`).
- `distiller.py`: `_Distiller`, one process's share of a run: the step, the guide warm-up, the passes, the final
  top-K.
- here: `distill`, what it returns (`DistillResult`) and the gathering of the processes' shares.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from compressa_hf.distillation.videocompressa import checkpoint
from compressa_hf.distillation.videocompressa.checkpoint import CHECKPOINT_VERSION, RESUMABLE_FIELDS
from compressa_hf.distillation.videocompressa.config import VideoCompressaConfig
from compressa_hf.distillation.videocompressa.distiller import _Distiller
from compressa_hf.distillation.videocompressa.optimizers import LATENT_OPTIMIZERS, DenseAdam, LazyRowAdam, RowSGD
from compressa_hf.distillation.videocompressa.scorer import FrameScorer
from compressa_hf.distillation.videocompressa.state import AUTO_MEMORY_SHARE, choose_state_storage, state_bytes

__all__ = [
    "AUTO_MEMORY_SHARE",
    "CHECKPOINT_VERSION",
    "LATENT_OPTIMIZERS",
    "RESUMABLE_FIELDS",
    "DenseAdam",
    "DistillResult",
    "FrameScorer",
    "LazyRowAdam",
    "RowSGD",
    "VideoCompressaConfig",
    "choose_state_storage",
    "distill",
    "state_bytes",
]

logger = logging.getLogger(__name__)


@dataclass
class DistillResult:
    """What `distill` returns (for the full set, in input order).

    Attributes:
        frame_indices: `(N, K)` int64 positions of the kept frames among the T cached ones, ascending.
        latents: `(N, K, C, h, w)` float32 optimised raw latents of those frames.
        scores: `(N, T)` final scorer logits on the final decoded frames.
        labels: `(N,)` int64 labels, as given.
        history: One dict per pass: mean `loss`, `acc` (guide accuracy on the soft frames, this process's
            videos), `steps`, `seconds`, `grad_weight_coverage`, `scorer_entropy` (mean entropy of softmax(q) over
            a video's T frames, divided by log T: 1 = indifferent, 0 = one frame), `tau` and the per-step `losses`.
        warmup: The guide warm-up's `epochs`, `loss_last_epoch` and `acc` (empty without warm-up).
        timings: Wall-clock seconds (`decode_s`, `decode_grad_s`, `forward_backward_s`, `optimizer_s`,
            `final_s`, `total_s`) and decoder counts (`decoded_frames` without grad, `decoded_frames_grad` with
            grad and backward, `decoder_calls`), for this process, summed over resumed runs.
        config: The configuration as a dict (`state_storage` as it ran: memory or disk).
        storage: Where the state lived and why (`choose_state_storage`): `state_storage`, `requested`,
            `estimated_bytes`, `limit_bytes`, `reason`.
    """

    frame_indices: torch.Tensor
    latents: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    history: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    warmup: dict[str, Any] = field(default_factory=dict)
    storage: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-ready summary (no tensors)."""
        return {
            "num_videos": int(self.frame_indices.shape[0]),
            "frames_per_video": int(self.frame_indices.shape[1]),
            "history": [{k: v for k, v in h.items() if k != "losses"} for h in self.history],
            "timings": dict(self.timings),
            "config": dict(self.config),
            "guide_warmup": dict(self.warmup),
            "state_storage": dict(self.storage),
        }


def _module_device(module: nn.Module) -> torch.device:
    """The device `module` runs on: its `device` attribute, else that of its first parameter or buffer, else CPU."""
    device = getattr(module, "device", None)
    if isinstance(device, torch.device):
        return device
    tensor = next(iter([*module.parameters(), *module.buffers()]), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _gather(accelerator, tensor: torch.Tensor, n_all: int, world: int) -> torch.Tensor:
    """Reassemble per-rank strided shards (rank r holds videos r, r + W, ...) into input order on every rank."""
    local = tensor.to(accelerator.device)
    max_len = math.ceil(n_all / world)
    padded = torch.zeros((max_len, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[: len(local)] = local
    gathered = accelerator.gather(padded).view(world, max_len, *local.shape[1:]).cpu()
    out = torch.empty((n_all, *local.shape[1:]), dtype=local.dtype)
    for r in range(world):
        count = len(range(r, n_all, world))
        out[r::world] = gathered[r, :count]
    return out


def distill(
    latents: torch.Tensor,
    labels: torch.Tensor,
    codec: nn.Module,
    cfg: VideoCompressaConfig,
    num_classes: int,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    accelerator=None,
) -> DistillResult:
    """Run VideoCompressa on cached latents and return the K kept frames per video with their optimised latents.

    Args:
        latents: `(N, T, C, h, w)` raw latents of the cached clips (any float dtype; the cache stores float16).
        labels: `(N,)` class indices.
        codec: A frozen `LatentCodec`; its `decode` must be differentiable w.r.t. the latents.
        cfg: Hyperparameters.
        num_classes: Number of classes of the guide network.
        progress: Show a progress bar on the main process.
        checkpoint_dir: Folder for checkpoints (created); None disables them.
        resume: Continue from the checkpoint in `checkpoint_dir` when there is one.
        accelerator: Optional `accelerate.Accelerator`; with several processes each rank distils its strided share
            and the result is gathered on every rank.
    """
    if latents.dim() != 5:
        raise ValueError(f"latents must be (N, T, C, h, w), got shape {tuple(latents.shape)}")
    n_all, t = latents.shape[:2]
    if n_all == 0:
        raise ValueError("no videos to distil: the latents tensor is empty")
    if labels.shape != (n_all,):
        raise ValueError(f"labels must be ({n_all},) to match the latents, got shape {tuple(labels.shape)}")
    if cfg.frames_per_video is None:
        raise ValueError("cfg.frames_per_video is None: set K (the budget planner of `compressa distill` does)")
    if cfg.frames_per_video > t:
        raise ValueError(f"frames_per_video {cfg.frames_per_video} exceeds the {t} cached frames per video")
    if latents.shape[2] != codec.latent_channels:
        raise ValueError(
            f"latents have {latents.shape[2]} channels but codec {codec.codec_id!r} expects {codec.latent_channels}; "
            f"distil with the codec the cache was encoded with"
        )
    if n_all and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    world = accelerator.num_processes if accelerator is not None else 1
    rank = accelerator.process_index if accelerator is not None else 0
    if n_all < world:
        raise ValueError(f"{n_all} videos cannot be shared by {world} processes; use fewer processes")
    if accelerator is not None:
        device = accelerator.device
        codec.to(device)
    else:
        device = _module_device(codec)
    codec.requires_grad_(False).eval()

    checkpoint_path = None
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
        checkpoint_path = os.path.join(os.fspath(checkpoint_dir), f"videocompressa_rank{rank}.pt")

    resuming = bool(resume and checkpoint_path and os.path.exists(checkpoint_path))
    saved = checkpoint.peek(checkpoint_path) if resuming else {}
    n_local = len(range(rank, n_all, world))
    frame_size = (latents.shape[3] * codec.downscale, latents.shape[4] * codec.downscale)
    estimate = state_bytes(cfg, n_local, t, tuple(latents.shape[2:]), frame_size)
    storage = choose_state_storage(cfg, estimate, checkpoint_dir is not None, saved.get("state_storage"))
    if cfg.state_storage == "auto":
        cfg = replace(cfg, state_storage=storage["state_storage"])
        limit = storage["limit_bytes"]
        logger.info(
            "state storage: %s (auto): estimated state %.3g GB for %d videos x %d frames%s; %s",
            storage["state_storage"],
            estimate / 1e9,
            n_local,
            t,
            f", limit {limit / 1e9:.3g} GB" if limit is not None else "",
            storage["reason"],
        )

    from compressa_hf.threads import resumed_with

    rng_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices), resumed_with(saved.get("torch_threads")):
        # Own RNG stream (dropout in a guide net) so results do not depend on the caller's RNG state.
        torch.manual_seed(cfg.seed + rank)
        if checkpoint_path and not resuming and os.path.exists(checkpoint_path):
            logger.warning(
                "%s holds a checkpoint of an earlier run; starting over without it (resume=True / --resume continues "
                "it)",
                checkpoint_path,
            )
            if cfg.state_storage == "disk":
                os.remove(checkpoint_path)  # it describes state files about to be recreated
        state_dir = (
            os.path.join(os.fspath(checkpoint_dir), f"state_rank{rank}") if checkpoint_dir is not None else None
        )
        run = _Distiller(
            latents, labels, codec, cfg, num_classes, device, rank, world, accelerator, state_dir, reopen=resuming
        )
        if resuming:
            checkpoint.load(run, checkpoint_path)
            in_pass = run.step_in_pass if run.perm is not None else 0
            logger.info(
                "resumed from %s after %d finished passes and %d steps of the next",
                checkpoint_path,
                run.passes_done,
                in_pass,
            )
        elif resume:
            logger.info("no checkpoint in %s; starting from scratch", checkpoint_dir)
        start = time.perf_counter()
        run.run(progress, checkpoint_path)
        indices, kept, scores = run.final(progress and (accelerator is None or accelerator.is_main_process))
        run.timings["total_s"] += time.perf_counter() - start

    out_labels = labels.to(torch.int64).cpu()
    if world > 1:
        indices = _gather(accelerator, indices, n_all, world)
        kept = _gather(accelerator, kept, n_all, world)
        scores = _gather(accelerator, scores, n_all, world)
    return DistillResult(
        frame_indices=indices,
        latents=kept,
        scores=scores,
        labels=out_labels,
        history=run.history,
        timings=run.timings,
        config=asdict(cfg),
        warmup=run.warmup_stats,
        storage=storage,
    )
