"""Table 1 at the paper's resolution (112 x 112, T = 16, width-128 ConvNet) on the GPU, within a deadline.

The sets travel as frame folders (`bench/gpu/frames.py`, made by `prepare.sh`): ucf101_19 first (at 48 px on CPU
its full split trained no better than one random frame per clip, so it ranked nothing), then arid6_iid. Each set is
one `bench/table1.py` run (every method, `--seeds` seeds, k1 and k2) in its own process group, given what is left of
the deadline shared among the sets still to run. A method that fails is an `error` cell, not the end of the run
(`--cell_errors record`: most baselines have never run on CUDA). A run that outlives its share is
stopped, and what it finished counts: the runner's cells go seed by seed (every method of seed 0, then seed 1, ...),
so a stopped run leaves whole seeds. The output JSON holds, per set, the table of `bench/table1_cells.py` (accuracy
per seed and mean, paired bootstrap differences against uniform, DM and full data) and every finished cell, so a
later GPU session goes on from them (`--resume`; `run.py` passes the newest `bench/results/gpu_*.json` that holds
some).

Usage:
    python bench/gpu/table1_gpu.py --frames .gpu/data --deadline_s 230 --output /tmp/table1_112.json   # GPU
    python bench/gpu/table1_gpu.py --dry_run --frames /tmp/f --output /tmp/t.json   # CPU, tiny: the dry run's part

Settings (the paper's, Appendix: SGD 0.01, momentum 0.9, wd 5e-4, 100 epochs, width 128) except the batch: 32, as
on CPU, since a 113-row set in batches of 256 is one step an epoch. Method settings are `bench/table1.py`'s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
sys.path[:0] = [BENCH, HERE]

from table1_cells import read_cells, table_rows  # noqa: E402

SETS = ("ucf101_19", "arid6_iid")
ANCHORS = ["uniform", "dm", "full"]
GPU = {"num_frames": 16, "size": 112, "width": 128, "epochs": 100, "batch_size": 32, "seeds": 5}
# The dry run: every step of the path (frame folders, cache pass, two selection methods, full data, the table with
# its intervals) at sizes two CPU cores run in seconds: the pixel codec (TAEF2 on CPU costs ~4 s a cell here; the
# `distill` part's dry run runs it) and no synthesis method (DM: ~1 min a cell here).
DRY = {"num_frames": 4, "size": 32, "width": 8, "epochs": 2, "batch_size": 8, "seeds": 2}
DRY_METHODS = "uniform,random_frame"
DRY_SOURCE = "procedural:num_classes=2,train_per_class=4,test_per_class=2,length=8,frame_size=32"


def restore(cells_file: str, work: str) -> int:
    """Write an earlier run's finished cells back into `work/<set>/cells/...`; returns how many. `error` cells are
    left out, so a later session runs them again (after a fix, or with more memory free)."""
    with open(cells_file) as f:
        saved = json.load(f)
    if "parts" in saved:  # a run.py summary (bench/results/gpu_<date>.json)
        saved = saved["parts"].get("table1_112", {}).get("result") or {}
    n = 0
    for name, entry in saved.get("sets", {}).items():
        for rel, cell in entry.get("cells", {}).items():
            if cell.get("status") == "error":
                continue
            path = os.path.join(work, name, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                json.dump(cell, f)
            n += 1
    return n


def finished_cells(run: str) -> dict[str, dict]:
    """{path under the run folder: cell} of every cell file of a table1 run folder."""
    found = {}
    for dirpath, _, files in os.walk(os.path.join(run, "cells")):
        for fname in files:
            if fname.endswith(".json"):
                path = os.path.join(dirpath, fname)
                with open(path) as f:
                    found[os.path.relpath(path, run)] = json.load(f)
    return found


def run_set(name: str, source: str, settings: dict, args, work: str, seconds: float) -> dict:
    """One table1 run of `name`, stopped after `seconds`; what it finished."""
    cmd = [
        sys.executable, os.path.join(BENCH, "table1.py"), "--sets", name, "--source", f"{name}={source}",
        "--num_frames", str(settings["num_frames"]), "--size", str(settings["size"]),
        "--width", str(settings["width"]), "--epochs", str(settings["epochs"]),
        "--batch_size", str(settings["batch_size"]), "--seeds", str(settings["seeds"]),
        "--device", args.device, "--codec", args.codec, "--codec_dtype", args.codec_dtype,
        "--num_workers", str(args.num_workers), "--work_dir", work, "--results_dir", os.path.join(work, "reports"),
        "--output", os.path.join(work, f"{name}.json"),
        "--cell_errors", "record",
    ]  # fmt: skip
    if args.methods:
        cmd += ["--methods", args.methods]
    start = time.perf_counter()
    with open(os.path.join(work, f"{name}.log"), "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = proc.wait(timeout=max(1.0, seconds))
            status = "finished" if returncode == 0 else f"failed (exit {returncode})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = "stopped at its share of the deadline"
    wall = time.perf_counter() - start
    run = os.path.join(work, name)
    cells = finished_cells(run)
    rows = table_rows(read_cells(run, "convnet"), ANCHORS) if cells else []
    with open(os.path.join(work, f"{name}.log")) as f:
        tail = f.read()[-3000:]
    print(f"{name}: {status} after {wall:.0f} s, {len(cells)} cells", flush=True)
    return {"status": status, "wall_s": round(wall, 1), "rows": rows, "cells": cells, "log_tail": tail}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", required=True, help="folder holding <set>/ frame folders (frames.py)")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--methods", default=None, help=f"default: every method (dry run: {DRY_METHODS})")
    parser.add_argument("--deadline_s", type=float, default=230.0, help="for all sets together")
    parser.add_argument("--work_dir", default=None, help="run folders (default: a folder beside --output)")
    parser.add_argument("--resume", default=None, help="JSON of an earlier run (this script's, or a summary part)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--codec", default="tae:taef2")
    parser.add_argument("--codec_dtype", default="bfloat16")
    parser.add_argument("--num_workers", type=int, default=8)
    parser.add_argument("--output", required=True)
    parser.add_argument("--dry_run", action="store_true", help="tiny settings on CPU (the dry run of run.py)")
    args = parser.parse_args()
    start = time.perf_counter()
    settings = DRY if args.dry_run else GPU
    if args.dry_run:
        args.methods = args.methods or DRY_METHODS
        args.device, args.codec, args.codec_dtype, args.num_workers = "cpu", "pixel", "float32", 0
    work = args.work_dir or os.path.splitext(args.output)[0] + "_runs"
    os.makedirs(work, exist_ok=True)
    restored = restore(args.resume, work) if args.resume else 0
    names = [s for s in args.sets.split(",") if s]
    if args.dry_run:  # procedural clips stand in for the carried sets' frames
        from frames import write_frames

        for name in names:
            if not os.path.isdir(os.path.join(args.frames, name)):
                write_frames(
                    DRY_SOURCE, os.path.join(args.frames, name), settings["num_frames"], settings["size"], 90, 0
                )
    result = {"settings": settings, "methods": args.methods or "all", "restored_cells": restored, "sets": {}}
    for i, name in enumerate(names):
        folder = os.path.join(args.frames, name)
        if not os.path.isdir(folder):
            result["sets"][name] = {"status": f"skipped: no frame folder {folder}"}
            continue
        left = args.deadline_s - (time.perf_counter() - start)
        share = left / (len(names) - i)
        result["sets"][name] = run_set(name, f"framefolder:root={folder}", settings, args, work, share)
        with open(args.output + ".tmp", "w") as f:  # what finished so far, should this process be killed
            json.dump(result, f)
        os.replace(args.output + ".tmp", args.output)
    return 0 if all("rows" in s and s["rows"] for s in result["sets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
