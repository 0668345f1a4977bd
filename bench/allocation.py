"""Issue 21's table: per real set and ratio, the method and budget allocation chosen on a validation split, then
tested once with several seeds against uniform frames, DM and full data at the same bytes.

Usage:
    python bench/allocation.py --sets ucf101_19,arid6_iid --ratios k1,k2 --seeds 5 \\
        --output bench/results/allocation.json                       # resumable: every step is a compressa run
    python bench/allocation.py --sets tiny --ratios k1 --seeds 1 --choice_seeds 1 --epochs 2 --width 8 \\
        --codec pixel --methods uniform,random_frame --dtypes uint8,uint4 --output /tmp/a.json   # a quick look
    python bench/allocation.py --sets ucf101_19 --ratios k1 --size 112 --num_frames 16 --sides size,56 \\
        --work_dir bench/results/allocation_runs_112 --output bench/results/allocation_ucf101_19_112.json
        # 112 px, T = 16: one full-data validation cell (60 clips) ran > 27 min on one of two cores here, so on CPU
        # this is hours per (set, ratio); the GPU suite's table1_112 part runs the anchors at this setting
    python bench/allocation.py --sets arid6_iid --ratios k1 --arch gru --work_dir bench/results/allocation_runs_gru \\
        --output bench/results/allocation_gru_arid6_iid_k1.json   # another evaluation network (choice and test)
    OMP_NUM_THREADS=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 bench/allocation.py ...
        # every run's cells split over two processes (CPU: two gloo ranks); the main process writes the tables
    python bench/allocation.py --merge bench/results/allocation_arid6_iid_k1.json bench/results/allocation_ucf101_19_k1.json \\
        --output bench/results/allocation.json   # one table (+ each choice's validation table) from several runs

Per (set, ratio):
1. Choice: `compressa_hf.evaluation.auto.choose` (what `compressa distill --method auto` runs) over `--methods` x
   `--dtypes` x `--frames` x `--soft` x `--sides`, on a stratified 30 % validation carve of the set's training split
   (`--choice_seeds` seeds). The test split is never read for it.
2. Test: the chosen allocation, the anchors (uniform frames and DM as Table 1 runs them: the planner's K and dtype,
   hard labels, the codec as given) and full data, each a `compressa evaluate` run under the set's test protocol
   (`split`; arid6_iid: `--folds 5`, every clip tested once per seed) with `--seeds` seeds; paired 95 % intervals
   (held-out clips x seeds, `compressa_hf.evaluation.stats.paired_bootstrap`) of the chosen set against each anchor and
   full data, and the chosen set's share of full-data accuracy.
Caveat for the folds protocol: the choice's validation clips come from the train split, which the folds then pool
with the test split, so about 30 % of the train split's clips were seen (as validation, never trained on) by the
choice before they are tested in some fold; the split protocol (ucf101_19) has no such overlap.

Runs live in `--work_dir/<set>/<ratio>/` (`choice/...`, `anchors/`, `chosen/`), each resumable; a killed bench picks
up at the next unfinished cell. The printed table is also written as JSON to `--output`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared"))
sys.path.insert(0, os.path.dirname(HERE))

SETS = {
    "arid6_iid": {"source": os.path.join(SHARED, "data", "arid6_iid"), "num_frames": 8, "folds": 5},
    "ucf101_19": {"source": os.path.join(SHARED, "data", "ucf101_19"), "num_frames": 8, "folds": 0},
    "tiny": {
        "source": "procedural:num_classes=3,train_per_class=8,test_per_class=3,length=8,event_length=2,frame_size=16",
        "num_frames": 4,
        "folds": 0,
        "size": 16,
    },
}
# Table 1's settings for the methods (bench/table1.py): DM at half its defaults, two cores' scale.
METHOD_CONFIG = {"dm": {"iterations": 100, "batch_real": 16, "width": 64}}


@dataclass
class DistillLike:
    """The `compressa distill` arguments `auto.choose` reads."""

    source: str
    work_dir: str
    ratio: str
    split: str
    codec: str
    codec_dtype: str
    num_frames: int
    size: int
    policy: str = "uniform"
    num_workers: int = 1


def seed_matrix(report: dict, row: str, arch: str) -> np.ndarray:
    """`(seeds, held-out clips)` correctness of `row` in a report (folds concatenated in fold order per seed)."""
    by_seed: dict[int, list] = {}
    for cell in sorted(report["cells"], key=lambda c: (c["seed"], c.get("fold", 0))):
        if cell["method"] == row and cell["arch"] == arch and cell["status"] == "ok":
            by_seed.setdefault(cell["seed"], []).extend(cell["correct"])
    return np.array([by_seed[s] for s in sorted(by_seed)], dtype=np.float64)


def run_one(name, spec, ratio, args, work, method_config) -> dict:
    """The choice and the test runs of one (set, ratio); returns its table entry."""
    from compressa_hf.evaluation.auto import AutoArguments, choose
    from compressa_hf.evaluation.runner import EvaluateArguments, run
    from compressa_hf.evaluation.stats import paired_bootstrap
    from compressa_hf.evaluation.train import TrainConfig

    size = spec.get("size", args.size)
    num_frames = args.num_frames or spec["num_frames"]
    train_cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, width=args.width)
    auto = AutoArguments(
        auto_methods=args.methods,
        auto_dtypes=args.dtypes,
        auto_frames_per_video=args.frames,
        auto_soft_labels=args.soft,
        auto_store_sides=args.sides,
        auto_seeds=args.choice_seeds,
        auto_epochs=args.epochs,
        auto_batch_size=args.batch_size,
        auto_width=args.width,
        auto_arch=args.arch,
    )
    like = DistillLike(
        source=spec["source"], work_dir=os.path.join(work, "choice"), ratio=ratio, split="train", codec=args.codec,
        codec_dtype=args.codec_dtype, num_frames=num_frames, size=size,
    )  # fmt: skip
    selection = choose(like, auto, seed=0, method_config=method_config)
    chosen = selection["chosen"]

    common = dict(
        source=spec["source"], ratios=chosen["ratio"], seeds=args.seeds, archs=args.arch, codec_dtype=args.codec_dtype,
        num_frames=num_frames, size=size, folds=spec["folds"], method_config=method_config,
    )  # fmt: skip
    anchors = run(
        EvaluateArguments(output=os.path.join(work, "anchors"), methods="uniform,dm", codec=args.codec, **common),
        train_cfg,
    )
    row = chosen["method"] + ("+soft" if chosen["soft_labels"] else "")
    mine = run(
        EvaluateArguments(
            output=os.path.join(work, "chosen"),
            methods=chosen["method"],
            codec=chosen["codec"],
            dtype=chosen["dtype"],
            frames_per_video=chosen["frames_per_video"],
            soft_labels=bool(chosen["soft_labels"]),
            soft_label_dtype=chosen["soft_labels"] or "float16",
            full_data=False,
            **common,
        ),
        train_cfg,
    )
    ours = seed_matrix(mine, row, args.arch)
    entry = {
        "set": name,
        "ratio": ratio,
        "protocol": anchors["protocol"]["name"],
        "num_frames": num_frames,
        "size": size,
        "arch": args.arch,
        "held_out_clips": anchors["test_clips"],
        "chosen": chosen,
        "choice_table": selection["table"],
        "validation_full": selection["full_data"],
        "test": {"chosen": {"mean": float(ours.mean()), "per_seed": ours.mean(axis=1).tolist()}},
        "against": {},
    }
    for other in ("uniform", "dm", "full"):
        theirs = seed_matrix(anchors, other, args.arch)
        entry["test"][other] = {"mean": float(theirs.mean()), "per_seed": theirs.mean(axis=1).tolist()}
        entry["against"][other] = paired_bootstrap(ours, theirs).to_dict()
    entry["share_of_full"] = entry["test"]["chosen"]["mean"] / entry["test"]["full"]["mean"]
    entry["full_minus_uniform"] = paired_bootstrap(
        seed_matrix(anchors, "full", args.arch), seed_matrix(anchors, "uniform", args.arch)
    ).to_dict()
    return entry


def setting(entry: dict) -> str:
    """`48 px, T = 8, convnet`: the frame size, T and evaluation network an entry ran at (entries written before they
    were recorded: the defaults)."""
    return f"{entry.get('size', 48)} px, T = {entry.get('num_frames', 8)}, {entry.get('arch', 'convnet')}"


def to_markdown(entries: list[dict]) -> str:
    def diff(d):
        return f"{100 * d['diff']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"

    lines = [
        "| set | ratio | protocol | chosen on validation | val. % | test % | uniform % | DM % | full % | - uniform | "
        "- DM | - full | share of full | full - uniform |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        c, t, a = e["chosen"], e["test"], e["against"]
        k = "plan" if c["frames_per_video"] is None else c["frames_per_video"]
        side = "" if c["store_side"] is None else f", {c['store_side']} px"
        what = f"{c['method']}, {c['dtype']}, K={k}, {c['soft_labels'] or 'hard'} labels{side}"
        lines.append(
            f"| {e['set']} | {e['ratio']} | {setting(e)}, {e['protocol']} ({e['held_out_clips']} clips) | {what} | "
            f"{100 * c['mean']:.1f} | {100 * t['chosen']['mean']:.1f} | {100 * t['uniform']['mean']:.1f} | "
            f"{100 * t['dm']['mean']:.1f} | {100 * t['full']['mean']:.1f} | {diff(a['uniform'])} | {diff(a['dm'])} | "
            f"{diff(a['full'])} | {100 * e['share_of_full']:.1f} % | {diff(e['full_minus_uniform'])} |"
        )
    from compressa_hf.evaluation.auto import table_markdown

    for e in entries:  # what each lever gave: every candidate of the choice, on the validation carve
        lines += ["", f"Validation table, {e['set']} {e['ratio']} ({setting(e)}):", ""]
        lines.append(table_markdown({"table": e["choice_table"], "full_data": e["validation_full"]}))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="ucf101_19,arid6_iid")
    parser.add_argument("--ratios", default="k1,k2")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--choice_seeds", type=int, default=2)
    parser.add_argument("--methods", default="uniform,dm")
    parser.add_argument("--dtypes", default="uint8,uint4")
    parser.add_argument("--frames", default="plan")
    parser.add_argument("--soft", default="none,float16")
    parser.add_argument("--sides", default="size,32")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--arch", default="convnet", help="the network of the choice and the test (compressa_hf.nets)")
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--num_frames", type=int, default=0, help="frames per clip T (0: the set's, 8)")
    parser.add_argument("--codec", default=f"tae:{os.path.join(SHARED, 'weights', 'taef2')}")
    parser.add_argument("--codec_dtype", default="float32")
    parser.add_argument("--work_dir", default=os.path.join(HERE, "results", "allocation_runs"))
    parser.add_argument("--output", default=os.path.join(HERE, "results", "allocation.json"))
    parser.add_argument(
        "--merge", nargs="+", metavar="JSON", help="no runs: join the entries of earlier outputs into --output (+ .md)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%X")
    from compressa_hf.io import atomic_write_json

    if args.merge:
        entries = []
        for path in args.merge:
            try:
                with open(path) as f:
                    entries += json.load(f)["entries"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                parser.error(f"--merge: {path} is not an output of this bench ({type(e).__name__}: {e})")
        return write_tables(entries, {"merged": args.merge}, args.output)
    from compressa_hf.distributed import get_state

    # under `accelerate launch` every process runs the steps (their runs split the cells); the main one writes
    main_process = get_state().is_main_process
    os.makedirs(args.work_dir, exist_ok=True)
    method_config = os.path.join(args.work_dir, "methods.json")
    atomic_write_json(method_config, METHOD_CONFIG)
    entries = []
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        if name not in SETS:
            parser.error(f"unknown set {name!r}; known: {sorted(SETS)}")
        for ratio in [r.strip() for r in args.ratios.split(",") if r.strip()]:
            work = os.path.join(args.work_dir, name, ratio)
            entries.append(run_one(name, SETS[name], ratio, args, work, method_config))
            if main_process:
                atomic_write_json(args.output, {"args": vars(args), "entries": entries})
    return write_tables(entries, vars(args), args.output) if main_process else 0


def write_tables(entries: list[dict], args: dict, output: str) -> int:
    """Write `entries` as JSON to `output` and as markdown beside it, and print the markdown."""
    from compressa_hf.io import atomic_write_json, atomic_write_text

    atomic_write_json(output, {"args": args, "entries": entries})
    table = to_markdown(entries)
    atomic_write_text(os.path.splitext(output)[0] + ".md", table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
