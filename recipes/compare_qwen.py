"""Zero-shot vs full-data SFT vs distilled SFT of Qwen-VL on one dataset, ending in one table (the paper's Fig. 3),
with optional equal-token rows (full data at the distilled set's visual-token count).

Usage:
    export HMDB51_ROOT=/data/hmdb51          # raw videos: the full-data run trains on them, every run is tested on them
    python recipes/compare_qwen.py --dataset hmdb51 --ratios 0.21 0.41 0.82 --method lora \
        --accelerate_config accelerate_configs/zero2.yaml --output_dir outputs/compare_hmdb51
    python recipes/compare_qwen.py --dataset ucf101 --ratios 0.13 0.26 0.52 --dry_run     # print the commands

    # with equal-token rows: full data cut to each distilled run's visual tokens by average pooling and by SVC
    python recipes/compare_qwen.py --dataset hmdb51 --ratios 0.41 --equal_tokens avgpool svc \
        --svc_args "--max_steps 20000" --model_name_or_path Qwen/Qwen2.5-VL-7B-Instruct --output_dir outputs/compare

Runs, each its own `accelerate launch` (so each gets every GPU): the zero-shot evaluation of the base model, then
for `full` and every ratio `sft_qwen.py --config <recipe_dir>/<method>/config_<dataset>_<data>.yaml` and
`eval_qwen.py` on its output. With `--equal_tokens`, each distilled row is followed by full-data SFT runs whose
visual tokens are cut to the distilled run's count (`--token_compressor avgpool` / `svc`, at `--equal_token_strides`
or at the strides chosen from the two runs' summaries), so the table separates "better frames" from "fewer tokens";
an `svc` row first pre-trains SVC on the full training split (`recipes/pretrain_svc.py`, once per strides) unless
`--svc_path` names one. A run whose `results.json` exists is skipped, so rerunning resumes. The table is written to
`<output_dir>/comparison.md` and `.json` and printed.
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

    from compressa_hf.qwen.comparison import CompareArguments

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

    from compressa_hf.qwen.data_args import VideoDataArguments

    with open(recipe) as f:
        config = yaml.safe_load(f)
    keys = [f.name for f in fields(VideoDataArguments) if f.name not in ("data", "data_registry")]
    return [part for key in keys if config.get(key) is not None for part in (f"--{key}", str(config[key]))]


def equal_token_strides(full_dir: str, distilled_dir: str) -> tuple[int, int, int]:
    """Strides that cut the full-data run's first sample to the distilled run's visual tokens (their summaries)."""
    from compressa_hf.qwen import FAMILIES
    from compressa_hf.qwen.compress.grid import choose_strides

    summaries = []
    for folder in (full_dir, distilled_dir):
        path = os.path.join(folder, "training_summary.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing: equal-token strides are chosen from it (or pass them)")
        with open(path) as f:
            summaries.append(json.load(f))
    full, distilled = summaries
    merge = FAMILIES[full["model_family"]].merge_size
    t, h, w = full["video_grid_thw"]
    return choose_strides((t, h // merge, w // merge), distilled["visual_tokens_per_sample"])


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

    def pretrain_svc(data: str, recipe: str, svc_dir: str, strides) -> list[str]:
        cmd = [sys.executable, os.path.join(HERE, "pretrain_svc.py"), *base_model, "--data", data, *common]
        cmd += [*data_flags(recipe), "--token_compressor_strides", *map(str, strides), "--output_dir", svc_dir]
        return cmd + shlex.split(args.svc_args)

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

    def sft(data: str, recipe: str, train_dir: str, *flags: str) -> list[str]:
        cmd = sft_launch + [os.path.join(HERE, "sft_qwen.py"), "--config", recipe, "--data", data]
        return cmd + ["--output_dir", train_dir, *base_model, *common, *shlex.split(args.sft_args), *flags]

    full_recipe, full_dir = recipe_for(full_data), os.path.join(args.output_dir, full_data)
    for part in ["full", *args.ratios]:
        data, name = f"{args.dataset}_{part}", "full" if part == "full" else f"distilled_{part}"
        recipe, train_dir = recipe_for(data), os.path.join(args.output_dir, data)
        eval_dir, cmd = evaluate(name, train_dir, data, recipe)
        label = "full-data SFT" if part == "full" else f"distilled SFT, {part} %"
        runs.append(
            {
                "name": name,
                "label": label,
                "train_dir": train_dir,
                "eval_dir": eval_dir,
                "commands": [sft(data, recipe, train_dir), cmd],
            }
        )
        if part == "full":
            continue
        for kind in args.equal_tokens:
            name, train_dir = f"{kind}_{part}", os.path.join(args.output_dir, f"{full_data}_{kind}_{part}")
            eval_dir, cmd = evaluate(name, train_dir, full_data, full_recipe)

            def commands(kind=kind, train_dir=train_dir, eval_cmd=cmd, distilled_dir=runs[-1]["train_dir"]):
                strides = args.equal_token_strides or equal_token_strides(full_dir, distilled_dir)
                flags = ["--token_compressor", kind, "--token_compressor_strides", *map(str, strides)]
                pretrain = []
                if kind == "svc":
                    svc_dir = args.svc_path or os.path.join(args.output_dir, "svc_" + "x".join(map(str, strides)))
                    flags += ["--token_compressor_path", svc_dir, "--tune_token_compressor", str(args.tune_svc)]
                    if not args.svc_path and not os.path.isfile(os.path.join(svc_dir, "pretrain_summary.json")):
                        pretrain = [pretrain_svc(full_data, full_recipe, svc_dir, strides)]
                return pretrain + [sft(full_data, full_recipe, train_dir, *flags), eval_cmd]

            what = "average pooling" if kind == "avgpool" else "SVC"
            runs.append(
                {
                    "name": name,
                    "label": f"full data, {what} to distilled {part} %'s tokens",
                    "train_dir": train_dir,
                    "eval_dir": eval_dir,
                    "commands": commands,
                }
            )
    return runs


def main(args) -> int:
    from compressa_hf.qwen.comparison import comparison_markdown, comparison_rows

    runs = plan(args)
    for run in runs:
        done = os.path.isfile(os.path.join(run["eval_dir"], "results.json"))
        commands = run["commands"]
        if callable(commands):  # equal-token rows: their strides come from finished runs' summaries
            if args.dry_run and not args.equal_token_strides:
                print(f"# {run['name']}: strides chosen from the full-data and distilled runs' summaries", flush=True)
                continue
            commands = commands()
        for cmd in commands:
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
