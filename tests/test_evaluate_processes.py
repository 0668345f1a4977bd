"""`compressa evaluate` under `accelerate launch` with two processes sharing one work folder: ranks split the cells,
the main process reports, and the report equals one process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
ARGS = [
    "evaluate", "--source",
    "procedural:num_classes=3,train_per_class=4,test_per_class=2,length=8,event_length=2,frame_size=16",
    "--codec", "pixel", "--num_frames", "4", "--size", "16", "--epochs", "2", "--width", "8", "--seeds", "2",
    "--methods", "uniform,random_frame,random", "--ratios", "k1,k4", "--progress", "false",
]  # fmt: skip


def _cells(out: Path) -> dict[str, dict]:
    report = json.loads((out / "report.json").read_text())
    keep = ("accuracy", "correct", "status", "rows", "stored_bytes")
    return {
        f"{c['method']}|{c['ratio']}|{c['seed']}|{c['arch']}": {k: c.get(k) for k in keep} for c in report["cells"]
    }


def _one_and_two_processes(tmp_path, args) -> tuple[dict, dict]:
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    launch = [
        # `--cpu` would start one process (accelerate's simple launcher); see compressa_hf.distributed.get_state
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
    ]  # fmt: skip
    two = subprocess.run(
        [*launch, "-m", "compressa_hf.cli", *args, "--output", str(tmp_path / "two")],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    assert "process 1 of 2 runs cells 1, 1 + 2" in two.stderr
    one = subprocess.run(
        [sys.executable, "-m", "compressa_hf.cli", *args, "--output", str(tmp_path / "one")],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    assert (tmp_path / "two" / "report.md").exists() and (tmp_path / "two" / "report.png").exists()
    return _cells(tmp_path / "two"), _cells(tmp_path / "one")


@pytest.mark.slow
def test_two_processes_split_the_cells_and_report_what_one_process_reports(tmp_path):
    a, b = _one_and_two_processes(tmp_path, ARGS)
    assert len(a) == 2 * (3 * 2 + 1) and a == b


@pytest.mark.slow
def test_augmented_rows_run_where_their_sets_are_made(tmp_path):
    """A `+aug` cell trains on its row's set, so it runs on that row's process: every set is made by one process."""
    args = [*ARGS[: ARGS.index("--methods")], "--methods", "uniform", "--ratios", "k1", "--progress", "false"]
    a, b = _one_and_two_processes(tmp_path, [*args, "--augment", "flip_cutout"])
    assert len(a) == 2 * 4 and a == b  # (uniform, full) x (plain, +aug) x 2 seeds
    assert sorted(p.name for p in (tmp_path / "two" / "sets").iterdir()) == ["uniform"]


def test_methods_full_means_the_full_data_reference_alone():
    from compressa_hf.evaluation.runner import EvaluateArguments

    args = EvaluateArguments(source="procedural", output="unused", methods="full")
    assert args.method_list == [] and args.full_data
    assert EvaluateArguments(source="procedural", output="unused", methods="uniform,full").method_list == ["uniform"]
    with pytest.raises(ValueError, match="--full_data is false"):
        EvaluateArguments(source="procedural", output="unused", methods="full", full_data=False)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        EvaluateArguments(source="procedural", output="unused", methods="", full_data=False)


@pytest.mark.slow
def test_table1_bench_under_two_processes_writes_its_reports_once(tmp_path):
    """`bench/table1.py` under `accelerate launch`: only the main process copies the reports and writes the summary
    (rank 1 used to copy a report.md that only rank 0 writes, and the launch failed after hours of cells)."""
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    source = "procedural:num_classes=3,train_per_class=4,test_per_class=2,length=8,event_length=2,frame_size=16"
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
         "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
         str(REPO / "bench" / "table1.py"), "--sets", "procedural", "--source", f"procedural={source}", "--codec",
         "pixel", "--size", "16", "--num_frames", "4", "--epochs", "2", "--width", "8", "--seeds", "1", "--methods",
         "uniform,random_frame", "--work_dir", str(tmp_path / "runs"), "--results_dir", str(tmp_path / "results"),
         "--output", str(tmp_path / "summary.json")],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "process 1 of 2 runs cells 1, 1 + 2" in done.stderr
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [
        "table1_procedural.json", "table1_procedural.md", "table1_procedural.png"
    ]  # fmt: skip
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["sets"]) == ["procedural"] and summary["sets"]["procedural"]["report"]["methods"]
