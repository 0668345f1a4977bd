"""Run the pipeline end to end on the built-in procedural action set, offline, in a few minutes on a laptop CPU:
encode, distil with VideoCompressa, measure what the selection kept, draw it (`compressa_hf.demo`).

Usage:
    compressa demo                                  # writes outputs/demo/
    compressa demo --output_dir /tmp/demo --num_classes 4 --train_per_class 8
"""

from __future__ import annotations

import json


def make_parser():
    from trl import TrlParser

    from compressa_hf.demo import DemoConfig

    return TrlParser((DemoConfig,), prog="compressa demo", allow_abbrev=False)


def main(argv: list[str] | None = None) -> int:
    from compressa_hf.demo import run_demo

    (cfg,) = make_parser().parse_args_and_config(argv)
    print(json.dumps(run_demo(cfg), indent=2))
    return 0
