"""Wall time of a DM distillation with 1, 2 and automatic torch threads, on idle cores and beside a busy process.

Usage:
    python bench/threads.py --output bench/results/threads.json
    python bench/threads.py --iterations 20 --repeats 1 --output /tmp/threads.json          # quick look

The setting of issue 24 (item 2): `compressa distill --method dm` on 9 clips (TAEF2 latents, T = 16, 112 px) took
869 s with torch's default of 2 threads while other jobs held the 2 cores, and 94 s with `OMP_NUM_THREADS=1`. Here
the latent cache is encoded once; then, for each condition ("idle": nothing started by the bench; "loaded": the
bench first starts `--load` processes that each spin one core, as another user's job would), each thread setting
runs the same `compressa distill --method dm` command in a fresh process: `OMP_NUM_THREADS=1`, `OMP_NUM_THREADS=2`,
and "auto" (neither OMP_NUM_THREADS nor COMPRESSA_NUM_THREADS set: `compressa_hf.threads` chooses, and the run's
log line says what it chose). Settings alternate within each repeat so that a change in other load on the machine
hits all of them alike; the table reports each setting's median wall time, the count auto chose, and auto against
the best setting of its condition (the goal: within 1.3x). Every run's set must be byte-identical (threads change
no result): the bench checks the published latents. Writes the rows and ratios as JSON.

Other people's jobs on the same machine are not controlled: the "idle" condition is what the machine had then
(the run queue before each run is in the JSON), which is why the comparison that matters is within one condition.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = {"1": {"OMP_NUM_THREADS": "1"}, "2": {"OMP_NUM_THREADS": "2"}, "auto": {}}
SPIN = "import time\nwhile True:\n    time.time()\n"  # one busy core, as another user's job would keep it


def _env(extra: dict, cache: str) -> dict:
    env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "COMPRESSA_NUM_THREADS")
    }
    return env | {"PYTHONPATH": REPO, "COMPRESSA_CACHE": cache} | extra


def _common(args) -> list[str]:
    return ["--source", args.source, "--codec", args.codec, "--num_frames", str(args.num_frames),
            "--size", str(args.size), "--num_workers", "0"]  # fmt: skip


def _run_dm(args, work: str, setting: str, tag: str) -> dict:
    out = os.path.join(work, f"set_{tag}")
    cmd = [sys.executable, "-m", "compressa_hf.cli", "distill", *_common(args), "--ratio", args.ratio,
           "--method", "dm", "--method_options", f"iterations={args.iterations}", "--preview", "false",
           "--output", out]  # fmt: skip
    from compressa_hf.resources import runnable_tasks

    queue = runnable_tasks()
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, env=_env(SETTINGS[setting], os.path.join(work, "cache")), capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    chosen = re.search(r"compressa distill: torch threads (\d+)", proc.stderr)
    digest = hashlib.sha256()
    data = os.path.join(out, "data")
    for root, _, files in sorted(os.walk(data)):
        for name in sorted(files):
            if name.endswith(".parquet"):
                import pyarrow.parquet as pq

                table = pq.read_table(os.path.join(root, name), columns=["video_id", "latents"])
                digest.update(str(table.to_pylist()).encode())
    return {
        "setting": setting,
        "seconds": round(seconds, 2),
        "threads": int(chosen.group(1)) if chosen else None,
        "run_queue_before": queue,
        "latents_sha256": digest.hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="procedural:num_classes=3,train_per_class=3,test_per_class=1")
    parser.add_argument("--codec", default="tae:taef2")
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--ratio", default="k1")
    parser.add_argument("--iterations", type=int, default=200, help="DM steps (DM's default, 200).")
    parser.add_argument("--load", type=int, default=1, help="Busy processes the bench starts beside the run.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--conditions", default="idle,loaded")
    parser.add_argument("--output", default="bench/results/threads.json")
    args = parser.parse_args()

    import json

    work = tempfile.mkdtemp(prefix="bench_threads_")
    rows: list[dict] = []
    try:
        encode = [sys.executable, "-m", "compressa_hf.cli", "encode", *_common(args)]
        subprocess.run(encode, env=_env({}, os.path.join(work, "cache")), check=True, capture_output=True)
        for condition in args.conditions.split(","):
            spinners = []
            if condition == "loaded":
                spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.load)]
                time.sleep(1.0)  # let them reach the run queue
            try:
                for r in range(args.repeats):
                    for setting in SETTINGS:
                        row = _run_dm(args, work, setting, f"{condition}_{setting}_{r}")
                        rows.append({"condition": condition, "repeat": r, **row})
                        print(json.dumps(rows[-1]), flush=True)
            finally:
                for p in spinners:
                    p.kill()
                    p.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    digests = {row["latents_sha256"] for row in rows}
    if len(digests) != 1:
        raise SystemExit(f"the sets differ between thread settings ({len(digests)} digests): see {rows}")
    table, ratios = [], {}
    print("\n| condition | setting | threads | median s | runs (s) |\n|---|---|---|---|---|")
    for condition in args.conditions.split(","):
        medians = {}
        for setting in SETTINGS:
            runs = [row for row in rows if row["condition"] == condition and row["setting"] == setting]
            medians[setting] = statistics.median(row["seconds"] for row in runs)
            chosen = sorted({row["threads"] for row in runs if row["threads"] is not None})
            table.append({"condition": condition, "setting": setting, "threads": chosen, "median_s": medians[setting]})
            seconds = ", ".join(f"{row['seconds']:.1f}" for row in runs)
            print(f"| {condition} | {setting} | {','.join(map(str, chosen))} | {medians[setting]:.1f} | {seconds} |")
        best = min(medians[s] for s in ("1", "2"))
        ratios[f"{condition}: auto / best"] = medians["auto"] / best
        ratios[f"{condition}: 2 threads / 1 thread"] = medians["2"] / medians["1"]
    print()
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(
            {"args": vars(args), "cpu_count": os.cpu_count(), "rows": rows, "table": table, "ratios": ratios},
            f,
            indent=2,
        )


if __name__ == "__main__":
    main()
