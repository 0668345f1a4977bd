"""Benchmark of the cache pass: decode alone, encode alone, the full pass, and peak memory as the clip count doubles.

Usage:
    python bench/encode.py --source ../shared/data/arid6 --codec tae:../shared/weights/taef2 --clips 75 \
        --output bench/results/encode.json

Each measurement runs in a fresh subprocess so that its peak RSS (main process, and decode workers apart) is its
own. Prints a markdown table and writes the same numbers as JSON.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from common import finish, report, run_child


def _refs(args):
    from compressa_hf.sources import parse_source_spec

    source = parse_source_spec(args.source)
    return source, source.list_clips(args.split)[: args.clips]


def run_decode(args) -> dict:
    """Decode + sample + resize through the same DataLoader as the cache pass, without encoding."""
    from compressa_hf.cache import clip_loader
    from compressa_hf.clips import ClipConfig

    source, refs = _refs(args)
    cfg = ClipConfig(num_frames=args.num_frames, size=args.size)
    loader = clip_loader(source, refs, cfg, args.clips_per_batch, args.num_workers)
    start = time.perf_counter()
    n = sum(sum("frames" in item for item in batch) for batch in loader)
    return {"clips": n, "seconds": time.perf_counter() - start}


def run_encode(args) -> dict:
    """Encode frames that were decoded beforehand (decode time excluded)."""
    import numpy as np
    import torch

    from compressa_hf.clips import ClipConfig, sample_clip
    from compressa_hf.codecs import load_codec

    source, refs = _refs(args)
    cfg = ClipConfig(num_frames=args.num_frames, size=args.size)
    clips = [sample_clip(source, ref, cfg).frames for ref in refs]
    codec = load_codec(args.codec).freeze()
    start = time.perf_counter()
    for i in range(0, len(clips), args.clips_per_batch):
        frames = torch.from_numpy(np.stack(clips[i : i + args.clips_per_batch]))
        images = frames.flatten(0, 1).permute(0, 3, 1, 2).float().div_(255)
        codec.encode(images, batch_size=len(images))
    return {"clips": len(clips), "seconds": time.perf_counter() - start}


def run_cache(args) -> dict:
    from compressa_hf.cache import EncodeConfig, encode_split

    with tempfile.TemporaryDirectory() as out:
        cfg = EncodeConfig(
            source=args.source,
            output_dir=out,
            split=args.split,
            codec=args.codec,
            num_frames=args.num_frames,
            size=args.size,
            clips_per_batch=args.clips_per_batch,
            num_workers=args.num_workers,
            max_clips=args.clips,
        )
        start = time.perf_counter()
        summary = encode_split(cfg, progress=False)
        return {"clips": summary["clips_cached"], "seconds": time.perf_counter() - start}


MODES = {"decode": run_decode, "encode": run_encode, "cache": run_cache}


def measure(args, mode: str, clips: int) -> dict:
    flags = [f"--{k}={v}" for k, v in vars(args).items() if k not in ("output", "mode", "clips") and v is not None]
    result = run_child(__file__, ["--child", mode, *flags, f"--clips={clips}"])
    result["clips_per_s"] = result["clips"] / result["seconds"]
    result["frames_per_s"] = result["clips_per_s"] * args.num_frames
    return {"mode": mode, "clips_requested": clips} | result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="procedural")
    parser.add_argument("--split", default="train")
    parser.add_argument("--codec", default="tae:../shared/weights/taef2")
    parser.add_argument("--clips", type=int, default=75, help="N; peak RSS is also measured at 2N")
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--clips_per_batch", type=int, default=4)
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--output", default="bench/results/encode.json")
    parser.add_argument("--child", dest="mode", choices=sorted(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        report(MODES[args.mode](args))
        return

    rows = [measure(args, mode, args.clips) for mode in ("decode", "encode", "cache")]
    rows.append(measure(args, "cache", 2 * args.clips))
    by = {r["mode"]: r for r in rows[:3]}
    slowest_alone = max(by["decode"]["seconds"], by["encode"]["seconds"])
    ratios = {
        "cache_over_slowest_alone": by["cache"]["seconds"] / slowest_alone,
        "cache_over_sum_alone": by["cache"]["seconds"] / (by["decode"]["seconds"] + by["encode"]["seconds"]),
        "peak_rss_2n_over_n": rows[3]["peak_rss_main_mb"] / rows[2]["peak_rss_main_mb"],
    }
    print("| mode | clips | seconds | clips/s | frames/s | peak RSS main (MB) | peak RSS worker (MB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['clips']} | {r['seconds']:.1f} | {r['clips_per_s']:.2f} | {r['frames_per_s']:.1f} "
            f"| {r['peak_rss_main_mb']:.0f} | {r['peak_rss_worker_mb']:.0f} |"
        )
    finish(args, rows, ratios)


if __name__ == "__main__":
    main()
