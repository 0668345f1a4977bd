"""Where one process's VideoCompressa state lives (Z, its optimiser moments and step counts, the decoded-frame
cache and its stale flags): in memory or in files, chosen by its size.

Bounded memory (`state_storage="disk"`): Z, its moments and step counts, the stale flags and the decoded-frame cache
are files in `checkpoint_dir/state_rank{r}/` (`compressa_hf.rows.RowFile`), read and written a batch of videos at a
time; the latents arrive from the cache's shards the same way (`LatentCache.latents()`), so host memory is bounded
by the batch, the codec and the networks, not by N (at 112 px and T = 16 the frame cache alone is ~11.5 GB for
UCF101 and ~290 GB for Kinetics-400). A checkpoint then flushes the files and writes only the small state (networks,
optimisers, RNG states, counters, the generator state that redraws the pass's permutation, the loss log): its size
does not grow with N. Between checkpoints every overwritten row is first saved to an undo journal
(`compressa_hf.rows.UndoJournal`); resuming rolls the files back to the last checkpoint, so a kill at any point
resumes to the same bytes as an uninterrupted run, which are also the bytes of `state_storage="memory"`.
`state_storage="auto"` (the default) chooses: memory when the estimated state of this process (`state_bytes`) is at
most `state_memory_limit` (default: half of the memory it may use, the machine's available RAM or what its cgroup
limit leaves, shared by the processes of a launch), disk otherwise; the choice and the estimate are logged and in
`DistillResult.storage`. A run resumes with the storage it started with.
`shuffle_window` draws each pass window by window over a seeded layout of the videos, so a disk-backed run reads one
region of its files at a time (each video's T rows are one read in any case).
"""

from __future__ import annotations

import math
import os

import torch

from compressa_hf.distillation.videocompressa.config import VideoCompressaConfig

#: Under state_storage="auto", the share of the memory this process may use that its state may take in memory.
AUTO_MEMORY_SHARE = 0.5


def state_bytes(cfg: VideoCompressaConfig, num_videos: int, num_frames: int, latent_shape, frame_size) -> int:
    """Bytes of one process's VideoCompressa state for `num_videos` videos of `num_frames` latent frames: Z (float32),
    the latent optimiser's moments and step counts, the decoded-frame cache (`frame_cache_dtype`, twice with a DM
    objective, which keeps the first decodes too) and the stale flags. The networks and one batch come on top; they
    do not grow with the videos."""
    rows = num_videos * num_frames
    latent = rows * math.prod(latent_shape) * 4
    optimiser = {"lazy_adam": 2 * latent + rows * 8, "adam": 2 * latent, "sgd": 0}[cfg.latent_optimizer]
    frames = rows * 3 * math.prod(frame_size) * torch.finfo(getattr(torch, cfg.frame_cache_dtype)).bits // 8
    return latent + optimiser + frames * (1 if cfg.objective == "ce" else 2) + rows


def choose_state_storage(
    cfg: VideoCompressaConfig, estimate: int, can_use_disk: bool, resumed_with: str | None = None
) -> dict:
    """Where the state of a `cfg.state_storage="auto"` run lives, and why: a checkpoint's storage when resuming,
    memory without a state folder or with dense Adam (which disk refuses), else memory when `estimate` fits the limit
    (`state_memory_limit`, default `AUTO_MEMORY_SHARE` of the memory this process may use) and disk when it does not.
    An explicit memory / disk is kept as given. Returns `state_storage`, `requested`, `estimated_bytes`,
    `limit_bytes` and `reason`."""
    from compressa_hf import resources
    from compressa_hf.threads import local_processes

    out = {"requested": cfg.state_storage, "estimated_bytes": int(estimate), "limit_bytes": None}
    if cfg.state_storage != "auto":
        return out | {"state_storage": cfg.state_storage, "reason": "set by state_storage"}
    if resumed_with is not None:
        return out | {"state_storage": resumed_with, "reason": "the storage of the checkpoint being resumed"}
    if cfg.state_memory_limit is not None:
        limit, where = resources.parse_bytes(cfg.state_memory_limit), "state_memory_limit"
    else:
        free, where = resources.available_memory()
        processes = local_processes()
        limit = int(AUTO_MEMORY_SHARE * free / processes)
        where = f"{AUTO_MEMORY_SHARE:g} of {where}" + (f", shared by {processes} processes" if processes > 1 else "")
    out["limit_bytes"] = limit
    if estimate <= limit:
        return out | {"state_storage": "memory", "reason": f"the estimate fits the limit ({where})"}
    if not can_use_disk:
        return out | {"state_storage": "memory", "reason": f"over the limit ({where}), but no checkpoint folder"}
    if cfg.latent_optimizer == "adam":
        return out | {"state_storage": "memory", "reason": f"over the limit ({where}), but dense Adam needs memory"}
    return out | {"state_storage": "disk", "reason": f"the estimate exceeds the limit ({where})"}


class StateStorage:
    """The allocator of one process's per-frame state arrays: zero-filled tensors in memory, or `RowFile`s in
    `state_dir` whose overwritten rows go to one `UndoJournal` first, so a checkpoint commits them and a resumption
    rolls them back (`compressa_hf.rows`).

    Args:
        disk: Keep the arrays in files (`state_storage="disk"`); else in memory.
        state_dir: Folder of the files and the journal (created); on disk a ValueError without it.
        reopen: Resuming: on disk the files are reopened as they are and hold the state (the caller refills
            nothing); in memory it is ignored (the checkpoint refills the tensors).
    """

    def __init__(self, disk: bool, state_dir: str | None = None, reopen: bool = False):
        self.disk = disk
        self.state_dir, self.journal = state_dir, None
        if self.disk:
            if state_dir is None:
                raise ValueError("state_storage='disk' needs a checkpoint folder to hold the state files")
            from compressa_hf.rows import UndoJournal

            os.makedirs(state_dir, exist_ok=True)
            self.journal = UndoJournal(os.path.join(state_dir, "journal"))
        self.reopen = reopen and self.disk  # resuming on disk: the files hold the state, nothing is refilled
        if self.disk and not self.reopen:
            self.journal.commit(0)  # a fresh start: whatever an earlier run journaled is void

    def alloc(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, journal: bool = True):
        """A zero-filled state array: a tensor in memory, or `state_dir/<name>.bin` on disk (reopened as it is when
        resuming; `journal=False` for an array that is never overwritten after it is filled)."""
        if not self.disk:
            return torch.zeros(shape, dtype=dtype)
        from compressa_hf.rows import RowFile

        path = os.path.join(self.state_dir, f"{name}.bin")
        return RowFile(
            path,
            shape[0],
            shape[1:],
            dtype,
            create=not self.reopen,
            writable=True,
            journal=self.journal if journal else None,
        )

    def flush(self, arrays) -> None:
        """Write the file-backed arrays among `arrays` through to their files (before a checkpoint commits them)."""
        for array in arrays:
            if hasattr(array, "flush"):
                array.flush()

    def commit(self, generation: int) -> None:
        """Checkpoint `generation` is written: the journaled rows before it are void (nothing to do in memory)."""
        if self.journal is not None:
            self.journal.commit(generation)

    def rollback(self, generation: int) -> int:
        """Put the files back as they were at checkpoint `generation`; returns the rows restored."""
        return self.journal.rollback(generation)
