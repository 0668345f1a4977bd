"""Benchmark of Qwen-VL SFT steps: distilled samples (K keyframes) vs full-data samples (T raw frames, or raw clips as
qwen-vl-utils' defaults present them), padded vs packed, for any family.

Usage:
    # CPU: tiny random Qwen2.5-VL (tests/fixtures/tiny_qwen2_5_vl.json), fp32, LoRA, gradient checkpointing
    python bench/sft.py --output bench/results/sft_cpu.json
    # CPU, per family: tokens per second and seconds per sample, padded vs packed, the three sample kinds
    python bench/sft.py --model_config tests/fixtures/tiny_qwen3_5.json --kinds distilled,raw,raw_qwen \
        --packing both --one_process --output bench/results/sft_cpu_qwen3_5.json
    # GPU: the 7B architecture with random weights, bf16, LoRA, gradient checkpointing
    python bench/sft.py --device cuda --model_config ../shared/qwen2_5_vl/config_7b.json --dtype bfloat16 \
        --frame_sizes 112,224 --one_process --output bench/results/sft_7b_gpu.json
    # GPU: one full-SFT step of the 3B architecture (vision side frozen, as the full recipes' default)
    python bench/sft.py --device cuda --model_config ../shared/qwen2_5_vl/config_3b.json --dtype bfloat16 \
        --no-lora --frame_sizes 112,224 --one_process --warmup 1 --steps 1 --output bench/results/sft_3b_full_gpu.json

Each sample kind (and each `--frame_sizes` entry) runs in a fresh subprocess (its own peak memory), or, with
`--one_process`, all of them in one process that builds the model once (a 7B takes a while to build; peak GPU memory
is still per row, the allocator's peak being reset before each row's timed steps; peak RSS is then the process's).
A step is what `recipes/sft_qwen.py` runs: the `SFTTrainer` loss (fused LM head over the answer tokens) on a batch
from `QwenVideoCollator`, backward, and the optimizer step, timed after warm-up steps with the batches collated
beforehand; collation is timed apart. Without LoRA the vision side is frozen as the full recipes' default.

Sample kinds (`--kinds`), all with the same classes and prompt, so only the frames differ:
- `distilled`: a set written with random latents (`pixel:avgpool8`, decoding to `--size` frames), K frames each;
- `raw`: procedural clips, T uniform frames at `--size` (`ClipConfig`);
- `raw_qwen`: procedural clips of 4, 6 and 8 seconds (`--size` px, 30 fps) read by qwen-vl-utils' rules at the
  model's patch (2 frames per second up to `--qwen_max_frames`, frames resized into its 128-768 tokens' worth): what
  a full-data run feeds by default, with the varying lengths real clips have.
`--packing on` packs each batch into one row (`compressa_hf.qwen.packing`), `both` measures each kind padded and
packed. Per row: tokens per sample, the padded-waste share (padding tokens of the batch tensor: what a padded step
computes for nothing), real tokens per second and seconds per sample. The model's family (`--model_config`'s
`model_type`) picks the processor: Qwen2.5-VL's from `--processor`; other Qwen2-vocabulary families built from its
tokenizer; Qwen3.5 from its own tokenizer (`compressa_hf.qwen.tokenizer`, built into a temporary folder). Prints a
markdown table and writes the same numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time

from common import report, run_child

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

KINDS = ("distilled", "raw", "raw_qwen")
#: Clip lengths (seconds at 30 fps) of the `raw_qwen` kind, cycled through the samples.
QWEN_SECONDS = (4, 6, 8)


def _procedural(args) -> str:
    return f"procedural:num_classes={args.num_classes},train_per_class={args.samples},test_per_class=1,length=64,frame_size={args.size}"


def _samples(args, kind: str, work_dir: str, patch_size: int = 14) -> list[dict]:
    """`batch_size x (warmup + steps)` chat samples of `kind` (see the module docstring), all with the same prompt."""
    import numpy as np

    from compressa_hf.clips import ClipConfig
    from compressa_hf.qwen.samples import load_chat_dataset, raw_chat_samples
    from compressa_hf.qwen.video import QwenVideoConfig
    from compressa_hf.sources import parse_source_spec
    from compressa_hf.store import DistilledConfig, write_config

    n_needed = args.batch_size * (args.warmup + args.steps)
    source = _procedural(args)
    if kind == "raw":
        dataset = raw_chat_samples(source, "train", ClipConfig(num_frames=args.raw_frames, size=args.size))
        return [dataset[i] for i in range(n_needed)]
    if kind == "raw_qwen":
        reader = QwenVideoConfig(max_frames=args.qwen_max_frames, image_patch_size=patch_size)
        sets = [
            raw_chat_samples(source.replace("length=64", f"length={30 * sec}"), "train", reader)
            for sec in QWEN_SECONDS
        ]
        return [sets[i % len(sets)][i // len(sets)] for i in range(n_needed)]
    class_names = parse_source_spec(source).class_names
    n, k, side = args.samples * args.num_classes, args.distilled_frames, args.size // 8
    rng = np.random.default_rng(0)
    write_config(
        work_dir,
        DistilledConfig(
            name="bench",
            video_ids=[f"train/{i:04d}" for i in range(n)],
            labels=[i % args.num_classes for i in range(n)],
            latents=rng.integers(0, 256, size=(n, k, 3, side, side), dtype=np.uint8),
            frame_indices=(idx := np.array([[int((j + 0.5) * 64 / k) for j in range(k)]] * n)),
            timestamps=idx / 30.0,  # the procedural source's rate
            fps=[30.0] * n,
            sources=["procedural"] * n,
            class_names=class_names,
            meta={"codec_id": "pixel:avgpool8", "source": source, "split": "train", "frames_per_video": k},
        ),
    )
    dataset = load_chat_dataset(work_dir, "bench")
    return [dataset[i] for i in range(n_needed)]


def _measure(args, trainer, model, processor, samples, kind: str, frame_size: int | None, packed: bool, rope) -> dict:
    """Collate `samples` at `frame_size` (packed or padded), run warm-up + timed steps, and return the table's row."""
    import torch

    from compressa_hf.qwen.collator import QwenVideoCollator

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    collator = QwenVideoCollator(processor, frame_size=frame_size, packing=packed, rope_index=rope if packed else None)
    padded = QwenVideoCollator(processor, frame_size=frame_size) if packed else collator
    start = time.perf_counter()
    batches = [collator(samples[i : i + args.batch_size]) for i in range(0, len(samples), args.batch_size)]
    collate_s = (time.perf_counter() - start) / len(batches)
    # tokens and padding of every batch as the padded collator lays it out (packed batches have none)
    shapes = [padded(samples[i : i + args.batch_size]) for i in range(0, len(samples), args.batch_size)]
    real_tokens = [int(b["attention_mask"].sum()) for b in shapes]
    slots = [b["input_ids"].numel() if not packed else r for b, r in zip(shapes, real_tokens)]

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times, losses = [], []
    for i, batch in enumerate(batches):
        if i == args.warmup and cuda:
            torch.cuda.reset_peak_memory_stats()
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        num_items = (batch["labels"][:, 1:] != -100).sum()
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = trainer.training_step(model, batch, num_items)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
            losses.append(float(loss))

    video_token = processor.video_token_id
    first = batches[0]
    timed = slice(args.warmup, None)
    tokens_timed = sum(real_tokens[timed]) / len(times)
    row = {
        "kind": kind,
        "packed": packed,
        "frames_per_sample": statistics.mean(len(s["videos"][0]) for s in samples),
        "frame_side": int(first["video_grid_thw"][0, 1]) * processor.video_processor.patch_size,  # as presented
        "visual_tokens_per_sample": int((first["input_ids"] == video_token).sum()) / args.batch_size,
        "tokens_per_sample": sum(real_tokens) / len(samples),
        "padded_waste_share": 1 - sum(real_tokens) / sum(slots),
        "batch_size": args.batch_size,
        "steps": len(times),
        "step_s": statistics.median(times),
        "step_s_mean": statistics.mean(times),
        "step_s_per_sample": statistics.median(times) / args.batch_size,
        "tokens_per_s": tokens_timed / statistics.mean(times),
        "collate_s_per_batch": collate_s,
        "loss_finite": all(math.isfinite(x) for x in losses),
        "peak_rss_before_steps_mb": round(rss_before, 1),
    }
    if cuda:
        row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        row["peak_gpu_mb_per_sample"] = round(row["peak_gpu_mb"] / args.batch_size, 1)
        row["gpu"] = torch.cuda.get_device_name()
    return row


