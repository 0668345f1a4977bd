"""The method registry and what every method shares: budget accounting, VideoCompressa and its scorer-only
ablation as registry methods, the full-data reference, and `CompressedSet` storage."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from compressa_hf.codecs.base import latents_to_uint8
from compressa_hf.codecs.pixel import PixelCodec
from compressa_hf.distillation.budget import ratio_for_frames
from compressa_hf.distillation.methods import METHODS, compress, get_method
from compressa_hf.distillation.methods.base import CompressedSet, MethodContext, choose_videos

T, SIZE, CLASSES, PER_CLASS = 4, 16, 3, 4


def _context(ratio, seed=0, **options) -> MethodContext:
    g = torch.Generator().manual_seed(0)
    n = CLASSES * PER_CLASS
    labels = torch.arange(n) % CLASSES
    pixels = (torch.rand(n, T, 3, SIZE, SIZE, generator=g) * 255).to(torch.uint8)
    codec = PixelCodec()
    latents = codec.encode(pixels.flatten(0, 1).float() / 255).unflatten(0, (n, T)).half()
    return MethodContext(
        latents=latents, labels=labels, num_classes=CLASSES, codec=codec, ratio=ratio, seed=seed,
        pixels_fn=lambda: pixels, options=options,
    )  # fmt: skip


def test_every_registered_method_has_the_contract():
    kinds = {"ours", "selection", "coreset", "synthesis", "reference"}
    for name in METHODS:
        module = get_method(name)
        assert module.KIND in kinds and callable(module.compress) and dataclasses.is_dataclass(module.Options)
    with pytest.raises(ValueError, match="unknown method"):
        get_method("magic")


@pytest.mark.parametrize("method", ["videocompressa", "scorer_only"])
@pytest.mark.parametrize("frames", [1, 2])
def test_videocompressa_methods_spend_exactly_the_plan(method, frames):
    ratio = ratio_for_frames(frames, T, SIZE, (3, 2, 2))
    ctx = _context(ratio, passes=1, batch_size=4, guide_width=8)
    cset = compress(method, ctx)
    plan = ctx.plan()
    assert plan.frames_per_video == frames and not plan.coreset
    assert cset.stored_bytes == plan.stored_bytes <= ctx.budget_bytes
    assert cset.latents.shape == (CLASSES * PER_CLASS, frames, 3, 2, 2)
    assert (cset.frame_indices.diff(dim=1) > 0).all() if frames > 1 else True
    cached = ctx.latents[cset.source_videos[:, None], cset.frame_indices].float()
    if method == "scorer_only":  # the latents are the cached ones, only chosen
        assert torch.equal(cset.stored["latents"], latents_to_uint8(cached))
    else:
        assert cset.info["distill"]["config"]["update_latents"] is True


def test_coreset_step_when_one_frame_per_video_does_not_fit():
    ratio = ratio_for_frames(1, T, SIZE, (3, 2, 2)) * 6 / (CLASSES * PER_CLASS)  # 6 frames: 2 videos per class
    ctx = _context(ratio, passes=1, batch_size=4, guide_width=8)
    cset = compress("videocompressa", ctx)
    plan = ctx.plan()
    assert plan.coreset and cset.num_rows == 6 and cset.stored_bytes == plan.stored_bytes <= ctx.budget_bytes
    assert cset.source_videos.tolist() == choose_videos(ctx.labels.tolist(), plan.videos_per_class, ctx.seed)


def test_unknown_options_are_named():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['pases'\] for method 'videocompressa'"):
        compress("videocompressa", _context(1.0, pases=3))


def test_full_data_is_the_real_frames_and_the_denominator():
    ctx = _context(1.0)
    cset = compress("full", ctx)
    assert torch.equal(cset.pixels, ctx.pixels()) and cset.stored_bytes == ctx.full_bytes


def test_compressed_set_round_trip_and_budget_check(tmp_path):
    cset = compress("uniform", _context(ratio_for_frames(2, T, SIZE, (3, 2, 2))))
    cset.save(str(tmp_path / "set.safetensors"))
    back = CompressedSet.load(str(tmp_path / "set.safetensors"))
    assert (
        back.stored_bytes == cset.stored_bytes
        and back.info == json.loads(json.dumps(cset.info))
        and back.budget_bytes == cset.budget_bytes
    )
    for name in ("labels", "latents", "source_videos", "frame_indices"):
        assert torch.equal(getattr(back, name), getattr(cset, name))
    assert torch.equal(back.frames(PixelCodec()), cset.frames(PixelCodec()))
    from compressa_hf.distillation.methods.base import check_budget

    with pytest.raises(AssertionError, match="above its budget"):
        check_budget(cset, cset.stored_bytes - 1)
