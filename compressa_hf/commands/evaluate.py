"""Every method against every baseline at the same stored bytes: train a network from scratch on each compressed
set, test it on the real test split, and write a Table-1-style report with seeds, standard deviations, wall times
and paired bootstrap intervals.

Usage:
    compressa evaluate --source procedural:num_classes=4 --ratios k1 --seeds 3 --epochs 30 --output out/eval_proc
    compressa evaluate --source ../shared/data/arid6_iid --codec tae:../shared/weights/taef2 \
        --num_frames 8 --size 48 --ratios k1,k2 --seeds 3 --archs convnet,convnet3d --output out/eval_arid6_iid
    compressa evaluate ... --methods videocompressa,random,uniform --method_config methods.yaml   # {dm: {iterations: 500}}
    compressa evaluate ... (same command after a kill: finished cells are kept)
    compressa evaluate ... --soft_labels true   # + <method>+soft rows: teacher soft labels paid from the same bytes
    compressa evaluate --source ../shared/data/arid6_iid --codec tae:../shared/weights/taef2 \
        --num_frames 8 --size 48 --ratios k1 --seeds 3 --folds 5 --output out/eval_arid6_iid_folds5
    compressa evaluate --source ../shared/data/arid6_iid --codec tae:../shared/weights/taef2 \
        --num_frames 8 --size 48 --ratios k1 --seeds 3 --validation_fraction 0.3 --output out/sweep_arid6_iid_val

`--folds 5` pools the train and test splits into 5 stratified folds and trains each method on 4 folds, testing on the
fifth, so every clip (arid6_iid: 258, not 103) is tested once per seed and the paired intervals narrow. Use it on a
random split whose scenes appear in both splits (arid6_iid), not on one made scene- or subject-disjoint on purpose
(pooling would put one scene on both sides). `--validation_fraction 0.3` trains on 70 % of the train split and tests
on a stratified held-out 30 %, never reading the test split: choose settings (a sweep) with it, never on test clips.
UCF101-named clips are held out in whole groups (`--validation_groups`: auto, none or a regex).

Writes `<output>/report.md`, `report.json` and `report.png`; see `compressa_hf.evaluation.runner` for the layout.
"""

from __future__ import annotations

import json


def make_parser():
    from trl import TrlParser

    from compressa_hf.evaluation.runner import EvaluateArguments
    from compressa_hf.evaluation.train import TrainConfig

    return TrlParser((EvaluateArguments, TrainConfig), prog="compressa evaluate", allow_abbrev=False)


def main(argv: list[str] | None = None) -> int:
    from compressa_hf.api import evaluate

    args, train_cfg = make_parser().parse_args_and_config(argv)
    out = evaluate(args, train=train_cfg)
    print(out.markdown)
    print(json.dumps({"output": out.output, "cells": len(out.report["cells"])}))
    return 0
