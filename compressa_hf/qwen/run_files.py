"""What a finished SFT run leaves behind: `training_summary.json`, the model card, and the upload to the Hub.

summary = run_summary(named, train_dataset, collator, trainer, result, model_args, script_args)
write_run_files(output_dir, summary, command)    # the summary and README.md as published: no path of this machine
push_run(output_dir, training_args)              # the folder, without checkpoints, to `hub_model_id`
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from compressa_hf.qwen.models import trainable_summary
from compressa_hf.qwen.sft import first_batch_stats, num_samples

logger = logging.getLogger(__name__)


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

    from compressa_hf.qwen.data_args import VideoDataArguments

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

    `trainer` is a `compressa_hf.qwen.sft_trainer.VideoSFTTrainer`: after a resume that made no step, `train_loss` is
    the checkpoint's logged mean loss (Trainer reports 0.0) and `steps_this_run` is 0.
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
