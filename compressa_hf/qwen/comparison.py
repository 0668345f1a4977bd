"""The table of `recipes/compare_qwen.py`: zero-shot vs full-data SFT vs distilled SFT on one dataset, with gains.

    rows = comparison_rows(runs)          # runs: name, label, eval_dir, optional train_dir
    table = comparison_markdown(rows, title)

A row reads a run's `results.json` (`recipes/eval_qwen.py`) and `training_summary.json` (`recipes/sft_qwen.py`); a
run that has not finished is a row marked `(not run)`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field


@dataclass
class CompareArguments:
    """Arguments of `recipes/compare_qwen.py`: zero-shot vs full-data SFT vs distilled SFT on one dataset.

    Each run is its own `accelerate launch` of `sft_qwen.py` / `eval_qwen.py` with the recipe
    `<recipe_dir>/<method>/config_<dataset>_<ratio | full>.yaml`; finished runs (their `results.json` exists) are
    skipped, so a killed comparison resumes where it stopped.

    Args:
        dataset: Dataset prefix of the named sets (`hmdb51`, `ucf101`, or a registry prefix such as `tiny`).
        ratios: Distilled ratios to train on (named sets `<dataset>_<ratio>`).
        method: Recipe folder: `lora` or `full`.
        recipe_dir: Folder holding `<method>/config_*.yaml`.
        model_name_or_path: Base model; overrides the recipes' and is the zero-shot model.
        accelerate_config: `--config_file` for the SFT launches (e.g. `accelerate_configs/zero2.yaml`).
        eval_accelerate_config: `--config_file` for the evaluation launches (None: accelerate's default).
        num_processes: Overrides the accelerate configs' process count (None keeps theirs).
        output_dir: Runs go to `<output_dir>/<name>`, the table to `<output_dir>/comparison.{md,json}`.
        data_registry: Extra named sets, passed to every run.
        sft_args / eval_args: Extra flags for every SFT / evaluation run (one string, shell-quoted).
        equal_tokens: Equal-token rows to add after each distilled row: full-data SFT with the visual tokens cut to the
            distilled run's count by `avgpool` (3D average pooling) and / or `svc` (SVC, pre-trained by
            `recipes/pretrain_svc.py` on the full training split unless `svc_path` is given). They separate "better
            frames" from "fewer tokens".
        equal_token_strides: (t, h, w) strides of those rows; None: for each ratio, the strides that bring the
            full-data run's first sample closest to the distilled run's tokens (`compress.grid.choose_strides`).
        svc_path: A pre-trained SVC to use for every `svc` row (its strides must be the rows').
        svc_args: Extra flags for the `recipes/pretrain_svc.py` runs (e.g. `--max_steps 20000`).
        tune_svc: Train the SVC with the model in its SFT runs (`tune_token_compressor`).
        dry_run: Print the commands and stop.
    """

    dataset: str = field(default="hmdb51", metadata={"help": "Dataset prefix: hmdb51, ucf101, ..."})
    ratios: list[str] = field(default_factory=lambda: ["0.21", "0.41", "0.82"], metadata={"help": "Ratios."})
    method: str = field(default="lora", metadata={"help": "Recipe folder: lora or full."})
    recipe_dir: str = field(default="recipes/qwen2_5_vl_7b", metadata={"help": "Folder with <method>/config_*.yaml."})
    model_name_or_path: str | None = field(default=None, metadata={"help": "Base model (also the zero-shot one)."})
    accelerate_config: str | None = field(
        default="accelerate_configs/zero2.yaml", metadata={"help": "accelerate --config_file for SFT runs."}
    )
    eval_accelerate_config: str | None = field(
        default=None, metadata={"help": "accelerate --config_file for evaluation runs."}
    )
    num_processes: int | None = field(default=None, metadata={"help": "Processes per launch (None: the config's)."})
    output_dir: str = field(default="outputs/compare", metadata={"help": "Runs and the comparison table go here."})
    data_registry: str | None = field(default=None, metadata={"help": "Extra named sets YAML."})
    sft_args: str = field(default="", metadata={"help": "Extra flags for every SFT run."})
    eval_args: str = field(default="", metadata={"help": "Extra flags for every evaluation run."})
    equal_tokens: list[str] = field(
        default_factory=list, metadata={"help": "Equal-token full-data rows per ratio: avgpool and / or svc."}
    )
    equal_token_strides: list[int] | None = field(
        default=None, metadata={"help": "Strides t h w of the equal-token rows (None: chosen per ratio)."}
    )
    svc_path: str | None = field(default=None, metadata={"help": "A pre-trained SVC for the svc rows."})
    svc_args: str = field(default="", metadata={"help": "Extra flags for the pretrain_svc.py runs."})
    tune_svc: bool = field(default=True, metadata={"help": "Train the SVC in its SFT runs."})
    dry_run: bool = field(default=False, metadata={"help": "Print the commands only."})

    def __post_init__(self):
        if self.method not in ("lora", "full"):
            raise ValueError(f"`method` must be lora or full, got {self.method!r}")
        unknown = sorted(set(self.equal_tokens) - {"avgpool", "svc"})
        if unknown:
            raise ValueError(f"`equal_tokens` takes avgpool and / or svc, got {unknown}")
        if self.equal_token_strides is not None:
            from compressa_hf.qwen.compress.grid import check_strides

            self.equal_token_strides = list(check_strides(self.equal_token_strides))


def _read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def comparison_rows(runs: list[dict]) -> list[dict]:
    """One row per run (`name`, `label`, `eval_dir`, optional `train_dir`), with accuracies and gains.

    Gains are in points against the zero-shot run (`name == "zero_shot"`) and the full-data run (`name == "full"`),
    where those finished.
    """
    rows = []
    for run in runs:
        results = _read_json(os.path.join(run["eval_dir"], "results.json"))
        train = _read_json(os.path.join(run["train_dir"], "training_summary.json")) if run.get("train_dir") else None
        row = {"name": run["name"], "label": run["label"], "finished": results is not None}
        if train:
            row |= {k: train.get(k) for k in ("ratio", "num_train_samples", "frames_per_sample")}
            row |= {"visual_tokens_per_sample": train.get("visual_tokens_per_sample")}
            row |= {"train_runtime_s": train.get("train_runtime_s")}
            row |= {"token_compressor": train.get("token_compressor"), "distilled": train.get("distilled")}
        if results:
            row |= {k: v for k, v in results.items() if k.startswith(("accuracy_", "stderr_"))}
            row["num_test"] = results["num_samples"]
        rows.append(row)
    by_name = {r["name"]: r for r in rows}
    for row in rows:
        for ref in ("zero_shot", "full"):
            base = by_name.get(ref)
            for key in [k for k in row if k.startswith("accuracy_")]:
                if base and key in base and row["name"] not in (ref, "zero_shot"):
                    row[f"gain_vs_{ref}_{key.removeprefix('accuracy_')}"] = 100 * (row[key] - base[key])
    return rows


def _dash(x) -> str:
    return "-" if x is None else str(x)


def _points(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _gain(x) -> str:
    return "-" if x is None else f"{x:+.2f}"


def _compressor(c: dict | None) -> str:
    if not c:
        return "-"
    text = f"{c['kind']} {'x'.join(map(str, c['strides']))}"
    if c["kind"] == "svc":
        text += ", pre-trained" if c.get("pretraining") else ", not pre-trained"
        text += ", tuned" if c.get("tuned") else ", frozen"
    return text


def comparison_markdown(rows: list[dict], title: str) -> str:
    """The Figure 3 table: accuracy of zero-shot, full-data SFT and distilled SFT, with gains in points; the last
    column names a run's visual-token compressor (equal-token rows)."""
    header = (
        "| training data | ratio (%) | videos | frames / video | visual tokens / sample | accuracy, log-lik (%) | "
        "vs zero-shot | vs full data | accuracy, generation (%) | SFT time (s) | token compressor |"
    )
    lines = [f"## {title}", "", header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:g}"
        if r["name"] == "full" or r.get("distilled") is False:  # the full training split, compressed or not
            ratio = "100"
        cells = [
            r["label"] if r["finished"] else f"{r['label']} (not run)",
            ratio,
            _dash(r.get("num_train_samples")),
            _dash(r.get("frames_per_sample")),
            _dash(r.get("visual_tokens_per_sample")),
            _points(r.get("accuracy_loglik")),
            _gain(r.get("gain_vs_zero_shot_loglik")),
            _gain(r.get("gain_vs_full_loglik")),
            _points(r.get("accuracy_generate")),
            "-" if r.get("train_runtime_s") is None else f"{r['train_runtime_s']:.0f}",
            _compressor(r.get("token_compressor")),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines.append("")
    return "\n".join(lines)
