"""Zero-shot vs full-data SFT vs distilled SFT of Qwen2.5-VL on one dataset, ending in one table (the paper's Fig. 3).

Usage:
    export HMDB51_ROOT=/data/hmdb51          # raw videos: the full-data run trains on them, every run is tested on them
    python recipes/compare_qwen.py --dataset hmdb51 --ratios 0.21 0.41 0.82 --method lora \
        --accelerate_config accelerate_configs/zero2.yaml --output_dir outputs/compare_hmdb51
    python recipes/compare_qwen.py --dataset ucf101 --ratios 0.13 0.26 0.52 --dry_run     # print the commands

Runs, each its own `accelerate launch` (so each gets every GPU): the zero-shot evaluation of the base model, then
for `full` and every ratio `sft_qwen.py --config <recipe_dir>/<method>/config_<dataset>_<data>.yaml` and
`eval_qwen.py` on its output. A run whose `results.json` exists is skipped, so rerunning resumes. The table is
written to `<output_dir>/comparison.md` and `.json` and printed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def make_parser():
    from trl import TrlParser

    from compressa_hf.configs import CompareArguments

    return TrlParser(CompareArguments)


def accelerate_launch(config_file: str | None, num_processes: int | None) -> list[str]:
    launcher = shutil.which("accelerate") or os.path.join(os.path.dirname(sys.executable), "accelerate")
    cmd = [launcher, "launch"]
    if config_file:
        cmd += ["--config_file", config_file]
    if num_processes is not None:
        cmd += ["--num_processes", str(num_processes)]
    return cmd


def data_flags(recipe: str) -> list[str]:
    """The recipe's frame and prompt settings as flags, so that evaluation asks what training taught."""
    from dataclasses import fields

    import yaml

    from compressa_hf.configs import VideoDataArguments

    with open(recipe) as f:
        config = yaml.safe_load(f)
    keys = [f.name for f in fields(VideoDataArguments) if f.name not in ("data", "data_registry")]
    return [part for key in keys if config.get(key) is not None for part in (f"--{key}", str(config[key]))]


def plan(args) -> list[dict]:
    """The runs in order: name, table label, commands, and where their outputs go."""
    common = ["--data_registry", args.data_registry] if args.data_registry else []
    base_model = ["--model_name_or_path", args.model_name_or_path] if args.model_name_or_path else []
    eval_launch = accelerate_launch(args.eval_accelerate_config, args.num_processes)
    sft_launch = accelerate_launch(args.accelerate_config, args.num_processes)

    def recipe_for(data: str) -> str:
        recipe = os.path.join(args.recipe_dir, args.method, f"config_{data}.yaml")
        if not os.path.isfile(recipe):
            raise FileNotFoundError(f"no recipe {recipe} for {data}; add it or pass --recipe_dir")
        return recipe

    def evaluate(name: str, model: str | None, data: str, recipe: str) -> tuple[str, list[str]]:
        eval_dir = os.path.join(args.output_dir, "eval", name)
        model_flag = ["--model_name_or_path", model] if model else base_model
        cmd = eval_launch + [os.path.join(HERE, "eval_qwen.py"), *model_flag, "--data", data, *data_flags(recipe)]
        cmd += ["--output_dir", eval_dir, "--run_name", name, *common, *shlex.split(args.eval_args)]
        return eval_dir, cmd

    if not args.model_name_or_path:
        raise ValueError("pass --model_name_or_path: it is the zero-shot model and the base of every SFT run")
    full_data = f"{args.dataset}_full"
    eval_dir, cmd = evaluate("zero_shot", None, full_data, recipe_for(full_data))  # the prompt full-data SFT uses
    runs = [{"name": "zero_shot", "label": "zero-shot", "eval_dir": eval_dir, "commands": [cmd]}]
    for part in ["full", *args.ratios]:
        data, name = f"{args.dataset}_{part}", "full" if part == "full" else f"distilled_{part}"
        recipe, train_dir = recipe_for(data), os.path.join(args.output_dir, data)
        sft = sft_launch + [os.path.join(HERE, "sft_qwen.py"), "--config", recipe, "--data", data]
        sft += ["--output_dir", train_dir, *base_model, *common, *shlex.split(args.sft_args)]
        eval_dir, cmd = evaluate(name, train_dir, data, recipe)
        label = "full-data SFT" if part == "full" else f"distilled SFT, {part} %"
        runs.append(
            {"name": name, "label": label, "train_dir": train_dir, "eval_dir": eval_dir, "commands": [sft, cmd]}
        )
    return runs


def main(args) -> int:
    from compressa_hf.qwen_eval import comparison_markdown, comparison_rows

    runs = plan(args)
    for run in runs:
        done = os.path.isfile(os.path.join(run["eval_dir"], "results.json"))
        for cmd in run["commands"]:
            print(("# done: " if done else "") + shlex.join(cmd), flush=True)
            if not (done or args.dry_run):
                subprocess.run(cmd, check=True)
    if args.dry_run:
        return 0
    rows = comparison_rows(runs)
    title = f"{args.dataset}: zero-shot vs full-data vs distilled SFT ({args.method}, {args.model_name_or_path})"
    table = comparison_markdown(rows, title)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "comparison.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.output_dir, "comparison.json"), "w") as f:
        json.dump(rows, f, indent=2)
    print(table)
    return 0


if __name__ == "__main__":
    (args,) = make_parser().parse_args_and_config()
    sys.exit(main(args))
