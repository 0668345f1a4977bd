"""Accuracy of a base or fine-tuned Qwen-VL (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5) on the real test split of a named set.

Usage:
    # zero-shot (export HMDB51_ROOT=/data/hmdb51 first: the test videos are read from it)
    accelerate launch --num_processes 8 recipes/eval_qwen.py --model_name_or_path Qwen/Qwen2.5-VL-7B-Instruct \
        --data hmdb51_full --output_dir outputs/eval/hmdb51/zero_shot
    # a model from sft_qwen.py (LoRA adapter or full model)
    accelerate launch --num_processes 8 recipes/eval_qwen.py \
        --model_name_or_path outputs/qwen2.5-vl-7b-lora-hmdb51_0.41 --data hmdb51_0.41 \
        --output_dir outputs/eval/hmdb51/lora_0.41

The test clips are read as training read raw clips (`--video_reader`, default qwen-vl-utils' rules at the evaluated
model's patch size), asked the training prompt, and collated with the model family's chat template. Two readings of
the same forward: `loglik` picks the class whose answer (and `<|im_end|>`) the model finds most
likely (constrained: always a valid class), `generate` decodes a greedy answer and matches it to a class name after
normalisation (an answer naming no class counts wrong). Test videos are split across processes; the main process
writes `results.json`, `results.md` and `predictions.jsonl` to `--output_dir`. A model trained with a token compressor
(`sft_qwen.py --token_compressor ...`) is evaluated with the one saved in its folder; `--token_compressor` (none,
avgpool, svc) with `--token_compressor_path` / `--token_compressor_strides` sets another.
"""

from __future__ import annotations

import dataclasses
import logging
import os


def make_parser():
    from trl import TrlParser

    from compressa_hf.qwen.evaluation import EvalArguments

    return TrlParser(EvalArguments)


def main(args):
    import torch
    from accelerate import Accelerator
    from accelerate.utils import gather_object

    from compressa_hf.qwen import family_of
    from compressa_hf.qwen.collator import QwenVideoCollator
    from compressa_hf.qwen.compress.attach import describe_token_compressor
    from compressa_hf.qwen.evaluation import choice_token_ids, evaluate_batch, load_for_eval, summarize, write_results
    from compressa_hf.qwen.models import torch_dtype
    from compressa_hf.qwen.samples import raw_chat_samples
    from compressa_hf.threads import configure_threads

    configure_threads(what="eval_qwen")  # one thread per free core of this process (compressa_hf.threads)
    logger = logging.getLogger(__name__)
    # cpu=True on a machine without GPUs: processes started with `--multi_gpu` / ddp.yaml then form one gloo group
    # (without it each would evaluate every clip alone and all would write one results file)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise RuntimeError(
            f"accelerate launched {launched} processes, but they formed a group of {accelerator.num_processes}: each "
            "would evaluate alone; launch with --multi_gpu (or accelerate_configs/ddp.yaml) and --mixed_precision no"
        )
    named = args.named_set()
    if not named.eval_source:
        raise ValueError(f"named set {named.name!r} has no eval_source; add one to its registry entry")
    split = args.split or named.eval_split
    prompt = args.prompt_template()

    model, processor = load_for_eval(
        args.model_name_or_path, torch_dtype(args.dtype), args.attn_implementation, accelerator.device, args
    )
    tokenizer = processor.tokenizer
    # the model names its family (a processor cannot tell Qwen3.5 from Qwen3.5-MoE)
    collator = QwenVideoCollator(
        processor, padding_side="left", frame_size=args.frame_size, max_fps=args.max_fps, family=family_of(model)
    )
    patch_size = processor.video_processor.patch_size
    if args.video_reader == "qwen_vl_utils" and patch_size != args.video_patch_size and accelerator.is_main_process:
        logger.warning(
            f"--video_patch_size {args.video_patch_size} but {collator.family.name} has patch {patch_size}; "
            f"qwen-vl-utils reads the test clips at the model's"
        )
    reader = args.clip_config(patch_size=patch_size)
    dataset = raw_chat_samples(named.eval_source, split, reader, prompt=prompt, fps=args.fps)
    class_texts = dataset.class_texts
    choices = choice_token_ids(tokenizer, class_texts, prompt)

    indices = list(range(len(dataset)))[: args.max_samples]
    records = []
    with accelerator.split_between_processes(indices) as shard:
        for lo in range(0, len(shard), args.batch_size):
            samples = [(i, dataset[i]) for i in shard[lo : lo + args.batch_size]]
            records += evaluate_batch(
                model,
                collator,
                samples,
                class_texts,
                prompt,
                choices,
                args.methods,
                choice_batch_size=args.choice_batch_size,
                length_normalize=args.length_normalize,
                max_new_tokens=args.max_new_tokens,
            )
            if accelerator.is_main_process:
                logger.info(f"{lo + len(samples)}/{len(shard)} test videos on the main process")
    records = sorted(gather_object(records), key=lambda r: r["index"])

    if accelerator.is_main_process:
        results = {
            "run_name": args.run_name or os.path.basename(os.path.normpath(args.model_name_or_path)),
            "model_name_or_path": args.model_name_or_path,
            "data": named.name,
            "eval_source": named.eval_source,
            "split": split,
            "class_names": class_texts,
            "methods": args.methods,
            "length_normalize": args.length_normalize,
            "model_family": collator.family.name,
            "token_compressor": describe_token_compressor(model),
            "video_reader": {"kind": args.video_reader, **dataclasses.asdict(reader)},
            "num_processes": accelerator.num_processes,
            **summarize(records, args.methods),
        }
        write_results(args.output_dir, results, records)
        logger.info(
            f"results in {args.output_dir}: " + ", ".join(f"{k}={results[k]}" for k in results if "accuracy" in k)
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (args,) = make_parser().parse_args_and_config()
    main(args)
