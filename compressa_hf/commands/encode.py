"""Stage 1: encode every sampled frame of a split once into a resumable latent cache.

Usage:
    compressa encode --source ../shared/data/arid6 --split train --output_dir outputs/arid6_cache \
        --codec tae:../shared/weights/taef2
    accelerate launch --multi_gpu --num_processes 2 -m compressa_hf.cli encode --source procedural --output_dir out/c
"""

from __future__ import annotations

import json
import logging

logger = logging.getLogger(__name__)


def make_parser():
    from trl import TrlParser

    from compressa_hf.cache import EncodeConfig

    return TrlParser((EncodeConfig,), prog="compressa encode", allow_abbrev=False)


def main(argv: list[str] | None = None) -> int:
    from compressa_hf.api import encode
    from compressa_hf.distributed import get_state

    (cfg,) = make_parser().parse_args_and_config(argv)
    out = encode(cfg)
    if get_state().is_main_process:
        print(json.dumps(out.summary, indent=2))
    return 0
