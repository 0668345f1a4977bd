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

Bounded memory: the state can live in files instead of memory (`state_storage="disk"`, or "auto" by its estimated
size); `state.py` says how, and how a killed disk-backed run resumes to the same bytes.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compressa_hf.distill.gumbel import (
    gumbel_softmax_samples,
    segment_argmax,
    segment_bounds,
    segment_gumbel_samples,
    topk_in_time,
)
from compressa_hf.distill.videocompressa import checkpoint
from compressa_hf.distill.videocompressa.checkpoint import CHECKPOINT_VERSION, RESUMABLE_FIELDS
from compressa_hf.distill.videocompressa.config import VideoCompressaConfig
from compressa_hf.distill.videocompressa.optimizers import LATENT_OPTIMIZERS, DenseAdam, LazyRowAdam, RowSGD
from compressa_hf.distill.videocompressa.scorer import FrameScorer
from compressa_hf.distill.videocompressa.state import (
    AUTO_MEMORY_SHARE,
    StateStorage,
    choose_state_storage,
    state_bytes,
)
from compressa_hf.nets import build_net

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


def _track(iterable, progress: bool, desc: str, unit: str):
    """`iterable` behind a tqdm bar (closed when done) when `progress`, else as it is."""
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit=unit, leave=False)


def _module_device(module: nn.Module) -> torch.device:
    device = getattr(module, "device", None)
    if isinstance(device, torch.device):
        return device
    tensor = next(iter([*module.parameters(), *module.buffers()]), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Distiller:
    """State and steps of one process's share of a VideoCompressa run."""

    def __init__(
        self, latents, labels, codec, cfg, num_classes, device, rank, world, accelerator, state_dir=None, reopen=False
    ):
        self.cfg, self.codec, self.device, self.accelerator = cfg, codec, device, accelerator
        self.rank, self.world = rank, world
        n_all, self.T = latents.shape[:2]
        self.latent_shape = tuple(latents.shape[2:])
        self.K = cfg.frames_per_video
        self.G = self.T if cfg.grad_frames == 0 else min(cfg.grad_frames or self.K, self.T)
        self.video_ids = torch.arange(rank, n_all, world)
        if cfg.shuffle_window:  # local video i is the layout's i-th: neighbours in the state files mix classes
            layout = torch.randperm(len(self.video_ids), generator=torch.Generator().manual_seed(cfg.seed + rank))
            self.video_ids = self.video_ids[layout]
        self.n = len(self.video_ids)
        self.frame_size = (self.latent_shape[1] * codec.downscale, self.latent_shape[2] * codec.downscale)
        # Every rank must take the same number of steps (DDP); the smallest share sets it, so a rank holding one
        # more video may see one more per batch.
        self.steps_per_pass = math.ceil((n_all // world) / cfg.batch_size)

        # Z as (n * T, C, h, w) rows: one row per latent frame, the unit of the lazy optimiser and of staleness. In
        # memory these are tensors; on disk `RowFile`s with the same indexing, journaled for exact resumption.
        self.labels = labels[self.video_ids].to(torch.int64).cpu()
        self.storage = StateStorage(cfg.state_storage == "disk", state_dir, reopen)
        rows = self.n * self.T
        self.z = self.storage.alloc("z", (rows, *self.latent_shape), torch.float32)
        if not self.storage.reopen:
            per_chunk = max(1, cfg.decode_chunk // self.T)
            for vids in torch.split(torch.arange(self.n), per_chunk):
                # (indexing copies, so the caller's tensor is never modified)
                chunk = latents[self.video_ids[vids]].detach().to("cpu", torch.float32)
                self.z[self._rows(vids)] = chunk.reshape(len(vids) * self.T, *self.latent_shape)
        self.z_opt = LATENT_OPTIMIZERS[cfg.latent_optimizer](self.z, lr=cfg.lr_latents, alloc=self.storage.alloc)
        cache_dtype = getattr(torch, cfg.frame_cache_dtype)
        self.frames = self.storage.alloc("frames", (rows, 3, *self.frame_size), cache_dtype)
        self.stale = self.storage.alloc("stale", (rows,), torch.bool)
        if not self.storage.reopen:
            self._fill(self.stale, True)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            scorer = FrameScorer(width=cfg.scorer_width)
            if cfg.scorer_init == "uniform":
                nn.init.zeros_(scorer.head.weight)
                nn.init.zeros_(scorer.head.bias)
            guide_kw: dict[str, Any] = {"width": cfg.guide_width}
            if cfg.guide_norm is not None:
                guide_kw["norm"] = cfg.guide_norm
            guide = build_net(cfg.guide_net, num_classes, self.frame_size, **guide_kw)
        self.scorer_core, self.guide_core = scorer.to(device), guide.to(device)
        self.opt_scorer = torch.optim.Adam(self.scorer_core.parameters(), lr=cfg.lr_scorer)
        if cfg.guide_optimizer == "adam":
            self.opt_guide = torch.optim.Adam(
                self.guide_core.parameters(), lr=cfg.lr_guide, weight_decay=cfg.weight_decay_guide
            )
        else:
            self.opt_guide = torch.optim.SGD(
                self.guide_core.parameters(),
                lr=cfg.lr_guide,
                momentum=cfg.momentum_guide,
                weight_decay=cfg.weight_decay_guide,
            )
        if accelerator is not None and world > 1:
            self.scorer, self.guide = accelerator.prepare(self.scorer_core, self.guide_core)
        else:
            self.scorer, self.guide = self.scorer_core, self.guide_core

        self.generator = torch.Generator().manual_seed(cfg.seed + rank)
        self.warmup_done = cfg.guide_warmup_epochs == 0
        self.warmup_stats: dict = {}
        self.passes_done = 0
        self.step_in_pass = 0
        self.inner_done = 0
        self.global_step = 0
        self.perm: torch.Tensor | None = None
        self.perm_state: torch.Tensor | None = None  # the generator's state when `perm` was drawn
        self.generation = 0  # checkpoints written (the disk state's journal generation)
        self.pass_stats = self._new_pass_stats()
        self.history: list[dict] = []
        self.timings = {
            "decode_s": 0.0,
            "decode_grad_s": 0.0,
            "forward_backward_s": 0.0,
            "optimizer_s": 0.0,
            "final_s": 0.0,
            "total_s": 0.0,
            "decoded_frames": 0,
            "decoded_frames_grad": 0,
            "decoder_calls": 0,
            "steps": 0,
        }
        # The DM objective compares with the frames as first decoded (the cached latents), not the refined ones.
        self.ref_frames = torch.zeros(0)
        if cfg.objective != "ce":
            self.ref_frames = self.storage.alloc("ref_frames", (rows, 3, *self.frame_size), cache_dtype, journal=False)
            if not self.storage.reopen:
                for vids in self._video_chunks():
                    self.refresh(self._rows(vids))
                    self.ref_frames[self._rows(vids)] = self.frames[self._rows(vids)]
            self.dm_net = build_net("convnet", num_classes, self.frame_size, width=cfg.dm_width).to(device)
            self.dm_net.requires_grad_(False)

    # -- state arrays -------------------------------------------------------------------------------------------

    def _arrays(self) -> list:
        """The state arrays that grow with the videos (what `state_bytes` estimates; a memory checkpoint holds them,
        a disk one flushes them)."""
        arrays = [self.z, self.frames, self.stale, self.ref_frames]
        if isinstance(self.z_opt, LazyRowAdam):
            arrays += [self.z_opt.exp_avg, self.z_opt.exp_avg_sq, self.z_opt.steps]
        return arrays

    def _rows(self, vids: torch.Tensor) -> torch.Tensor:
        """The latent-frame rows of local videos `vids`, video by video."""
        return (vids[:, None] * self.T + torch.arange(self.T)).reshape(-1)

    def _video_chunks(self) -> tuple[torch.Tensor, ...]:
        """Local videos in chunks of about `decode_chunk` frames, for passes over all the state."""
        return torch.split(torch.arange(self.n), max(1, self.cfg.decode_chunk // self.T))

    def _fill(self, array, value) -> None:
        for vids in self._video_chunks():
            array[self._rows(vids)] = value

    def permutation(self) -> torch.Tensor:
        """This pass's order of the local videos (`shuffle_window`: window by window)."""
        w = self.cfg.shuffle_window
        if w == 0 or w >= self.n:
            return torch.randperm(self.n, generator=self.generator)
        starts = torch.arange(0, self.n, w)
        order = torch.randperm(len(starts), generator=self.generator).tolist()
        return torch.cat(
            [int(starts[i]) + torch.randperm(min(w, self.n - int(starts[i])), generator=self.generator) for i in order]
        )

    @staticmethod
    def _new_pass_stats() -> dict:
        return {"losses": [], "correct": 0, "seen": 0, "coverage": [], "entropy": [], "seconds": 0.0}

    # -- selection ----------------------------------------------------------------------------------------------

    def samples(self, q: torch.Tensor, tau: float) -> torch.Tensor:
        """`(B, K, T)` Gumbel weights under the configured sampling."""
        sample = segment_gumbel_samples if self.cfg.sampling == "segments" else gumbel_softmax_samples
        return sample(q, self.K, tau=tau, hard=self.cfg.hard, generator=self.generator)

    def select(self, q: torch.Tensor, k: int) -> torch.Tensor:
        """`(B, k)` frames the scores keep: per segment under "segments" (when k = K), else the top k in time."""
        if self.cfg.sampling == "segments" and k == self.K:
            return segment_argmax(q, k)
        return topk_in_time(q, k)

    def tau_now(self) -> float:
        """The Gumbel temperature of the current step (geometric from `tau` to `tau_final`)."""
        cfg = self.cfg
        if cfg.tau_final is None:
            return cfg.tau
        total = max(cfg.passes * self.steps_per_pass * cfg.inner_steps - 1, 1)
        done = min(self.global_step * cfg.inner_steps + self.inner_done, total)
        return cfg.tau * (cfg.tau_final / cfg.tau) ** (done / total)

    # -- decoding -----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def refresh(self, rows: torch.Tensor) -> None:
        """Re-decode the stale rows among `rows` into the frame cache."""
        rows = rows[self.stale[rows]]
        if len(rows) == 0:
            return
        start = time.perf_counter()
        for chunk in torch.split(rows, self.cfg.decode_chunk):
            out = self.codec.decode(self.z[chunk].to(self.device))
            self.frames[chunk] = out.to("cpu", self.frames.dtype)
            self.timings["decoder_calls"] += 1
        _sync(self.device)
        self.stale[rows] = False
        self.timings["decoded_frames"] += len(rows)
        self.timings["decode_s"] += time.perf_counter() - start

    def latent_grads(self, rows: torch.Tensor, frame_grads: torch.Tensor) -> torch.Tensor:
        """d loss / d z for `rows`, given d loss / d decoded frame: re-decode with grad, chunk by chunk."""
        start = time.perf_counter()
        grads = []
        for chunk, g in zip(torch.split(rows, self.cfg.grad_chunk), torch.split(frame_grads, self.cfg.grad_chunk)):
            z = self.z[chunk].to(self.device).requires_grad_(True)
            torch.autograd.backward(self.codec.decode(z), g.to(self.device))
            grads.append(z.grad.to("cpu"))
            self.timings["decoder_calls"] += 1
        _sync(self.device)
        self.timings["decoded_frames_grad"] += len(rows)
        self.timings["decode_grad_s"] += time.perf_counter() - start
        return torch.cat(grads)

    # -- one step -----------------------------------------------------------------------------------------------

    def step(self, vids: torch.Tensor) -> None:
        """One step of Algorithm 1 on local videos `vids`."""
        cfg, T = self.cfg, self.T
        b = len(vids)
        rows = self._rows(vids)
        self.refresh(rows)

        start = time.perf_counter()
        frames = self.frames[rows].to(self.device, torch.float32).view(b, T, 3, *self.frame_size)
        frames.requires_grad_(cfg.update_latents)  # the frame gradient only feeds the latents
        labels = self.labels[vids].to(self.device)
        q = self.scorer(frames.detach())
        weights = self.samples(q, self.tau_now())
        soft_frames = torch.einsum("bkt,btchw->bkchw", weights, frames)
        if cfg.objective == "dm":  # the guide learns on detached frames; only the DM term reaches Z and phi
            logits = self.guide(soft_frames.detach())
            loss = F.cross_entropy(logits, labels) + self.dm_loss(soft_frames, labels)
        else:
            logits = self.guide(soft_frames)
            loss = F.cross_entropy(logits, labels)
            if cfg.objective == "ce+dm":
                loss = loss + cfg.dm_weight * self.dm_loss(soft_frames, labels)
        with torch.no_grad():
            p = torch.softmax(q.detach().float(), dim=1)
            entropy = -(p * p.clamp_min(1e-12).log()).sum(1) / math.log(T) if T > 1 else torch.zeros(b)
        self.opt_scorer.zero_grad(set_to_none=True)
        self.opt_guide.zero_grad(set_to_none=True)
        if self.accelerator is not None:
            self.accelerator.backward(loss)
        else:
            loss.backward()
        _sync(self.device)
        self.timings["forward_backward_s"] += time.perf_counter() - start

        start = time.perf_counter()
        if not cfg.update_latents:
            self.opt_scorer.step()
            self.opt_guide.step()
            self.timings["optimizer_s"] += time.perf_counter() - start
            self._record(loss, logits, labels, b, coverage=0.0, entropy=entropy)
            return

        # Latent gradient for G frames per video: the current top-G by score, or by Gumbel weight mass.
        mass = weights.detach().sum(dim=1)
        chosen = self.select(q.detach(), self.G) if cfg.grad_select == "scores" else topk_in_time(mass, self.G)
        coverage = (mass.gather(1, chosen).sum() / mass.sum()).item()
        frame_grads = frames.grad[torch.arange(b, device=self.device)[:, None], chosen].flatten(0, 1)
        chosen_rows = (vids[:, None] * T + chosen.cpu()).reshape(-1)
        z_grads = self.latent_grads(chosen_rows, frame_grads)

        start = time.perf_counter()
        self.opt_scorer.step()
        self.opt_guide.step()
        moved = self.z_opt.step(chosen_rows, z_grads)
        self.stale[moved] = True
        self.timings["optimizer_s"] += time.perf_counter() - start
        self._record(loss, logits, labels, b, coverage, entropy)

    def dm_loss(self, soft_frames: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """DM's matching term (Zhao & Bilen 2023) on this batch: for each class in it, the squared distance between
        the mean embedding of its videos' K soft frames and that of `dm_batch_real` of its real videos (all T frames
        as first decoded), under a ConvNet freshly initialised from the run's generator (`dm_net`)."""
        cfg, T = self.cfg, self.T
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator)))
            for module in self.dm_net.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        loss = soft_frames.new_zeros(())
        for c in labels.unique().tolist():
            members = torch.nonzero(self.labels == c).flatten()
            pick = members[torch.randperm(len(members), generator=self.generator)[: cfg.dm_batch_real]]
            real = (
                self.ref_frames[self._rows(pick)]
                .to(self.device, torch.float32)
                .view(len(pick), T, 3, *self.frame_size)
            )
            with torch.no_grad():
                real_mean = self.dm_net.embed(real).mean(0)
            syn_mean = self.dm_net.embed(soft_frames[labels == c]).mean(0)
            loss = loss + (syn_mean - real_mean).pow(2).sum()
        return loss

    def _record(self, loss, logits, labels, b: int, coverage: float, entropy: torch.Tensor) -> None:
        stats = self.pass_stats
        stats["losses"].append(loss.item())
        stats["correct"] += int((logits.detach().argmax(1) == labels).sum())
        stats["seen"] += b
        stats["coverage"].append(coverage)
        stats["entropy"].append(float(entropy.mean()))
        self.timings["steps"] += 1

    def warmup(self, progress: bool = False) -> None:
        """Train the guide alone on K real cached frames per video (a random one per segment), for
        `guide_warmup_epochs` epochs, before the joint passes."""
        cfg, T = self.cfg, self.T
        for vids in _track(self._video_chunks(), progress, "videocompressa: decode", "chunk"):
            self.refresh(self._rows(vids))
        bounds = segment_bounds(T, self.K)
        correct = seen = 0
        losses = []
        for _ in _track(range(cfg.guide_warmup_epochs), progress, "videocompressa: guide warm-up", "epoch"):
            perm = torch.randperm(self.n, generator=self.generator)
            for vids in torch.tensor_split(perm, self.steps_per_pass):
                b = len(vids)
                picks = torch.stack(
                    [torch.randint(lo, hi, (b,), generator=self.generator) for lo, hi in bounds], dim=1
                )
                rows = (vids[:, None] * T + picks).reshape(-1)
                frames = self.frames[rows].to(self.device, torch.float32).view(b, self.K, 3, *self.frame_size)
                labels = self.labels[vids].to(self.device)
                logits = self.guide(frames)
                loss = F.cross_entropy(logits, labels)
                self.opt_guide.zero_grad(set_to_none=True)
                if self.accelerator is not None:
                    self.accelerator.backward(loss)
                else:
                    loss.backward()
                self.opt_guide.step()
                losses.append(loss.item())
                correct += int((logits.detach().argmax(1) == labels).sum())
                seen += b
        self.warmup_stats = {
            "epochs": cfg.guide_warmup_epochs,
            "loss_last_epoch": sum(losses[-self.steps_per_pass :]) / max(len(losses[-self.steps_per_pass :]), 1),
            "acc": correct / max(seen, 1),
        }
        self.warmup_done = True

    # -- passes -------------------------------------------------------------------------------------------------

    def run(self, progress: bool, checkpoint_path: str | None) -> None:
        cfg = self.cfg
        is_main = self.accelerator is None or self.accelerator.is_main_process
        total = cfg.passes * self.steps_per_pass
        # (after an end-of-pass checkpoint `step_in_pass` still counts the finished pass; `perm` is None until the next)
        in_pass = self.step_in_pass if self.perm is not None else 0
        done = min(total, self.passes_done * self.steps_per_pass + in_pass)
        if not self.warmup_done:
            self.warmup(progress and is_main)
            if checkpoint_path:
                checkpoint.save(self, checkpoint_path)
        bar = None
        if progress and is_main and done < total:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=done, desc="videocompressa", unit="step")
        while self.passes_done < cfg.passes:
            if self.perm is None:
                self.perm_state = self.generator.get_state()  # a checkpoint redraws the permutation from it
                self.perm = self.permutation()
                self.step_in_pass = 0
                self.pass_stats = self._new_pass_stats()
            batches = torch.tensor_split(self.perm, self.steps_per_pass)
            while self.step_in_pass < self.steps_per_pass:
                start = time.perf_counter()
                for self.inner_done in range(cfg.inner_steps):
                    self.step(batches[self.step_in_pass])
                self.inner_done = 0
                self.pass_stats["seconds"] += time.perf_counter() - start
                self.step_in_pass += 1
                self.global_step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{self.pass_stats['losses'][-1]:.3f}")
                if (
                    checkpoint_path
                    and cfg.checkpoint_steps
                    and self.global_step % cfg.checkpoint_steps == 0
                    and self.step_in_pass < self.steps_per_pass
                ):
                    checkpoint.save(self, checkpoint_path)
            stats = self.pass_stats
            self.history.append(
                {
                    "pass": self.passes_done + 1,
                    "loss": sum(stats["losses"]) / len(stats["losses"]),
                    "acc": stats["correct"] / max(stats["seen"], 1),
                    "steps": len(stats["losses"]),
                    "seconds": stats["seconds"],
                    "grad_weight_coverage": sum(stats["coverage"]) / len(stats["coverage"]),
                    "scorer_entropy": sum(stats["entropy"]) / len(stats["entropy"]),
                    "tau": self.tau_now(),
                    "losses": list(stats["losses"]),
                }
            )
            if is_main:
                h = self.history[-1]
                logger.info(
                    "pass %d/%d: loss %.4f, acc %.3f, %.1f s", h["pass"], cfg.passes, h["loss"], h["acc"], h["seconds"]
                )
            self.passes_done += 1
            self.perm = None
            if checkpoint_path:
                checkpoint.save(self, checkpoint_path)
        if bar is not None:
            bar.close()

    @torch.no_grad()
    def final(self, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage 3: final decoded frames -> final scores -> top-K in time -> their optimised latents."""
        start = time.perf_counter()
        scorer = self.scorer_core.eval()
        scores = []
        for vids in _track(self._video_chunks(), progress, "videocompressa: final scores", "chunk"):
            rows = self._rows(vids)
            self.refresh(rows)
            frames = self.frames[rows].to(self.device, torch.float32).view(len(vids), self.T, 3, *self.frame_size)
            scores.append(scorer(frames).float().cpu())
        scorer.train()
        scores = torch.cat(scores) if scores else torch.zeros(0, self.T)
        indices = self.select(scores, self.K) if self.n else torch.zeros(0, self.K, dtype=torch.int64)
        latents = self.z[(torch.arange(self.n)[:, None] * self.T + indices).reshape(-1)]
        latents = latents.view(self.n, self.K, *self.latent_shape).clone()
        if self.cfg.shuffle_window:  # back from the layout's order to the rank's video order
            back = torch.argsort(self.video_ids)
            indices, latents, scores = indices[back], latents[back], scores[back]
        self.timings["final_s"] += time.perf_counter() - start
        return indices, latents, scores


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
