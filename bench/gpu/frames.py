"""The T frames the cache pass takes from each clip of a set, at its frame side, as a `framefolder` of JPEGs.

The GPU machine has no video decoder (no PyAV) and takes at most 64 MiB per call: a set's sampled frames as small
JPEGs travel where its videos and a decoder do not (bench/gpu/README.md). Re-read with T frames at the same side,
the folder gives the same frames (T of T, no resize), up to JPEG's loss.

Usage:
    python bench/gpu/frames.py --source ../shared/data/ucf101_19 --out .gpu/data/ucf101_19 --num_frames 16 --size 112
    python bench/gpu/frames.py --source procedural:num_classes=2,train_per_class=3 --out /tmp/f --num_frames 4 \\
        --size 32   # the dry run's input

Writes `<out>/<split>/<class>/<clip>/img_00001.jpg ...` and `<out>/frames.json` (source, T, side, quality, clips per
split, clips that could not be read, and each clip's frame rate `T / duration`, which the `framefolder` source reads
so that timestamps and the card keep the clip's time). The folder is built beside `<out>` and renamed into place when
complete; an existing `<out>` is replaced only if frames.py wrote it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys

import torch
from PIL import Image

from compressa_hf.clips import ClipConfig, ClipDataset
from compressa_hf.sources import parse_source_spec


def clip_name(clip_id: str, split: str) -> str:
    """A clip's folder name: its id less the split (and, below it, the class) the folders already say, `/` as `__`."""
    name = clip_id.removeprefix(f"{split}/")
    return name.split("/", 1)[-1].replace("/", "__") if name.count("/") >= 1 else name


def _as_is(item: dict) -> dict:
    """The loader's collate: each item as the dataset gave it (a top-level function, so spawned workers can pickle it)."""
    return item


def write_frames(source_spec: str, out: str, num_frames: int, size: int, quality: int, workers: int) -> dict:
    """Write every split's sampled frames under `out` (replaced whole); returns what `frames.json` holds."""
    if os.path.exists(out) and not os.path.exists(os.path.join(out, "frames.json")):
        raise SystemExit(f"{out} exists and was not written by frames.py (no frames.json): not replacing it")
    source = parse_source_spec(source_spec)
    cfg = ClipConfig(num_frames=num_frames, size=size)
    tmp = out.rstrip("/") + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    info = {"source": source_spec, "num_frames": num_frames, "size": size, "quality": quality, "clips": {}}
    info["unreadable"], info["fps"] = [], {}
    for split in source.splits:
        refs = source.list_clips(split)
        loader = torch.utils.data.DataLoader(
            ClipDataset(source, refs, cfg), batch_size=None, num_workers=workers, collate_fn=_as_is
        )
        written = 0
        for item in loader:
            if "error" in item:
                info["unreadable"].append({"clip_id": item["clip_id"], "reason": item["error"]})
                continue
            key = f"{split}/{source.class_names[item['label']]}/{clip_name(item['clip_id'], split)}"
            folder = os.path.join(tmp, *key.split("/"))
            # The T frames span the clip: shown evenly over its duration, their rate is T / duration.
            info["fps"][key] = num_frames * item["fps"] / item["num_source_frames"]
            os.makedirs(folder, exist_ok=True)
            for i, frame in enumerate(item["frames"]):
                Image.fromarray(frame).save(os.path.join(folder, f"img_{i + 1:05d}.jpg"), quality=quality)
            written += 1
        info["clips"][split] = written
    with open(os.path.join(tmp, "frames.json"), "w") as f:
        json.dump(info, f, indent=1)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="a source spec or folder (compressa --source)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--num_frames", type=int, default=16, help="T, frames kept per clip")
    parser.add_argument("--size", type=int, default=112, help="frame side in pixels")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    parser.add_argument("--workers", type=int, default=2, help="decode workers")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    info = write_frames(args.source, args.out, args.num_frames, args.size, args.quality, args.workers)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(args.out) for f in files)
    print(json.dumps({"out": args.out, "clips": info["clips"], "unreadable": len(info["unreadable"]), "bytes": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
