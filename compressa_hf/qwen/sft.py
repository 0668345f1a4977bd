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
    """The config of any Qwen-VL family (`compressa_hf.qwen.FAMILIES`) from a dict or a JSON file.

    The family is the config's `model_type` (`qwen2_vl`, `qwen2_5_vl`, `qwen3_vl`, `qwen3_5`, `qwen3_5_moe`); the
    current nested layout and the flat 4.x one (`config_7b.json`) both load. Raises ValueError naming the file when `model_type` is missing or not
    a known family.
    """
    from compressa_hf.qwen.families import family_of

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
    from compressa_hf.qwen.families import family_of

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
    from compressa_hf.qwen.families import build_processor, family_of

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
    from compressa_hf.qwen.families import family_of

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
    # Imported here: `compressa_hf.configs` imports trl (and with it datasets), which building a random model or
    # scoring with one (the GPU benchmarks) does not need.
    from compressa_hf.configs import TEXT_LINEAR_MODULES

    family = family if family is not None else parts.get("family")
    if family is not None:
        from compressa_hf.qwen.families import family_of

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
    parts = qwen_parts(model.get_base_model() if hasattr(model, "get_base_model") else model)
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


def train_chat_dataset(named, data_args, max_samples: int | None = None, patch_size: int | None = None):
    """Chat samples of a named set: K decoded frames per distilled row, or the frames of each raw training clip (read
    at `patch_size`, the model's, for qwen-vl-utils' pixel grid; None takes `data_args.video_patch_size`). With
    `data_args.streaming` a distilled set comes back as a `datasets.IterableDataset`.

    Raises:
        ValueError: `streaming` for a raw set (read clip by clip on access already).
    """
    from compressa_hf.qwen.samples import load_chat_dataset, raw_chat_samples

    prompt = data_args.prompt_template()
    streaming = getattr(data_args, "streaming", False)
    if streaming and not named.distilled:
        raise ValueError(
            f"--streaming applies to distilled sets; {named.name!r} is a raw split, whose clips are read one by one "
            "as training asks for them anyway: drop --streaming"
        )
    if named.distilled:
        with zero3_init_disabled():
            ds = load_chat_dataset(named.repo, named.config, prompt=prompt, fps=data_args.fps, streaming=streaming)
        if streaming:
            return ds if max_samples is None else ds.take(max_samples)
    else:
        reader = data_args.clip_config(patch_size=patch_size)
        ds = as_hf_dataset(raw_chat_samples(named.source, named.split, reader, prompt=prompt, fps=data_args.fps))
    if max_samples is not None and max_samples < len(ds):
        ds = ds.select(range(max_samples))
    return ds


def num_samples(dataset) -> int | None:
    """The length of a map-style dataset; None for a streamed one."""
    try:
        return len(dataset)
    except TypeError:
        return None


def first_batch_stats(dataset, collator, video_token_id: int) -> dict:
    """Frames, visual tokens and total tokens of the first readable sample (what one training sample costs), and
    `frames_range` ([min, max] frames over the first 8 readable samples: rows of a set such as PRISM's differ); a
    streamed dataset is read from its start."""
    import itertools

    n = num_samples(dataset)
    rows = (dataset[i] for i in range(min(n, 8))) if n is not None else itertools.islice(iter(dataset), 8)
    rows = [row for row in rows if row is not None and row.get("messages") is not None]
    if not rows:
        raise ValueError("none of the first 8 training samples could be read")
    row = rows[0]
    batch = collator([row])
    frames = [int(len(r["videos"][0])) for r in rows]
    return {
        "frames_per_sample": frames[0],
        "frames_range": [min(frames), max(frames)],
        "frame_shape": list(row["videos"][0].shape[1:3]),
        "video_grid_thw": batch["video_grid_thw"][0].tolist(),  # the processor's patch grid (t, h, w)
        "visual_tokens_per_sample": int((batch["input_ids"] == video_token_id).sum()),
        # a packed batch has no padding, so no attention mask
        "tokens_per_sample": int(
            batch["attention_mask"].sum() if "attention_mask" in batch else batch["input_ids"].numel()
        ),
    }


