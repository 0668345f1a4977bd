"""Fine-tune a Qwen-VL model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5) on a distilled set (K latent keyframes per video) or
on the full raw training split.

Usage:
    # LoRA on 8 GPUs, DeepSpeed ZeRO-2, the distilled HMDB51 at 0.41 %
    accelerate launch --config_file accelerate_configs/zero2.yaml recipes/sft_qwen.py \
        --config recipes/qwen2_5_vl_7b/lora/config_hmdb51_0.41.yaml
    # the same without a recipe file
    accelerate launch recipes/sft_qwen.py --model_name_or_path Qwen/Qwen2.5-VL-7B-Instruct --data hmdb51_0.41 \
        --use_peft --output_dir outputs/qwen2.5-vl-7b-lora-hmdb51_0.41
    # a distilled set larger than the disk: stream it (an iterable has no length: give max_steps)
    accelerate launch recipes/sft_qwen.py --config recipes/qwen2_5_vl_7b/lora/config_hmdb51_0.41.yaml \
        --streaming true --max_steps 500
    # each batch packed into one row without padding (every family; Qwen3.5's linear attention kept per sample)
    accelerate launch recipes/sft_qwen.py --config recipes/qwen3_5_9b/lora/config_hmdb51_0.41.yaml --padding_free true
    # full-data baseline (raw clips read as qwen-vl-utils reads them): export HMDB51_ROOT=/data/hmdb51 first
    accelerate launch --config_file accelerate_configs/zero3.yaml recipes/sft_qwen.py \
        --config recipes/qwen2_5_vl_7b/full/config_hmdb51_full.yaml
    # full data at fewer visual tokens: 3D average pooling of the merged tokens, or SVC pre-trained by
    # recipes/pretrain_svc.py (frozen, or tuned with --tune_token_compressor true)
    accelerate launch recipes/sft_qwen.py --config recipes/qwen2_5_vl_7b/lora/config_hmdb51_full.yaml \
        --token_compressor avgpool --token_compressor_strides 4 1 1
    accelerate launch recipes/sft_qwen.py --config recipes/qwen2_5_vl_7b/lora/config_hmdb51_full.yaml \
        --token_compressor svc --token_compressor_path outputs/svc-qwen2.5-vl-7b-hmdb51

Flags are the fields of `SFTScriptArguments` (data, frames, prompt, vision side), `VideoSFTConfig` (TRL's
`SFTConfig`: optimiser, schedule, bf16, gradient checkpointing; `vision_lr` / `merger_lr` for the vision side) and
`trl.ModelConfig` (model, LoRA, QLoRA, `attn_implementation`); `--config x.yaml` sets them and flags override it.
Writes the adapter (LoRA) or the model, the processor, a model card naming the data set and ratio, and
`training_summary.json` into `--output_dir` (and the token compressor, if any, into `token_compressor/`, where
`eval_qwen.py` finds it); with `--push_to_hub true`, then pushes that folder. A run that makes no
optimizer step fails and saves nothing (resuming a finished checkpoint is no error: the summary carries the
checkpoint's loss and says no step ran).
"""

from __future__ import annotations

import json
import logging
import shlex
import sys


def make_parser():
    from trl import ModelConfig, TrlParser

    from compressa_hf.qwen.sft_config import SFTScriptArguments, VideoSFTConfig

    return TrlParser((SFTScriptArguments, VideoSFTConfig, ModelConfig))


