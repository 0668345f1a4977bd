"""Deprecated: `compressa_hf.sft` moved to `compressa_hf.qwen.models` (build, load, LoRA placement, freezing),
`compressa_hf.qwen.sft` (the training set, the checks before loading) and `compressa_hf.qwen.run_files` (summary, model
card, push).

This path keeps working, with a `DeprecationWarning`, until the next release; import from the new modules.
"""

from compressa_hf.deprecated_paths import warn_moved
from compressa_hf.qwen.models import (
    PROCESSOR_FILES,
    freeze_vision,
    keep_used_weight_conversions,
    load_model,
    lora_config,
    lora_target_regex,
    parameter_part,
    qwen_config,
    qwen_parts,
    random_qwen,
    save_tiny_model,
    torch_dtype,
    trainable_summary,
)
from compressa_hf.qwen.run_files import (
    LOCAL_RUN_FILE,
    PUSH_IGNORE,
    VOCABULARY_FILES,
    describe_data,
    eval_command,
    model_card,
    public_summary,
    push_run,
    run_summary,
    set_frames_per_video,
    set_ratio,
    write_run_files,
)
from compressa_hf.qwen.sft import (
    SAMPLE_KEYS,
    SkipUnreadable,
    as_hf_dataset,
    check_kernels,
    check_processes,
    first_batch_stats,
    num_samples,
    train_chat_dataset,
    zero3_init_disabled,
)

__all__ = [
    "LOCAL_RUN_FILE",
    "PROCESSOR_FILES",
    "PUSH_IGNORE",
    "SAMPLE_KEYS",
    "SkipUnreadable",
    "VOCABULARY_FILES",
    "as_hf_dataset",
    "check_kernels",
    "check_processes",
    "describe_data",
    "eval_command",
    "first_batch_stats",
    "freeze_vision",
    "keep_used_weight_conversions",
    "load_model",
    "lora_config",
    "lora_target_regex",
    "model_card",
    "num_samples",
    "parameter_part",
    "public_summary",
    "push_run",
    "qwen_config",
    "qwen_parts",
    "random_qwen",
    "run_summary",
    "save_tiny_model",
    "set_frames_per_video",
    "set_ratio",
    "torch_dtype",
    "train_chat_dataset",
    "trainable_summary",
    "write_run_files",
    "zero3_init_disabled",
]

warn_moved(__name__, "compressa_hf.qwen.models", "compressa_hf.qwen.sft", "compressa_hf.qwen.run_files")
