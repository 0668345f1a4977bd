"""Qwen2.5-VL SFT building blocks for `recipes/sft_qwen.py`: model, LoRA placement, training set, model card.

    model = load_model(model_args)                                   # bf16 / QLoRA (bitsandbytes) / attention kernel
    peft_config = lora_config(model, model_args, script_args)        # adapters on the LLM; vision side by tune_vision
    freeze_vision(model, "merger")                                   # full SFT: what of the vision side trains
    train_dataset = train_chat_dataset(named_set, script_args)       # distilled (K frames) or raw clips (T frames)

Tests and benchmarks build a random Qwen2.5-VL from a config (`qwen_config`, `save_tiny_model`) beside the real
tokenizer and processor files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

#: Tokenizer, chat template and image/video processor files a Qwen2.5-VL checkpoint ships.
PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "chat_template.json",
    "preprocessor_config.json",
)

#: Columns of a chat sample (`compressa_hf.chat.samples`).
SAMPLE_KEYS = ("messages", "videos", "video_metadata", "label", "answer", "video_id")


# -- models from configs (tests, benchmarks) -----------------------------------------------------------------------


def qwen_config(config: str | os.PathLike | dict):
    """A `Qwen2_5_VLConfig` from a dict or a JSON file, in the current layout or the flat 4.x one (`config_7b.json`)."""
    from transformers import Qwen2_5_VLConfig

    if not isinstance(config, dict):
        config = json.loads(Path(config).read_text())
    return Qwen2_5_VLConfig.from_dict(config)


def random_qwen(config, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", seed: int = 0):
    """A Qwen2.5-VL with random weights built directly on `device` (a 7B in bf16 takes ~16 GB there)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(qwen_config(config), dtype=dtype)
    return model


