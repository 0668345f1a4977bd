"""The table of `recipes/compare_qwen.py`: zero-shot vs full-data SFT vs distilled SFT on one dataset, with gains.

    rows = comparison_rows(runs)          # runs: name, label, eval_dir, optional train_dir
    table = comparison_markdown(rows, title)

A row reads a run's `results.json` (`recipes/eval_qwen.py`) and `training_summary.json` (`recipes/sft_qwen.py`); a
run that has not finished is a row marked `(not run)`.
"""

from __future__ import annotations

import json
import os


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
