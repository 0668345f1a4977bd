"""Draw what a distilled set kept: per video, the T sampled source frames with the kept ones framed in red, and
below them the K distilled frames decoded from the stored latents (`compressa_hf.strips`).

Usage:
    compressa show outputs/demo/distilled --config_name ratio_1 --num_videos 6 --output_dir outputs/demo/show
"""

from __future__ import annotations

import json


def make_parser():
    from trl import TrlParser

    from compressa_hf.strips import ShowConfig

    return TrlParser((ShowConfig,), prog="compressa show", allow_abbrev=False)


def main(argv: list[str] | None = None) -> int:
    from compressa_hf.strips import show

    argv = list(argv or [])
    if argv and not argv[0].startswith("-"):  # `compressa show DIR ...`
        argv = ["--repo", argv[0], *argv[1:]]
    (cfg,) = make_parser().parse_args_and_config(argv)
    if not cfg.repo:
        raise SystemExit("compressa show: --repo DIR is required (a folder written by `compressa distill`)")
    print(json.dumps({"pictures": show(cfg)}, indent=2))
    return 0
