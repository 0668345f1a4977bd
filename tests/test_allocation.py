"""The budget's allocation as a choice: `--frames_per_video K` spends a ratio on more frames of fewer videos, for
every method that stores the planner's K (`FIXED_K_METHODS`), in `compressa evaluate` and `compressa distill`."""

from __future__ import annotations

import pytest

from compressa_hf.cli import main as cli
from compressa_hf.distillation.budget import ratio_for_frames
from compressa_hf.distillation.methods import FIXED_K_METHODS, compress
from compressa_hf.store import read_meta
from tests.test_methods import CLASSES, PER_CLASS, SIZE, T, _context


@pytest.mark.parametrize("method", ["uniform", "pixel_diff", "dm"])
def test_fixed_k_keeps_more_frames_of_fewer_videos_in_the_same_bytes(method):
    options = {"iterations": 2, "width": 8, "depth": 1, "batch_real": 4} if method == "dm" else {}
    ratio = ratio_for_frames(1, T, SIZE, (3, 2, 2))  # k1: one frame of every video
    default = compress(method, _context(ratio, **options))
    ctx = _context(ratio, **options)
    ctx.frames_per_video = 2
    fixed = compress(method, ctx)
    assert (default.frames_per_row, default.num_rows) == (1, CLASSES * PER_CLASS)
    assert (fixed.frames_per_row, fixed.num_rows) == (2, CLASSES * PER_CLASS // 2)  # 2 of 4 videos per class
    assert fixed.stored_bytes == default.stored_bytes == ctx.budget_bytes
    assert sorted(fixed.labels.tolist()) == sorted([0, 1, 2] * 2)  # every class keeps its share


def test_methods_that_choose_their_own_k_refuse_a_fixed_one():
    ctx = _context(ratio_for_frames(4, T, SIZE, (3, 2, 2)))
    ctx.frames_per_video = 2
    with pytest.raises(ValueError, match="'random' chooses its own frames per video"):
        compress("random", ctx)
    assert "uniform" in FIXED_K_METHODS and "prism" not in FIXED_K_METHODS


def test_evaluate_frames_per_video(tmp_path):
    from tests.test_evaluate import _evaluate

    report = _evaluate(tmp_path / "eval", "--methods", "uniform,random", "--ratios", "k1", "--seeds", "1",
                       "--frames_per_video", "2")  # fmt: skip
    cells = {c["method"]: c for c in report["cells"]}
    assert (cells["uniform"]["frames_per_row"], cells["uniform"]["rows"]) == (2, 6)
    assert cells["random"]["status"] == "n/a" and "chooses its own frames" in cells["random"]["reason"]
    assert cells["full"]["status"] == "ok"
    with pytest.raises(ValueError, match="frames_per_video"):
        _evaluate(tmp_path / "bad", "--frames_per_video", "9")  # T = 4


def test_distill_frames_per_video_for_a_planner_method(tmp_path, capsys):
    from tests.test_distill_method import COMMON

    common = [a if a != "1.0" else "0.5" for a in COMMON]  # 0.5 %: K = 1 of every video (a 48-byte uint8 frame)
    argv = ["distill", *common, "--cache_dir", str(tmp_path / "cache"), "--method", "uniform"]
    assert cli([*argv, "--output", str(tmp_path / "a")]) == 0
    assert cli([*argv, "--output", str(tmp_path / "b"), "--frames_per_video", "2", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert cli([*argv, "--output", str(tmp_path / "b"), "--frames_per_video", "2"]) == 0
    a, b = read_meta(tmp_path / "a")["uniform_ratio_0.5"], read_meta(tmp_path / "b")["uniform_ratio_0.5"]
    assert (a["frames_per_video"], a["num_videos"]) == (1, 12)
    assert (b["frames_per_video"], b["num_videos"]) == (2, 6) and b["stored_bytes"] == a["stored_bytes"]
    assert "K=2 frame(s) per video for 6 of 12 videos" in plan
    capsys.readouterr()
    with pytest.raises(ValueError, match="'random' chooses its own frames per video"):
        cli(["--debug", *argv, "--output", str(tmp_path / "c"), "--method", "random", "--frames_per_video", "2"])


@pytest.mark.parametrize("method", ["uniform", "videocompressa"])
@pytest.mark.parametrize("dtype", ["float16", "uint8"])
def test_distill_soft_labels_are_paid_from_the_budget_and_published(method, dtype, tmp_path, capsys):
    from datasets import load_dataset

    from tests.test_distill_method import COMMON, VIDEOCOMPRESSA_FLAGS

    common = [a if a != "1.0" else "k2" for a in COMMON]  # exactly K = 2 uint8 frames of all 12 videos: 1,152 bytes
    out = tmp_path / "set"
    argv = ["distill", *common, "--output", str(out), "--cache_dir", str(tmp_path / "cache"), "--method", method,
            "--soft_labels", "true", "--soft_label_dtype", dtype, "--teacher_epochs", "2", "--teacher_width", "8",
            "--teacher_batch_size", "4", "--soft_label_temperature", "2"]  # fmt: skip
    if method == "uniform":  # the dry run reserves the labels' room as the run does
        assert cli([*argv, "--dry-run"]) == 0
        plan = capsys.readouterr().out
        assert (
            "K=2 frame(s) per video for 9 of 12 videos" in plan
            and f"{3 * (2 if dtype == 'float16' else 1)} bytes" in plan
        )
    assert cli(argv + (VIDEOCOMPRESSA_FLAGS if method == "videocompressa" else [])) == 0, capsys.readouterr().err
    name = "ratio_k2" if method == "videocompressa" else "uniform_ratio_k2"
    meta = read_meta(out)[name]
    per_row = 3 * (2 if dtype == "float16" else 1)  # 3 classes
    # the labels cost videos, never frames: K stays 2, and 3 of 4 videos per class fit (9 x (96 + 6) = 918 bytes;
    # uint8 labels: 11 x 99 = 1,089 fits but per class only 3, as the planner keeps classes balanced)
    assert meta["frames_per_video"] == 2 and meta["num_videos"] == 9
    assert meta["stored_bytes"] == 9 * (2 * 48 + per_row) <= meta["budget_bytes"] == 1152
    soft = meta["soft_labels"]
    assert (soft["dtype"], soft["bytes"], soft["temperature"]) == (dtype, 9 * per_row, 2.0)
    assert meta["latent_bytes"] + soft["bytes"] == meta["stored_bytes"]
    assert "**soft labels (`soft_label` column)**" in (out / "README.md").read_text()
    ds = load_dataset(str(out), name, split="train", cache_dir=str(tmp_path / "hf"))
    rows = [r["soft_label"] for r in ds]
    assert all(len(r) == 3 for r in rows)
    assert all(sum(r) == 255 for r in rows) if dtype == "uint8" else all(abs(sum(r) - 1) < 5e-3 for r in rows)
    assert (tmp_path / "set.work" / "teachers" / "convnet_s0.safetensors").exists()


def test_resized_codec_stores_smaller_frames_and_reads_back_at_the_frame_size():
    import torch

    from compressa_hf.codecs import load_codec, portability_problem
    from compressa_hf.codecs.resized import ResizedCodec

    codec = load_codec("resize:16/32:pixel")
    assert (codec.codec_id, codec.downscale, codec.latent_shape(32, 32)) == (
        "resize:16/32:pixel:avgpool8",
        16,
        (3, 2, 2),
    )
    x = torch.rand(2, 3, 32, 32)
    z = codec.encode(x)
    assert z.shape == (2, 3, 2, 2) and codec.decode(z).shape == (2, 3, 32, 32)
    # what the inner codec makes of the downscaled frame, read back at 32 px
    small = torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(z, load_codec("pixel").encode(small), atol=1e-6)
    assert load_codec(codec.codec_id).codec_id == codec.codec_id  # a card's codec_id rebuilds it
    assert portability_problem(codec.codec_id) is None and "not packaged" in portability_problem("resize:8/16:tae:x")
    with pytest.raises(ValueError, match="takes 32 x 32 frames"):
        codec.latent_shape(48, 48)
    for bad, message in [((20, 32), "multiple of"), ((32, 32), "below the frame side"), ((24, 40), "whole downscale")]:
        with pytest.raises(ValueError, match=message):
            ResizedCodec(load_codec("pixel"), *bad)
    with pytest.raises(ValueError, match="resize:<stored>/<size>"):
        load_codec("resize:16:pixel")


def test_evaluate_and_distill_at_a_smaller_stored_side(tmp_path, capsys):
    from datasets import load_dataset

    from compressa_hf.distillation.budget import ratio_for_frames
    from compressa_hf.qwen.samples import load_chat_dataset
    from tests.test_distill_method import COMMON
    from tests.test_evaluate import _evaluate

    # The budget of one plain pixel-codec frame per video (3 x 2 x 2 = 12 bytes at 16 px) holds 4 frames stored at
    # 8 px (3 x 1 x 1): every frame of T = 4, at the same bytes.
    ratio = str(float(ratio_for_frames(1, 4, 16, (3, 2, 2))))
    report = _evaluate(tmp_path / "eval", "--methods", "uniform", "--ratios", ratio, "--seeds", "1",
                       "--codec", "resize:8/16:pixel")  # fmt: skip
    cells = {c["method"]: c for c in report["cells"]}
    assert (cells["uniform"]["frames_per_row"], cells["uniform"]["stored_bytes"]) == (4, 12 * 4 * 3)
    assert cells["full"]["status"] == "ok"  # the full data trains on the real 16-px frames

    out = tmp_path / "set"
    argv = ["distill", *[a if a != "pixel" else "resize:16/32:pixel" for a in COMMON], "--output", str(out),
            "--cache_dir", str(tmp_path / "cache"), "--method", "uniform"]  # fmt: skip
    assert cli(argv) == 0, capsys.readouterr().err[-2000:]
    meta = read_meta(out)["uniform_ratio_1"]
    # 1 % of the 32-px split (1,474 bytes) at 12 bytes a 16-px-stored uint8 frame holds all T = 4 frames of every
    # clip twice over, so `--dtype auto` stores them as float16 (24 bytes a frame)
    assert meta["codec_id"] == "resize:16/32:pixel:avgpool8" and meta["latents_shape"] == [4, 3, 2, 2]
    assert meta["latents_dtype"] == "float16" and meta["stored_bytes"] == 12 * 4 * 24 <= meta["budget_bytes"]
    assert len(load_dataset(str(out), "uniform_ratio_1", split="train", cache_dir=str(tmp_path / "hf"))) == 12
    frames = load_chat_dataset(str(out), "uniform_ratio_1", cache_dir=str(tmp_path / "hf"))[0]["videos"][0]
    assert frames.shape == (4, 32, 32, 3)  # decoded at the stored side, read back at the frame size


def test_every_lever_at_once_is_counted_to_the_byte(tmp_path, capsys):
    """Stored side, 4-bit codes, fixed K, fewer videos and uint8 soft labels in one set: the card's stored bytes are
    the sum of each part, and within the budget."""
    from tests.test_distill_method import COMMON

    common = [{"pixel": "resize:16/32:pixel", "1.0": "0.15"}.get(a, a) for a in COMMON]
    out = tmp_path / "set"
    argv = ["distill", *common, "--output", str(out), "--cache_dir", str(tmp_path / "cache"), "--method", "uniform",
            "--dtype", "uint4", "--frames_per_video", "3", "--soft_labels", "true", "--soft_label_dtype", "uint8",
            "--teacher_epochs", "1", "--teacher_width", "8", "--teacher_batch_size", "4"]  # fmt: skip
    assert cli(argv) == 0, capsys.readouterr().err[-2000:]
    meta = read_meta(out)["uniform_ratio_0.15"]
    # 0.15 % of 12 x 4 x 3 x 32 x 32 bytes = 221; a 16-px-stored frame is 3 x 2 x 2 codes = 6 bytes at 4 bits, the
    # per-channel ranges 12 bytes once, uint8 labels 3 bytes a row: 3 x 6 + 3 = 21 bytes a video, 209 bytes of room
    # hold 9 (3 a class): 9 x 21 + 12 = 201 bytes
    assert meta["budget_bytes"] == 221 and meta["stored_bytes"] == 9 * (3 * 6 + 3) + 12 == 201
    assert (meta["num_videos"], meta["frames_per_video"], meta["latents_dtype"]) == (9, 3, "uint4")
    assert meta["soft_labels"]["bytes"] == 27 and len(meta["latent_ranges"]) == 3


def test_bench_allocation_chooses_on_validation_and_tests_against_the_anchors(tmp_path, monkeypatch, capsys):
    import importlib.util
    import json
    import sys
    from pathlib import Path

    monkeypatch.setenv("COMPRESSA_CACHE", str(tmp_path / "cache"))
    path = Path(__file__).resolve().parents[1] / "bench" / "allocation.py"
    spec = importlib.util.spec_from_file_location("bench_allocation", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclass looks its module up there
    spec.loader.exec_module(bench)
    out = tmp_path / "allocation.json"
    argv = ["--sets", "tiny", "--ratios", "k1", "--seeds", "2", "--choice_seeds", "1", "--epochs", "2", "--width", "8",
            "--batch_size", "4", "--codec", "pixel", "--methods", "uniform,random_frame", "--dtypes", "uint8,uint4",
            "--soft", "none", "--sides", "size,8", "--num_frames", "2", "--arch", "mlp", "--work_dir", str(tmp_path / "runs"),
            "--output", str(out)]  # fmt: skip
    assert bench.main(argv) == 0
    entry = json.loads(out.read_text())["entries"][0]
    assert len(entry["choice_table"]) == 2 * 2 * 2  # methods x dtypes x sides
    best = max(e["mean"] for e in entry["choice_table"] if e["status"] == "ok")
    assert entry["chosen"]["mean"] == best
    # --arch trains the choice's and the test's networks: every row found cells of that network
    assert set(entry["against"]) == {"uniform", "dm", "full"} and len(entry["test"]["chosen"]["per_seed"]) == 2
    assert entry["arch"] == "mlp" and all(len(entry["test"][r]["per_seed"]) == 2 for r in ("uniform", "dm", "full"))
    assert entry["held_out_clips"] == 9 and entry["protocol"] == "split"
    assert entry["share_of_full"] == entry["test"]["chosen"]["mean"] / entry["test"]["full"]["mean"]
    assert (entry["num_frames"], entry["size"]) == (2, 16)  # --num_frames overrides the set's T (4)
    md = (tmp_path / "allocation.md").read_text()
    assert "| tiny | k1 | 16 px, T = 2, mlp, split (9 clips) |" in md
    assert "Validation table, tiny k1" in md and "| full data (reference) |" in md
    # --merge joins earlier outputs without running anything
    assert bench.main(["--merge", str(out), str(out), "--output", str(tmp_path / "merged.json")]) == 0
    merged = json.loads((tmp_path / "merged.json").read_text())["entries"]
    assert merged == [entry, entry]
    assert (tmp_path / "merged.md").read_text().count("Validation table, tiny k1") == 2
    with pytest.raises(SystemExit):  # a file that is not an output of the bench is refused by name
        bench.main(["--merge", str(tmp_path / "missing.json"), "--output", str(tmp_path / "m2.json")])
    assert "missing.json is not an output of this bench" in capsys.readouterr().err
