"""The budget's allocation as a choice: `--frames_per_video K` spends a ratio on more frames of fewer videos, for
every method that stores the planner's K (`FIXED_K_METHODS`), in `compressa evaluate` and `compressa distill`."""

from __future__ import annotations

import pytest

from compressa_hf.cli import main as cli
from compressa_hf.distill.budget import ratio_for_frames
from compressa_hf.distill.methods import FIXED_K_METHODS, compress
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
