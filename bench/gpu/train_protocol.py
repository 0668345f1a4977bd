"""Seconds per epoch of the train-from-scratch protocol on a K-frame (distilled-size) set and on its full data.

Usage:
    python bench/gpu/train_protocol.py --device cuda --clips 1000 --output /tmp/train_protocol.json

The protocol is `compressa_hf.evaluation.train.train_and_test` with the paper's settings (width-128 ConvNet, batch 256,
SGD 0.01 / momentum 0.9 / wd 5e-4), here for `--epochs` epochs instead of 100. The clips are procedural (generated
in numpy, no video decoding), T frames each at `--size`. A K-frame set keeps K uniformly spaced frames of each of the
same clips: an epoch costs what the set's shape (clips x K x 3 x H x W) costs, not what the kept frames show, so it
times a distilled set of K keyframes per video. The full-data set is the clips' T frames. Each set trains a fresh
network and is tested on `--test_clips` test clips of T frames. The first epoch is reported apart (cuDNN kernel
choice, allocator warm-up); `seconds_per_epoch` is the median of the others. Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict


def clips(source, split: str, count: int, num_frames: int, size: int, workers: int):
    """`(count, T, 3, size, size)` uint8 frames and `(count,)` labels of the first `count` clips of `split`."""
    import numpy as np
    import torch

    from compressa_hf.cache import clip_loader
    from compressa_hf.clips import ClipConfig

    refs = source.list_clips(split)[:count]
    frames, labels = [], []
    for batch in clip_loader(source, refs, ClipConfig(num_frames=num_frames, size=size), 16, workers):
        for item in batch:
            if "error" in item:
                raise RuntimeError(f"procedural clip {item['clip_id']} failed: {item['error']}")
            frames.append(item["frames"])
            labels.append(item["label"])
    frames = torch.from_numpy(np.stack(frames)).permute(0, 1, 4, 2, 3).contiguous()
    return frames, torch.tensor(labels, dtype=torch.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--clips", type=int, default=1000, help="training clips (the set's videos)")
    parser.add_argument("--test_clips", type=int, default=60)
    parser.add_argument("--num_classes", type=int, default=6)
    parser.add_argument("--num_frames", type=int, default=16, help="T, frames of a full-data clip")
    parser.add_argument("--frames_per_video", default="1,4", help="K of the distilled-size sets, comma-separated")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per set: one warm-up, then the timed ones")
    parser.add_argument("--arch", default="convnet")
    parser.add_argument("--num_workers", type=int, default=8, help="clip generation workers")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    if args.epochs < 2:
        raise SystemExit(f"--epochs must be >= 2 (the first is a warm-up), got {args.epochs}")

    import torch

    from compressa_hf.clips import uniform_indices
    from compressa_hf.evaluation.train import TrainConfig, train_and_test
    from compressa_hf.sources import parse_source_spec

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    per_class = -(-args.clips // args.num_classes)
    test_per_class = -(-args.test_clips // args.num_classes)
    source = parse_source_spec(
        f"procedural:num_classes={args.num_classes},train_per_class={per_class},test_per_class={test_per_class},"
        f"frame_size={args.size}"
    )
    start = time.perf_counter()
    train_frames, train_labels = clips(source, "train", args.clips, args.num_frames, args.size, args.num_workers)
    test_frames, test_labels = clips(source, "test", args.test_clips, args.num_frames, args.size, args.num_workers)
    generate_s = time.perf_counter() - start

    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, width=args.width)
    sets = [(f"distilled K={k}", k) for k in map(int, args.frames_per_video.split(","))]
    sets.append((f"full data T={args.num_frames}", args.num_frames))
    rows = []
    for name, k in sets:
        frames = train_frames[:, uniform_indices(args.num_frames, k)] if k < args.num_frames else train_frames
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            result = train_and_test(
                frames, train_labels, test_frames, test_labels, args.num_classes, args.arch, cfg, seed=0, device=device
            )
        except (
            torch.cuda.OutOfMemoryError
        ) as err:  # recorded: a batch of 256 full clips at 112 x 112 is ~73 GiB of activations
            rows.append(
                {"set": name, "clips": len(frames), "frames_per_clip": k, "error": f"out of memory: {err}"[:500]}
            )
            print(f"{name}: out of GPU memory")
            continue
        timed = result.epoch_seconds[1:]
        row = {
            "set": name,
            "clips": len(frames),
            "frames_per_clip": k,
            "epochs": len(result.epoch_seconds),
            "epoch_seconds": result.epoch_seconds,
            "first_epoch_s": result.epoch_seconds[0],
            "seconds_per_epoch": statistics.median(timed),
            "seconds_per_epoch_per_1000_clips": 1000 * statistics.median(timed) / len(frames),
            "total_s": result.seconds,
            "final_loss": result.final_loss,
            "test_accuracy": result.accuracy,
        }
        if cuda:
            row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        rows.append(row)
        print(
            f"{name}: {row['seconds_per_epoch']:.3f} s per epoch ({len(frames)} clips), first {row['first_epoch_s']:.3f} s"
        )
    full = rows[-1].get("seconds_per_epoch")
    out = {
        "args": vars(args),
        "train_config": asdict(cfg),
        "generate_s": generate_s,
        "rows": rows,
        "full_over_distilled": {
            r["set"]: full / r["seconds_per_epoch"] for r in rows[:-1] if full and "seconds_per_epoch" in r
        },
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "cpu_count": os.cpu_count(),
    }
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(out, f, indent=2)
    if any("error" in r for r in rows):
        raise SystemExit("a set did not train: see its row")


if __name__ == "__main__":
    main()
