"""Checkpoints of a VideoCompressa run (`_Distiller`): what one holds, written atomically, and read back only into
the same run.

After every pass and every `checkpoint_steps` steps, `checkpoint_dir/videocompressa_rank{r}.pt` is
written atomically (temporary file + fsync + os.replace) with Z, its moments and step counts, the frame cache and
its stale flags, scorer/guide weights and optimiser states, the sampling generator and torch RNG states, the
current pass's permutation and counters. `resume=True` continues from it bit-identically; `passes` may be raised
on resume to train longer.

The file is a `torch.save` of tensors, numbers, strings, lists and dicts only (no pickled classes: it loads with
`weights_only=True`, whatever module layout wrote it); `meta["version"]` is `CHECKPOINT_VERSION`, to be raised
when what is saved changes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import asdict
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from compressa_hf.distillation.videocompressa.distiller import _Distiller

# The package's logger: records read as they did when this was one module.
logger = logging.getLogger(__package__)

CHECKPOINT_VERSION = 3
# Config fields that may differ between a run and its resumption.
RESUMABLE_FIELDS = ("passes", "checkpoint_steps", "state_memory_limit")


def peek(path: str | None) -> dict:
    """The `state_storage` and torch thread count a checkpoint was written with (memory-mapped, so a large one is not
    read); empty when there is none."""
    if not path or not os.path.exists(path):
        return {}
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, OSError, ValueError):
        return {}  # unreadable: `load` names the problem when the run tries it
    return {
        "state_storage": state.get("meta", {}).get("config", {}).get("state_storage"),
        "torch_threads": state.get("torch_threads"),
    }


def meta(run: _Distiller) -> dict:
    """What identifies a run: the format version, its share of the videos and their shapes, the codec and the
    config less `RESUMABLE_FIELDS`; a checkpoint resumes only a run with the same."""
    cfg = {k: v for k, v in asdict(run.cfg).items() if k not in RESUMABLE_FIELDS}
    return {
        "version": CHECKPOINT_VERSION,
        "rank": run.rank,
        "world": run.world,
        "num_videos": run.n,
        "num_frames": run.T,
        "latent_shape": list(run.latent_shape),
        "frame_size": list(run.frame_size),
        "codec_id": getattr(run.codec, "codec_id", ""),
        "config": cfg,
    }


def save(run: _Distiller, path: str) -> None:
    """Checkpoint `run` to `path`, atomically: in memory, every array goes into `path`; on disk, the files are flushed,
    `path` gets the small state (networks, optimisers, RNGs, counters) and the journal is committed (see
    `compressa_hf.rows`)."""
    state = {
        "meta": meta(run),
        "labels_sha256": _digest(run.labels),
        "scorer": run.scorer_core.state_dict(),
        "guide": run.guide_core.state_dict(),
        "opt_scorer": run.opt_scorer.state_dict(),
        "opt_guide": run.opt_guide.state_dict(),
        "generator": run.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "passes_done": run.passes_done,
        "step_in_pass": run.step_in_pass,
        "passes": run.cfg.passes,
        "warmup_done": run.warmup_done,
        "warmup_stats": run.warmup_stats,
        "global_step": run.global_step,
        "perm_state": run.perm_state if run.perm is not None else None,
        "pass_stats": run.pass_stats,
        "history": run.history,
        "timings": run.timings,
        "generation": run.generation + 1,
        # A resumed run uses it (`compressa_hf.threads.resumed_with`): the decoder's last bits depend on it.
        "torch_threads": torch.get_num_threads(),
    }
    if run.storage.disk:
        run.storage.flush(run._arrays())
    else:
        state.update(
            z=run.z,
            z_opt=run.z_opt.state_dict(),
            frames=run.frames,
            stale=run.stale,
            ref_frames=run.ref_frames,
        )
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    run.generation += 1
    run.storage.commit(run.generation)


def load(run: _Distiller, path: str) -> None:
    """Continue `run` from the checkpoint at `path`: refuses (ValueError) one of another format version, data or
    config (`meta`), rolls the disk state back to it or copies the memory state from it, and restores the networks,
    optimisers, RNGs and counters."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved, now = state["meta"], meta(run)
    if saved.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path} has format version {saved.get('version')}, expected {CHECKPOINT_VERSION}")
    diffs = [k for k in now if k != "config" and saved.get(k) != now[k]]
    diffs += [f"config.{k}" for k in now["config"] if saved["config"].get(k) != now["config"][k]]
    if state["labels_sha256"] != _digest(run.labels):
        diffs.append("labels")
    if diffs:
        raise ValueError(
            f"checkpoint {path} was written for a different run (differs in: {', '.join(diffs)}); resume with the "
            f"same data and settings (only {RESUMABLE_FIELDS} may change), or delete the checkpoint to start over"
        )
    if run.cfg.tau_final is not None and state["passes"] != run.cfg.passes:
        raise ValueError(
            f"checkpoint {path} was written for {state['passes']} passes and tau_final anneals over all of them; "
            f"resume with --passes {state['passes']} (or delete the checkpoint to start over)"
        )
    run.generation = state["generation"]
    if run.storage.disk:
        restored = run.storage.rollback(run.generation)
        logger.info("state files in %s: %d rows rolled back to the checkpoint", run.storage.state_dir, restored)
    else:
        run.z.copy_(state["z"])
        run.z_opt.load_state_dict(state["z_opt"])
        run.frames.copy_(state["frames"])
        run.stale.copy_(state["stale"])
        run.ref_frames = state["ref_frames"]
    run.scorer_core.load_state_dict(state["scorer"])
    run.guide_core.load_state_dict(state["guide"])
    run.opt_scorer.load_state_dict(state["opt_scorer"])
    run.opt_guide.load_state_dict(state["opt_guide"])
    run.perm_state, run.perm = state["perm_state"], None
    if run.perm_state is not None:  # redraw the pass's permutation, then continue the generator where it was
        run.generator.set_state(run.perm_state)
        run.perm = run.permutation()
    run.generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    run.passes_done = state["passes_done"]
    run.step_in_pass = state["step_in_pass"]
    run.warmup_done = state["warmup_done"]
    run.warmup_stats = state["warmup_stats"]
    run.global_step = state["global_step"]
    run.pass_stats = state["pass_stats"]
    run.history = state["history"]
    run.timings = state["timings"]


def _digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's bytes (the labels a checkpoint was written for)."""
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()
