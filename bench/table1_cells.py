"""The finished cells of a `compressa evaluate` run folder as a table, before (or without) the run's own report.

`bench/table1.py` writes one JSON per finished (network, method, ratio, seed) cell under `<run>/cells/` and its
report only when every cell is done; a Table 1 run on two CPU cores takes hours. This prints what is finished:
per method and ratio the seeds done, accuracy per seed and mean, frames per row (mean and range for sets whose rows
differ), stored bytes, compress and train seconds, and the paired bootstrap difference (test clips x the seeds both
sides finished; `compressa_hf.evaluation.stats.paired_bootstrap`) against each `--against` method at the same ratio.

Usage:
    python bench/table1_cells.py --run bench/results/table1_runs/arid6_iid --against uniform,dm \\
        --output bench/results/table1_arid6_iid_new_rows_cells.json
    python bench/table1_cells.py --run bench/results/table1_runs/arid6_iid_folds5 --against uniform,dm,full  # folds
Under `--folds K` a seed's number pools its K folds (every clip tested once), counted once all K are finished.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from collections import defaultdict

import numpy as np

from compressa_hf.evaluation.stats import paired_bootstrap
from compressa_hf.io import atomic_write_json


def read_cells(run: str, arch: str) -> dict[tuple[str, float], dict[int, dict]]:
    """{(method, ratio): {seed: cell}} of the finished ("ok") cells of `arch` (ratio None: full data).

    Under `--folds K` a seed counts once all K of its folds are finished, as one cell pooling them: `correct` is the
    folds' lists in fold order (every pooled clip once), `accuracy` its mean, seconds and frames per row the folds'
    means, stored bytes and budget the largest fold's.
    """
    found: dict[tuple[str, float, int], dict[int, dict]] = defaultdict(dict)
    for path in sorted(glob.glob(os.path.join(run, "cells", arch, "*", "*.json"))):
        with open(path) as f:
            cell = json.load(f)
        if cell.get("status") == "ok":
            ratio = None if cell["ratio"] is None else round(cell["ratio"], 5)  # None: the full-data reference
            found[cell["method"], ratio, cell["seed"]][cell.get("fold", -1)] = cell
    folds = 1 + max((fold for by_fold in found.values() for fold in by_fold), default=-1)
    cells: dict[tuple[str, float], dict[int, dict]] = defaultdict(dict)
    for (method, ratio, seed), by_fold in found.items():
        if folds == 0:  # the split protocol: one cell per seed
            cells[method, ratio][seed] = by_fold[-1]
        elif len(by_fold) == folds:
            cells[method, ratio][seed] = _pool([by_fold[f] for f in range(folds)])
    return cells


def _pool(parts: list[dict]) -> dict:
    """One seed's fold cells as one cell over every pooled clip (see `read_cells`)."""
    correct = [c for part in parts for c in part["correct"]]
    stats = [p.get("frames_per_row_stats") for p in parts]
    return {
        "accuracy": float(np.mean(correct)),
        "correct": correct,
        "rows": parts[0]["rows"],
        "frames_per_row": float(np.mean([p["frames_per_row"] for p in parts])),
        **(
            {"frames_per_row_stats": {"min": min(s["min"] for s in stats), "max": max(s["max"] for s in stats)}}
            if all(stats)
            else {}
        ),
        "stored_bytes": max(p["stored_bytes"] for p in parts),
        "budget_bytes": max(p["budget_bytes"] for p in parts),
        "compress_s": float(np.mean([p["compress_s"] for p in parts])),
        "train_s": float(np.mean([p["train_s"] for p in parts])),
    }


def table_rows(cells: dict[tuple[str, float], dict[int, dict]], anchors: list[str]) -> list[dict]:
    """One row per (method, ratio) of `read_cells`' cells: accuracy per seed and mean, rows, frames, bytes, seconds,
    and under `against` the paired bootstrap difference to each anchor method at the same ratio (`full`: full data)
    over the test clips x the seeds both finished; `full` and `full+aug` (full data trained with augmentation) are
    found at their own, ratio-less cells."""
    rows = []
    for (method, ratio), by_seed in sorted(cells.items(), key=lambda kv: (kv[0][1] or float("inf"), kv[0][0])):
        seeds = sorted(by_seed)
        acc = [100 * by_seed[s]["accuracy"] for s in seeds]
        frames = [by_seed[s]["frames_per_row"] for s in seeds]
        ranges = [by_seed[s].get("frames_per_row_stats") for s in seeds]
        row = {
            "method": method,
            "ratio": ratio,
            "seeds": seeds,
            "accuracy": acc,
            "mean": float(np.mean(acc)),
            "rows": [by_seed[s]["rows"] for s in seeds],
            "frames_per_row": float(np.mean(frames)),
            "frames_range": [min(r["min"] for r in ranges), max(r["max"] for r in ranges)] if all(ranges) else None,
            "stored_bytes": [by_seed[s]["stored_bytes"] for s in seeds],
            "budget_bytes": by_seed[seeds[0]]["budget_bytes"],
            "compress_s": float(np.mean([by_seed[s]["compress_s"] for s in seeds])),
            "train_s": float(np.mean([by_seed[s]["train_s"] for s in seeds])),
            "against": {},
        }
        for anchor in anchors:
            full = anchor.split("+")[0] == "full"  # full data, plain or as a `+aug` row, has no ratio
            other = cells.get((anchor, None if full else ratio), {})
            shared = [s for s in seeds if s in other]
            if anchor == method or not shared:
                continue
            a = np.array([by_seed[s]["correct"] for s in shared], dtype=float)
            b = np.array([other[s]["correct"] for s in shared], dtype=float)
            row["against"][anchor] = paired_bootstrap(a, b).to_dict() | {"seeds": shared}
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="an evaluate --output folder (bench/results/table1_runs/<set>)")
    parser.add_argument("--arch", default="convnet")
    parser.add_argument(
        "--against",
        default="uniform,dm",
        help="methods each row is compared with at the same ratio (`full`: full data)",
    )
    parser.add_argument("--output", default=None, help="JSON of the table")
    args = parser.parse_args()
    cells = read_cells(args.run, args.arch)
    anchors = [m for m in args.against.split(",") if m]
    rows = table_rows(cells, anchors)
    print(f"| method | ratio % | seeds | accuracy % per seed | rows x frames | stored / budget bytes | compress s | "
          f"train s | {' | '.join(f'- {a} [95 %]' for a in anchors)} |")  # fmt: skip
    print("|---" * (8 + len(anchors)) + "|")
    for r in rows:
        frames = f"{r['frames_per_row']:.2f}" + (
            f" [{r['frames_range'][0]}-{r['frames_range'][1]}]" if r["frames_range"] else ""
        )
        diffs = []
        for anchor in anchors:
            d = r["against"].get(anchor)
            diffs.append(f"{100 * d['diff']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]" if d else "")
        print(
            f"| {r['method']} | {'full' if r['ratio'] is None else format(r['ratio'], '.3f')} | {len(r['seeds'])} | {', '.join(f'{a:.1f}' for a in r['accuracy'])} | "
            f"{r['rows'][0]} x {frames} | {max(r['stored_bytes']):,} / {r['budget_bytes']:,} | {r['compress_s']:.0f} | "
            f"{r['train_s']:.0f} | {' | '.join(diffs)} |"
        )
    if args.output:
        atomic_write_json(args.output, {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
