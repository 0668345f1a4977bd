"""The equal-token comparison end to end on a tiny random Qwen2.5-VL: `recipes/compare_qwen.py --equal_tokens`.

Usage:
    python bench/equal_tokens.py --work_dir outputs/bench_equal_tokens --output bench/results/equal_tokens_tiny.json

What runs: a random tiny Qwen2.5-VL (`tests/fixtures/tiny_qwen2_5_vl.json`, the real tokenizer and processor of
../shared/qwen2_5_vl) is saved; the procedural source's training split is distilled by `compressa distill --method
uniform --codec pixel` into K = 4 frames per video (real frames of the clips, 56 px); both are registered as named sets
(`tiny_<ratio>`, `tiny_full`) and `recipes/compare_qwen.py` runs zero-shot, full-data and distilled LoRA SFT, then
full-data SFT at the distilled rows' visual-token count by average pooling and by SVC (pre-trained first by
`recipes/pretrain_svc.py`), each evaluated on the test split, with the LoRA test recipes of `tests/fixtures/recipes`
(56 px, 8 raw frames). A rerun resumes (finished runs are kept). Random tiny models show the pipeline, not the science:
their accuracies are chance-level noise.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work_dir", default="outputs/bench_equal_tokens")
    parser.add_argument("--output", default="bench/results/equal_tokens_tiny.json")
    parser.add_argument("--train_per_class", type=int, default=8)
    parser.add_argument("--test_per_class", type=int, default=10)
    parser.add_argument(
        "--ratio", default="0.79", help="distillation budget; 0.79 %% buys K = 4 of T = 8 pixel frames"
    )
    parser.add_argument("--sft_steps", type=int, default=8)
    parser.add_argument("--svc_steps", type=int, default=40)
    args = parser.parse_args()

    from compressa_hf.qwen.models import save_tiny_model

    work = os.path.abspath(args.work_dir)
    os.makedirs(work, exist_ok=True)
    source = (
        f"procedural:num_classes=2,train_per_class={args.train_per_class},test_per_class={args.test_per_class},"
        "length=32,frame_size=56"
    )
    model = os.path.join(work, "tiny-qwen2.5-vl")
    if not os.path.isfile(os.path.join(model, "config.json")):
        save_tiny_model(
            os.path.join(REPO, "tests", "fixtures", "tiny_qwen2_5_vl.json"), model, f"{REPO}/../shared/qwen2_5_vl"
        )
    distilled = os.path.join(work, "tiny_distilled")
    config = f"uniform_ratio_{args.ratio}"
    if not os.path.isdir(os.path.join(distilled, "data", config)):
        run([sys.executable, "-m", "compressa_hf.cli", "distill", "--source", source, "--codec", "pixel",
             "--num_frames", "8", "--size", "56", "--ratio", args.ratio, "--method", "uniform",
             "--output", distilled])  # fmt: skip
    data = f"tiny_{args.ratio}"
    registry = os.path.join(work, "sets.yaml")
    with open(registry, "w") as f:
        yaml.safe_dump(
            {
                data: {"repo": distilled, "config": config, "eval_source": source},
                "tiny_full": {"source": source, "eval_source": source},
            },
            f,
        )
    recipes = os.path.join(work, "recipes", "lora")  # the test recipes, named for this set
    os.makedirs(recipes, exist_ok=True)
    fixtures = os.path.join(REPO, "tests", "fixtures", "recipes", "lora")
    for name, data_name in (("config_tiny_0.5.yaml", data), ("config_tiny_full.yaml", "tiny_full")):
        with open(os.path.join(fixtures, name)) as f:
            recipe = yaml.safe_load(f) | {"data": data_name}
        with open(os.path.join(recipes, f"config_{data_name}.yaml"), "w") as f:
            yaml.safe_dump(recipe, f)
    svc_args = f"--dtype float32 --max_steps {args.svc_steps} --per_device_train_batch_size 4 --learning_rate 3e-3"
    compare = [
        sys.executable, os.path.join(REPO, "recipes", "compare_qwen.py"), "--dataset", "tiny", "--ratios", args.ratio,
        "--recipe_dir", os.path.dirname(recipes), "--model_name_or_path", model, "--accelerate_config", "",
        "--num_processes", "1", "--data_registry", registry, "--output_dir", os.path.join(work, "compare"),
        "--sft_args", f"--max_steps {args.sft_steps}",
        "--eval_args", "--dtype float32 --max_new_tokens 4 --batch_size 4",
        "--equal_tokens", "avgpool", "svc", "--svc_args", svc_args,
    ]  # fmt: skip
    run(compare)
    with open(os.path.join(work, "compare", "comparison.json")) as f:
        rows = json.load(f)
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(
            {"args": vars(args), "command": shlex.join(compare), "rows": rows, "cpu_count": os.cpu_count()},
            f,
            indent=2,
        )


def run(cmd: list[str]) -> None:
    print("+ " + shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=os.environ | {"PYTHONPATH": REPO, "HF_HUB_OFFLINE": "1"})


if __name__ == "__main__":
    main()
