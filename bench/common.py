"""Helpers shared by the benchmark scripts: peak memory of a child process, and running a measurement in one."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

RESULT_PREFIX = "RESULT "


def peak_rss_mb() -> dict:
    """Peak RSS of this process and of its largest waited-for child (DataLoader workers), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_main_mb": round(own, 1), "peak_rss_worker_mb": round(children, 1)}


def report(result: dict) -> None:
    """Called in the child: print the result line the parent reads."""
    print(RESULT_PREFIX + json.dumps(result | peak_rss_mb()), flush=True)


def run_child(script: str, args: list[str]) -> dict:
    """Run `python script args...` in a fresh process (its own peak RSS) and return its reported result.

    A child that fails has its error output passed on (the tail of it), then the parent exits naming the command.
    """
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-8000:])
        raise SystemExit(f"{script} {' '.join(args)} failed with exit code {proc.returncode}")
    out = proc.stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith(RESULT_PREFIX))[len(RESULT_PREFIX) :])


def finish(args, rows: list[dict], ratios: dict) -> None:
    """Print the ratios under the table and write args, rows and ratios to `args.output` as JSON."""
    import os

    print()
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"args": vars(args), "rows": rows, "ratios": ratios, "cpu_count": os.cpu_count()}, f, indent=2)
