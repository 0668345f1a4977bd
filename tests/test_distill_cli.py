"""`compressa distill` and `compressa show` end to end: plan, Hub layout, kill + resume, two processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from compressa_hf.distillation.methods.base import choose_videos
from compressa_hf.store import load_config, read_meta
from tests.conftest import REPO, free_port

SOURCE = "procedural:num_classes=3,train_per_class=6,length=32,frame_size=32"
ARGS = ["--source", SOURCE, "--size", "32", "--codec", "pixel", "--num_workers", "0", "--batch_size", "4",
        "--guide_width", "16", "--passes", "2"]  # fmt: skip


def _env() -> dict:
    """The environment now (after the per-test COMPRESSA_CACHE fixture), with the checkout importable."""
    return os.environ | {"PYTHONPATH": str(REPO)}


def _distill(*extra: str, launcher: list[str] | None = None, **kw):
    cli = ["-m", "compressa_hf.cli", "--log-level", "WARNING", "distill", *ARGS, *extra]
    out = subprocess.run([*(launcher or [sys.executable]), *cli], env=_env(), capture_output=True, text=True, **kw)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _rows(repo, config):
    ds = load_config(str(repo), config, cache_dir=str(repo) + ".hf").with_format("numpy")
    return {
        "video_id": list(ds["video_id"]),
        "latents": np.asarray(ds["latents"]),
        "frame_indices": np.asarray(ds["frame_indices"]),
        "timestamps": np.asarray(ds["timestamps"]),
        "fps": np.asarray(ds["fps"]),
    }


def test_dry_run_prints_the_plan_and_computes_nothing(tmp_path):
    out = _distill("--ratio", "0.5", "--output", str(tmp_path / "set"), "--dry-run").stdout
    assert "plan: K=" in out and "Qwen2.5-VL visual tokens per sample" in out
    assert not (tmp_path / "set").exists() and not (tmp_path / "set.work").exists()
    assert "no latent cache for these settings yet" in out  # nothing has opened the clips: the plan says so


@pytest.mark.slow
def test_distill_writes_a_loadable_set_within_budget_and_show_draws_it(tmp_path):
    repo = tmp_path / "set"
    _distill("--ratio", "0.5", "--output", str(repo))
    meta = read_meta(repo)["ratio_0.5"]
    rows = _rows(repo, "ratio_0.5")
    k = meta["frames_per_video"]
    assert rows["latents"].shape == (18, k, 3, 4, 4)
    assert meta["stored_bytes"] == rows["latents"].size * (1 if meta["latents_dtype"] == "uint8" else 2)
    assert meta["achieved_ratio"] <= 0.5
    assert meta["stored_bytes"] / meta["full_bytes"] * 100 == pytest.approx(meta["achieved_ratio"])
    # kept frames are source frames of the cached T, ascending, with their times at the source's 30 fps
    summary = json.loads((tmp_path / "set.work" / "summary_ratio_0.5.json").read_text())
    cache_dir = summary["cache"]["output_dir"]
    assert cache_dir.startswith(os.environ["COMPRESSA_CACHE"])  # the shared cache, not a copy in the work dir
    cache = [json.loads(x) for x in open(os.path.join(cache_dir, "index.jsonl")).read().splitlines()]
    for row, fi, ts, fps in zip(cache, rows["frame_indices"], rows["timestamps"], rows["fps"]):
        assert set(fi) <= set(row["frame_indices"]) and list(fi) == sorted(fi)
        assert fps == 30.0 and ts == pytest.approx(fi / 30.0, abs=1e-6)  # stored to the microsecond
    subprocess.run(
        [sys.executable, "-m", "compressa_hf.cli", "show", str(repo), "--num_videos", "2"],
        check=True, env=_env(), capture_output=True,
    )  # fmt: skip
    pngs = sorted((repo / "show" / "ratio_0.5").glob("*.png"))
    assert len(pngs) == 2
    from PIL import Image

    assert Image.open(pngs[0]).size[0] > 16 * 32  # T frames side by side


@pytest.mark.slow
def test_distill_after_encode_with_the_same_settings_encodes_nothing(tmp_path):
    encode = ["-m", "compressa_hf.cli", "encode", "--source", SOURCE, "--size", "32", "--codec", "pixel",
              "--num_workers", "0"]  # fmt: skip
    first = subprocess.run([sys.executable, *encode], env=_env(), capture_output=True, text=True, check=True)
    assert json.loads(first.stdout)["this_pass"]["main_process"]["clips"] == 18
    out = subprocess.run(
        [sys.executable, "-m", "compressa_hf.cli", "distill", *ARGS, "--ratio", "0.5", "--output", str(tmp_path / "s")],
        env=_env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "cache hit: " in out.stderr
    summary = json.loads((tmp_path / "s.work" / "summary_ratio_0.5.json").read_text())
    assert summary["cache"]["cache_hit"] and summary["cache"]["this_pass"]["main_process"]["clips"] == 0
    assert summary["cache"]["output_dir"] == json.loads(first.stdout)["output_dir"]


def test_coreset_step_keeps_the_planned_videos_per_class():
    labels = [0] * 5 + [1] * 3 + [2] * 4
    keep = choose_videos(labels, [2, 2, 2], seed=0)
    assert len(keep) == 6 and [sum(labels[i] == c for i in keep) for c in range(3)] == [2, 2, 2]
    assert choose_videos(labels, [2, 2, 2], seed=0) == keep != choose_videos(labels, [2, 2, 2], seed=1)
    assert choose_videos(labels, [5, 3, 4], seed=0) == list(range(12))


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_set(tmp_path):
    common = ["--ratio", "1.0", "--checkpoint_steps", "1", "--batch_size", "2", "--passes", "3"]
    _distill(*common, "--output", str(tmp_path / "ref"))

    proc = subprocess.Popen(
        [sys.executable, "-m", "compressa_hf.cli", "--log-level", "WARNING", "distill", *ARGS, *common,
         "--output", str(tmp_path / "run")],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ckpt = tmp_path / "run.work" / "checkpoints_ratio_1" / "videocompressa_rank0.pt"
    deadline = time.time() + 300
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.005)
    time.sleep(0.3)  # a few steps in
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (tmp_path / "run" / "README.md").exists(), "the kill must land mid-distillation"

    _distill(*common, "--output", str(tmp_path / "run"), "--resume")
    a, b = _rows(tmp_path / "run", "ratio_1"), _rows(tmp_path / "ref", "ratio_1")
    assert a["video_id"] == b["video_id"]
    assert np.array_equal(a["latents"], b["latents"]) and np.array_equal(a["frame_indices"], b["frame_indices"])


@pytest.mark.slow
def test_two_processes_produce_a_set_covering_every_video(tmp_path):
    launcher = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
    ]  # fmt: skip
    _distill("--ratio", "1.0", "--output", str(tmp_path / "ddp"), launcher=launcher)
    rows = _rows(tmp_path / "ddp", "ratio_1")
    assert len(rows["video_id"]) == 18 == len(set(rows["video_id"]))
    summary = json.loads((tmp_path / "ddp.work" / "summary_ratio_1.json").read_text())
    assert summary["cache"]["processes"] == 2
