"""Qwen-VL models for SFT: built from a config (tests, benchmarks) or loaded for training; their parts, LoRA
placement and freezing.

    model = load_model(model_args)                                   # bf16 / QLoRA (bitsandbytes) / attention kernel
    peft_config = lora_config(model, model_args, script_args)        # adapters on the LLM; vision side by tune_vision
    freeze_vision(model, "merger")                                   # full SFT: what of the vision side trains
    trainable_summary(model)                                         # trainable parameters per part

Tests and benchmarks build a random Qwen-VL from a config (`qwen_config`, `random_qwen`, `save_tiny_model`) beside the
real tokenizer and processor files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from compressa_hf.qwen.families import TEXT_LINEAR_MODULES, build_processor, family_of
from compressa_hf.qwen.packing import unwrap

#: Tokenizer, chat template and image/video processor files a Qwen2.5-VL checkpoint ships.
PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "chat_template.json",
    "preprocessor_config.json",
)


# -- models from configs (tests, benchmarks) -----------------------------------------------------------------------


def qwen_config(config: str | os.PathLike | dict):
    """The config of any Qwen-VL family (`compressa_hf.qwen.FAMILIES`) from a dict or a JSON file.

    The family is the config's `model_type` (`qwen2_vl`, `qwen2_5_vl`, `qwen3_vl`, `qwen3_5`, `qwen3_5_moe`); the
    current nested layout and the flat 4.x one (`config_7b.json`) both load. Raises ValueError naming the file when `model_type` is missing or not
    a known family.
    """
    source = "the config dict"
    if not isinstance(config, dict):
        source = str(config)
        config = json.loads(Path(config).read_text())
    if "model_type" not in config:
        raise ValueError(
            f"{source} has no `model_type`; add one of qwen2_vl, qwen2_5_vl, qwen3_vl, qwen3_5, qwen3_5_moe"
        )
    return family_of(config).config_cls().from_dict(config)


def random_qwen(config, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", seed: int = 0):
    """A Qwen-VL of the config's family with random weights built directly on `device` (a 7B in bf16: ~16 GB)."""
    config = qwen_config(config)
    torch.manual_seed(seed)
    with torch.device(device):
        model = family_of(config).model_cls()._from_config(config, dtype=dtype)
    return model


def save_tiny_model(config, output_dir: str | os.PathLike, processor_dir: str | os.PathLike, seed: int = 0) -> str:
    """Save a random Qwen-VL with its processor beside it: a folder `from_pretrained` loads offline.

    For Qwen2.5-VL the processor files of `processor_dir` (a release's) are copied. Other families get the processor
    `compressa_hf.qwen.build_processor` assembles from `processor_dir`'s tokenizer (Qwen2.5-VL's serves the families of
    Qwen2's vocabulary; Qwen3.5 needs its own, `compressa_hf.qwen.tokenizer.write_qwen3_5_tokenizer`) and the family's
    own image / video processor classes.
    """
    output_dir = Path(output_dir)
    family = family_of(qwen_config(config))
    missing = [f for f in PROCESSOR_FILES if not (Path(processor_dir) / f).is_file()]
    if family.name == "qwen2_5_vl" and missing:
        raise FileNotFoundError(f"{processor_dir} lacks the processor files {missing}")
    model = random_qwen(config, seed=seed)
    model.save_pretrained(output_dir)
    if family.name == "qwen2_5_vl":
        for name in PROCESSOR_FILES:
            shutil.copy(Path(processor_dir) / name, output_dir / name)
    else:
        build_processor(family, processor_dir).save_pretrained(output_dir)
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
    """Module names of the language model, the vision tower and its merger (`model.language_model`, ...).

    The same for every family in `compressa_hf.qwen.FAMILIES`; `family` names it. Qwen3-VL's DeepStack mergers
    (`visual.deepstack_merger_list`, which feed vision features into the first LLM layers) count as the tower, so
    `tune_vision: merger` trains the final merger only.
    """
    inner = getattr(model, "model", None)
    visual, language = getattr(inner, "visual", None), getattr(inner, "language_model", None)
    if visual is None or language is None or not hasattr(visual, "merger"):
        raise ValueError(
            f"{type(model).__name__} does not look like a Qwen-VL model (no model.visual.merger / model.language_model)"
        )
    return {
        "language": _module_name(model, language),
        "visual": _module_name(model, visual),
        "merger": _module_name(model, visual.merger),
        "family": family_of(model).name,
    }