def main(script_args, training_args, model_args):
    from accelerate.logging import get_logger
    from transformers import AutoProcessor

    from compressa_hf.qwen import family_of
    from compressa_hf.qwen.collator import QwenVideoCollator
    from compressa_hf.qwen.compress.attach import (
        describe_token_compressor,
        save_token_compressor,
        train_with_token_compressor,
        with_token_compressor,
    )
    from compressa_hf.qwen.models import (
        freeze_vision,
        keep_used_weight_conversions,
        load_model,
        lora_config,
        trainable_summary,
    )
    from compressa_hf.qwen.packing import prepare_packing
    from compressa_hf.qwen.run_files import push_run, run_summary, write_run_files
    from compressa_hf.qwen.sft import SkipUnreadable, check_kernels, check_processes, num_samples, train_chat_dataset
    from compressa_hf.qwen.sft_trainer import VideoSFTTrainer
    from compressa_hf.threads import configure_threads

    # The DataLoader workers decode clips for the whole run: leave them their cores (compressa_hf.threads).
    configure_threads(workers=training_args.dataloader_num_workers, what="sft_qwen")
    logger = get_logger(__name__)
    check_processes(training_args)
    check_kernels(model_args, training_args)
    if script_args.streaming and training_args.max_steps <= 0:
        raise ValueError(
            "--streaming true reads the set as an iterable, which has no length, so epochs cannot be counted: "
            "set --max_steps (e.g. samples x epochs / (batch size x processes x accumulation))"
        )
    named = script_args.named_set()
    # Trainer would push from save_model, before the card and summary exist: the folder is pushed below instead.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False

    processor = AutoProcessor.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision)
    model = load_model(model_args)
    keep_used_weight_conversions(model)  # a ZeRO-3 load would otherwise save `model.model.*` (see its docstring)
    # a token compressor between the vision tower and the language model, and prompts with its token counts
    text_processor = with_token_compressor(model, processor, script_args)
    if model_args.use_peft:
        peft_config = lora_config(model, model_args, script_args)
    else:
        peft_config = None
        freeze_vision(model, script_args.tune_vision)

    patch_size = processor.video_processor.patch_size  # raw clips on the model's own pixel grid
    train_dataset = train_chat_dataset(named, script_args, script_args.max_train_samples, patch_size=patch_size)
    collator = QwenVideoCollator(
        text_processor,
        max_length=training_args.max_length,
        frame_size=script_args.frame_size,
        max_fps=script_args.max_fps,
        family=family_of(model),
        train_on=training_args.train_on,
        packing=training_args.packed,
        rope_index=prepare_packing(model) if training_args.packed else None,
    )
    trainer = VideoSFTTrainer(
        model=model,
        args=training_args,
        data_collator=SkipUnreadable(collator),
        train_dataset=train_dataset,
        processing_class=processor,
        peft_config=peft_config,
    )
    train_with_token_compressor(trainer, script_args.tune_token_compressor, training_args.resume_from_checkpoint)
    params = trainable_summary(trainer.model)
    samples = num_samples(train_dataset)
    logger.info(
        f"training {named.name} ({samples or 'streamed'} samples); parameters: {params}", main_process_only=True
    )

    # Raises NoTrainingStepError, before anything is saved, when no optimizer step ran and nothing was resumed.
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)  # the adapter or the model, and the processor
    save_token_compressor(trainer.model, training_args.output_dir, trainer.accelerator.is_main_process)

    if trainer.accelerator.is_main_process:
        summary = run_summary(named, train_dataset, collator, trainer, result, model_args, script_args)
        compressor = describe_token_compressor(trainer.model)
        summary["token_compressor"] = compressor
        if compressor is not None:
            compressor["tuned"] = script_args.tune_token_compressor
            strides = "x".join(map(str, compressor["strides"]))
            tuned = " (tuned)" if compressor["tuned"] else ""
            summary["hyperparameters"]["token compressor"] = f"{compressor['kind']} {strides}{tuned}"
        command = "accelerate launch recipes/sft_qwen.py " + shlex.join(sys.argv[1:])
        write_run_files(training_args.output_dir, summary, command, script_args.summary_file)
        logger.info(f"saved to {training_args.output_dir}: {json.dumps(summary)}", main_process_only=True)
        if push_to_hub:
            push_run(training_args.output_dir, training_args)

    if hasattr(trainer, "end"):  # transformers >= 5.18: finish trackers, destroy the process group
        trainer.end()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    script_args, training_args, model_args = make_parser().parse_args_and_config()
    main(script_args, training_args, model_args)
