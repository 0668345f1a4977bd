"""The Qwen side of compressa_hf: everything between a distilled set (or raw clips) and a fine-tuned, evaluated Qwen-VL.

In the order data flows (at module level a module imports only modules above it; no import circle):

    chat_templates  the Jinja templates compressa_hf renders with (`chat_templates/` in the checkout)
    families        Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5: what differs, in one registry
    tokenizer       Qwen3.5's tokenizer built offline (tests' tiny models)
    video           raw video read as Qwen's own examples read it (qwen-vl-utils)
    prompts         the question / answer text of a chat sample
    samples         distilled rows and raw clips -> chat samples (frames + messages + video metadata)
    collator        chat samples -> a training batch (answer-only labels, time, frame size)
    packing         a batch packed into one row without padding
    data_args       `VideoDataArguments`: which videos, how frames are read, the prompt (every recipe)
    compress/       visual-token compressors (3D pooling, SVC), their arguments and SVC's pre-training
    models          build or load a model; its parts, LoRA placement, freezing
    sft             the SFT training set and the checks made before anything loads
    sft_config      `SFTScriptArguments`, `VideoSFTConfig` (recipes/sft_qwen.py)
    sft_trainer     `VideoSFTTrainer`
    run_files       what a finished run writes and pushes: summary, model card
    evaluation      accuracy by constrained scoring and by generation; `EvalArguments` (recipes/eval_qwen.py)
    comparison      zero-shot vs full-data vs distilled SFT as one table; `CompareArguments` (recipes/compare_qwen.py)

The package itself exports only the family registry, which imports nothing heavy.
"""

from compressa_hf.qwen.families import (
    FAMILIES,
    TEXT_LINEAR_MODULES,
    VISION_LINEAR_MODULES,
    QwenFamily,
    build_processor,
    family_of,
)

__all__ = ["FAMILIES", "TEXT_LINEAR_MODULES", "VISION_LINEAR_MODULES", "QwenFamily", "build_processor", "family_of"]
