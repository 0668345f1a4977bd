"""Does VideoCompressa's windowed shuffle (`shuffle_window`, for disk-backed state) change its result on real data?

Usage:
    python bench/shuffle_window.py --window 32 --seeds 3 --output bench/results/shuffle_window_arid6_iid.json
    python bench/shuffle_window.py --source procedural:num_classes=3 --size 32 --seeds 1 --epochs 1 \
        --output /tmp/shuffle_window.json   # a quick look

Runs `compressa evaluate` twice on the same clips, seeds and protocol (Table 1's: arid6_iid, TAEF2, T = 8, 48 px,
width-32 ConvNet, 40 epochs, batch 32; VideoCompressa with Table 1's schedule of 6 passes of 16 videos), once with one
permutation of all videos per pass (`shuffle_window=0`) and once with `--window`, the second with its state on disk
(`state_storage=disk`, which gives the same bytes as memory, so the only difference is the order of the batches).
Prints each run's accuracy per seed and the paired bootstrap interval (test clips x seeds) of window minus global;
writes both to `--output`. This is a check of an implementation choice, not a method comparison, so it reads the
test split like Table 1 does; nothing is chosen from it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared"))


def main() -> int:
    import numpy as np

    from compressa_hf.evaluation.runner import EvaluateArguments, run
    from compressa_hf.evaluation.stats import paired_bootstrap
    from compressa_hf.evaluation.train import TrainConfig
    from compressa_hf.io import atomic_write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=os.path.join(SHARED, "data", "arid6_iid"))
    parser.add_argument("--codec", default=f"tae:{os.path.join(SHARED, 'weights', 'taef2')}")
    parser.add_argument("--codec_dtype", default="bfloat16")
    parser.add_argument("--window", type=int, default=32, help="videos per shuffle window")
    parser.add_argument("--ratios", default="k1")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--num_frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work_dir", default=os.path.join(HERE, "results", "shuffle_window_runs"))
    parser.add_argument("--output", default=os.path.join(HERE, "results", "shuffle_window_arid6_iid.json"))
    args = parser.parse_args()

    runs = {"global": {"shuffle_window": 0}, f"window{args.window}": {"shuffle_window": args.window}}
    runs[f"window{args.window}"]["state_storage"] = "disk"
    reports, walls = {}, {}
    for name, levers in runs.items():
        out = os.path.join(args.work_dir, name)
        os.makedirs(out, exist_ok=True)
        config = os.path.join(out, "methods.json")  # JSON is YAML
        atomic_write_json(config, {"videocompressa": {"passes": 6, "batch_size": 16, **levers}})
        start = time.perf_counter()
        reports[name] = run(
            EvaluateArguments(
                source=args.source,
                output=out,
                methods="videocompressa",
                ratios=args.ratios,
                seeds=args.seeds,
                codec=args.codec,
                codec_dtype=args.codec_dtype,
                num_frames=args.num_frames,
                size=args.size,
                method_config=config,
                full_data=False,
                device=args.device,
                progress=False,
            ),
            TrainConfig(epochs=args.epochs, batch_size=32, width=32),
        )
        walls[name] = time.perf_counter() - start

    a_name, b_name = list(runs)
    rows = []
    for ratio in reports[a_name]["ratios"]:

        def matrix(name, ratio=ratio):
            cells = [c for c in reports[name]["cells"] if c["ratio"] == ratio and c["arch"] == "convnet"]
            return np.array([c["correct"] for c in sorted(cells, key=lambda c: c["seed"])], dtype=float)

        a, b = matrix(b_name), matrix(a_name)
        diff = paired_bootstrap(a, b)
        rows.append(
            {
                "ratio": ratio,
                a_name: (100 * b.mean(1)).round(1).tolist(),
                b_name: (100 * a.mean(1)).round(1).tolist(),
                "difference": diff.to_dict(),
            }
        )
        print(
            f"ratio {ratio:.4g} %: global {100 * b.mean():.1f} (per seed {rows[-1][a_name]}), {b_name} "
            f"{100 * a.mean():.1f} (per seed {rows[-1][b_name]}); {b_name} - global {100 * diff.diff:+.1f} "
            f"[{100 * diff.low:+.1f}, {100 * diff.high:+.1f}] ({diff.verdict})"
        )
    atomic_write_json(args.output, {"args": vars(args), "rows": rows, "wall_s": walls})
    return 0


if __name__ == "__main__":
    sys.exit(main())
