"""SVC's reconstruction pre-training on video without text (the AVS/SVC paper's first stage), resumable.

    summary = pretrain_svc(args)        # args: compress.config.PretrainSVCArguments; recipes/pretrain_svc.py

Each step reads a batch of videos as the SFT recipe reads its training set, runs the frozen vision tower (merger
included) of `args.model_name_or_path`, compresses its merged tokens with SVC and reconstructs them with SVC's
decoder; the mean absolute error between the two trains both (eq. 11). The same batch's error of pooling alone
(average pooling, then each pooled token repeated over its window) is logged beside it: it is where SVC starts (its
last convolutions start at zero) and what it has to beat.

A kill loses at most `save_steps` steps: `<output_dir>/checkpoint-<step>/` holds SVC, the optimizer, the schedule and
the random state, written atomically; rerunning the command resumes from the newest one (the reading order is a
function of the seed and the step, so a resumed run reads what the uninterrupted one would have read), and refuses
one made with other settings, naming them. The finished compressor is saved like a PEFT adapter
(`compressor_config.json` + `compressor_model.safetensors`, `TokenCompressor.from_pretrained`) with a model card.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time

import torch

from compressa_hf.qwen.compress.attach import _inner
from compressa_hf.qwen.compress.grid import merged_grids
from compressa_hf.qwen.compress.svc import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    TokenCompressor,
    avg_pool_tokens,
    tokens_to_grid,
)

logger = logging.getLogger(__name__)

SUMMARY_NAME = "pretrain_summary.json"
STATE_NAME = "trainer_state.json"
TRAINING_STATE = "training_state.pt"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")

#: The optimisation settings a resumed run must share with its checkpoint.
OPTIMISATION_KEYS = (
    "per_device_train_batch_size",
    "learning_rate",
    "weight_decay",
    "lr_scheduler_type",
    "warmup_ratio",
    "max_grad_norm",
    "seed",
)
#: Every setting a resumed run must share with its checkpoint (steps, logging and saving may change).
RUN_KEYS = ("model_name_or_path", "data", "split", "compressor", "reader", *OPTIMISATION_KEYS)


# -- the loss ------------------------------------------------------------------------------------------------------


@torch.no_grad()
def tower_features(model, batch: dict) -> list[torch.Tensor]:
    """The frozen vision tower's merged tokens of each video of a collated batch, as float32 (1, D, t, h, w) grids.

    The tower is called through the class's own `get_video_features`, so an attached compressor is bypassed.
    """
    inner = _inner(model)
    device = next(inner.visual.parameters()).device
    grid_thw = batch["video_grid_thw"].to(device)
    out = type(inner).get_video_features(inner, batch["pixel_values_videos"].to(device), grid_thw, return_dict=True)
    grids = merged_grids(grid_thw, inner.config.vision_config.spatial_merge_size)
    return [tokens_to_grid(f, g).float() for f, g in zip(out.pooler_output, grids.tolist())]


def reconstruction_losses(compressor: TokenCompressor, features: list[torch.Tensor]) -> tuple[torch.Tensor, float]:
    """(SVC's mean absolute reconstruction error over every feature of the batch, that of pooling alone).

    Pooling alone reconstructs each token by its window's average (nearest-neighbour repetition of the pooled grid).
    """
    total, pooled_total, count = 0.0, 0.0, 0
    for x in features:
        total = total + (compressor.reconstruct(x) - x).abs().sum()
        with torch.no_grad():
            repeated = torch.nn.functional.interpolate(
                avg_pool_tokens(x, compressor.strides), size=x.shape[-3:], mode="nearest"
            )
            pooled_total += float((repeated - x).abs().sum())
        count += x.numel()
    return total / count, pooled_total / count


class _Collate:
    """The collator on the readable samples of a batch; None when none was readable (the step is skipped)."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, rows: list) -> dict | None:
        rows = [r for r in rows if r is not None and r.get("messages") is not None]
        return self.collator(rows) if rows else None


# -- checkpoints ---------------------------------------------------------------------------------------------------


def checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """(step, folder) of every complete checkpoint in `output_dir`, oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT.fullmatch(name)
        folder = os.path.join(output_dir, name)
        if match and os.path.isfile(os.path.join(folder, STATE_NAME)):
            found.append((int(match.group(1)), folder))
    return sorted(found)


def save_checkpoint(output_dir: str, step: int, compressor, optimizer, scheduler, state: dict, keep: int) -> str:
    """Write `checkpoint-<step>` atomically (a temporary folder renamed into place) and keep the newest `keep`."""
    final = os.path.join(output_dir, f"checkpoint-{step}")
    tmp = os.path.join(output_dir, f".checkpoint-{step}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    compressor.save_pretrained(tmp)
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng},
        os.path.join(tmp, TRAINING_STATE),
    )
    with open(os.path.join(tmp, STATE_NAME), "w") as f:
        json.dump(state, f, indent=2)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for _, old in checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _load_checkpoint(folder: str, compressor, optimizer, scheduler) -> dict:
    from safetensors.torch import load_file

    compressor.load_state_dict(load_file(os.path.join(folder, WEIGHTS_NAME)))
    training = torch.load(os.path.join(folder, TRAINING_STATE), map_location="cpu", weights_only=True)
    optimizer.load_state_dict(training["optimizer"])
    scheduler.load_state_dict(training["scheduler"])
    torch.set_rng_state(training["rng"]["cpu"])
    if "cuda" in training["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(training["rng"]["cuda"])
    with open(os.path.join(folder, STATE_NAME)) as f:
        return json.load(f)


def _check_resumable(folder: str, saved: dict, run: dict) -> None:
    differ = [k for k in RUN_KEYS if saved.get(k) != run.get(k)]
    if differ:
        shown = "; ".join(f"{k}: {saved.get(k)!r} there, {run.get(k)!r} now" for k in differ)
        raise ValueError(
            f"{folder} was made with other settings ({shown}); rerun with those, pass another --output_dir, or "
            "--overwrite_output_dir true to start over"
        )


# -- the run -------------------------------------------------------------------------------------------------------


def _order(num_samples: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The indices step `step` reads: batches of a permutation drawn afresh, from the seed, for each epoch."""
    per_epoch = math.ceil(num_samples / batch_size)
    epoch, i = divmod(step, per_epoch)
    perm = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    return perm[i * batch_size : (i + 1) * batch_size]


def _public(value: str | None) -> str | None:
    from compressa_hf.publish import public_spec

    return None if value is None else public_spec(value)


def pretrain_svc(args, command: str | None = None) -> dict:
    """Pre-train SVC as `args` (`compress.config.PretrainSVCArguments`) says; returns the run's summary.

    Writes the compressor, its card and `pretrain_summary.json` into `args.output_dir` (see the module docstring).
    `command` is the command line the card shows (machine paths are shortened to their last component).
    """
    from dataclasses import asdict

    from tqdm.auto import tqdm
    from transformers import AutoModelForImageTextToText, AutoProcessor, get_scheduler

    from compressa_hf.qwen.collator import QwenVideoCollator
    from compressa_hf.qwen.families import family_of
    from compressa_hf.qwen.models import torch_dtype
    from compressa_hf.qwen.sft import num_samples, train_chat_dataset

    if not args.model_name_or_path:
        raise ValueError("no model: pass --model_name_or_path (the Qwen-VL whose vision tower SVC compresses)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    processor = AutoProcessor.from_pretrained(args.model_name_or_path)
    model = AutoModelForImageTextToText.from_pretrained(args.model_name_or_path, dtype=torch_dtype(args.dtype))
    inner = _inner(model)
    # Pre-training reads the vision tower only: the language model's memory goes to the batch instead.
    del inner.language_model, model.lm_head
    model.to(device).eval().requires_grad_(False)
    family = family_of(model)

    named = args.named_set()
    dataset = train_chat_dataset(named, args, args.max_train_samples, patch_size=processor.video_processor.patch_size)
    n = num_samples(dataset)
    if not n:
        raise ValueError(f"{named.name} holds no videos to pre-train on")
    collate = _Collate(QwenVideoCollator(processor, frame_size=args.frame_size, max_fps=args.max_fps))
    per_epoch = math.ceil(n / args.per_device_train_batch_size)
    total = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * per_epoch)

    torch.manual_seed(args.seed)
    hidden = inner.config.text_config.hidden_size
    base = args.model_name_or_path if not os.path.isdir(args.model_name_or_path) else _public(args.model_name_or_path)
    compressor = TokenCompressor(args.compressor_config(hidden, family.name, base)).to(device)
    optimizer = torch.optim.AdamW(compressor.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    scheduler = get_scheduler(
        args.lr_scheduler_type, optimizer, num_warmup_steps=int(args.warmup_ratio * total), num_training_steps=total
    )
    reader = asdict(args.clip_config(processor.video_processor.patch_size))
    config = compressor.config.to_dict()
    config.pop("metadata")
    run = {
        "model_name_or_path": args.model_name_or_path,
        "data": named.source or f"{named.repo}:{named.config}",
        "split": named.split,
        "compressor": config,
        "reader": {"kind": args.video_reader, **reader, "frame_size": args.frame_size, "max_fps": args.max_fps},
        **{k: getattr(args, k) for k in OPTIMISATION_KEYS},
    }
    state = {"step": 0, "run": run, "log_history": [], "skipped_batches": 0}

    os.makedirs(args.output_dir, exist_ok=True)
    found = checkpoints(args.output_dir)
    if found and args.overwrite_output_dir:
        for _, folder in found:
            shutil.rmtree(folder)
        found = []
    if found:
        step, folder = found[-1]
        saved = _load_checkpoint(folder, compressor, optimizer, scheduler)
        _check_resumable(folder, saved["run"], run)
        state = saved | {"run": run}
        logger.info(f"resuming from {folder} (step {step} of {total})")

    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=[_order(n, args.per_device_train_batch_size, args.seed, s) for s in range(state["step"], total)],
        collate_fn=collate,
        num_workers=args.dataloader_num_workers,
    )
    window = {"loss": 0.0, "pooling_loss": 0.0, "steps": 0}
    started = time.perf_counter()
    compressor.train()
    with tqdm(total=total, initial=state["step"], desc="SVC pre-training", dynamic_ncols=True) as bar:
        for batch in loader:
            step = state["step"] + 1
            if batch is None:
                logger.warning(f"step {step}: no video of the batch could be read; skipped")
                state["skipped_batches"] += 1
            else:
                loss, pooling_loss = reconstruction_losses(compressor, tower_features(model, batch))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if args.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(compressor.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                window = {
                    "loss": window["loss"] + loss.item(),
                    "pooling_loss": window["pooling_loss"] + pooling_loss,
                    "steps": window["steps"] + 1,
                }
                bar.set_postfix(loss=f"{loss.item():.4f}", pooling=f"{pooling_loss:.4f}")
            state["step"] = step
            bar.update(1)
            if window["steps"] and (step % args.logging_steps == 0 or step == total):
                entry = {
                    "step": step,
                    "loss": window["loss"] / window["steps"],
                    "pooling_loss": window["pooling_loss"] / window["steps"],
                    "learning_rate": scheduler.get_last_lr()[0],
                }
                state["log_history"].append(entry)
                logger.info(json.dumps(entry))
                window = {"loss": 0.0, "pooling_loss": 0.0, "steps": 0}
            if step % args.save_steps == 0 or step == total:
                save_checkpoint(args.output_dir, step, compressor, optimizer, scheduler, state, args.save_total_limit)

    history = state["log_history"]
    summary = {
        "model_name_or_path": base,
        "model_family": family.name,
        "data": _public(named.name),
        "split": named.split,
        "num_videos": n,
        "global_step": state["step"],
        "steps_this_run": state["step"] - (found[-1][0] if found else 0),
        "epochs": round(state["step"] / per_epoch, 3),
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "skipped_batches": state["skipped_batches"],
        "first_logged_loss": history[0]["loss"] if history else None,
        "final_loss": history[-1]["loss"] if history else None,
        "final_pooling_loss": history[-1]["pooling_loss"] if history else None,
        "run_seconds": round(time.perf_counter() - started, 1),
        "compressor_parameters": sum(p.numel() for p in compressor.encoder.parameters()),
        "decoder_parameters": sum(p.numel() for p in compressor.decoder.parameters()),
        "strides": list(compressor.strides),
    }
    compressor.config.metadata = {
        "pretraining": {k: summary[k] for k in ("data", "split", "num_videos", "global_step")}
    }
    compressor.config.metadata["pretraining"] |= {"final_loss": summary["final_loss"]}
    compressor.save_pretrained(args.output_dir)
    from compressa_hf.io import atomic_write_json, atomic_write_text

    atomic_write_json(os.path.join(args.output_dir, SUMMARY_NAME), summary)
    atomic_write_text(os.path.join(args.output_dir, "README.md"), compressor_card(summary, compressor, command))
    logger.info(f"saved the compressor to {args.output_dir}: {json.dumps(summary)}")
    if args.push_to_hub:
        summary["repo_id"] = push_compressor(args.output_dir, args.hub_model_id, args.hub_private_repo)
    return summary


# -- the card and the Hub ------------------------------------------------------------------------------------------


def compressor_card(summary: dict, compressor: TokenCompressor, command: str | None) -> str:
    """README.md of a pre-trained compressor: Hub header, what it is, how it was trained, how to use it."""
    import yaml

    from compressa_hf.publish import public_command

    c = compressor.config
    header = {
        "library_name": "compressa_hf",
        "tags": ["compressa_hf", "token-compression", "svc", "video", summary["model_family"]],
    }
    if summary["model_name_or_path"] and "/" in summary["model_name_or_path"]:
        header["base_model"] = summary["model_name_or_path"]
    st, sh, sw = c.strides

    def loss(x) -> str:
        return "-" if x is None else f"{x:.4f}"

    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).rstrip(),
        "---",
        "",
        "# SVC token compressor",
        "",
        f"An SVC visual-token compressor (the AVS/SVC paper's autoencoder compressor, section 3.2.2) for the video "
        f"tokens of `{summary['model_name_or_path']}` ({summary['model_family']}), pre-trained to reconstruct its "
        f"frozen vision tower's merged tokens (L1) on `{summary['data']}` ({summary['num_videos']} videos of split "
        f"`{summary['split']}`, no text). Its output is the average pooling of the tokens plus a learned residual.",
        "",
        "| | |",
        "|---|---|",
        f"| strides (t x h x w) | {st} x {sh} x {sw} ({c.compression}x fewer tokens on a divisible grid) |",
        f"| width / bottleneck / blocks | {c.width} / {c.width // c.bottleneck_ratio} / {c.num_blocks} |",
        f"| kernels (spatial, temporal) | {c.spatial_kernel} x {c.spatial_kernel}, {c.temporal_kernel} |",
        f"| parameters (compressor / decoder) | {summary['compressor_parameters']} / "
        f"{summary['decoder_parameters']} |",
        f"| steps (epochs), videos per step | {summary['global_step']} ({summary['epochs']}), "
        f"{summary['per_device_train_batch_size']} |",
        f"| L1 reconstruction error, last logged steps: SVC / pooling alone | {loss(summary['final_loss'])} / "
        f"{loss(summary['final_pooling_loss'])} |",
        "",
        "Use it with [compressa_hf](https://github.com/compressa-hf/compressa_hf):",
        "",
        "```python",
        "from compressa_hf.qwen.compress import TokenCompressor, attach_token_compressor, compressed_processor",
        "",
        'compressor = TokenCompressor.from_pretrained("<this repo>")',
        "attach_token_compressor(model, compressor)                 # a Qwen-VL of the same family and width",
        "processor = compressed_processor(processor, compressor.strides)",
        "```",
        "",
        "or fine-tune with it: `accelerate launch recipes/sft_qwen.py ... --token_compressor svc "
        "--token_compressor_path <this repo>`.",
        "",
    ]
    if command:
        lines += ["Pre-trained with:", "", "```bash", public_command(command), "```", ""]
    return "\n".join(lines)


