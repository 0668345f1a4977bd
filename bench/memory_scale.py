"""Peak memory of `encode`, `distill` and `evaluate --methods full` as the split grows from N to 2N to 4N clips.

Usage:
    python bench/memory_scale.py --clips 500,1000,2000 --size 64 --output bench/results/memory_scale.json
    python bench/memory_scale.py --clips 60,120,240 --size 32 --epochs 1 --output /tmp/memory_scale.json  # quick

Each command runs through the `compressa` CLI in a fresh process (its own peak RSS; `--num_workers 0`, so the decode
work is inside it) on a procedural split of N clips (`procedural:num_classes=6,train_per_class=N/6`), with its own
work folder and latent cache, in this order per N: `encode`; `distill` (VideoCompressa, `--state_storage disk`, and
`memory` for contrast); `evaluate --methods full` (the full-data reference alone: pixels decoded to a file, then
trained on batch by batch). Prints a table of peak RSS (MB) per command and N and the ratios 2N/N and 4N/N,
and writes them as JSON. What is bounded shows as ratios near 1; what holds the split in memory as ratios near the
clip ratio once the split outweighs the interpreter, torch and the codec (~0.5 GB).

`--codec` defaults to `pixel:avgpool8` (8x8 average pooling; no network weights), so the fixed cost is small and
growth shows; a tiny VAE adds its weights and activations to every row, the same at every N.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from common import finish, report, run_child

COMMANDS = ("encode", "distill_disk", "distill_memory", "evaluate_full")


def _source(n: int, size: int) -> str:
    per = max(1, n // 6)
    return f"procedural:num_classes=6,train_per_class={per},test_per_class=2,frame_size={size}"


def child(args) -> None:
    """Run one command in this process and report its peak RSS."""
    from compressa_hf.cli import main

    work = args.work
    common = ["--num_frames", str(args.num_frames), "--size", str(args.size), "--codec", args.codec]
    source = _source(args.n, args.size)
    os.environ["COMPRESSA_CACHE"] = os.path.join(work, "cache")
    if args.command == "encode":
        argv = ["encode", "--source", source, "--output_dir", os.path.join(work, "enc"), "--num_workers", "0"]
        argv += common
    elif args.command.startswith("distill"):
        storage = args.command.split("_")[1]
        argv = [
            "distill", "--source", source, "--ratio", "k1", "--output", os.path.join(work, f"set_{storage}"),
            "--state_storage", storage, "--passes", "1", "--batch_size", "32", "--guide_warmup_epochs", "1",
            "--guide_width", "32", "--num_workers", "0", *common,
        ]  # fmt: skip
    else:
        argv = [
            "evaluate", "--source", source, "--methods", "full", "--output",
            os.path.join(work, "eval"), "--epochs", str(args.epochs), "--width", "32", "--batch_size", "64",
            "--seeds", "1", "--progress", "false", "--num_workers", "0", *common,
        ]  # fmt: skip
    start = time.perf_counter()
    code = main(argv)
    if code:
        raise SystemExit(f"compressa {' '.join(argv)} exited with {code}")
    report({"command": args.command, "clips": args.n, "seconds": time.perf_counter() - start})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", default="500,1000,2000", help="N,2N,4N training clips")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--num_frames", type=int, default=8)
    parser.add_argument("--codec", default="pixel:avgpool8")
    parser.add_argument("--epochs", type=int, default=1, help="evaluate: epochs of the full-data network")
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument("--output", default="bench/results/memory_scale.json")
    parser.add_argument("--keep", action="store_true", help="keep the work folders (default: deleted per N)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.command = args.child
        child(args)
        return 0

    clips = [int(c) for c in args.clips.split(",")]
    commands = [c for c in args.commands.split(",") if c]
    rows = []
    for n in clips:
        work = tempfile.mkdtemp(prefix=f"memory_scale_{n}_")
        try:
            for command in commands:
                extra = ["--size", str(args.size), "--num_frames", str(args.num_frames), "--codec", args.codec]
                extra += ["--epochs", str(args.epochs)]
                row = run_child(__file__, ["--child", command, "--n", str(n), "--work", work, *extra])
                rows.append(row)
                print(
                    f"{command:15s} {n:6d} clips: peak RSS {row['peak_rss_main_mb']:8.1f} MB, {row['seconds']:.0f} s"
                )
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    print()
    print("| command | " + " | ".join(f"N = {n}" for n in clips) + " | 2N/N | 4N/N |")
    print("|---|" + "---|" * (len(clips) + 2))
    ratios = {}
    for command in commands:
        peaks = [
            next(r["peak_rss_main_mb"] for r in rows if r["command"] == command and r["clips"] == n) for n in clips
        ]
        if len(peaks) >= 3:
            ratios[f"{command} 2N/N"] = peaks[1] / peaks[0]
            ratios[f"{command} 4N/N"] = peaks[2] / peaks[0]
        cells = " | ".join(f"{p:.0f}" for p in peaks)
        extra = f" | {peaks[1] / peaks[0]:.2f} | {peaks[2] / peaks[0]:.2f}" if len(peaks) >= 3 else " | | "
        print(f"| {command} | {cells}{extra} |")
    finish(args, rows, ratios)
    return 0


if __name__ == "__main__":
    sys.exit(main())
