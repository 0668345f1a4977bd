"""Pre-train SVC, the visual-token compressor of the AVS/SVC paper, to reconstruct a Qwen-VL's frozen vision tower
features from video alone (no text), for `sft_qwen.py --token_compressor svc`.

Usage:
    # on the raw HMDB51 training split (export HMDB51_ROOT=/data/hmdb51 first), the paper's 4 x 4 x 4
    python recipes/pretrain_svc.py --model_name_or_path Qwen/Qwen2.5-VL-7B-Instruct --data hmdb51_full \
        --token_compressor_strides 4 4 4 --max_steps 20000 --output_dir outputs/svc-qwen2.5-vl-7b-hmdb51
    # any source or Hub video set, and push the result with its card
    python recipes/pretrain_svc.py --model_name_or_path Qwen/Qwen2.5-VL-7B-Instruct \
        --source hf:path=org/videos,video_column=video --split train --output_dir outputs/svc \
        --push_to_hub true --hub_model_id me/svc-qwen2.5-vl-7b
    # then fine-tune with it (frozen, or tuned with --tune_token_compressor true)
    accelerate launch recipes/sft_qwen.py --config recipes/qwen2_5_vl_7b/lora/config_hmdb51_full.yaml \
        --token_compressor svc --token_compressor_path outputs/svc-qwen2.5-vl-7b-hmdb51

Flags are the fields of `compressa_hf.qwen.compress.config.PretrainSVCArguments` (the video reader settings are the
SFT recipe's); `--config x.yaml` sets them and flags override it. Rerunning a killed command resumes from its newest
checkpoint. Writes `compressor_config.json`, `compressor_model.safetensors`, `README.md` and `pretrain_summary.json`
into `--output_dir`.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys


def make_parser():
    from trl import TrlParser

    from compressa_hf.qwen.compress.config import PretrainSVCArguments

    return TrlParser(PretrainSVCArguments)


def main(args) -> dict:
    from compressa_hf.qwen.compress.pretrain import pretrain_svc
    from compressa_hf.threads import configure_threads

    # The DataLoader workers decode clips for the whole run: leave them their cores (compressa_hf.threads).
    configure_threads(workers=args.dataloader_num_workers, what="pretrain_svc")
    command = "python recipes/pretrain_svc.py " + shlex.join(sys.argv[1:])
    summary = pretrain_svc(args, command=command)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (args,) = make_parser().parse_args_and_config()
    main(args)