# -- checks before anything loads ---------------------------------------------------------------------------------

#: Attention kernels that need a package of their own: the module to import and how to install it.
_ATTENTION_PACKAGES = {
    "flash_attention_2": ("flash_attn", "pip install flash-attn --no-build-isolation"),
    "flash_attention_3": ("flash_attn_interface", "build the hopper/ folder of Dao-AILab/flash-attention"),
}


def check_processes(training_args) -> None:
    """Refuse a launch whose processes do not form one run: each would train alone and all would write one folder.

    `accelerate launch --config_file accelerate_configs/ddp.yaml --num_processes 2` on a machine without GPUs starts
    two processes that join no process group unless the run is told it is on the CPU (`--use_cpu true`: DDP over
    gloo); DeepSpeed on CPU likewise reports one process on every rank.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != training_args.world_size:
        raise RuntimeError(
            f"accelerate launched {launched} processes, but this run sees {training_args.world_size}: each process "
            f"would train alone and all would write {training_args.output_dir}. On a machine without GPUs add "
            "`--use_cpu true` (DDP over gloo, e.g. accelerate launch --config_file accelerate_configs/ddp.yaml "
            f"--num_processes {launched} --mixed_precision no recipes/sft_qwen.py ... --use_cpu true); DeepSpeed "
            "runs on CPU with one process only"
        )


def check_kernels(model_args, training_args) -> None:
    """Refuse an attention kernel or Liger that this machine cannot run, before the model loads (transformers would
    say so only after loading it, and Liger only when training starts)."""
    import importlib.util

    attn = model_args.attn_implementation
    if attn in _ATTENTION_PACKAGES:
        module, install = _ATTENTION_PACKAGES[attn]
        if importlib.util.find_spec(module) is None:
            raise ImportError(
                f"attn_implementation {attn} needs the `{module}` package ({install}) and a CUDA GPU; use sdpa "
                "(PyTorch's fused attention, nothing to install) or eager"
            )
        if not torch.cuda.is_available():
            raise ValueError(f"attn_implementation {attn} runs on CUDA GPUs only and this machine has none; use sdpa")
    if training_args.use_liger_kernel:
        if importlib.util.find_spec("liger_kernel") is None:
            raise ImportError(
                "use_liger_kernel: true needs the liger-kernel package (`pip install liger-kernel`: Triton kernels "
                "for CUDA GPUs); install it or set use_liger_kernel: false"
            )
        if not torch.cuda.is_available():
            raise ValueError("use_liger_kernel: true needs a CUDA GPU (Liger's kernels are Triton); set it false")


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


def set_frames_per_video(named):
    """A local distilled set's `frames_per_video` from its card: K, or `{"mean", "min", "max"}` for rows of different
    K; None for a Hub set or a raw split."""
    if not named.distilled or not os.path.isdir(named.repo):
        return None
    from compressa_hf.store import read_meta

    return read_meta(named.repo).get(named.config, {}).get("frames_per_video")


def describe_data(named, num_samples: int | None, stats: dict) -> str:
    """One sentence naming the training data: the distilled set and ratio, or the raw split (`num_samples` None: a
    streamed set)."""
    frames = stats.get("frames_per_sample")
    num_samples = "streamed" if num_samples is None else num_samples
    if named.distilled:
        ratio = set_ratio(named)
        ratio_text = f"{ratio:g} % of the training split's bytes" if ratio is not None else "an unknown ratio"
        kept = f"{frames} latent keyframes each"
        per_video = set_frames_per_video(named)
        low, high = stats.get("frames_range", [frames, frames])
        if isinstance(per_video, dict):  # rows of different K (PRISM), from the local card
            kept = f"{per_video['min']} to {per_video['max']} latent keyframes each (mean {per_video['mean']:.2f})"
        elif low != high:  # a Hub set: what the first rows show
            kept = f"a varying number of latent keyframes ({low} to {high} in the first rows)"
        return (
            f"the distilled set `{named.repo}`, config `{named.config}` ({ratio_text}): {num_samples} videos of {kept}"
        )
    return f"the full training split `{named.split}` of `{named.source}`: {num_samples} videos of {frames} frames each"


def eval_command(model_path: str, data_args) -> str:
    """The `recipes/eval_qwen.py` command that tests `model_path` as it was trained: its named set, the registry that
    defines it, and every frame and prompt setting (`VideoDataArguments`) that differs from the default."""
    import shlex
    from dataclasses import MISSING, fields

    from compressa_hf.configs import VideoDataArguments

    cmd = ["accelerate", "launch", "recipes/eval_qwen.py", "--model_name_or_path", str(model_path)]
    for f in fields(VideoDataArguments):
        value = getattr(data_args, f.name)
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if value == default and f.name != "data":
            continue  # a None that differs from the default is written `None`, which the parser reads back as None
        values = value if isinstance(value, (list, tuple)) else [value]
        cmd += [f"--{f.name}", *(str(v) for v in values)]
    return shlex.join(cmd)


def model_card(summary: dict, command: str, base_is_local: bool = False) -> str:
    """README.md of a fine-tuned model: YAML header for the Hub, the data set and ratio, the command, how to evaluate.

    `summary` and `command` as published (`public_summary`, `public_command`). A base model read from a local folder
    (`base_is_local`) is no Hub id, so the header names none and the text says it was a local folder."""
    import yaml

    header = {"base_model": summary["model_name_or_path"]} if not base_is_local else {}
    header |= {
        "library_name": "peft" if summary["method"] in ("lora", "qlora") else "transformers",
        "pipeline_tag": "video-text-to-text",
        "tags": ["compressa_hf", "video-classification", summary.get("model_family", "qwen2_5_vl"), summary["method"]]
        + (["dataset-distillation"] if summary["distilled"] else []),
    }
    repo = summary.get("repo")
    if repo and not summary.get("repo_is_local") and not os.path.isdir(repo):
        header["datasets"] = [repo]
    method = {"lora": "LoRA", "qlora": "QLoRA", "full": "full fine-tuning"}[summary["method"]]
    base = f"`{summary['model_name_or_path']}`" + (" (a local folder)" if base_is_local else "")
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {Path(summary['output_dir']).name}",
        "",
        f"{base} trained with {method} (vision side: {summary['tune_vision']}) on "
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
    if summary.get("steps_this_run") == 0:
        lines.append(
            f"| note | resumed from a checkpoint that had finished at step {summary.get('resumed_from_step')}: no "
            "step ran in this run; the loss is the mean the checkpoint's log recorded |"
        )
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
        summary["eval_command"],
        "```",
        "",
    ]
    return "\n".join(lines)


def run_summary(named, train_dataset, collator, trainer, result, model_args, script_args) -> dict:
    """What a finished run trained on and how (`training_summary.json`; `recipes/compare_qwen.py` tabulates it).

    `trainer` is a `compressa_hf.sft_trainer.VideoSFTTrainer`: after a resume that made no step, `train_loss` is the
    checkpoint's logged mean loss (Trainer reports 0.0) and `steps_this_run` is 0.
    """
    stats = first_batch_stats(train_dataset, collator, trainer.processing_class.video_token_id)
    args = trainer.args
    quantized = model_args.load_in_4bit or model_args.load_in_8bit
    method = "full" if not model_args.use_peft else "qlora" if quantized else "lora"
    processes = trainer.accelerator.num_processes
    loss = trainer.checkpoint_train_loss if trainer.steps_this_run == 0 else result.training_loss
    return {
        "data": named.name,
        "distilled": named.distilled,
        "repo": named.repo,
        "config": named.config,
        "source": named.source,
        "ratio": set_ratio(named),
        "num_train_samples": num_samples(train_dataset),
        "streaming": num_samples(train_dataset) is None,
        **stats,
        "frames_per_video": set_frames_per_video(named),  # the card's K, or mean / min / max for rows of different K
        "data_description": describe_data(named, num_samples(train_dataset), stats),
        "model_name_or_path": model_args.model_name_or_path,
        "model_family": collator.family.name,
        "output_dir": args.output_dir,
        "method": method,
        "tune_vision": script_args.tune_vision,
        "packing": bool(getattr(args, "packed", False)),
        "loss_on": getattr(args, "train_on", "answer"),
        "trainable_parameters": trainable_summary(trainer.model),
        "global_step": result.global_step,
        "steps_this_run": trainer.steps_this_run,
        "resumed_from_step": trainer.resumed_from_step,
        "epochs": round(trainer.state.epoch or 0, 3),
        "train_loss": round(loss, 4) if loss is not None else None,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "num_processes": processes,
        "distributed_type": trainer.accelerator.distributed_type.value,
        "eval_command": eval_command(args.output_dir, script_args),
        "hyperparameters": {
            "learning rate": args.learning_rate,
            "batch size per device x processes x accumulation": (
                f"{args.per_device_train_batch_size} x {processes} x {args.gradient_accumulation_steps}"
            ),
            "LoRA r / alpha": f"{model_args.lora_r} / {model_args.lora_alpha}" if model_args.use_peft else "-",
            "bf16": args.bf16,
        },
    }


#: Not uploaded by `push_run`: this machine's own files (`_local_run.json`, staging folders), checkpoints, and
#: Trainer's `training_args.bin`, a pickle of the arguments that holds this machine's output and logging folders (the
#: card and the training summary carry the settings).
PUSH_IGNORE = ["_*", "checkpoint-*", "training_args.bin"]
#: Vocabularies: their tokens (`/**/*.`, byte-level pieces) read like paths to the check and are no metadata.
VOCABULARY_FILES = ("tokenizer.json", "vocab.json", "merges.txt")


def _staged_upload(output_dir: str, stage: str) -> list[str]:
    """Link (or copy) what `push_run` uploads into `stage`; the adapter's local base model folder is named by its
    last component there, as the card names it (the local `adapter_config.json` keeps the path, to load from).
    Returns the staged files, relative."""
    import fnmatch

    from compressa_hf.publish import public_spec

    files = []
    for root, dirs, names in os.walk(output_dir):
        rel_root = os.path.relpath(root, output_dir)
        dirs[:] = [d for d in dirs if not any(fnmatch.fnmatch(d, p) for p in PUSH_IGNORE)]
        for name in names:
            rel = os.path.normpath(os.path.join(rel_root, name))
            if any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in PUSH_IGNORE):
                continue
            target = os.path.join(stage, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if name == "adapter_config.json":
                with open(os.path.join(root, name)) as f:
                    config = json.load(f)
                if isinstance(config.get("base_model_name_or_path"), str):
                    config["base_model_name_or_path"] = public_spec(config["base_model_name_or_path"])
                with open(target, "w") as f:
                    json.dump(config, f, indent=2)
            else:
                try:
                    os.link(os.path.join(root, name), target)  # weights: no copy on the same file system
                except OSError:
                    shutil.copy2(os.path.join(root, name), target)
            files.append(rel)
    return sorted(files)


def push_run(output_dir: str, args) -> str:
    """Upload a finished run's folder (model, processor, card, training summary; no checkpoint) to the Hub repo that
    `args` (`VideoSFTConfig`: `hub_model_id`, else the folder's name; `hub_token`, `hub_private_repo`,
    `hub_revision`) names, as Trainer would; returns the repo id. Call it after `write_run_files`.

    Nothing machine-local is published, as for a distilled set (`compressa_hf.hub.push_repo`): the card and summary
    name local folders by their last component (`write_run_files`), so does the uploaded `adapter_config.json`, and a
    file that would still publish a path of this machine is refused, naming the file and the path, before anything
    is sent (`PUSH_IGNORE` lists what stays behind)."""
    import tempfile

    from huggingface_hub import HfApi

    from compressa_hf.hub import local_paths_in

    stage = tempfile.mkdtemp(dir=output_dir, prefix="_push-")  # "_*": never uploaded itself, even if left behind
    try:
        files = _staged_upload(output_dir, stage)
        local = local_paths_in(stage, [f for f in files if os.path.basename(f) not in VOCABULARY_FILES])
        if local:
            shown = "; ".join(f"{rel}: {p}" for rel, p in local[:5]) + (
                f"; ... ({len(local)} in all)" * (len(local) > 5)
            )
            raise ValueError(
                f"{output_dir} would publish paths of this machine ({shown}). The card and training summary written "
                "by sft_qwen.py name local folders by their last component; remove or edit the files named (or "
                "re-run into a fresh --output_dir) and push again"
            )
        api = HfApi(library_name="compressa_hf")
        repo = args.hub_model_id or Path(output_dir).absolute().name
        repo_id = api.create_repo(repo, token=args.hub_token, private=args.hub_private_repo, exist_ok=True).repo_id
        api.upload_folder(
            repo_id=repo_id,
            folder_path=stage,
            commit_message="compressa_hf: model, model card and training summary",
            token=args.hub_token,
            revision=args.hub_revision,
            ignore_patterns=PUSH_IGNORE,
        )
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    logger.info(f"pushed {output_dir} to https://huggingface.co/{repo_id}")
    return repo_id


def public_summary(summary: dict) -> dict:
    """`run_summary` as published (card, `training_summary.json`): local folders (base model, set, source, output) by
    their last component, as a distilled set's card names them (`compressa_hf.publish`), the evaluation command by
    `public_command`, and any other local path in a text by its last component."""
    from compressa_hf.publish import public_command, public_spec, public_text

    def walk(value):
        if isinstance(value, str):
            return public_text(value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        return value

    out = walk(summary)
    for key in ("model_name_or_path", "repo", "source", "output_dir"):
        if isinstance(summary.get(key), str):
            out[key] = public_spec(summary[key])
    if isinstance(summary.get("repo"), str) and os.path.isdir(summary["repo"]):
        out["repo_is_local"] = True  # a folder's name is no Hub dataset id: the card's header names none
    if isinstance(summary.get("eval_command"), str):
        out["eval_command"] = public_command(summary["eval_command"])
    return out


LOCAL_RUN_FILE = "_local_run.json"


def write_run_files(output_dir: str, summary: dict, command: str, summary_file: str = "training_summary.json") -> None:
    """`training_summary.json` and the model card (README.md, replacing the one PEFT / TRL wrote) in `output_dir`, as
    published: no path of this machine (`public_summary`, `public_command`). The summary and command as run, with
    their local paths, go to `_local_run.json` beside them, which `push_run` never uploads (as a distilled set keeps
    its local source spec in `local/`)."""
    from compressa_hf.publish import public_command

    with open(os.path.join(output_dir, LOCAL_RUN_FILE), "w") as f:
        json.dump({"command": command, "summary": summary}, f, indent=2)
    published = public_summary(summary)
    with open(os.path.join(output_dir, summary_file), "w") as f:
        json.dump(published, f, indent=2)
    base_is_local = os.path.isdir(os.path.expanduser(str(summary.get("model_name_or_path", ""))))
    with open(os.path.join(output_dir, "README.md"), "w") as f:
        f.write(model_card(published, public_command(command), base_is_local=base_is_local))
