"""Table 1 on this machine: every method against every baseline at equal stored bytes, 3 seeds, three sets.

Usage:
    python bench/table1.py --sets arid6_iid,procedural,arid6 --output bench/results/table1.json
    python bench/table1.py --sets procedural --seeds 1 --epochs 5        # a quick look
    python bench/table1.py --sets arid6_iid --folds 5                     # 5-fold protocol (every clip tested)
    python bench/table1.py --sets arid6_iid --archs convnet,convnet3d,mlp,rnn,gru --methods videocompressa,uniform,\
        random,herding,dm --ratios k1 --suffix _archs --output bench/results/table1_archs.json  # Table 2

Each set is one `compressa evaluate` run (`compressa_hf.evaluation.runner.run`, resumable: a killed bench picks up
at the next unfinished cell) into `--work_dir/<set>`; its report.md / report.png are copied to
`bench/results/table1_<set>.*`. The sets:
- arid6_iid: `../shared/data/arid6_iid`, real dark-video clips, random split (scenes shared): the main real table.
- procedural: the built-in generated set, sized so that a uniform K-frame sample usually misses the class event:
  6 classes, 20 train / 10 test clips per class, 32 frames per clip, an event of 8 frames, cached T = 16 (every
  other frame, so 4 of the 16 cached frames show the event): uniform K = 1 catches it in about 1 clip in 4. One
  ratio (k1), to fit two cores' time. Why not a shorter event: in smaller trials (4 classes, 48 clips, events of
  1-3 of 16 frames) every method, full data included, stayed near chance, since the network averages a test clip's
  16 frames and the scene frames drown the event.
- arid6: `../shared/data/arid6`, scene-disjoint split: how a set generalises to new scenes (small networks stay
  near chance on it, FACTS.md).
- ucf101_19: `../shared/data/ucf101_19`, real UCF101 clips of 19 classes, whole groups held out (its README).
`--source NAME=SPEC` reads a set from elsewhere (the GPU check reads its carried frame folders this way).
The protocol is the paper's (SGD 0.01, momentum 0.9, wd 5e-4, last epoch, T uniform test frames) at a size two CPU
cores can run three times over: 48 x 48 frames, width-32 ConvNet, `--epochs` (default 40) and batch 32 (a
150-clip set in batches of 256 would be one step per epoch). The printed table is accuracy relative to full data.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared"))

SETS = {
    "arid6_iid": {"source": os.path.join(SHARED, "data", "arid6_iid"), "num_frames": 8, "ratios": "k1,k2"},
    "procedural": {
        "source": "procedural:num_classes=6,train_per_class=20,test_per_class=10,length=32,event_length=8,"
        "frame_size=48",
        "num_frames": 16,
        "ratios": "k1",
    },
    "arid6": {"source": os.path.join(SHARED, "data", "arid6"), "num_frames": 8, "ratios": "k1"},
    "ucf101_19": {"source": os.path.join(SHARED, "data", "ucf101_19"), "num_frames": 8, "ratios": "k1,k2"},
}

# Method settings for sets of ~150 clips: VideoCompressa's paper schedule (4 passes of 64 videos) is 12 steps
# here, too few for the scorer; smaller batches and 6 passes give it ~60 steps (as `compressa demo` does).
METHOD_CONFIG = {
    "videocompressa": {"passes": 6, "batch_size": 16},
    "scorer_only": {"passes": 6, "batch_size": 16},
    # DM's defaults (200 steps, 32 real clips per class, width 128) cost ~5 min per cell on 2 cores; half of each.
    "dm": {"iterations": 100, "batch_real": 16, "width": 64},
    # PRISM at DM's scale (its objective is DM's by default), an insertion event every 5 of the middle 60 iterations.
    "prism": {"iterations": 100, "batch_real": 16, "width": 64, "insert_every": 5},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="arid6_iid,procedural,arid6")
    parser.add_argument("--methods", default=None, help="default: every method")
    parser.add_argument("--ratios", default=None, help="override the sets' ratios, e.g. k1")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--archs", default="convnet")
    parser.add_argument("--codec", default=f"tae:{os.path.join(SHARED, 'weights', 'taef2')}")
    # float32: bfloat16 convolutions run ~9x slower on this CPU (310 TAEF2 decodes at 48 px: 104 s against 12 s)
    parser.add_argument("--codec_dtype", default="float32")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work_dir", default=os.path.join(HERE, "results", "table1_runs"))
    parser.add_argument("--output", default=os.path.join(HERE, "results", "table1.json"))
    parser.add_argument("--suffix", default="", help="appended to the copied report names (table1_<set><suffix>.md)")
    parser.add_argument(
        "--folds", type=int, default=0, help="K-fold protocol (`compressa evaluate --folds`); 0: the set's split"
    )
    parser.add_argument(
        "--source", action="append", default=[], metavar="NAME=SPEC", help="read set NAME from SPEC (repeatable)"
    )
    parser.add_argument("--num_frames", type=int, default=None, help="override the sets' T")
    parser.add_argument("--num_workers", type=int, default=1, help="decode workers of the cache pass")
    parser.add_argument("--cell_errors", default="raise", help="raise, or record a failing cell and go on")
    parser.add_argument("--results_dir", default=os.path.join(HERE, "results"), help="where the reports are copied")
    args = parser.parse_args()
    sets = {name: dict(spec) for name, spec in SETS.items()}
    for item in args.source:
        name, eq, spec = item.partition("=")
        if not eq or name not in sets:
            parser.error(f"--source {item!r}: expected NAME=SPEC with NAME one of {sorted(sets)}")
        sets[name]["source"] = spec
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )

    from compressa_hf.distributed import get_state
    from compressa_hf.evaluation.runner import DEFAULT_METHODS, EvaluateArguments, run
    from compressa_hf.evaluation.train import TrainConfig
    from compressa_hf.io import atomic_write_json

    main_process = get_state().is_main_process  # under `accelerate launch` the main process writes the reports
    os.makedirs(args.work_dir, exist_ok=True)
    os.makedirs(args.results_dir, exist_ok=True)
    method_config = os.path.join(args.work_dir, "methods.json")  # JSON is YAML
    atomic_write_json(method_config, METHOD_CONFIG)
    results = {}
    protocol = f"_folds{args.folds}" if args.folds else ""
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        spec = sets[name]
        if ":" not in spec["source"] and not os.path.isdir(spec["source"]):
            print(f"skip {name}: {spec['source']} not found", file=sys.stderr)
            continue
        start = time.perf_counter()
        report = run(
            EvaluateArguments(
                source=spec["source"],
                output=os.path.join(args.work_dir, name + protocol),
                methods=args.methods or DEFAULT_METHODS,
                ratios=args.ratios or spec["ratios"],
                seeds=args.seeds,
                archs=args.archs,
                codec=args.codec,
                codec_dtype=args.codec_dtype,
                num_frames=args.num_frames or spec["num_frames"],
                size=args.size,
                num_workers=args.num_workers,
                method_config=method_config,
                device=args.device,
                progress=False,
                folds=args.folds,
                cell_errors=args.cell_errors,
            ),
            TrainConfig(epochs=args.epochs, batch_size=args.batch_size, width=args.width),
        )
        wall = time.perf_counter() - start
        if not main_process:
            continue
        for ext in ("md", "png", "json"):
            shutil.copyfile(
                os.path.join(args.work_dir, name + protocol, f"report.{ext}"),
                os.path.join(args.results_dir, f"table1_{name}{protocol}{args.suffix}.{ext}"),
            )
        results[name] = {"wall_s": wall, "report": {k: v for k, v in report.items() if k != "cells"}}
        if spec["source"].startswith("procedural"):
            # The source knows where its events are, so this measures the selection itself, apart from any network
            # (the frame and video hit rates of `bench/procedural_size.py`, which reads the same run folder).
            from procedural_size import set_hit_rates

            from compressa_hf.sources import parse_source_spec

            rates = set_hit_rates(
                os.path.join(args.work_dir, name + protocol),
                parse_source_spec(spec["source"]),
                args.num_frames or spec["num_frames"],
                args.size,
                report,
            )
            results[name]["event_hit_rates"] = rates
            print("event hit rates (frame, video) per method and ratio:", json.dumps(rates))
        _print_table(name, report, wall)
    if main_process:
        atomic_write_json(args.output, {"args": vars(args), "cpu_count": os.cpu_count(), "sets": results})
    return 0


def _print_table(name: str, report: dict, wall: float) -> None:
    """Accuracy per method and ratio, and its ratio to full data (the baseline of this bench)."""
    from compressa_hf.evaluation.report import ratio_key

    for arch in report["archs"]:
        table = report["tables"][arch]
        full = table.get("full", {}).get("full", {}).get("mean")
        rkeys = [ratio_key(r) for r in report["ratios"]]
        print(f"\n{name} / {arch} (wall {wall / 60:.1f} min; full data {100 * full:.1f} %)" if full else f"\n{name}")
        print(f"{'method':16s}" + "".join(f"{rk + ' %':>22s}" for rk in rkeys))
        for method in report["methods"]:
            cells = []
            for rk in rkeys:
                e = table.get(method, {}).get(rk)
                if not e or e["status"] != "ok":
                    cells.append(f"{(e or {}).get('status', '-'):>22s}")
                else:
                    rel = f" ({e['mean'] / full:.2f}x full)" if full else ""
                    cells.append(f"{100 * e['mean']:>8.1f}+-{100 * e['std']:<4.1f}{rel:>8s}")
            print(f"{method:16s}" + "".join(cells))
    print(json.dumps({"set": name, "wall_s": round(wall, 1)}))


if __name__ == "__main__":
    sys.exit(main())
