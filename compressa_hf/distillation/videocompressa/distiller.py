"""One process's share of a VideoCompressa run (arXiv 2511.18831, Algorithm 1), `_Distiller`: its videos and their
state rows, the step (Gumbel samples of the scored frames, soft frames, one backward into Z, phi and theta), the guide
warm-up, the passes with their checkpoints, and the final top-K. The package's docstring describes the algorithm and
its bookkeeping; `state.py` where the rows live; `checkpoint.py` what a checkpoint holds.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compressa_hf.distillation.gumbel import (
    gumbel_softmax_samples,
    segment_argmax,
    segment_bounds,
    segment_gumbel_samples,
    topk_in_time,
)
from compressa_hf.distillation.videocompressa import checkpoint
from compressa_hf.distillation.videocompressa.optimizers import LATENT_OPTIMIZERS, LazyRowAdam
from compressa_hf.distillation.videocompressa.scorer import FrameScorer
from compressa_hf.distillation.videocompressa.state import StateStorage
from compressa_hf.nets import build_net

# The package's logger: records read as they did when this was one module.
logger = logging.getLogger(__package__)


def _track(iterable, progress: bool, desc: str, unit: str):
    """`iterable` behind a tqdm bar (closed when done) when `progress`, else as it is."""
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit=unit, leave=False)


def _sync(device: torch.device) -> None:
    """Wait for the work queued on a CUDA `device`, so the timings count it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Distiller:
    """State and steps of one process's share of a VideoCompressa run: the videos rank, rank + world, ...

    Args:
        latents: `(N, T, C, h, w)` cached latents of all the videos; this process copies its share (float32).
        labels: `(N,)` class indices.
        codec: The frozen codec (`decode`, `downscale`).
        cfg: Hyperparameters; `state_storage="disk"` keeps the state in files, anything else in memory (`distill`
            resolves "auto" first).
        num_classes: Classes of the guide network.
        device: Where the codec and the networks run; the state stays on the host.
        rank: This process's index; `world`: the number of processes.
        accelerator: An `accelerate.Accelerator` or None; with world > 1 it DDP-wraps the scorer and the guide.
        state_dir: Folder of the state files (needed on disk).
        reopen: Resuming on disk: the files hold the state and nothing is refilled from `latents`.
    """

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