def child(args) -> dict:
    """Build the model and trainer once, then measure each (sample type, frame size) this process was given."""
    import torch
    from transformers import AutoProcessor
    from trl import SFTTrainer

    from compressa_hf.qwen import build_processor, family_of
    from compressa_hf.qwen.collator import QwenVideoCollator
    from compressa_hf.qwen.models import (
        freeze_vision,
        lora_config,
        qwen_config,
        random_qwen,
        torch_dtype,
        trainable_summary,
    )
    from compressa_hf.qwen.packing import prepare_packing
    from compressa_hf.qwen.sft import as_hf_dataset
    from compressa_hf.qwen.sft_config import SFTScriptArguments, VideoSFTConfig
    from compressa_hf.qwen.sft_trainer import score_labelled_positions_only_on_cpu
    from compressa_hf.qwen.tokenizer import write_qwen3_5_tokenizer

    kinds = _kinds(args) if args.child == "all" else (args.child,)
    frame_sizes = _frame_sizes(args) if args.child == "all" else [args.frame_size]
    device = torch.device(args.device)
    family = family_of(qwen_config(args.model_config))
    start = time.perf_counter()
    model = random_qwen(args.model_config, dtype=torch_dtype(args.dtype), device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    build_s = time.perf_counter() - start
    packings = {"off": [False], "on": [True], "both": [False, True]}[args.packing]
    rope = prepare_packing(model) if True in packings else None
    with tempfile.TemporaryDirectory() as work_dir:
        if family.name == "qwen2_5_vl":
            processor = AutoProcessor.from_pretrained(args.processor)
        elif family.vocabulary == "qwen3_5":
            processor = build_processor(family, write_qwen3_5_tokenizer(os.path.join(work_dir, "tokenizer")))
        else:
            processor = build_processor(family, args.processor)
        samples = {
            kind: _samples(args, kind, os.path.join(work_dir, f"set_{kind}"), family.patch_size) for kind in kinds
        }
        dataset = as_hf_dataset(samples[kinds[0]])

        peft_config = None
        if args.lora:
            from trl import ModelConfig

            model_args = ModelConfig(use_peft=True, lora_r=16, lora_alpha=32, lora_target_modules=["all-linear"])
            peft_config = lora_config(model, model_args, SFTScriptArguments())
        else:
            freeze_vision(model, SFTScriptArguments().tune_vision)  # as recipes/sft_qwen.py does for full SFT
        training_args = VideoSFTConfig(
            output_dir=os.path.join(work_dir, "out"),
            per_device_train_batch_size=args.batch_size,
            gradient_checkpointing=args.gradient_checkpointing,
            bf16=args.dtype == "bfloat16",
            learning_rate=1e-4,
            max_steps=len(frame_sizes) * len(kinds) * len(packings) * (args.warmup + args.steps),
            report_to="none",
            use_cpu=device.type != "cuda",
        )
        if args.cpu_lm_head == "labelled":  # as VideoSFTTrainer (the recipe's trainer) does; CUDA is unchanged
            score_labelled_positions_only_on_cpu()
        trainer = SFTTrainer(
            model=model,
            args=training_args,
            data_collator=QwenVideoCollator(processor),
            train_dataset=dataset,
            processing_class=processor,
            peft_config=peft_config,
        )
        model = trainer.model
        if args.gradient_checkpointing:  # what Trainer.train() switches on before its first step
            kwargs = {"use_reentrant": False}
            if hasattr(model, "activation_checkpointing_enable"):
                model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        model.train()
        trainer.create_optimizer_and_scheduler(num_training_steps=training_args.max_steps)
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train()'s loop, read by training_step
        params = trainable_summary(model)
        rows = [
            _measure(args, trainer, model, processor, samples[kind], kind, fs, packed, rope)
            for kind in kinds
            for fs in frame_sizes
            for packed in packings
        ]
    common = {
        "trainable_parameters": params["trainable"],
        "total_parameters": params["total"],
        "build_s": build_s,
        "model_family": family.name,
    }
    return {"rows": [row | common for row in rows]}


def _kinds(args) -> tuple[str, ...]:
    kinds = tuple(args.kinds.split(","))
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise SystemExit(f"--kinds {unknown} unknown; choose from {KINDS}")
    return kinds


def _frame_sizes(args) -> list[int | None]:
    """The collator frame sizes to measure: `--frame_sizes`, else `--frame_size` (None keeps `--size`)."""
    if not args.frame_sizes:
        return [args.frame_size]
    return [int(x) for x in args.frame_sizes.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model_config", default=os.path.join(REPO, "tests", "fixtures", "tiny_qwen2_5_vl.json"))
    parser.add_argument("--processor", default=os.path.join(REPO, "..", "shared", "qwen2_5_vl"))
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--lora", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--gradient_checkpointing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--distilled_frames", type=int, default=4, help="K, keyframes per distilled sample")
    parser.add_argument("--raw_frames", type=int, default=16, help="T, frames per raw clip")
    parser.add_argument("--size", type=int, default=112, help="frame side of both sample types")
    parser.add_argument("--frame_size", type=int, default=None, help="collator resize (None keeps --size)")
    parser.add_argument("--frame_sizes", default=None, help="several collator sizes, e.g. 112,224 (one row each)")
    parser.add_argument("--one_process", action="store_true", help="every row in one process (one model build)")
    parser.add_argument("--kinds", default="distilled,raw", help=f"sample kinds, comma-separated, of {KINDS}")
    parser.add_argument("--packing", default="off", choices=["off", "on", "both"], help="packed batches")
    parser.add_argument("--qwen_max_frames", type=int, default=16, help="raw_qwen: qwen-vl-utils' max_frames")
    parser.add_argument("--num_classes", type=int, default=6, help="procedural classes (named in the prompt)")
    parser.add_argument("--samples", type=int, default=8, help="videos per class")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument(
        "--cpu_lm_head",
        default="labelled",
        choices=["labelled", "every"],
        help="CPU: score the labelled positions only, as the recipe does (compressa_hf.qwen.sft_trainer), or every "
        "position, TRL's own choice off Triton (the baseline of that change)",
    )
    parser.add_argument("--output", default="bench/results/sft_cpu.json")
    parser.add_argument("--child", choices=[*KINDS, "all"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    _kinds(args)
    if args.batch_size * (args.warmup + args.steps) > args.samples * args.num_classes:
        raise SystemExit(
            f"--batch_size x (--warmup + --steps) = {args.batch_size * (args.warmup + args.steps)} samples, more than "
            f"--samples x --num_classes = {args.samples * args.num_classes}; raise --samples"
        )
    if args.child:
        report(child(args))
        return

    skip = ("child", "output", "lora", "gradient_checkpointing", "one_process", "frame_size", "frame_sizes")
    flags = [f"--{k}={v}" for k, v in vars(args).items() if k not in skip and v is not None]
    flags += ["--lora" if args.lora else "--no-lora"]
    flags += ["--gradient_checkpointing" if args.gradient_checkpointing else "--no-gradient_checkpointing"]
    if args.one_process:
        sizes = [f"--{k}={getattr(args, k)}" for k in ("frame_size", "frame_sizes") if getattr(args, k) is not None]
        runs = [["--child=all", *sizes]]
    else:
        runs = [
            [f"--child={kind}"] + ([f"--frame_size={fs}"] if fs else [])
            for fs in _frame_sizes(args)
            for kind in _kinds(args)
        ]
    rows = []
    for run in runs:
        out = run_child(__file__, [*run, *flags])
        rows += [r | {"peak_rss_main_mb": out["peak_rss_main_mb"]} for r in out["rows"]]
    gpu = "peak_gpu_mb" in rows[0]
    print(
        "| samples | batch | frames | visual tokens / sample | tokens / sample | padded waste | s / step | s / sample | "
        "tokens / s | collate s / batch | peak RSS (MB) |" + (" peak GPU (MB) | GPU MB / sample |" if gpu else "")
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if gpu else ""))
    for r in rows:
        print(
            f"| {r['kind']} | {'packed' if r['packed'] else 'padded'} | {r['frames_per_sample']:g} x "
            f"{r['frame_side']}^2 | {r['visual_tokens_per_sample']:.0f} | {r['tokens_per_sample']:.0f} | "
            f"{100 * r['padded_waste_share']:.1f} % | {r['step_s']:.3f} | {r['step_s_per_sample']:.4f} | "
            f"{r['tokens_per_s']:.0f} | {r['collate_s_per_batch']:.3f} | {r['peak_rss_main_mb']:.0f} |"
            + (f" {r['peak_gpu_mb']:.0f} | {r['peak_gpu_mb_per_sample']:.0f} |" if gpu else "")
        )
    speedups, by_packing = {}, {}
    for side in sorted({r["frame_side"] for r in rows if r["kind"] != "raw_qwen"}):
        for packed in sorted({r["packed"] for r in rows}):
            by_kind = {r["kind"]: r for r in rows if r["frame_side"] == side and r["packed"] == packed}
            if {"distilled", "raw"} <= set(by_kind):
                ratio = by_kind["raw"]["step_s_per_sample"] / by_kind["distilled"]["step_s_per_sample"]
                (by_packing if packed else speedups)[str(side)] = ratio
                print(
                    f"steps per sample at {side} x {side} ({'packed' if packed else 'padded'}): distilled "
                    f"(K = {args.distilled_frames}) is {ratio:.2f}x faster than raw (T = {args.raw_frames})"
                )
    packing_gain = {}
    for kind, side in dict.fromkeys((r["kind"], r["frame_side"]) for r in rows):
        pair = {r["packed"]: r for r in rows if (r["kind"], r["frame_side"]) == (kind, side)}
        if set(pair) == {False, True}:
            packing_gain[f"{kind} {side}"] = pair[False]["step_s_per_sample"] / pair[True]["step_s_per_sample"]
            print(f"{kind} at {side}: packed steps are {packing_gain[f'{kind} {side}']:.2f}x faster per sample")
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(
            {
                "args": vars(args),
                "rows": rows,
                # one frame size: the number, as before; several: one per frame side as presented
                "speedup_per_sample": next(iter(speedups.values())) if len(speedups) == 1 else speedups,
                "speedup_per_sample_packed": by_packing,
                "packing_speedup_per_sample": packing_gain,
                "cpu_count": os.cpu_count(),
            },
            f,
            indent=2,
        )


if __name__ == "__main__":
    main()
