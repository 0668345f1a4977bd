"""Qwen-VL SFT building blocks for `recipes/sft_qwen.py`: the training set, and the checks made before anything loads.

    check_processes(training_args); check_kernels(model_args, training_args)   # before the model loads
    train_dataset = train_chat_dataset(named_set, script_args)       # distilled (K frames) or raw clips (T frames)
    data_collator = SkipUnreadable(QwenVideoCollator(processor))     # drops the clips that could not be read

The model (loading, LoRA placement, freezing) is `compressa_hf.qwen.models`; what a finished run writes and pushes,
`compressa_hf.qwen.run_files`; the recipe's arguments, `compressa_hf.qwen.sft_config`; the trainer,
`compressa_hf.qwen.sft_trainer`.
"""

from __future__ import annotations

import contextlib
import os

import torch

#: Columns of a chat sample (`compressa_hf.qwen.samples`).
SAMPLE_KEYS = ("messages", "videos", "video_metadata", "label", "answer", "video_id")


# -- data ----------------------------------------------------------------------------------------------------------


def zero3_init_disabled():
    """A context in which modules are built whole even when a ZeRO-3 config is active.

    The codec that decodes distilled latents is frozen and runs in the data pipeline on every rank, outside the
    DeepSpeed engine: partitioned by `deepspeed.zero.Init` it would hold empty weights (diffusers' training
    examples load their frozen VAE and text encoder the same way).
    """
    import accelerate

    if not accelerate.state.is_initialized():
        return contextlib.nullcontext()
    plugin = accelerate.state.AcceleratorState().deepspeed_plugin
    return contextlib.nullcontext() if plugin is None else plugin.zero3_init_context_manager(enable=False)


class _RawRows:
    """Turns a batch of indices into chat-sample columns read from a map-style dataset (None for unreadable clips)."""

    def __init__(self, samples):
        self.samples = samples

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        items = [self.samples[i] for i in batch["index"]]
        return {key: [None if s is None else s[key] for s in items] for key in SAMPLE_KEYS}


def as_hf_dataset(samples):
    """A map-style dataset of chat samples (e.g. `RawChatDataset`) as a `datasets.Dataset` read on access.

    `SFTTrainer` takes `datasets` datasets only. An unreadable clip becomes a row of None, which `SkipUnreadable`
    drops at collation.
    """
    from datasets import Dataset

    return Dataset.from_dict({"index": list(range(len(samples)))}).with_transform(_RawRows(samples))


