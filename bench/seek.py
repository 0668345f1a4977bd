"""Benchmark: what a 10 s annotated window costs early and late in a long untrimmed file, with and without seeking.

Usage:
    python bench/seek.py --output bench/results/seek.json                        # writes a 6-minute 160x120 file
    python bench/seek.py --minutes 6 --width 320 --height 240 --output ...       # larger frames

Writes a Kinetics-layout folder with one untrimmed H.264 file (30 fps, a keyframe every `--gop` frames) annotated at
0-10 s and near its end, then samples T frames of each window through the source (`probe` + `read_frames`, as the
cache pass does) `--repeats` times. "seek" is the product's path (seek to the keyframe before the window);
"from start" disables the seek so the file is decoded from its first frame, the behaviour before seeking. Prints a
table and the late/early ratio for both, and writes the same numbers as JSON.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
from common import finish


def write_long_file(root: str, minutes: float, width: int, height: int, fps: int, gop: int) -> tuple[str, float]:
    """Untrimmed `longvideo01.mp4` under a Kinetics layout; returns the root and the late window's start (s)."""
    import av

    os.makedirs(os.path.join(root, "train"), exist_ok=True)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    n = int(minutes * 60 * fps)
    noise = np.random.default_rng(0).integers(0, 255, size=(8, height, width, 3), dtype=np.uint8)
    with av.open(os.path.join(root, "train", "longvideo01.mp4"), "w") as c:
        s = c.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "g": str(gop)})
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(n):
            f = noise[i % 8].copy()
            f[:, (i % (width - 10)) : (i % (width - 10)) + 10] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    late = int(minutes * 60) - 20
    with open(os.path.join(root, "annotations", "train.csv"), "w") as f:
        f.write("label,youtube_id,time_start,time_end,split\n")
        f.write("abseiling,longvideo01,0,10,train\n")
        f.write(f"zumba,longvideo01,{late},{late + 10},train\n")
    return root, float(late)


def time_windows(root: str, num_frames: int, repeats: int, seek: bool) -> dict[float, float]:
    """Median seconds to sample `num_frames` frames of each annotated window, keyed by the window's start."""
    from compressa_hf import decode
    from compressa_hf.clips import ClipConfig, sample_clip
    from compressa_hf.sources import build_source

    source = build_source("kinetics400", root=root)
    cfg = ClipConfig(num_frames=num_frames, size=112)
    original = decode._seek_before
    if not seek:
        decode._seek_before = lambda *args: None  # decode from the first frame, as before seeking existed
    try:
        out = {}
        for ref in source.list_clips("train"):
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                clip = sample_clip(source, ref, cfg)
                times.append(time.perf_counter() - start)
            assert clip.num_source_frames == 300 and abs(clip.timestamps[0] - ref.start_sec) < 1, clip.timestamps
            out[ref.start_sec] = statistics.median(times)
        return out
    finally:
        decode._seek_before = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--gop", type=int, default=250, help="Frames between keyframes (x264's default 250).")
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default="bench/results/seek.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        root, late = write_long_file(
            os.path.join(tmp, "k400"), args.minutes, args.width, args.height, args.fps, args.gop
        )
        size = os.path.getsize(os.path.join(root, "train", "longvideo01.mp4"))
        print(f"wrote a {args.minutes:g}-minute {args.width}x{args.height} file ({size / 1e6:.1f} MB) in "
              f"{time.perf_counter() - start:.1f} s")  # fmt: skip
        results = {
            mode: time_windows(root, args.num_frames, args.repeats, mode == "seek") for mode in ("seek", "from start")
        }

    rows = [
        {"mode": mode, "window": f"{s:g}-{s + 10:g} s", "seconds": round(t, 4)}
        for mode, per in results.items()
        for s, t in sorted(per.items())
    ]
    print("\n| mode | window | seconds per clip (median) |\n|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['window']} | {r['seconds']:.3f} |")
    ratios = {f"{mode}: late / early window": per[late] / per[0.0] for mode, per in results.items()}
    ratios["late window: from start / seek"] = results["from start"][late] / results["seek"][late]
    finish(args, rows, ratios)


if __name__ == "__main__":
    main()
