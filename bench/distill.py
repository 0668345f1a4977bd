"""Benchmark of VideoCompressa distillation against the cache pass it starts from: wall time, peak memory, ratio.

Usage:
    python bench/distill.py --source ../shared/data/arid6 --codec tae:../shared/weights/taef2 \
        --frames_per_video 1 --variants default,guide64 --output bench/results/distill_arid6.json
    # on a GPU: ~1000 procedural clips, TAEF2 in bf16 for the cache pass and the decoder (bench/gpu/run.sh runs it)
    python bench/distill.py --source procedural:num_classes=6,train_per_class=167,test_per_class=1 \
        --codec tae:taef2 --device cuda --cache_dtype bfloat16 --clips_per_batch 16 --num_workers 8 --variants bf16

The cache pass (decode the videos + encode every sampled frame) and each distillation variant run in fresh
subprocesses, so each peak RSS (and peak GPU memory on CUDA) is its own. Distillation reads the cache the first
step wrote. Prints a markdown table and writes the same numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

from common import report, run_child

# name -> (VideoCompressaConfig overrides, codec compute dtype during distillation)
VARIANTS: dict[str, tuple[dict, str]] = {
    # the paper's hyperparameters, gradient to the top-K frames' latents (grad_frames = K), fp32 decoder
    "default": ({}, "float32"),
    # the same with the frozen decoder run in bfloat16 (the latents, scorer and guide stay fp32)
    "bf16": ({}, "bfloat16"),
    "guide64": ({"guide_width": 64}, "float32"),  # a narrower guide network
    "exact": ({"grad_frames": 0}, "float32"),  # the paper's algorithm as written: all T frames with grad each step
}


def child_cache(args) -> dict:
    from compressa_hf.cache import EncodeConfig, encode_split

    shutil.rmtree(args.work_dir, ignore_errors=True)
    cfg = EncodeConfig(
        source=args.source,
        output_dir=args.work_dir,
        codec=args.codec,
        num_frames=args.num_frames,
        size=args.size,
        num_workers=args.num_workers,
        clips_per_batch=args.clips_per_batch,
        dtype=args.cache_dtype,
        device=args.device,
        max_clips=args.max_clips,
    )
    start = time.perf_counter()
    summary = encode_split(cfg, progress=False)
    return {"seconds": time.perf_counter() - start, "clips": summary["clips_cached"]} | _gpu_peak()


def child_distill(args) -> dict:
    import torch

    from compressa_hf.cache import LatentCache, resolve_device
    from compressa_hf.codecs import load_codec
    from compressa_hf.distillation.videocompressa import VideoCompressaConfig, distill

    cache = LatentCache(args.work_dir)
    latents, labels = cache.load_latents()
    overrides, codec_dtype = VARIANTS[args.variant]
    codec = load_codec(args.codec, device=resolve_device(args.device), dtype=getattr(torch, codec_dtype)).freeze()
    cfg = VideoCompressaConfig(frames_per_video=args.frames_per_video, seed=0, **overrides)
    start = time.perf_counter()
    result = distill(latents, labels, codec, cfg, num_classes=len(cache.class_names), progress=False)
    seconds = time.perf_counter() - start
    k, t = args.frames_per_video, args.num_frames
    # K uint8 latent frames per video, against the split as uint8 T x 3 x H x W clips
    stored = k * len(labels) * int(torch.tensor(cache.meta["latent_shape"]).prod())
    full = len(labels) * t * 3 * args.size * args.size
    return {
        "seconds": seconds,
        "videos": len(labels),
        "achieved_ratio": 100 * stored / full,
        "decoded_frames": result.timings["decoded_frames"],
        "decoded_frames_grad": result.timings["decoded_frames_grad"],
        # the paper's algorithm: every pass decodes T frames per video with grad and back-propagates them, plus
        # one final decode for the top-K choice
        "paper_decodes": len(labels) * (2 * cfg.passes * t + t),
        "ours_decodes": result.timings["decoded_frames"] + 2 * result.timings["decoded_frames_grad"],
        "timings": result.timings,
        "last_pass": {k_: v for k_, v in result.history[-1].items() if k_ != "losses"},
    } | _gpu_peak()


def _gpu_peak() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1), "gpu": torch.cuda.get_device_name()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="procedural")
    parser.add_argument("--codec", default="tae:../shared/weights/taef2")
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--frames_per_video", type=int, default=1)
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--clips_per_batch", type=int, default=4, help="clips decoded and encoded together")
    parser.add_argument("--cache_dtype", default="float32", choices=["float32", "bfloat16"], help="cache-pass codec")
    parser.add_argument("--max_clips", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--variants", default="default")
    parser.add_argument("--work_dir", default="bench/results/distill_cache")
    parser.add_argument("--output", default="bench/results/distill.json")
    parser.add_argument("--child", choices=["cache", *VARIANTS], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "cache":
        report(child_cache(args))
        return
    if args.child:
        args.variant = args.child
        report(child_distill(args))
        return

    flags = [f"--{k}={v}" for k, v in vars(args).items() if k not in ("child", "output", "variants") and v is not None]
    rows = [{"step": "cache pass"} | run_child(__file__, ["--child=cache", *flags])]
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}; known: {sorted(VARIANTS)}")
        rows.append({"step": f"distill ({variant})"} | run_child(__file__, [f"--child={variant}", *flags]))
    cache_s = rows[0]["seconds"]
    gpu = "peak_gpu_mb" in rows[0]
    print("| step | seconds | x cache pass | peak RSS (MB) |" + (" peak GPU (MB) |" if gpu else "") + " decodes |")
    print("|---|---|---|---|" + ("---|" if gpu else "") + "---|")
    for r in rows:
        r["over_cache_pass"] = r["seconds"] / cache_s
        r["seconds_per_1000_videos"] = 1000 * r["seconds"] / (r["videos"] if "videos" in r else r["clips"])
        decodes = f"{r['ours_decodes']} (paper: {r['paper_decodes']})" if "ours_decodes" in r else ""
        print(
            f"| {r['step']} | {r['seconds']:.1f} | {r['over_cache_pass']:.2f} | {r['peak_rss_main_mb']:.0f} |"
            + (f" {r.get('peak_gpu_mb', 0):.0f} |" if gpu else "")
            + f" {decodes} |"
        )
    for r in rows:
        ratio = f", achieved ratio {r['achieved_ratio']:.4f} %" if "achieved_ratio" in r else ""
        print(
            f"{r['step']}: {r['videos'] if 'videos' in r else r['clips']} videos{ratio}, {r['seconds_per_1000_videos']:.1f} s per 1000 videos"
        )
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"args": vars(args), "rows": rows, "cpu_count": os.cpu_count()}, f, indent=2)


if __name__ == "__main__":
    main()
