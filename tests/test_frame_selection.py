"""Frame-selection baselines (uniform, pixel_diff, avs): byte accounting through the registry, index validity,
the cut frame found on toy clips, NMS on a hand-made score vector, determinism."""

from __future__ import annotations

import colorsys
from fractions import Fraction

import pytest
import torch

from compressa_hf.codecs.pixel import PixelCodec
from compressa_hf.distillation.budget import ratio_for_frames
from compressa_hf.distillation.methods import compress
from compressa_hf.distillation.methods.avs import Options as AvsOptions
from compressa_hf.distillation.methods.avs import avs_select, content_scores, rgb_to_hsv, temporal_nms
from compressa_hf.distillation.methods.base import MethodContext, choose_videos
from compressa_hf.distillation.methods.pixel_diff import pixel_diff_scores

CLASSES, PER_CLASS, T, SIZE = 3, 3, 6, 16
LATENT = (3, SIZE // 8, SIZE // 8)
METHODS = ["uniform", "pixel_diff", "avs"]


def cut_clips(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`(N, T, 3, H, W)` uint8 clips of two random scenes with +-3 levels of jitter per frame, and the `(N,)` frame
    where the second scene starts (a hard cut, in 2..T-1 so frame 0's borrowed score never ties with it)."""
    g = torch.Generator().manual_seed(seed)
    n = CLASSES * PER_CLASS
    scenes = torch.randint(0, 256, (n, 2, 1, 3, SIZE, SIZE), generator=g)
    cuts = torch.arange(n) % (T - 2) + 2
    second = torch.arange(T)[None, :] >= cuts[:, None]  # (N, T)
    frames = torch.where(second[:, :, None, None, None], scenes[:, 1], scenes[:, 0])
    jitter = torch.randint(-3, 4, frames.shape, generator=g)
    return (frames + jitter).clamp(0, 255).to(torch.uint8), cuts


def make_ctx(frames: torch.Tensor, ratio: float, seed: int = 0, **options) -> MethodContext:
    codec = PixelCodec()
    latents = codec.encode(frames.flatten(0, 1).float() / 255).unflatten(0, frames.shape[:2])
    labels = torch.arange(frames.shape[0]) // PER_CLASS
    return MethodContext(
        latents=latents.to(torch.float16),
        labels=labels,
        num_classes=CLASSES,
        codec=codec,
        ratio=ratio,
        seed=seed,
        pixels_fn=lambda: frames,
        options=options,
    )


def ratio_k(k: int) -> float:
    return float(ratio_for_frames(k, T, SIZE, LATENT))


# Between 6 and 7 uint8 frames of the 9 videos' K = 1 budget: the planner keeps K = 1 for 2 videos per class.
CORESET_RATIO = float(ratio_for_frames(1, T, SIZE, LATENT) * Fraction(13, 2 * CLASSES * PER_CLASS))


@pytest.fixture(scope="module")
def clips():
    return cut_clips()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ratio, k, per_class", [(ratio_k(3), 3, 3), (CORESET_RATIO, 1, 2)])
def test_bytes_and_indices(clips, method, ratio, k, per_class):
    frames, _ = clips
    ctx = make_ctx(frames, ratio, seed=3)
    plan = ctx.plan()
    assert (plan.frames_per_video, list(plan.videos_per_class)) == (k, [per_class] * CLASSES)
    cset = compress(method, ctx)
    assert cset.method == method
    assert cset.stored_bytes == plan.stored_bytes <= ctx.budget_bytes
    assert cset.source_videos.tolist() == choose_videos(ctx.labels.tolist(), plan.videos_per_class, ctx.seed)
    assert torch.equal(cset.labels, ctx.labels[cset.source_videos])
    idx = cset.frame_indices
    assert idx.shape == (cset.num_rows, k)
    assert idx.min() >= 0 and idx.max() < T
    assert (idx.diff(dim=1) > 0).all()
    # the stored latents are those of the kept frames (up to uint8 storage of the latents)
    expected = ctx.latents[cset.source_videos[:, None], idx].float()
    assert (cset.latents - expected).abs().max() <= 3 / 255 + 1e-4  # half a uint8 step of the [-3, 3] range


@pytest.mark.parametrize("method", ["pixel_diff", "avs"])
def test_picks_the_cut(clips, method):
    frames, cuts = clips
    cset = compress(method, make_ctx(frames, ratio_k(1)))
    assert cset.frame_indices[:, 0].tolist() == cuts.tolist()
    with_three = compress(method, make_ctx(frames, ratio_k(3)))
    assert (with_three.frame_indices == cuts[:, None]).any(1).all()


def test_uniform_misses_cuts_sometimes(clips):
    """The toy task is not trivial: a fixed frame does not land on every cut."""
    frames, cuts = clips
    cset = compress("uniform", make_ctx(frames, ratio_k(1)))
    assert cset.frame_indices[:, 0].tolist() != cuts.tolist()


def test_pixel_diff_scores_by_hand():
    frames = torch.zeros(1, 4, 3, 2, 2, dtype=torch.uint8)
    frames[0, 1:] = 10  # +10 everywhere
    frames[0, 2:, 0] = 250  # red channel jumps from 10 to 250: mean over 3 channels = 240 / 3
    assert pixel_diff_scores(frames).tolist() == [[10.0, 10.0, 80.0, 0.0]]
    assert pixel_diff_scores(frames[:, :1]).tolist() == [[0.0]]


def test_rgb_to_hsv_matches_colorsys_on_opencv_scale():
    g = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (3, 4, 5), generator=g, dtype=torch.uint8)
    rgb[:, 0, 0] = torch.tensor([255, 0, 0], dtype=torch.uint8)
    rgb[:, 0, 1] = 128  # grey: hue and saturation 0
    rgb[:, 0, 2] = 0  # black
    hsv = rgb_to_hsv(rgb)
    for i in range(4):
        for j in range(5):
            h, s, v = colorsys.rgb_to_hsv(*(rgb[:, i, j].double() / 255).tolist())
            assert hsv[:, i, j].tolist() == pytest.approx([h * 180, s * 255, v * 255], abs=1e-3)


def test_content_scores_weights():
    frames, _ = cut_clips()
    lum_only = content_scores(frames[:1], (0.0, 0.0, 1.0))
    value = rgb_to_hsv(frames[:1])[:, :, 2]
    expected = (value[:, 1:] - value[:, :-1]).abs().mean(dim=(-2, -1))
    assert torch.allclose(lum_only[:, 1:], expected) and lum_only[0, 0] == lum_only[0, 1]


SCORES = torch.tensor([[0.1, 0.9, 0.5, 0.5, 0.2, 0.8, 0.8, 0.3]])


@pytest.mark.parametrize(
    "radius, kept",
    [
        (0, [0, 1, 2, 3, 4, 5, 6, 7]),
        (1, [1, 5]),  # 3 ties with 2 (earlier wins, though 2 is itself suppressed); 5 ties with 6 and wins
        (2, [1, 5]),
        (4, [1]),  # 0.9 at 1 is within 4 frames of 5
        (100, [1]),
    ],
)
def test_temporal_nms_by_hand(radius, kept):
    assert torch.nonzero(temporal_nms(SCORES, radius)[0]).flatten().tolist() == kept


def test_avs_select_fills_with_best_suppressed():
    indices, kept = avs_select(SCORES, 2, nms_radius=1)
    assert indices.tolist() == [[1, 5]]
    indices, _ = avs_select(SCORES, 4, nms_radius=1)
    assert indices.tolist() == [[1, 2, 5, 6]]  # 0.8 at 6, then 0.5 at 2 (ties to the earlier of 2 and 3)
    plateau = torch.full((1, 5), 0.5)
    assert temporal_nms(plateau, 1).tolist() == [[True, False, False, False, False]]
    assert avs_select(plateau, 3, nms_radius=1)[0].tolist() == [[0, 1, 2]]


@pytest.mark.parametrize("method", ["pixel_diff", "avs"])
def test_deterministic(clips, method):
    frames, _ = clips
    a = compress(method, make_ctx(frames, CORESET_RATIO, seed=1))
    b = compress(method, make_ctx(frames, CORESET_RATIO, seed=1))
    assert torch.equal(a.frame_indices, b.frame_indices) and torch.equal(a.source_videos, b.source_videos)
    assert all(torch.equal(a.stored[key], b.stored[key]) for key in a.stored)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"nms_radius": -1}, "got -1"),
        ({"hue_weight": -0.5}, "-0.5"),
        ({"hue_weight": 0, "sat_weight": 0, "lum_weight": 0}, "not all 0"),
    ],
)
def test_avs_options_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        AvsOptions(**overrides)


def test_avs_unknown_option(clips):
    frames, _ = clips
    with pytest.raises(ValueError, match="nms_radiu"):
        compress("avs", make_ctx(frames, ratio_k(1), nms_radiu=2))