class SkipUnreadable:
    """Wraps `QwenVideoCollator`: rows whose sample could not be read (all None) are dropped, as None items are."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, rows: list[dict | None]) -> dict:
        return self.collator([None if row is None or row.get("messages") is None else row for row in rows])


def train_chat_dataset(named, data_args, max_samples: int | None = None, patch_size: int | None = None):
    """Chat samples of a named set: K decoded frames per distilled row, or the frames of each raw training clip (read
    at `patch_size`, the model's, for qwen-vl-utils' pixel grid; None takes `data_args.video_patch_size`). With
    `data_args.streaming` a distilled set comes back as a `datasets.IterableDataset`.

    Raises:
        ValueError: `streaming` for a raw set (read clip by clip on access already).
    """
    from compressa_hf.qwen.samples import load_chat_dataset, raw_chat_samples

    prompt = data_args.prompt_template()
    streaming = getattr(data_args, "streaming", False)
    if streaming and not named.distilled:
        raise ValueError(
            f"--streaming applies to distilled sets; {named.name!r} is a raw split, whose clips are read one by one "
            "as training asks for them anyway: drop --streaming"
        )
    if named.distilled:
        with zero3_init_disabled():
            ds = load_chat_dataset(named.repo, named.config, prompt=prompt, fps=data_args.fps, streaming=streaming)
        if streaming:
            return ds if max_samples is None else ds.take(max_samples)
    else:
        reader = data_args.clip_config(patch_size=patch_size)
        ds = as_hf_dataset(raw_chat_samples(named.source, named.split, reader, prompt=prompt, fps=data_args.fps))
    if max_samples is not None and max_samples < len(ds):
        ds = ds.select(range(max_samples))
    return ds


def num_samples(dataset) -> int | None:
    """The length of a map-style dataset; None for a streamed one."""
    try:
        return len(dataset)
    except TypeError:
        return None


def first_batch_stats(dataset, collator, video_token_id: int) -> dict:
    """Frames, visual tokens and total tokens of the first readable sample (what one training sample costs), and
    `frames_range` ([min, max] frames over the first 8 readable samples: rows of a set such as PRISM's differ); a
    streamed dataset is read from its start."""
    import itertools

    n = num_samples(dataset)
    rows = (dataset[i] for i in range(min(n, 8))) if n is not None else itertools.islice(iter(dataset), 8)
    rows = [row for row in rows if row is not None and row.get("messages") is not None]
    if not rows:
        raise ValueError("none of the first 8 training samples could be read")
    row = rows[0]
    batch = collator([row])
    frames = [int(len(r["videos"][0])) for r in rows]
    return {
        "frames_per_sample": frames[0],
        "frames_range": [min(frames), max(frames)],
        "frame_shape": list(row["videos"][0].shape[1:3]),
        "video_grid_thw": batch["video_grid_thw"][0].tolist(),  # the processor's patch grid (t, h, w)
        "visual_tokens_per_sample": int((batch["input_ids"] == video_token_id).sum()),
        # a packed batch has no padding, so no attention mask
        "tokens_per_sample": int(
            batch["attention_mask"].sum() if "attention_mask" in batch else batch["input_ids"].numel()
        ),
    }


# -- checks before anything loads ---------------------------------------------------------------------------------

#: Attention kernels that need a package of their own: the module to import and how to install it.
_ATTENTION_PACKAGES = {
    "flash_attention_2": ("flash_attn", "pip install flash-attn --no-build-isolation"),
    "flash_attention_3": ("flash_attn_interface", "build the hopper/ folder of Dao-AILab/flash-attention"),
}


def check_processes(training_args) -> None:
    """Refuse a launch whose processes do not form one run: each would train alone and all would write one folder.

    `accelerate launch --config_file accelerate_configs/ddp.yaml --num_processes 2` on a machine without GPUs starts
    two processes that join no process group unless the run is told it is on the CPU (`--use_cpu true`: DDP over
    gloo); DeepSpeed on CPU likewise reports one process on every rank.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != training_args.world_size:
        raise RuntimeError(
            f"accelerate launched {launched} processes, but this run sees {training_args.world_size}: each process "
            f"would train alone and all would write {training_args.output_dir}. On a machine without GPUs add "
            "`--use_cpu true` (DDP over gloo, e.g. accelerate launch --config_file accelerate_configs/ddp.yaml "
            f"--num_processes {launched} --mixed_precision no recipes/sft_qwen.py ... --use_cpu true); DeepSpeed "
            "runs on CPU with one process only"
        )


def check_kernels(model_args, training_args) -> None:
    """Refuse an attention kernel or Liger that this machine cannot run, before the model loads (transformers would
    say so only after loading it, and Liger only when training starts)."""
    import importlib.util

    attn = model_args.attn_implementation
    if attn in _ATTENTION_PACKAGES:
        module, install = _ATTENTION_PACKAGES[attn]
        if importlib.util.find_spec(module) is None:
            raise ImportError(
                f"attn_implementation {attn} needs the `{module}` package ({install}) and a CUDA GPU; use sdpa "
                "(PyTorch's fused attention, nothing to install) or eager"
            )
        if not torch.cuda.is_available():
            raise ValueError(f"attn_implementation {attn} runs on CUDA GPUs only and this machine has none; use sdpa")
    if training_args.use_liger_kernel:
        if importlib.util.find_spec("liger_kernel") is None:
            raise ImportError(
                "use_liger_kernel: true needs the liger-kernel package (`pip install liger-kernel`: Triton kernels "
                "for CUDA GPUs); install it or set use_liger_kernel: false"
            )
        if not torch.cuda.is_available():
            raise ValueError("use_liger_kernel: true needs a CUDA GPU (Liger's kernels are Triton); set it false")
