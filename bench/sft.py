"""Benchmark of one SFT step of Qwen2.5-VL on distilled samples (K keyframes) vs full-data samples (T raw frames).

Usage:
    # CPU: tiny random Qwen2.5-VL (tests/fixtures/tiny_qwen2_5_vl.json), fp32, LoRA, gradient checkpointing
    python bench/sft.py --output bench/results/sft_cpu.json
    # GPU: the 7B architecture with random weights, bf16, LoRA, gradient checkpointing
    python bench/sft.py --device cuda --model_config ../shared/qwen2_5_vl/config_7b.json --dtype bfloat16 \
        --output bench/results/sft_7b_gpu.json

Each sample type runs in a fresh subprocess (its own peak memory). A step is what `recipes/sft_qwen.py` runs: the
`SFTTrainer` loss (fused LM head over the answer tokens) on a batch from `QwenVideoCollator`, backward, and the
optimizer step, timed after warm-up steps with the batches collated beforehand; collation is timed apart. Distilled
samples come from a set written with random latents (`pixel:avgpool8`, decoding to `--size` frames), raw samples from
the procedural source at the same size and with the same class names, so the prompts match and only the frames
differ. Prints a markdown table and writes the same numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

from common import report, run_child

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

KINDS = ("distilled", "raw")


def _procedural(args) -> str:
    return f"procedural:num_classes={args.num_classes},train_per_class={args.samples},test_per_class=1,length=64,frame_size={args.size}"


def _samples(args, kind: str, work_dir: str):
    """A `datasets.Dataset` (distilled) or map-style dataset (raw) of chat samples with the same prompt."""
    import numpy as np

    from compressa_hf.chat import load_chat_dataset, raw_chat_samples
    from compressa_hf.clips import ClipConfig
    from compressa_hf.sft import as_hf_dataset
    from compressa_hf.sources import parse_source_spec
    from compressa_hf.store import DistilledConfig, write_config

    source = _procedural(args)
    if kind == "raw":
        return as_hf_dataset(raw_chat_samples(source, "train", ClipConfig(num_frames=args.raw_frames, size=args.size)))
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
            frame_indices=np.array([[int((j + 0.5) * 64 / k) for j in range(k)]] * n),
            sources=["procedural"] * n,
            class_names=class_names,
            meta={"codec_id": "pixel:avgpool8", "source": source, "split": "train", "frames_per_video": k},
        ),
    )
    return load_chat_dataset(work_dir, "bench")


def child(args) -> dict:
    import torch
    from transformers import AutoProcessor
    from trl import SFTTrainer

    from compressa_hf.chat import QwenVideoCollator
    from compressa_hf.configs import SFTScriptArguments, VideoSFTConfig
    from compressa_hf.sft import lora_config, random_qwen, torch_dtype, trainable_summary

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    processor = AutoProcessor.from_pretrained(args.processor)
    model = random_qwen(args.model_config, dtype=torch_dtype(args.dtype), device=device)
    with tempfile.TemporaryDirectory() as work_dir:
        dataset = _samples(args, args.child, os.path.join(work_dir, "set"))
        collator = QwenVideoCollator(processor, frame_size=args.frame_size)
        samples = [dataset[i] for i in range(args.batch_size * (args.warmup + args.steps))]

        start = time.perf_counter()
        batches = [collator(samples[i : i + args.batch_size]) for i in range(0, len(samples), args.batch_size)]
        collate_s = (time.perf_counter() - start) / len(batches)

        peft_config = None
        if args.lora:
            from trl import ModelConfig

            model_args = ModelConfig(use_peft=True, lora_r=16, lora_alpha=32, lora_target_modules=["all-linear"])
            peft_config = lora_config(model, model_args, SFTScriptArguments())
        training_args = VideoSFTConfig(
            output_dir=os.path.join(work_dir, "out"),
            per_device_train_batch_size=args.batch_size,
            gradient_checkpointing=args.gradient_checkpointing,
            bf16=args.dtype == "bfloat16",
            learning_rate=1e-4,
            max_steps=args.warmup + args.steps,
            report_to="none",
            use_cpu=not cuda,
        )
        trainer = SFTTrainer(
            model=model,
            args=training_args,
            data_collator=collator,
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
        trainer.create_optimizer_and_scheduler(num_training_steps=len(batches))
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train()'s loop, read by training_step
        params = trainable_summary(model)

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
    result = {
        "kind": args.child,
        "frames_per_sample": int(len(samples[0]["videos"][0])),
        "frame_side": int(first["video_grid_thw"][0, 1]) * processor.video_processor.patch_size,  # as presented
        "visual_tokens_per_sample": int((first["input_ids"] == video_token).sum()) / args.batch_size,
        "tokens_per_sample": int(first["attention_mask"].sum()) / args.batch_size,
        "batch_size": args.batch_size,
        "steps": len(times),
        "step_s": statistics.median(times),
        "step_s_mean": statistics.mean(times),
        "step_s_per_sample": statistics.median(times) / args.batch_size,
        "collate_s_per_batch": collate_s,
        "loss_finite": all(x == x for x in losses),
        "trainable_parameters": params["trainable"],
        "total_parameters": params["total"],
        "peak_rss_before_steps_mb": round(rss_before, 1),
    }
    if cuda:
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        result["peak_gpu_mb_per_sample"] = round(result["peak_gpu_mb"] / args.batch_size, 1)
        result["gpu"] = torch.cuda.get_device_name()
    return result


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
    parser.add_argument("--num_classes", type=int, default=6, help="procedural classes (named in the prompt)")
    parser.add_argument("--samples", type=int, default=8, help="videos per class")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--output", default="bench/results/sft_cpu.json")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch_size * (args.warmup + args.steps) > args.samples * args.num_classes:
        raise SystemExit(
            f"--batch_size x (--warmup + --steps) = {args.batch_size * (args.warmup + args.steps)} samples, more than "
            f"--samples x --num_classes = {args.samples * args.num_classes}; raise --samples"
        )
    if args.child:
        report(child(args))
        return

    flags = [f"--{k}={v}" for k, v in vars(args).items() if k not in ("child", "output") and v is not None]
    flags = [f for f in flags if not f.startswith(("--lora=", "--gradient_checkpointing="))]
    flags += ["--lora" if args.lora else "--no-lora"]
    flags += ["--gradient_checkpointing" if args.gradient_checkpointing else "--no-gradient_checkpointing"]
    rows = [run_child(__file__, [f"--child={kind}", *flags]) for kind in KINDS]
    distilled, raw = rows
    speedup = raw["step_s_per_sample"] / distilled["step_s_per_sample"]
    gpu = "peak_gpu_mb" in distilled
    print(
        "| samples | frames | visual tokens / sample | tokens / sample | s / step | s / sample | collate s / batch | "
        "peak RSS (MB) |" + (" peak GPU (MB) | GPU MB / sample |" if gpu else "")
    )
    print("|---|---|---|---|---|---|---|---|" + ("---|---|" if gpu else ""))
    for r in rows:
        print(
            f"| {r['kind']} | {r['frames_per_sample']} x {r['frame_side']}^2 | {r['visual_tokens_per_sample']:.0f} | "
            f"{r['tokens_per_sample']:.0f} | {r['step_s']:.3f} | {r['step_s_per_sample']:.4f} | "
            f"{r['collate_s_per_batch']:.3f} | {r['peak_rss_main_mb']:.0f} |"
            + (f" {r['peak_gpu_mb']:.0f} | {r['peak_gpu_mb_per_sample']:.0f} |" if gpu else "")
        )
    print(
        f"steps per sample: distilled (K = {args.distilled_frames}) is {speedup:.2f}x faster than raw (T = {args.raw_frames})"
    )
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(
            {"args": vars(args), "rows": rows, "speedup_per_sample": speedup, "cpu_count": os.cpu_count()}, f, indent=2
        )


if __name__ == "__main__":
    main()
