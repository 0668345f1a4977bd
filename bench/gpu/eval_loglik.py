"""Test clips per second of `recipes/eval_qwen.py`'s log-likelihood scoring, on a random Qwen2.5-VL from a config.

Usage:
    python bench/gpu/eval_loglik.py --device cuda --model_config ../shared/qwen2_5_vl/config_7b.json \
        --dtype bfloat16 --processor ../shared/qwen2_5_vl --output /tmp/eval_loglik.json

The model is built with random weights directly on the device (`compressa_hf.qwen.models.random_qwen`): loading a
saved 7B would cost more than the scoring being timed, and the cost of a forward does not depend on the weights. Test
clips are the procedural source's test split, T frames at `--size`, with the recipe's defaults (`EvalArguments`: the
default prompt, `max_fps` 2, no frame resize, `choice_batch_size` 128). Each batch goes through
`compressa_hf.qwen.evaluation.evaluate_batch`, the function the recipe calls: collation of the prompt and one cached
forward per batch, then every class continuation. Clip generation is timed apart; the first batch is a warm-up. Writes
JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

# The defaults of `compressa_hf.qwen.evaluation.EvalArguments` that shape the work (a test checks they still agree);
# taken as numbers so that this benchmark imports neither trl nor datasets.
EVAL_MAX_FPS = 2.0
EVAL_CHOICE_BATCH_SIZE = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model_config", required=True)
    parser.add_argument("--processor", required=True, help="folder with the Qwen2.5-VL tokenizer / processor files")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--clips", type=int, default=64, help="test clips scored after the warm-up batch")
    parser.add_argument("--num_classes", type=int, default=6)
    parser.add_argument("--num_frames", type=int, default=16, help="T, frames per test clip")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch_size", type=int, default=8, help="test clips per forward (the recipe's default is 4)")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    import torch
    from transformers import AutoProcessor

    from compressa_hf.clips import ClipConfig
    from compressa_hf.qwen.collator import QwenVideoCollator
    from compressa_hf.qwen.evaluation import choice_token_ids, evaluate_batch
    from compressa_hf.qwen.models import random_qwen, torch_dtype
    from compressa_hf.qwen.prompts import PromptTemplate
    from compressa_hf.qwen.samples import raw_chat_samples

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    total = args.batch_size + args.clips  # one warm-up batch, then the timed clips
    per_class = -(-total // args.num_classes)
    source = f"procedural:num_classes={args.num_classes},train_per_class=1,test_per_class={per_class},frame_size={args.size}"
    prompt = PromptTemplate()
    dataset = raw_chat_samples(source, "test", ClipConfig(num_frames=args.num_frames, size=args.size), prompt=prompt)

    start = time.perf_counter()
    samples = [(i, dataset[i]) for i in range(total)]
    read_s = time.perf_counter() - start

    processor = AutoProcessor.from_pretrained(args.processor)
    start = time.perf_counter()
    model = random_qwen(args.model_config, dtype=torch_dtype(args.dtype), device=device).eval()
    if cuda:
        torch.cuda.synchronize()
    build_s = time.perf_counter() - start
    collator = QwenVideoCollator(processor, padding_side="left", max_fps=EVAL_MAX_FPS)
    choices = choice_token_ids(processor.tokenizer, dataset.class_texts, prompt)

    def score(batch):
        records = evaluate_batch(
            model, collator, batch, dataset.class_texts, prompt, choices, ["loglik"], EVAL_CHOICE_BATCH_SIZE
        )
        if cuda:
            torch.cuda.synchronize()
        return records

    start = time.perf_counter()
    warmup = score(samples[: args.batch_size])
    warmup_s = time.perf_counter() - start
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    records, start = [], time.perf_counter()
    for lo in range(args.batch_size, total, args.batch_size):
        records += score(samples[lo : lo + args.batch_size])
    seconds = time.perf_counter() - start

    scored = [r for r in records if not r.get("skipped")]
    batch = collator([s for _, s in samples[:1]])
    out = {
        "args": vars(args),
        "clips": len(scored),
        "skipped": len(records) - len(scored),
        "classes": len(choices),
        "seconds": seconds,
        "clips_per_s": len(scored) / seconds,
        "warmup_batch_s": warmup_s,
        "warmup_clips": len(warmup),
        "read_s_per_clip": read_s / total,
        "build_s": build_s,
        "visual_tokens_per_clip": int((batch["input_ids"] == processor.video_token_id).sum()),
        "scores_finite": all(math.isfinite(x) for r in scored for x in r["loglik_scores"]),
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": torch.cuda.get_device_name() if cuda else "cpu",
    }
    if cuda:
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(f"{out['clips']} clips in {seconds:.2f} s: {out['clips_per_s']:.2f} clips/s ({out['classes']} classes)")
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
