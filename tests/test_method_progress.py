"""Every method's long loop shows a progress bar when asked (`MethodContext.progress`, which `compressa distill` sets on
its main process): DM once ran 14 minutes without a word."""

from __future__ import annotations

import pytest
import torch

from compressa_hf.codecs.pixel import PixelCodec
from compressa_hf.distill.budget import ratio_for_frames
from compressa_hf.distill.methods import compress
from compressa_hf.distill.methods.base import MethodContext

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