def save_tiny_model(config, output_dir: str | os.PathLike, processor_dir: str | os.PathLike, seed: int = 0) -> str:
    """Save a random Qwen2.5-VL and copy the processor files beside it: a folder `from_pretrained` loads offline."""
    output_dir = Path(output_dir)
    missing = [f for f in PROCESSOR_FILES if not (Path(processor_dir) / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{processor_dir} lacks the processor files {missing}")
    random_qwen(config, seed=seed).save_pretrained(output_dir)
    for name in PROCESSOR_FILES:
        shutil.copy(Path(processor_dir) / name, output_dir / name)
    return str(output_dir)


# -- loading, LoRA placement, freezing -----------------------------------------------------------------------------


def torch_dtype(name: str | None):
    """`"bfloat16"` -> `torch.bfloat16`; `"auto"` and None pass through."""
    if name in (None, "auto"):
        return name
    if not isinstance(getattr(torch, name, None), torch.dtype):
        raise ValueError(f"unknown dtype {name!r}; use bfloat16, float16, float32 or auto")
    return getattr(torch, name)


def load_model(model_args, device_map=None):
    """The model `model_args` names (`trl.ModelConfig`), in its dtype; 4/8-bit (QLoRA) when bitsandbytes is installed.

    Call it after the `SFTConfig` is parsed: under `accelerate launch` with a ZeRO-3 config, the parsed config makes
    `from_pretrained` partition the weights as it loads them.
    """
    from transformers import AutoModelForImageTextToText
    from trl import get_quantization_config

    kwargs = {
        "revision": model_args.model_revision,
        "dtype": torch_dtype(model_args.dtype),
        "attn_implementation": model_args.attn_implementation,
    }
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None:
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise ImportError(
                "--load_in_4bit / --load_in_8bit (QLoRA) need bitsandbytes: `pip install bitsandbytes`, or drop the flag"
            )
        if not model_args.use_peft:
            raise ValueError("a 4/8-bit base model can only be trained with LoRA: add --use_peft true")
        from accelerate import PartialState

        kwargs["quantization_config"] = quantization_config
        # Each process holds its own quantised copy on its own GPU.
        kwargs["device_map"] = {"": PartialState().local_process_index} if torch.cuda.is_available() else None
    elif device_map is not None:
        kwargs["device_map"] = device_map
    if not model_args.model_name_or_path:
        raise ValueError("no model: pass --model_name_or_path (e.g. Qwen/Qwen2.5-VL-7B-Instruct)")
    return AutoModelForImageTextToText.from_pretrained(model_args.model_name_or_path, **kwargs)


def _module_name(model, module) -> str:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    raise ValueError(f"{type(module).__name__} is not part of {type(model).__name__}")


def qwen_parts(model) -> dict[str, str]:
    """Module names of the language model, the vision tower and its merger (`model.language_model`, ...)."""
    inner = getattr(model, "model", None)
    visual, language = getattr(inner, "visual", None), getattr(inner, "language_model", None)
    if visual is None or language is None or not hasattr(visual, "merger"):
        raise ValueError(
            f"{type(model).__name__} does not look like Qwen2.5-VL (no model.visual.merger / model.language_model)"
        )
    return {
        "language": _module_name(model, language),
        "visual": _module_name(model, visual),
        "merger": _module_name(model, visual.merger),
    }


def lora_target_regex(parts: dict[str, str], text_modules, vision_modules=()) -> str:
    """A regex (PEFT matches it against full module names) for the LLM's layers, plus vision blocks if given.

    Plain leaf names would also hit the vision tower: its MLPs use the same `gate_proj` / `up_proj` / `down_proj`.
    """
    # Imported here: `compressa_hf.configs` imports trl (and with it datasets), which building a random model or
    # scoring with one (the GPU benchmarks) does not need.
    from compressa_hf.configs import TEXT_LINEAR_MODULES

    if isinstance(text_modules, str):
        text_modules = [text_modules]
    text_modules = list(TEXT_LINEAR_MODULES) if text_modules in (None, [], ["all-linear"]) else list(text_modules)
    unknown = sorted(set(text_modules) - set(TEXT_LINEAR_MODULES))
    if unknown:
        raise ValueError(
            f"lora_target_modules {unknown} are not language-model linear layers; choose from "
            f"{list(TEXT_LINEAR_MODULES)} or all-linear (the vision side is set by --tune_vision)"
        )
    text = rf"{re.escape(parts['language'])}\.layers\.\d+\.(?:self_attn|mlp)\.(?:{'|'.join(text_modules)})"
    if not vision_modules:
        return text
    vision = rf"{re.escape(parts['visual'])}\.blocks\.\d+\.(?:attn|mlp)\.(?:{'|'.join(vision_modules)})"
    return rf"(?:{text}|{vision})"


def lora_config(model, model_args, script_args):
    """The `peft.LoraConfig` for `model_args` (r, alpha, dropout, rsLoRA, DoRA) placed as `script_args.tune_vision` says.

    frozen: adapters on the language model only. merger: and the merger trained fully (`modules_to_save`).
    tower: adapters on the vision blocks too, and the merger trained fully.
    """
    from peft import LoraConfig

    parts = qwen_parts(model)
    vision = list(script_args.vision_lora_target_modules) if script_args.tune_vision == "tower" else []
    modules_to_save = list(model_args.lora_modules_to_save or [])
    if script_args.tune_vision in ("merger", "tower") and parts["merger"] not in modules_to_save:
        modules_to_save.append(parts["merger"])
    extra = {}
    if model_args.lora_target_parameters is not None:
        extra["target_parameters"] = model_args.lora_target_parameters
    return LoraConfig(
        task_type=model_args.lora_task_type,
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        bias="none",
        use_rslora=model_args.use_rslora,
        use_dora=model_args.use_dora,
        target_modules=lora_target_regex(parts, model_args.lora_target_modules, vision),
        modules_to_save=modules_to_save or None,
        **extra,
    )


def freeze_vision(model, tune_vision: str) -> None:
    """Full SFT: `frozen` freezes the vision tower with its merger, `merger` all of it but the merger, `tower` nothing."""
    parts = qwen_parts(model)
    visual = model.get_submodule(parts["visual"])
    if tune_vision == "tower":
        return
    visual.requires_grad_(False)
    if tune_vision == "merger":
        model.get_submodule(parts["merger"]).requires_grad_(True)
    elif tune_vision != "frozen":
        raise ValueError(f"`tune_vision` must be frozen, merger or tower, got {tune_vision!r}")


def trainable_summary(model) -> dict[str, int]:
    """Trainable and total parameter counts, and trainable ones per part (language / visual / merger / other)."""
    parts = qwen_parts(model.get_base_model() if hasattr(model, "get_base_model") else model)
    out = {"total": 0, "trainable": 0, "language": 0, "visual": 0, "merger": 0, "other": 0}
    for name, p in model.named_parameters():
        n = p.ds_numel if hasattr(p, "ds_numel") else p.numel()  # ZeRO-3 leaves an empty placeholder
        out["total"] += n
        if not p.requires_grad:
            continue
        out["trainable"] += n
        bare = name.removeprefix("base_model.model.")
        part = next((k for k in ("merger", "visual", "language") if f"{parts[k]}." in f"{bare}."), "other")
        out[part] += n
    return out


# -- data ----------------------------------------------------------------------------------------------------------


def zero3_init_disabled():
    """A context in which modules are built whole even when a ZeRO-3 config is active.

    The codec that decodes distilled latents is frozen and runs in the data pipeline on every rank, outside the
    DeepSpeed engine: partitioned by `deepspeed.zero.Init` it would hold empty weights (diffusers' training
    examples load their frozen VAE and text encoder the same way).
    """
    import accelerate

    if not accelerate.state.is_initialized():
        return contextlib.nullcontext()
    plugin = accelerate.state.AcceleratorState().deepspeed_plugin
    return contextlib.nullcontext() if plugin is None else plugin.zero3_init_context_manager(enable=False)


class _RawRows:
    """Turns a batch of indices into chat-sample columns read from a map-style dataset (None for unreadable clips)."""

    def __init__(self, samples):
        self.samples = samples

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        items = [self.samples[i] for i in batch["index"]]
        return {key: [None if s is None else s[key] for s in items] for key in SAMPLE_KEYS}


def as_hf_dataset(samples):
    """A map-style dataset of chat samples (e.g. `RawChatDataset`) as a `datasets.Dataset` read on access.

    `SFTTrainer` takes `datasets` datasets only. An unreadable clip becomes a row of None, which `SkipUnreadable`
    drops at collation.
    """
    from datasets import Dataset

    return Dataset.from_dict({"index": list(range(len(samples)))}).with_transform(_RawRows(samples))


class SkipUnreadable:
    """Wraps `QwenVideoCollator`: rows whose sample could not be read (all None) are dropped, as None items are."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, rows: list[dict | None]) -> dict:
        return self.collator([None if row is None or row.get("messages") is None else row for row in rows])


def train_chat_dataset(named, data_args, max_samples: int | None = None):
    """Chat samples of a named set: K decoded frames per distilled row, or T frames per raw training clip."""
    from compressa_hf.chat import load_chat_dataset, raw_chat_samples

    prompt = data_args.prompt_template()
    if named.distilled:
        with zero3_init_disabled():
            ds = load_chat_dataset(named.repo, named.config, prompt=prompt, fps=data_args.fps)
    else:
        raw = raw_chat_samples(named.source, named.split, data_args.clip_config(), prompt=prompt, fps=data_args.fps)
        ds = as_hf_dataset(raw)
    if max_samples is not None and max_samples < len(ds):
        ds = ds.select(range(max_samples))
    return ds


def first_batch_stats(dataset, collator, video_token_id: int) -> dict:
    """Frames, visual tokens and total tokens of the first readable sample (what one training sample costs)."""
    for i in range(min(len(dataset), 8)):
        row = dataset[i]
        if row is not None and row.get("messages") is not None:
            batch = collator([row])
            return {
                "frames_per_sample": int(len(row["videos"][0])),
                "frame_shape": list(row["videos"][0].shape[1:3]),
                "visual_tokens_per_sample": int((batch["input_ids"] == video_token_id).sum()),
                "tokens_per_sample": int(batch["attention_mask"].sum()),
            }
    raise ValueError("none of the first 8 training samples could be read")


# -- what a run leaves behind --------------------------------------------------------------------------------------


def set_ratio(named) -> float | None:
    """The storage ratio (percent) of a distilled named set: the local card's achieved ratio, else the config name's."""
    if not named.distilled:
        return None
    if os.path.isdir(named.repo):
        from compressa_hf.store import read_meta

        meta = read_meta(named.repo).get(named.config, {})
        if meta.get("achieved_ratio") is not None:
            return float(meta["achieved_ratio"])
    found = re.fullmatch(r"ratio_(\d+(?:\.\d+)?)", named.config or "")
    return float(found.group(1)) if found else None


def describe_data(named, num_samples: int, stats: dict) -> str:
    """One sentence naming the training data: the distilled set and ratio, or the raw split."""
    frames = stats.get("frames_per_sample")
    if named.distilled:
        ratio = set_ratio(named)
        ratio_text = f"{ratio:g} % of the training split's bytes" if ratio is not None else "an unknown ratio"
        return (
            f"the distilled set `{named.repo}`, config `{named.config}` ({ratio_text}): {num_samples} videos of "
            f"{frames} latent keyframes each"
        )
    return f"the full training split `{named.split}` of `{named.source}`: {num_samples} videos of {frames} frames each"


def model_card(summary: dict, command: str) -> str:
    """README.md of a fine-tuned model: YAML header for the Hub, the data set and ratio, the command, how to evaluate."""
    import yaml

    header = {
        "base_model": summary["model_name_or_path"],
        "library_name": "peft" if summary["method"] in ("lora", "qlora") else "transformers",
        "pipeline_tag": "video-text-to-text",
        "tags": ["compressa_hf", "video-classification", "qwen2_5_vl", summary["method"]]
        + (["dataset-distillation"] if summary["distilled"] else []),
    }
    repo = summary.get("repo")
    if repo and not os.path.isdir(repo):
        header["datasets"] = [repo]
    method = {"lora": "LoRA", "qlora": "QLoRA", "full": "full fine-tuning"}[summary["method"]]
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {Path(summary['output_dir']).name}",
        "",
        f"`{summary['model_name_or_path']}` trained with {method} (vision side: {summary['tune_vision']}) on "
        f"**{summary['data']}**: {summary['data_description']}.",
        "",
        "| | |",
        "|---|---|",
        f"| named set | `{summary['data']}` |",
        f"| ratio | {summary['ratio']:g} % |" if summary.get("ratio") is not None else "| ratio | full data |",
        f"| training videos | {summary['num_train_samples']} |",
        f"| frames / visual tokens per sample | {summary['frames_per_sample']} / "
        f"{summary['visual_tokens_per_sample']} |",
        f"| steps (epochs) | {summary.get('global_step')} ({summary.get('epochs')}) |",
        f"| final training loss | {summary.get('train_loss')} |",
    ]
    lines += [f"| {k} | {v} |" for k, v in summary.get("hyperparameters", {}).items()]
    lines += [
        "",
        "Trained with [compressa_hf](https://github.com/compressa-hf/compressa_hf):",
        "",
        "```bash",
        command,
        "```",
        "",
        "Evaluate on the real test split:",
        "",
        "```bash",
        f"accelerate launch recipes/eval_qwen.py --model_name_or_path {summary['output_dir']} --data {summary['data']}",
        "```",
        "",
    ]
    return "\n".join(lines)


def run_summary(named, train_dataset, collator, trainer, result, model_args, script_args) -> dict:
    """What a finished run trained on and how (`training_summary.json`; `recipes/compare_qwen.py` tabulates it)."""
    stats = first_batch_stats(train_dataset, collator, trainer.processing_class.video_token_id)
    args = trainer.args
    quantized = model_args.load_in_4bit or model_args.load_in_8bit
    method = "full" if not model_args.use_peft else "qlora" if quantized else "lora"
    processes = trainer.accelerator.num_processes
    return {
        "data": named.name,
        "distilled": named.distilled,
        "repo": named.repo,
        "config": named.config,
        "source": named.source,
        "ratio": set_ratio(named),
        "num_train_samples": len(train_dataset),
        **stats,
        "data_description": describe_data(named, len(train_dataset), stats),
        "model_name_or_path": model_args.model_name_or_path,
        "output_dir": args.output_dir,
        "method": method,
        "tune_vision": script_args.tune_vision,
        "trainable_parameters": trainable_summary(trainer.model),
        "global_step": result.global_step,
        "epochs": round(trainer.state.epoch or 0, 3),
        "train_loss": round(result.training_loss, 4),
        "train_runtime_s": result.metrics.get("train_runtime"),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "num_processes": processes,
        "distributed_type": trainer.accelerator.distributed_type.value,
        "hyperparameters": {
            "learning rate": args.learning_rate,
            "batch size per device x processes x accumulation": (
                f"{args.per_device_train_batch_size} x {processes} x {args.gradient_accumulation_steps}"
            ),
            "LoRA r / alpha": f"{model_args.lora_r} / {model_args.lora_alpha}" if model_args.use_peft else "-",
            "bf16": args.bf16,
        },
    }


def write_run_files(output_dir: str, summary: dict, command: str, summary_file: str = "training_summary.json") -> None:
    """`training_summary.json` and the model card (README.md, replacing the one PEFT / TRL wrote) in `output_dir`."""
    with open(os.path.join(output_dir, summary_file), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(output_dir, "README.md"), "w") as f:
        f.write(model_card(summary, command))
