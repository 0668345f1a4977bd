"""Benchmark of the SFT input pipeline: distilled chat samples (K frames) against raw-video ones (T frames).

Usage (a distilled set of the procedural source, then both pipelines on the same source's training split):
    compressa distill --source procedural:num_classes=4,train_per_class=8 --frames_per_video 4 --codec pixel \
        --size 112 --output /tmp/loader_bench_set
    python bench/loader.py --distilled /tmp/loader_bench_set --source procedural:num_classes=4,train_per_class=8 \
        --num_frames 16 --size 112 --samples 128 --output bench/results/loader.json

For each pipeline, in a fresh process: `samples` builds chat samples only (distilled: parquet row -> decode latents
with the card's codec on every access; distilled_once: `load_chat_dataset(..., decode_once=True)`, latents decoded
once into a cached frames column, whose one-time cost is reported as `prepare_s`; raw: decode or generate T frames,
resize + crop), `batches` adds `QwenVideoCollator` (chat
template, tokenizer, Qwen2.5-VL video processor), i.e. what a trainer's DataLoader does per step, in the main process
(num_workers=0) so the numbers are per core. Visual tokens are counted in the collated `input_ids`. Prints a markdown
table and writes the same numbers as JSON.
"""

from __future__ import annotations

import argparse
import time

from common import finish, report, run_child


def _dataset(args):
    from compressa_hf.clips import ClipConfig
    from compressa_hf.qwen.samples import load_chat_dataset, raw_chat_samples

    if args.pipeline.startswith("distilled"):
        import tempfile

        from compressa_hf.store import read_meta

        config = args.config or next(iter(read_meta(args.distilled)))
        once = args.pipeline == "distilled_once"
        # a fresh datasets cache, so that decode_once really decodes here
        return load_chat_dataset(args.distilled, config, decode_once=once, cache_dir=tempfile.mkdtemp())
    return raw_chat_samples(args.source, args.split, ClipConfig(num_frames=args.num_frames, size=args.size))


PIPELINES = ("distilled", "distilled_once", "raw")


def _indices(n: int, count: int) -> list[int]:
    return [i % n for i in range(count)]


def child(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    ds = _dataset(args)
    prepare_s = time.perf_counter() - start
    order = _indices(len(ds), args.samples)
    ds[0]  # warm-up: imports, codec, first file open
    if args.stage == "samples":
        start = time.perf_counter()
        frames = sum(len(ds[i]["videos"][0]) for i in order)
        seconds = time.perf_counter() - start
        return {
            "samples": len(order),
            "seconds": seconds,
            "frames_per_sample": frames / len(order),
            "prepare_s": prepare_s,
        }

    from transformers import AutoProcessor

    from compressa_hf.qwen.collator import QwenVideoCollator

    processor = AutoProcessor.from_pretrained(args.processor)
    collator = QwenVideoCollator(processor)
    video_id = processor.video_token_id
    collator([ds[0]])  # warm-up
    visual = tokens = frames = 0
    start = time.perf_counter()
    for b in range(0, len(order), args.batch_size):
        items = [ds[i] for i in order[b : b + args.batch_size]]
        batch = collator(items)
        visual += int((batch["input_ids"] == video_id).sum())
        tokens += int(batch["attention_mask"].sum())
        frames += sum(len(s["videos"][0]) for s in items)
    seconds = time.perf_counter() - start
    n = len(order)
    return {
        "samples": n,
        "seconds": seconds,
        "frames_per_sample": frames / n,
        "visual_tokens_per_sample": visual / n,
        "tokens_per_sample": tokens / n,
        "prepare_s": prepare_s,
    }


def measure(args, pipeline: str, stage: str) -> dict:
    skip = ("output", "pipeline", "stage")
    flags = [f"--{k}={v}" for k, v in vars(args).items() if k not in skip and v is not None]
    result = run_child(__file__, ["--child", pipeline, f"--stage={stage}", *flags])
    result["samples_per_s"] = result["samples"] / result["seconds"]
    return {"pipeline": pipeline, "stage": stage} | result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distilled", required=True, help="distilled set folder (compressa distill --output)")
    parser.add_argument("--config", default=None, help="its config (default: the first)")
    parser.add_argument("--source", required=True, help="source spec the set was distilled from")
    parser.add_argument("--split", default="train")
    parser.add_argument("--num_frames", type=int, default=16, help="T of the raw pipeline")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--samples", type=int, default=128, help="samples per measurement (cycles the split)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the measuring process")
    parser.add_argument("--processor", default="../shared/qwen2_5_vl")
    parser.add_argument("--output", default="bench/results/loader.json")
    parser.add_argument("--child", dest="pipeline", choices=PIPELINES, help=argparse.SUPPRESS)
    parser.add_argument("--stage", choices=("samples", "batches"), default="batches", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pipeline:
        report(child(args))
        return

    rows = [measure(args, p, s) for s in ("samples", "batches") for p in PIPELINES]
    by = {(r["pipeline"], r["stage"]): r for r in rows}
    ratios = {
        f"{stage}_samples_per_s_{p}_over_raw": by[p, stage]["samples_per_s"] / by["raw", stage]["samples_per_s"]
        for stage in ("samples", "batches")
        for p in PIPELINES[:2]
    }
    ratios["visual_tokens_raw_over_distilled"] = (
        by["raw", "batches"]["visual_tokens_per_sample"] / by["distilled", "batches"]["visual_tokens_per_sample"]
    )
    print(
        "| pipeline | stage | frames/sample | samples | seconds | samples/s | visual tokens/sample | tokens/sample "
        "| prepare (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        vis = f"{r['visual_tokens_per_sample']:.0f}" if "visual_tokens_per_sample" in r else ""
        tok = f"{r['tokens_per_sample']:.0f}" if "tokens_per_sample" in r else ""
        print(
            f"| {r['pipeline']} | {r['stage']} | {r['frames_per_sample']:.0f} | {r['samples']} | {r['seconds']:.2f} "
            f"| {r['samples_per_s']:.1f} | {vis} | {tok} | {r['prepare_s']:.1f} |"
        )
    finish(args, rows, ratios)


if __name__ == "__main__":
    main()