#: What a compressor's Hub repo holds.
UPLOAD_FILES = ["README.md", CONFIG_NAME, WEIGHTS_NAME, SUMMARY_NAME]


def push_compressor(folder: str, repo_id: str | None = None, private: bool = False) -> str:
    """Upload a pre-trained compressor (its files and card, no checkpoint) as a Hub model repo; returns the repo id.

    Refuses a folder whose card, config or summary would publish a path of this machine, naming where. The token is
    read by huggingface_hub (HF_TOKEN or `hf auth login`).
    """
    from huggingface_hub import HfApi

    from compressa_hf.hub import local_paths_in

    files = [f for f in UPLOAD_FILES if os.path.isfile(os.path.join(folder, f))]
    local = local_paths_in(folder, files)
    if local:
        shown = "; ".join(f"{rel}: {p}" for rel, p in local[:5])
        raise ValueError(f"{folder} would publish paths of this machine ({shown}); nothing was uploaded")
    api = HfApi(library_name="compressa_hf")
    repo = repo_id or os.path.basename(os.path.normpath(os.path.abspath(folder)))
    repo_id = api.create_repo(repo, private=private, exist_ok=True).repo_id
    api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        allow_patterns=files,
        commit_message="compressa_hf: SVC token compressor and its card",
    )
    logger.info(f"pushed {folder} to https://huggingface.co/{repo_id}")
    return repo_id
