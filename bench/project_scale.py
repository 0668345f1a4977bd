"""Projected wall time, disk and memory of Kinetics-400 and SSv2 on one 8-GPU node, from measured per-clip costs.

Usage:
    python bench/project_scale.py --output bench/results/project_scale.json

Reads what was measured (nothing is run): the H200 figures of `bench/gpu/run.sh`
(`bench/results/gpu_h200_2026-11-29.json`: cache pass and VideoCompressa seconds per 1000 videos at 112 px, T = 16,
TAEF2 bf16, K = 1; the train protocol's seconds per epoch per 1000 clips), the CPU decode rate of `bench/encode.py`
(`bench/results/encode.json`: clips per second per decode worker on arid6's 160x120 H.264), and the peak RSS of
`bench/memory_scale.py` (`bench/results/memory_scale.json`). Sizes on disk are exact from the shapes (TAEF2: 32 x 14 x 14
latents per 112 x 112 frame). Assumptions, each printed with the table:
- the GPU work divides over the node's GPUs (cache pass: rank-sharded; VideoCompressa: data-parallel, each rank its
  share), and the per-GPU rate is the H200's; one evaluation network trains on one GPU (evaluate spreads its cells,
  not a network, over the ranks), so its times are per network;
- real-file decoding runs on `--cpu_workers` decode workers at the measured arid6 rate scaled by `--decode_slowdown`
  for the source's larger frames (Kinetics: 340p-720p, SSv2: 240p; not measured here), and overlaps the GPU work
  (as the cache pass overlaps them, BENCHMARKS.md "Cache pass"), so a stage takes the longer of the two;
- host memory per process is the disk-backed peak measured at the largest N (it does not grow with N), plus the
  codec and networks on the GPU;
- VideoCompressa's disk-backed state is read at `--disk_gbps` (the node's local NVMe; the page cache, where RAM holds
  much of the state, only helps): per pass every video's T cached frames are read, the guide warm-up reads K frames
  per video per epoch (10 epochs), and the final scoring reads all frames once more; writes (G = K refreshed rows per
  video, journaled twice) are K / T of that and left out. The stage takes the longer of its GPU and I/O times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")

#: Training clips per split (Kinetics-400's train list as commonly available: ~240k of its 246k; SSv2's train split).
SPLITS = {"kinetics400": 240_000, "ssv2": 168_913}


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def project(args) -> dict:
    gpu = _load(args.gpu)["parts"]
    distill_rows = gpu["distill"]["result"]["rows"]
    cache_s = next(r for r in distill_rows if r["step"] == "cache pass")["seconds_per_1000_videos"]
    vc_row = next(r for r in distill_rows if r["step"].startswith("distill"))
    vc_s = vc_row["seconds"] / vc_row["videos"] * 1000
    train_rows = {r["set"]: r for r in gpu["train"]["result"]["rows"]}
    decode = next(r for r in _load(args.encode)["rows"] if r["mode"] == "decode")["clips_per_s"]
    memory = _load(args.memory)["rows"]
    largest = max(r["clips"] for r in memory)
    rss = {r["command"]: r["peak_rss_main_mb"] for r in memory if r["clips"] == largest}

    t, side, c, down = 16, 112, 32, 8  # T, frame side, TAEF2 channels, TAEF2 downscale
    h = side // down
    latent = c * h * h
    frame = 3 * side * side
    per_clip = {
        "cache (float16 latents)": t * latent * 2,
        "VideoCompressa state (disk: Z, Adam moments, steps, frame cache)": t * (latent * 4 * 3 + 8 + 1 + frame * 2),
        "evaluate pixels (uint8, full-data reference)": t * frame,
        "distilled set K=1 (uint8)": latent,
    }
    decode_rate = decode / args.decode_slowdown * args.cpu_workers  # clips/s for the node
    rows = []
    for split, n in SPLITS.items():
        k = n / 1000
        decode_s = n / decode_rate
        cache_gpu = k * cache_s / args.gpus
        vc_gpu = k * vc_s / args.gpus
        frames_read = n * t * frame * 2  # float16 frame cache, every frame of every video
        vc_io_bytes = (args.passes + 1) * frames_read + args.warmup_epochs * n * args.k * frame * 2
        vc_io = vc_io_bytes / (args.disk_gbps * 1e9)
        # one evaluation network trains on one GPU (evaluate spreads cells, not a network, over the ranks)
        full_epoch = k * train_rows["full data T=16"]["seconds_per_epoch_per_1000_clips"]
        k1_epoch = k * train_rows["distilled K=1"]["seconds_per_epoch_per_1000_clips"]
        rows.append(
            {
                "split": split,
                "clips": n,
                "cache_pass_min": max(decode_s, cache_gpu) / 60,
                "cache_pass_gpu_min": cache_gpu / 60,
                "decode_min": decode_s / 60,
                "videocompressa_min": max(vc_gpu, vc_io) / 60,
                "videocompressa_gpu_min": vc_gpu / 60,
                "videocompressa_io_min": vc_io / 60,
                "videocompressa_io_tb": vc_io_bytes / 1e12,
                "full_data_100_epochs_h": 100 * full_epoch / 3600,
                "k1_100_epochs_min": 100 * k1_epoch / 60,
                "disk_gb": {name: n * b / 1e9 for name, b in per_clip.items()},
            }
        )
    return {
        "inputs": {
            "cache_s_per_1000": cache_s,
            "videocompressa_s_per_1000": vc_s,
            "decode_clips_per_s_per_worker_arid6": decode,
            "peak_rss_mb_at_largest_n": rss,
            "largest_n": largest,
        },
        "assumptions": {"gpus": args.gpus, "cpu_workers": args.cpu_workers, "decode_slowdown": args.decode_slowdown},
        "rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", default=os.path.join(RESULTS, "gpu_h200_2026-11-29.json"))
    parser.add_argument("--encode", default=os.path.join(RESULTS, "encode.json"))
    parser.add_argument("--memory", default=os.path.join(RESULTS, "memory_scale.json"))
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--cpu_workers", type=int, default=64, help="decode workers on the node")
    parser.add_argument("--decode_slowdown", type=float, default=8.0, help="real clips vs arid6's 160x120")
    parser.add_argument("--disk_gbps", type=float, default=3.0, help="read bandwidth of the state's disk, GB/s")
    parser.add_argument("--passes", type=int, default=4, help="VideoCompressa passes (its default)")
    parser.add_argument("--warmup_epochs", type=int, default=10, help="guide warm-up epochs (its default)")
    parser.add_argument("--k", type=int, default=1, help="frames kept per video")
    parser.add_argument("--output", default=os.path.join(RESULTS, "project_scale.json"))
    args = parser.parse_args()
    out = project(args)
    inputs = out["inputs"]
    print(
        f"measured: cache pass {inputs['cache_s_per_1000']:.1f} s and VideoCompressa "
        f"{inputs['videocompressa_s_per_1000']:.1f} s per 1000 videos per H200; decode "
        f"{inputs['decode_clips_per_s_per_worker_arid6']:.1f} clips/s per worker (arid6); peak RSS at "
        f"{inputs['largest_n']} clips: {inputs['peak_rss_mb_at_largest_n']}"
    )
    print(
        f"assumed: {args.gpus} GPUs, {args.cpu_workers} decode workers, real clips decode {args.decode_slowdown:g}x "
        f"slower than arid6's, VideoCompressa's state read at {args.disk_gbps:g} GB/s"
    )
    print()
    print(
        "| split | clips | cache pass (min) | of which GPU (min) | VideoCompressa (min): GPU / disk reads "
        "| full data, 100 epochs, 1 GPU (h) "
        "| K=1 set, 100 epochs, 1 GPU (min) | cache (GB) | VC state (GB) | eval pixels (GB) | set K=1 (GB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in out["rows"]:
        disk = list(r["disk_gb"].values())
        print(
            f"| {r['split']} | {r['clips']:,} | {r['cache_pass_min']:.0f} | {r['cache_pass_gpu_min']:.1f} | "
            f"{r['videocompressa_gpu_min']:.1f} / {r['videocompressa_io_min']:.1f} ({r['videocompressa_io_tb']:.1f} TB) | "
            f"{r['full_data_100_epochs_h']:.1f} | {r['k1_100_epochs_min']:.0f} | "
            + " | ".join(f"{d:,.1f}" for d in disk)
            + " |"
        )
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"args": vars(args), **out}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
