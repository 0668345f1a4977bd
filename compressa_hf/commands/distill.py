"""Distil a labelled video split with a method of the registry (VideoCompressa by default) and write a Hub dataset
repo: parse, `compressa_hf.distill` (the API; `compressa_hf.distillation.pipeline.run`), print the summary.

Usage:
    compressa distill --source ../shared/data/arid6 --ratio 0.41 --output outputs/arid6_distilled \
        --codec tae:../shared/weights/taef2
    compressa distill --source procedural --ratio 0.5 --output out/proc --dry-run      # the plan, no compute
    compressa distill ... --resume                                                    # after a kill
    accelerate launch --multi_gpu --num_processes 2 -m compressa_hf.cli distill --source ... --ratio ... --output ...

    # the method and allocation (dtype, K) that win on a validation split of your clips, chosen and distilled in one
    # command (config `auto_ratio_<r>`; the card holds the validation table; the test split is never read):
    compressa distill --source path/to/clips --ratio k1 --output outputs/my_distilled --method auto \
        --auto_methods uniform,random_frame,dm --auto_dtypes uint8,uint4 --auto_frames_per_video plan,2

    # the set that wins `compressa evaluate` on your data, published the same way (config `<method>_ratio_<r>`).
    # Measured on real clips (BENCHMARKS.md, 48 px, 5-10 seeds): on arid6_iid no VideoCompressa setting beat uniform
    # frames or DM, and DM had the best mean at k1 and k2; on ucf101_19 all are level at k1, and at k2 two uniform
    # frames trail random frames, AVS and VideoCompressa by 4-5 points (VideoCompressa - random frames -0.3 [-4.9,
    # +4.1]). So there is no one method for all data: validate (above), or for data like arid6_iid:
    compressa distill --source path/to/clips --ratio k1 --output outputs/my_distilled --method uniform
    compressa distill --source path/to/clips --ratio k1 --output outputs/my_distilled --method dm \
        --method_options iterations=500,lr=0.01
    compressa distill ... --method lvdd --method_options methods.yaml   # {select: kmeans} or evaluate's {lvdd: {...}}

What the steps are, what each method's rows hold and how options are given: `compressa_hf.distillation.pipeline`.
"""

from __future__ import annotations

import json
import shlex
import sys


def make_parser():
    from trl import TrlParser

    from compressa_hf.distillation.arguments import DistillArguments
    from compressa_hf.distillation.videocompressa import VideoCompressaConfig
    from compressa_hf.evaluation.auto import AutoArguments

    return TrlParser(
        (DistillArguments, VideoCompressaConfig, AutoArguments), prog="compressa distill", allow_abbrev=False
    )


def main(argv: list[str] | None = None) -> int:
    from compressa_hf.api import distill
    from compressa_hf.distributed import get_state

    args, vc_cfg, auto = make_parser().parse_args_and_config(argv)
    command = "compressa distill " + shlex.join(argv if argv is not None else sys.argv[1:])
    summary = distill(args, videocompressa=vc_cfg, auto=auto, command=command).summary
    if get_state().is_main_process:
        if summary.get("dry_run"):
            print(summary["plan_text"])
        print(json.dumps(summary, indent=2, default=str))
    return 0