def lora_target_regex(parts: dict[str, str], text_modules, vision_modules=(), family=None) -> str:
    """A regex (PEFT matches it against full module names) for the LLM's layers, plus vision blocks if given.

    Plain leaf names would also hit the vision tower: Qwen2.5-VL's MLPs use the same `gate_proj` / `up_proj` /
    `down_proj`. The language side covers attention (`self_attn`), Qwen3.5's linear attention (`linear_attn`), the MLP
    and an MoE's shared expert (`mlp.shared_expert`); `text_modules` None / `all-linear` means the family's own
    (`QwenFamily.text_linear_modules`). `vision_modules` may name the vision layers of any family
    (`compressa_hf.qwen.VISION_LINEAR_MODULES`). With `family` given (a `QwenFamily` or name; default
    `parts["family"]`), only that family's names are kept on either side (Qwen2-VL's vision MLP is `fc1` / `fc2`,
    Qwen3-VL's `linear_fc1` / `linear_fc2`; only Qwen3.5 has `in_proj_qkv`), and none of them is an error.
    """
    family = family if family is not None else parts.get("family")
    if family is not None:
        family = family_of(family)
    if isinstance(text_modules, str):
        text_modules = [text_modules]
    if text_modules in (None, [], ["all-linear"]):
        text_modules = list(family.text_linear_modules if family is not None else TEXT_LINEAR_MODULES)
    text_modules = list(text_modules)
    unknown = sorted(set(text_modules) - set(TEXT_LINEAR_MODULES))
    if unknown:
        raise ValueError(
            f"lora_target_modules {unknown} are not language-model linear layers; choose from "
            f"{list(TEXT_LINEAR_MODULES)} or all-linear (the vision side is set by --tune_vision)"
        )
    if family is not None:
        kept = [m for m in text_modules if m in family.text_linear_modules]
        if not kept:
            raise ValueError(
                f"lora_target_modules {text_modules} name no language-model layer of {family.name}; its layers are "
                f"{list(family.text_linear_modules)}"
            )
        text_modules = kept
    blocks = r"(?:self_attn|linear_attn|mlp|mlp\.shared_expert)"
    text = rf"{re.escape(parts['language'])}\.layers\.\d+\.{blocks}\.(?:{'|'.join(text_modules)})"
    if vision_modules and family is not None:
        kept = [m for m in vision_modules if m in family.vision_linear_modules]
        if not kept:
            raise ValueError(
                f"vision_lora_target_modules {list(vision_modules)} name no vision-block layer of {family.name}; its "
                f"layers are {list(family.vision_linear_modules)}"
            )
        vision_modules = kept
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


def parameter_part(name: str, parts: dict[str, str]) -> str:
    """The part of the model (`qwen_parts`) a parameter name lies in: `merger`, `visual`, `language` or `other`.

    Works on PEFT names too (`base_model.model.` and `modules_to_save` copies lie in their module's part).
    """
    bare = name.removeprefix("base_model.model.")
    return next((k for k in ("merger", "visual", "language") if f"{parts[k]}." in f"{bare}."), "other")


def trainable_summary(model) -> dict[str, int]:
    """Trainable and total parameter counts, and trainable ones per part (language / visual / merger / other)."""
    parts = qwen_parts(unwrap(model))
    out = {"total": 0, "trainable": 0, "language": 0, "visual": 0, "merger": 0, "other": 0}
    for name, p in model.named_parameters():
        n = p.ds_numel if hasattr(p, "ds_numel") else p.numel()  # ZeRO-3 leaves an empty placeholder
        out["total"] += n
        if not p.requires_grad:
            continue
        out["trainable"] += n
        out[parameter_part(name, parts)] += n
    return out


def keep_used_weight_conversions(model) -> None:
    """Keep only the checkpoint renamings that matched the loaded weights, so that saving restores the base layout.

    transformers 5.x renames checkpoint keys as it loads them (Qwen2.5-VL: `model.layers.*` ->
    `model.language_model.layers.*`, `visual.*` -> `model.visual.*`) and reverses the renamings on save. Its plain
    loader keeps the renamings that matched a weight; its ZeRO-3 loader (`_load_state_dict_into_zero3_model`, 5.24)
    keeps every candidate, and reversing the unused legacy ones names a ZeRO-3 full-SFT checkpoint's weights
    `model.model.*` where the base model has `model.*`. This does what the plain loader does; on a model the plain
    loader built it changes nothing.
    """
    conversions = getattr(model, "_weight_conversions", None)
    if conversions:
        model._weight_conversions = [c for c in conversions if c.was_used()]
