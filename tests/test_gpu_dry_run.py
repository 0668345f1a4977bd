"""The prepared GPU check (bench/gpu/) on CPU: `run.sh --dry-run` runs every part at tiny sizes and writes the summary
the GPU run would, so the script cannot rot between GPU runs; the time caps stop a part and the run goes on; the
carried-size report counts what a device call sends.

The dry run blocks the packages the GPU machine lacks and that prepare.sh does not carry (av, diffusers, deepspeed):
a part that starts importing one fails here, not there.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import QWEN, REPO, SHARED, TAEF2, need_shared

GPU = REPO / "bench" / "gpu"
PARTS = [
    "environment", "gpu_tests", "table1_112", "sft_9b_packed", "distill", "train", "sft_7b_lora", "eval_loglik",
    "sft_3b_full",
]  # fmt: skip
NOT_ON_THE_GPU_MACHINE = ("av", "diffusers", "deepspeed")


def load(name: str):
    """A script of bench/gpu as a module (registered, so its dataclasses resolve their module)."""
    spec = importlib.util.spec_from_file_location(f"bench_gpu_{name}", GPU / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def blocking_env(tmp_path: Path) -> dict:
    """The environment for a dry run: the blocker first on PYTHONPATH, no $OUT / $COMPRESSA_TAE_DIR of the caller."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        f"import sys\nfor name in {NOT_ON_THE_GPU_MACHINE!r}:\n    sys.modules[name] = None\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "COMPRESSA_TAE_DIR", "COMPRESSA_SHARED")}
    paths = [str(blocker), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    return env | {"PYTHON": sys.executable, "COMPRESSA_SHARED": str(SHARED), "PYTHONPATH": os.pathsep.join(paths)}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    need_shared(QWEN)
    need_shared(TAEF2)
    tmp = tmp_path_factory.mktemp("gpu_dry_run")
    out = tmp / "out"
    proc = subprocess.run(
        ["bash", str(GPU / "run.sh"), "--dry-run", "--out", str(out)],
        cwd=tmp,  # run.sh finds the repository from its own path
        env=blocking_env(tmp),
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = json.loads((out / "summary.json").read_text())
    return proc, out, summary


def parts_of(summary: dict) -> dict:
    return {name: part["result"] for name, part in summary["parts"].items()}


@pytest.mark.slow
@pytest.mark.real_data
def test_dry_run_runs_every_part_and_returns_two_files(dry_run):
    proc, out, summary = dry_run
    failed = {n: p.get("log_tail", p.get("reason")) for n, p in summary["parts"].items() if p["status"] != "ok"}
    assert proc.returncode == 0 and not failed, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n{failed}"
    assert summary["dry_run"] and summary["ok"] and list(summary["parts"]) == PARTS
    assert summary["wheels"]["status"] == "skipped"
    # The device tool returns at most 8 files from $OUT: everything else stays in a scratch folder, removed at the end.
    assert sorted(p.name for p in out.iterdir()) == ["run.log", "summary.json"]
    log = (out / "run.log").read_text()
    assert all(f"===== {name}: " in log for name in PARTS)
    for part in summary["parts"].values():
        assert 0 < part["wall_s"] <= part["cap_s"] and part["rc"] == 0
    assert summary["wall_s"] < summary["budget_s"]
    assert list(Path(summary["tae_dir"]).glob("taef2_encoder.*"))  # run.py pointed tae:taef2 at real weights


@pytest.mark.slow
@pytest.mark.real_data
def test_dry_run_environment_and_gpu_tests(dry_run):
    _, _, summary = dry_run
    env, tests = parts_of(summary)["environment"], parts_of(summary)["gpu_tests"]
    assert env["cuda"] is False and env["packages"]["torch"]
    assert all(not env["imports"][m].startswith(("ImportError", "ModuleNotFoundError")) for m in ("trl", "datasets"))
    # Every test of tests/test_gpu.py was collected (the module imports without CUDA) and skipped for want of it.
    names = {
        n.name for n in ast.parse((REPO / "tests" / "test_gpu.py").read_text()).body if isinstance(n, ast.FunctionDef)
    }
    expected = {n for n in names if n.startswith("test_")}
    collected = [t["name"].rsplit("::", 1)[1] for t in tests["tests"]]
    assert {c.split("[")[0] for c in collected} == expected  # parametrized tests collect as name[param]
    assert tests["counts"] == {"skipped": len(collected)}
    assert all("CUDA" in t["message"] for t in tests["tests"])


@pytest.mark.slow
@pytest.mark.real_data
def test_dry_run_distill_and_train_report_their_figures(dry_run):
    _, _, summary = dry_run
    distill, train = parts_of(summary)["distill"], parts_of(summary)["train"]
    cache, run = distill["rows"]
    assert cache["step"] == "cache pass" and cache["clips"] == 4 and run["videos"] == 4
    assert run["over_cache_pass"] == pytest.approx(run["seconds"] / cache["seconds"])
    assert run["seconds_per_1000_videos"] == pytest.approx(1000 * run["seconds"] / 4)
    assert run["decoded_frames"] > 0 and run["ours_decodes"] < run["paper_decodes"]
    assert distill["args"]["cache_dtype"] == "bfloat16" and distill["args"]["codec"] == "tae:taef2"

    rows = {r["set"]: r for r in train["rows"]}
    assert list(rows) == ["distilled K=1", "full data T=4"]
    for row in rows.values():
        assert row["clips"] == 4 and row["epochs"] == 2 and len(row["epoch_seconds"]) == 2
        assert row["seconds_per_epoch"] == row["epoch_seconds"][1] and row["first_epoch_s"] == row["epoch_seconds"][0]
    assert train["full_over_distilled"]["distilled K=1"] == pytest.approx(
        rows["full data T=4"]["seconds_per_epoch"] / rows["distilled K=1"]["seconds_per_epoch"]
    )


@pytest.mark.slow
@pytest.mark.real_data
def test_dry_run_sft_and_eval_measure_what_the_gpu_run_reports(dry_run):
    _, _, summary = dry_run
    lora, full, ev = (parts_of(summary)[n] for n in ("sft_7b_lora", "sft_3b_full", "eval_loglik"))
    rows = {(r["kind"], r["frame_side"]): r for r in lora["rows"]}
    assert sorted(rows) == [("distilled", 56), ("distilled", 112), ("raw", 56), ("raw", 112)]
    for side in (56, 112):
        distilled, raw = rows["distilled", side], rows["raw", side]
        assert (distilled["frames_per_sample"], raw["frames_per_sample"]) == (2, 4)
        assert raw["visual_tokens_per_sample"] == 2 * distilled["visual_tokens_per_sample"]  # T / K
        assert lora["speedup_per_sample"][str(side)] == pytest.approx(
            raw["step_s_per_sample"] / distilled["step_s_per_sample"]
        )
    assert rows["raw", 112]["visual_tokens_per_sample"] == 4 * rows["raw", 56]["visual_tokens_per_sample"]
    assert all(r["loss_finite"] and r["steps"] == 1 for r in lora["rows"] + full["rows"])
    # LoRA trains adapters only; full SFT the language model (the vision side frozen, as the full recipes default).
    lora_trainable, full_trainable = lora["rows"][0]["trainable_parameters"], full["rows"][0]["trainable_parameters"]
    assert 0 < lora_trainable < full_trainable < full["rows"][0]["total_parameters"]
    assert lora["args"]["one_process"] and not full["args"]["lora"]

    assert ev["clips"] == 2 and ev["skipped"] == 0 and ev["classes"] == 2 and ev["scores_finite"]
    assert ev["clips_per_s"] == pytest.approx(ev["clips"] / ev["seconds"])
    assert ev["visual_tokens_per_clip"] == rows["raw", 56]["visual_tokens_per_sample"]  # 4 frames at 56 x 56 both


@pytest.mark.slow
@pytest.mark.real_data
def test_dry_run_measures_qwen3_5_padded_and_packed(dry_run):
    """The Qwen3.5 part: each sample kind padded and packed, with tokens per second and the padded-waste share."""
    _, _, summary = dry_run
    result = parts_of(summary)["sft_9b_packed"]
    rows = {(r["kind"], r["packed"]): r for r in result["rows"]}
    assert sorted(rows) == [(k, p) for k in ("distilled", "raw", "raw_qwen") for p in (False, True)]
    assert all(r["model_family"] == "qwen3_5" and r["loss_finite"] and r["tokens_per_s"] > 0 for r in rows.values())
    for kind in ("distilled", "raw", "raw_qwen"):
        padded, packed = rows[kind, False], rows[kind, True]
        assert packed["padded_waste_share"] == 0 and padded["tokens_per_sample"] == packed["tokens_per_sample"]
    # K = 2 distilled frames vs T = 4 raw frames at 56 px; qwen-vl-utils' defaults enlarge 56 px frames many times
    assert rows["raw", True]["visual_tokens_per_sample"] == 2 * rows["distilled", True]["visual_tokens_per_sample"]
    assert rows["raw_qwen", True]["visual_tokens_per_sample"] > 4 * rows["raw", True]["visual_tokens_per_sample"]
    assert set(result["packing_speedup_per_sample"]) == {
        "distilled 64",
        "raw 64",
        f"raw_qwen {rows['raw_qwen', True]['frame_side']}",
    }


@pytest.mark.slow
@pytest.mark.real_data
def test_dry_run_table1_reports_every_set_with_intervals_and_its_cells(dry_run):
    """The 112 px Table 1 part, at tiny sizes: both sets from frame folders, every row with its paired intervals
    against uniform and full data, and every finished cell (what a later GPU session resumes from)."""
    _, _, summary = dry_run
    result = parts_of(summary)["table1_112"]
    assert list(result["sets"]) == ["ucf101_19", "arid6_iid"] and result["restored_cells"] == 0
    for entry in result["sets"].values():
        assert entry["status"] == "finished"
        rows = {(r["method"], r["ratio"]): r for r in entry["rows"]}
        assert {m for m, _ in rows} == {"uniform", "random_frame", "full"} and len(rows) == 5  # k1, k2 and full
        assert all(r["seeds"] == [0, 1] for r in rows.values())
        k1 = min(r for _, r in rows if r is not None)
        assert set(rows["random_frame", k1]["against"]) == {"uniform", "full"}
        assert len(entry["cells"]) == 10 and all(c["status"] == "ok" for c in entry["cells"].values())


@pytest.mark.slow
def test_table1_part_resumes_from_a_summary_and_stops_at_its_deadline(tmp_path):
    """A later GPU session restores the finished cells of the newest summary and runs none of them again; a set
    past its share of the deadline is stopped and reported, not lost."""
    script = [sys.executable, str(GPU / "table1_gpu.py"), "--dry_run", "--frames", str(tmp_path / "frames")]
    first = tmp_path / "first.json"
    subprocess.run([*script, "--sets", "ucf101_19", "--output", str(first)], check=True, timeout=300)
    cells = json.loads(first.read_text())["sets"]["ucf101_19"]["cells"]
    summary = tmp_path / "gpu_h100_2026-12-08.json"  # as run.py's summary embeds the part
    summary.write_text(json.dumps({"parts": {"table1_112": {"result": json.loads(first.read_text())}}}))
    second = tmp_path / "second.json"
    subprocess.run(
        [*script, "--sets", "ucf101_19", "--resume", str(summary), "--output", str(second)], check=True, timeout=300
    )
    again = json.loads(second.read_text())
    assert again["restored_cells"] == len(cells) == 10
    assert again["sets"]["ucf101_19"]["cells"] == cells  # nothing recomputed: the restored cells are the table's
    log = (tmp_path / "second_runs" / "ucf101_19.log").read_text()
    assert "seed 0 convnet" not in log  # no cell trained

    proc = subprocess.run(
        [*script, "--sets", "ucf101_19", "--deadline_s", "0", "--output", str(tmp_path / "late.json")], timeout=300
    )
    late = json.loads((tmp_path / "late.json").read_text())["sets"]["ucf101_19"]
    assert proc.returncode == 1 and late["status"] == "stopped at its share of the deadline"


def test_table1_part_resumes_from_the_newest_summary_with_cells(tmp_path, monkeypatch):
    run = load("run")
    monkeypatch.setattr(run, "REPO", str(tmp_path))
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    assert run.resume_table1() == []

    def summary(name: str, cells: dict) -> None:
        part = {"result": {"sets": {"ucf101_19": {"cells": cells}}}}
        (results / name).write_text(json.dumps({"parts": {"table1_112": part}}))

    summary("gpu_h200_2026-11-29.json", {"a": {}})
    summary("gpu_h100_2026-12-08.json", {"a": {}, "b": {}})  # newer by date, though "h100" sorts before "h200"
    summary("gpu_h200_2026-12-09.json", {})  # newest, but without cells
    assert run.resume_table1() == ["--resume", str(results / "gpu_h100_2026-12-08.json")]


def test_eval_benchmark_uses_the_recipes_defaults():
    from compressa_hf.qwen.evaluation import EvalArguments

    bench = load("eval_loglik")
    defaults = EvalArguments()
    assert (bench.EVAL_MAX_FPS, bench.EVAL_CHOICE_BATCH_SIZE) == (defaults.max_fps, defaults.choice_batch_size)
    assert defaults.frame_size is None and defaults.methods[0] == "loglik"


@pytest.mark.slow
def test_a_part_past_its_cap_is_stopped_and_the_next_one_runs(tmp_path, monkeypatch):
    run = load("run")
    for key, value in blocking_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    rc = run.main(["--dry-run", "--parts", "environment,gpu_tests", "--cap", "environment=0.5", "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    env, tests = summary["parts"]["environment"], summary["parts"]["gpu_tests"]
    assert rc == 1 and not summary["ok"]
    assert env["status"] == "timeout" and env["wall_s"] < 20 and env["cap_s"] == 0.5
    assert tests["status"] == "ok" and tests["result"]["counts"].get("skipped", 0) > 0

    # With too little of the total budget left, a part is not started at all.
    rc = run.main(["--dry-run", "--parts", "environment", "--budget_s", "5", "--out", str(out)])
    skipped = json.loads((out / "summary.json").read_text())["parts"]["environment"]
    assert rc == 1 and skipped["status"] == "skipped" and "budget" in skipped["reason"]


@pytest.mark.slow
def test_timeout_kills_the_whole_process_group(tmp_path):
    run = load("run")
    marker = tmp_path / "grandchild_alive"
    # The child starts a grandchild that would write the marker after 3 s; the cap kills both after 0.5 s.
    script = f"sleep 3 && touch {marker} & sleep 30"
    with open(tmp_path / "log", "wb") as log:
        status, rc, seconds = run.run_part(["bash", "-c", script], 0.5, dict(os.environ), log)
    assert status == "timeout" and seconds < 10
    subprocess.run(["sleep", "3.5"])
    assert not marker.exists()


def test_unknown_part_names_are_refused(tmp_path):
    run = load("run")
    with pytest.raises(SystemExit, match="unknown part 'sft'"):
        run.main(["--dry-run", "--parts", "sft", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="unknown part 'distil'"):
        run.main(["--dry-run", "--cap", "distil=5", "--out", str(tmp_path)])


# -- what a device call sends --------------------------------------------------------------------------------------


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_carried_size_counts_the_tree_that_travels_and_the_carried_folders(tmp_path):
    carry_size = load("carry_size")
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    ignore = "/ignored/\n/.gpu/\n"
    (root / ".gitignore").write_text(ignore)
    (root / "tracked.py").write_bytes(b"x" * 1000)
    git(root, "add", ".gitignore", "tracked.py")
    (root / "untracked.txt").write_bytes(b"y" * 200)  # untracked, not ignored: travels
    (root / "ignored").mkdir()
    (root / "ignored" / "big.bin").write_bytes(b"z" * 5000)  # ignored and not carried: stays
    (root / ".gpu" / "whl").mkdir(parents=True)
    (root / ".gpu" / "whl" / "a.whl").write_bytes(b"w" * 3000)
    (root / ".gpu" / "shared").mkdir()
    (root / ".gpu" / "shared" / "tokenizer.json").write_bytes(b"t" * 700)

    report = carry_size.carried_size(str(root), [".gpu", "missing_folder"])
    assert report["parts"]["working tree"] == {"files": 3, "bytes": len(ignore) + 1000 + 200}
    assert report["parts"][".gpu"] == {"files": 2, "bytes": 3700, "missing": False}
    assert report["parts"]["missing_folder"] == {"files": 0, "bytes": 0, "missing": True}
    assert report["total_bytes"] == len(ignore) + 1000 + 200 + 3700 and report["fits"]

    # Over 64 MiB (a sparse file: apparent size is what counts): reported, and the command exits 1.
    with open(root / ".gpu" / "whl" / "huge.whl", "wb") as f:
        f.truncate(64 * 2**20)
    report = carry_size.carried_size(str(root), [".gpu"])
    assert not report["fits"] and report["total_bytes"] == len(ignore) + 1000 + 200 + 3700 + 64 * 2**20
    assert carry_size.main(["--root", str(root), ".gpu"]) == 1


def test_prepare_check_reports_the_tree_and_the_carried_folder():
    env = os.environ | {"PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(GPU / "prepare.sh"), "--check"], env=env, capture_output=True, text=True)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("working tree") and lines[1].startswith(".gpu ")
    assert lines[-1].startswith("carried size: ") and "of 64.00 MiB" in lines[-1]
    fits = ": fits," in lines[-1]
    assert proc.returncode == (0 if fits else 1)
