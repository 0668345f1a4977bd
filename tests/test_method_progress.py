"""Every method's long loop shows a progress bar when asked (`MethodContext.progress`, which `compressa distill` sets on
its main process): DM once ran 14 minutes without a word."""

from __future__ import annotations

import pytest
import torch

from compressa_hf.codecs.pixel import PixelCodec
from compressa_hf.distillation.budget import ratio_for_frames
from compressa_hf.distillation.methods import compress
from compressa_hf.distillation.methods.base import MethodContext

T, SIZE, CLASSES, PER_CLASS = 4, 16, 3, 4
LATENT = (3, 2, 2)  # the pixel codec's latent of a 16 x 16 frame


def _context(ratio, progress: bool, **options) -> MethodContext:
    g = torch.Generator().manual_seed(0)
    n = CLASSES * PER_CLASS
    pixels = (torch.rand(n, T, 3, SIZE, SIZE, generator=g) * 255).to(torch.uint8)
    codec = PixelCodec()
    latents = codec.encode(pixels.flatten(0, 1).float() / 255).unflatten(0, (n, T)).half()
    return MethodContext(
        latents=latents, labels=torch.arange(n) % CLASSES, num_classes=CLASSES, codec=codec, ratio=ratio,
        pixels_fn=lambda: pixels, options=options, progress=progress,
    )  # fmt: skip


K1 = ratio_for_frames(1, T, SIZE, LATENT)
ONE_CLIP_PER_CLASS = ratio_for_frames(T, T, SIZE, LATENT) / PER_CLASS  # coresets rank, they do not keep all


@pytest.mark.parametrize(
    ("method", "ratio", "options", "bars"),
    [
        ("dm", K1, {"iterations": 2}, ["dm"]),
        ("videocompressa", K1, {"passes": 1, "batch_size": 4, "guide_width": 8, "guide_warmup_epochs": 1}, None),
        ("scorer_only", K1, {"passes": 1, "batch_size": 4, "guide_width": 8}, ["videocompressa"]),
        ("pixel_diff", K1, {}, ["score frames"]),
        ("avs", K1, {}, ["score frames"]),
        ("herding", ONE_CLIP_PER_CLASS, {"epochs": 1, "width": 8}, ["herding proxy", "herding: rank"]),
        ("forgetting", ONE_CLIP_PER_CLASS, {"epochs": 2, "width": 8}, ["forgetting proxy", "forgetting: rank"]),
        ("grand", ONE_CLIP_PER_CLASS, {"epochs": 1, "width": 8, "repeats": 1}, ["grand proxy 1/1", "grand: rank"]),
        ("lvdd", ONE_CLIP_PER_CLASS, {"select": "kmeans"}, ["lvdd: kmeans", "lvdd: tucker"]),
    ],
)
def test_methods_show_progress(method, ratio, options, bars, capsys):
    if bars is None:
        bars = ["videocompressa: guide warm-up", "videocompressa: final scores", "videocompressa"]
    compress(method, _context(ratio, progress=True, **options))
    err = capsys.readouterr().err
    for desc in bars:
        assert f"{desc}:" in err, f"no '{desc}' progress bar from {method}: {err[-500:]!r}"
    compress(method, _context(ratio, progress=False, **options))
    assert capsys.readouterr().err == ""  # and none unless asked


def test_distill_command_shows_the_methods_progress(tmp_path, capsys):
    """`compressa distill --method dm` (the README's recommendation) draws DM's bar, which it once did not."""
    from compressa_hf.cli import main as cli

    source = "procedural:num_classes=2,train_per_class=2,length=8,frame_size=16"
    argv = ["distill", "--source", source, "--size", "16", "--num_frames", "4", "--codec", "pixel", "--ratio", "k1",
            "--num_workers", "0", "--method", "dm", "--method_options", "iterations=3,width=8,depth=1",
            "--preview", "false", "--output", str(tmp_path / "set")]  # fmt: skip
    assert cli(argv) == 0
    assert "dm: 100%" in capsys.readouterr().err


def test_bars_in_a_log_file_move_no_cursor_and_leave_log_records_their_own_lines(tmp_path):
    """`compressa evaluate ... 2> run.log` (a nested method bar inside the cell bar, a warning while bars are drawn): no
    terminal escape codes in the file, and every log record starts a line once the cleared bar is set apart."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    source = "procedural:num_classes=2,train_per_class=2,test_per_class=1,length=8,frame_size=16"
    argv = [sys.executable, "-m", "compressa_hf.cli", "evaluate", "--source", source, "--size", "16",
            "--num_frames", "4", "--codec", "pixel", "--ratios", "k1", "--seeds", "1", "--methods", "dm,uniform",
            "--epochs", "2", "--width", "8", "--full_data", "false", "--output", str(tmp_path / "eval")]  # fmt: skip
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")} | {"PYTHONPATH": str(REPO)}
    with log.open("wb") as err:
        subprocess.run(argv, stderr=err, stdout=subprocess.DEVNULL, env=env, check=True, timeout=600)
    text = log.read_text()
    assert "\x1b[" not in text
    assert "evaluate: 100%" in text and "dm: 100%" in text  # the bars are drawn
    records = [line.split("\r")[-1] for line in text.splitlines() if " INFO " in line or " WARNING " in line]
    assert records and all(r[:2].isdigit() and r[2] == ":" for r in records), records[:5]
