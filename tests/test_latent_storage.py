"""Latent storage formats (compressa_hf/codecs/storage.py): 4-bit codes under per-channel ranges, their exact bytes
in the planner and in every method that goes through it, and a uint4 set published, loaded and decoded."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from compressa_hf.codecs.storage import (
    RANGES_KEY,
    dequantise,
    frame_bytes,
    pack_uint4,
    quantise,
    set_bytes,
    stored_codes,
    unpack_uint4,
)
from compressa_hf.distillation.budget import plan_budget, ratio_for_frames
from compressa_hf.distillation.methods import compress
from tests.test_methods import CLASSES, PER_CLASS, SIZE, T, _context


@pytest.mark.parametrize("shape", [(3, 2, 2), (3, 3, 3), (32, 6, 6)])  # even and odd values per frame
def test_uint4_packs_two_codes_a_byte_and_round_trips(shape):
    codes = torch.randint(0, 16, (5, 2, *shape), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    packed = pack_uint4(codes)
    assert packed.shape == (5, 2, math.ceil(math.prod(shape) / 2)) and packed.dtype == torch.uint8
    assert torch.equal(unpack_uint4(packed, shape), codes)
    assert frame_bytes(shape, "uint4") == packed.shape[-1] and set_bytes(shape, "uint4") == 4 * shape[0]
    assert (frame_bytes(shape, "uint8"), frame_bytes(shape, "float16")) == (math.prod(shape), 2 * math.prod(shape))


def test_uint4_bytes_are_exact_and_the_error_is_half_a_step_per_channel():
    g = torch.Generator().manual_seed(1)
    spread = torch.linspace(0.05, 3.0, 32)[:, None, None]  # channels of very different spreads
    z = torch.randn(7, 3, 32, 6, 6, generator=g) * spread + torch.linspace(-1, 1, 32)[:, None, None]
    stored, back = quantise(z, "uint4")
    assert sum(t.nbytes for t in stored.values()) == 7 * 3 * frame_bytes((32, 6, 6), "uint4") + 128
    ranges = stored[RANGES_KEY].float()
    assert stored[RANGES_KEY].dtype == torch.float16 and ranges.shape == (32, 2)
    step = (ranges[:, 1] - ranges[:, 0])[:, None, None] / 15
    f16 = ranges.abs().amax(1)[:, None, None] * 2**-10  # the float16 rounding of the range ends
    assert ((back - z).abs() <= step / 2 + f16 + 1e-6).all()
    # per-channel ranges beat one fixed range: the narrowest channel keeps 10x the detail [-3, 3] / 15 would
    assert (back - z)[:, :, 0].abs().max() < 6 / 15 / 2 / 10
    # what a published row holds (the codes, one a byte) reads back to the same latents
    codes = stored_codes(stored, "uint4", (32, 6, 6))
    assert codes.dtype == torch.uint8 and int(codes.max()) <= 15
    assert torch.equal(dequantise(codes.numpy(), "uint4", ranges.tolist()), back)
    with pytest.raises(ValueError, match="latent_ranges"):
        dequantise(codes.numpy(), "uint4")
    # a constant channel still has a range and reads back exactly
    flat = torch.full((2, 1, 3, 2, 2), 0.5)
    assert torch.equal(quantise(flat, "uint4")[1], flat)


def test_uint8_and_float16_are_stored_as_before():
    z = torch.randn(2, 3, 4, 3, 3)
    from compressa_hf.codecs.base import latents_to_uint8

    assert torch.equal(quantise(z, "uint8")[0]["latents"], latents_to_uint8(z))
    assert torch.equal(quantise(z, "float16")[0]["latents"], z.half())
    with pytest.raises(ValueError, match="uint2"):
        quantise(z, "uint2")


@pytest.mark.parametrize("ratio", ["0.3", "1", "2.0833333", "4.2", "9"])
@pytest.mark.parametrize("fixed", [None, 2])
def test_uint4_plans_count_the_ranges_and_never_exceed_the_budget(ratio, fixed):
    counts, latent = [26, 26, 26, 26, 26, 25], (32, 6, 6)
    plan = plan_budget(ratio, counts, 8, 48, latent, frames_per_video=fixed, dtype="uint4")
    assert plan.set_bytes == 128 and plan.bytes_per_frame == 576
    assert plan.stored_bytes == plan.total_videos * plan.frames_per_video * 576 + 128 <= plan.budget_bytes
    assert plan.to_dict()["set_bytes"] == 128
    uint8 = plan_budget(ratio, counts, 8, 48, latent, frames_per_video=fixed, dtype="uint8")
    assert "set_bytes" not in uint8.to_dict()  # uint8 / float16 plans keep the keys they always had
    if fixed is None and not uint8.coreset and uint8.frames_per_video <= 4:
        # twice uint8's frames: the ranges (128 bytes, less than one 576-byte frame) cost at most one video (rule 6)
        assert plan.frames_per_video == 2 * uint8.frames_per_video and plan.total_videos >= sum(counts) - 1


@pytest.mark.parametrize("k", [1, 2, 3])
def test_at_the_exact_k_ratios_uint4_keeps_2k_frames_and_the_ranges_cost_one_video(k):
    counts, latent = [26, 26, 26, 26, 26, 25], (32, 6, 6)
    ratio = ratio_for_frames(k, 8, 48, latent)  # exactly k uint8 frames of every video: 155 * k * 1,152 bytes
    plan = plan_budget(ratio, counts, 8, 48, latent, dtype="uint4")
    assert plan.budget_bytes == 155 * k * 1152
    # 2k frames of all 155 videos would be the whole budget, leaving nothing for the ranges: one video pays for them,
    # taken from the first of the largest classes
    assert (plan.frames_per_video, plan.videos_per_class) == (2 * k, [25, 26, 26, 26, 26, 25])
    assert plan.coreset and plan.set_bytes_videos == 1 and plan.to_dict()["set_bytes_videos"] == 1
    assert plan.stored_bytes == 154 * 2 * k * 576 + 128 <= plan.budget_bytes
    assert plan.achieved_ratio == float(Fraction(100 * plan.stored_bytes, plan.full_bytes))
    assert "per-channel ranges cost 1 video(s), not a frame of every video" in plan.describe()
    assert f"K={2 * k - 1} for all 155 would store {155 * (2 * k - 1):,} frames, these {154 * 2 * k:,}" in (
        plan.describe()
    )
    fixed = plan_budget(ratio, counts, 8, 48, latent, frames_per_video=2 * k, dtype="uint4")  # rule 3, not 6
    assert fixed.videos_per_class == [25] * 6 and fixed.set_bytes_videos == 0 and "ranges cost" not in fixed.describe()
    uint8 = plan_budget(ratio, counts, 8, 48, latent, dtype="uint8")
    assert (uint8.frames_per_video, uint8.coreset, uint8.stored_bytes) == (k, False, plan.budget_bytes)
    assert "set_bytes_videos" not in uint8.to_dict()


def test_rule_6_only_when_it_stores_more_frames_and_keeps_every_class():
    from compressa_hf.distillation.budget import drop_fewest

    assert drop_fewest([3, 5, 5], 3) == [3, 3, 4] and drop_fewest([1, 1], 1) is None
    # 2 x 2 latents of 3 channels: 6-byte uint4 frames, 12 bytes of ranges; clips of 4 x 3 x 8 x 8 = 768 bytes
    latent = (3, 2, 2)

    def exactly(frames: int, videos: int) -> Fraction:  # the ratio whose budget is `frames` uint4 frames
        return Fraction(100 * frames * 6, videos * 768)

    # a class of 2 videos, budget for 2 frames each: K=2 for one video stores 2 frames, as K=1 for both does (after
    # the ranges), so both videos keep their frame
    plan = plan_budget(exactly(4, 2), [2], 4, 8, latent, dtype="uint4")
    assert (plan.frames_per_video, plan.total_videos, plan.coreset, plan.set_bytes_videos) == (1, 2, False, 0)
    # two classes of one video: paying with a video would empty a class
    plan = plan_budget(exactly(4, 2), [1, 1], 4, 8, latent, dtype="uint4")
    assert (plan.frames_per_video, plan.videos_per_class) == (1, [1, 1])
    # 10 videos of one class and 1 of another, budget for 4 frames each: the ranges cost 1 video of the large class
    plan = plan_budget(exactly(44, 11), [10, 1], 4, 8, latent, dtype="uint4")
    assert (plan.frames_per_video, plan.videos_per_class) == (4, [9, 1])
    assert plan.stored_bytes == 10 * 4 * 6 + 12 <= plan.budget_bytes


def test_uint4_ratio_for_every_video_includes_the_ranges():
    ratio = ratio_for_frames(2, 8, 48, (32, 6, 6), "uint4", num_videos=155)
    assert ratio == Fraction(100 * (155 * 2 * 576 + 128), 155 * 8 * 3 * 48 * 48)
    plan = plan_budget(ratio, [26, 26, 26, 26, 26, 25], 8, 48, (32, 6, 6), dtype="uint4")
    assert (plan.frames_per_video, plan.coreset, plan.stored_bytes) == (2, False, plan.budget_bytes)
    assert "+ 128 bytes of per-channel ranges once" in plan.describe()


UINT4_METHODS = {
    "uniform": {},
    "random_frame": {},
    "pixel_diff": {},
    "random": {},
    "dm": {"iterations": 2, "width": 8, "depth": 1, "batch_real": 4},
    "mtt": {"num_experts": 2, "train_epochs": 2, "max_start_epoch": 2, "iterations": 2, "syn_steps": 2, "width": 8},
    "scorer_only": {"passes": 1, "batch_size": 4, "guide_width": 8},
    "videocompressa": {"passes": 1, "batch_size": 4, "guide_width": 8},
}


@pytest.mark.parametrize("method", list(UINT4_METHODS))
def test_planner_methods_store_exactly_their_uint4_plan(method):
    n = CLASSES * PER_CLASS
    ratio = ratio_for_frames(2, T, SIZE, (3, 2, 2), "uint4", num_videos=n)
    ctx = _context(ratio, **UINT4_METHODS[method])
    ctx.dtype = "uint4"
    cset = compress(method, ctx)
    plan = ctx.plan(frames_per_video=T) if method == "random" else ctx.plan()
    assert plan.dtype == "uint4" and set(cset.stored) == {"latents", RANGES_KEY}
    assert cset.stored_bytes == plan.stored_bytes <= ctx.budget_bytes
    codes = stored_codes(cset.stored, "uint4", (3, 2, 2))
    assert torch.equal(dequantise(codes.numpy(), "uint4", cset.stored[RANGES_KEY].float().tolist()), cset.latents)


@pytest.mark.parametrize("method", ["prism", "lvdd", "dm_vdsd"])
def test_methods_that_cannot_store_uint4_say_so(method):
    ctx = _context(ratio_for_frames(4, T, SIZE, (3, 2, 2)))
    ctx.dtype = "uint4"
    with pytest.raises(ValueError, match="uint4"):
        compress(method, ctx)


def test_the_dry_run_and_the_card_say_which_video_pays_for_the_ranges(tmp_path, capsys, caplog):
    from compressa_hf.cli import main as cli
    from compressa_hf.store import read_meta

    argv = ["distill", "--source", "procedural:num_classes=3,train_per_class=4,length=8,frame_size=16", "--size", "16",
            "--num_frames", "4", "--codec", "pixel", "--num_workers", "0", "--ratio", "k2", "--method", "uniform",
            "--dtype", "uint4", "--cache_dir", str(tmp_path / "cache"), "--output", str(tmp_path / "set"),
            "--dry-run"]  # fmt: skip
    with caplog.at_level("INFO", logger="compressa_hf.distillation.arguments"):
        assert cli(argv) == 0
    plan = capsys.readouterr().out
    assert "K=4 frame(s) per video for 11 of 12 videos" in plan
    assert "the 12 bytes of per-channel ranges cost 1 video(s), not a frame of every video" in plan
    assert "K=4 frames for 11 of 12 videos; its 12 bytes of per-channel ranges cost 1 video(s)" in caplog.text
    assert "keeps only" not in caplog.text  # not the coreset warning
    assert not (tmp_path / "set").exists()
    assert cli(argv[:-1]) == 0  # the set itself: 11 rows of 4 frames, and its card says who paid for the ranges
    meta = read_meta(tmp_path / "set")["uniform_ratio_k2"]
    assert (meta["num_videos"], meta["frames_per_video"], meta["stored_bytes"]) == (11, 4, 276)
    assert "the ranges cost 1 of the split's videos rather than a frame of every video" in meta["published_note"]
    assert "rule 6" in (tmp_path / "set" / "README.md").read_text()


def test_a_uint4_set_is_published_loaded_shown_and_decoded(tmp_path, capsys):
    from datasets import load_dataset

    from compressa_hf.cli import main as cli
    from compressa_hf.codecs.pixel import PixelCodec
    from compressa_hf.qwen.samples import load_chat_dataset
    from compressa_hf.store import read_meta
    from tests.test_distill_method import COMMON

    out = tmp_path / "set"
    argv = ["distill", *COMMON, "--output", str(out), "--cache_dir", str(tmp_path / "cache"), "--method", "uniform"]
    assert cli([*argv, "--dtype", "uint4"]) == 0, capsys.readouterr().err[-2000:]
    name = "uniform_ratio_1"
    meta = read_meta(out)[name]
    # 1 % of 12 clips x 4 x 3 x 32 x 32 = 1,474 bytes; a pixel-codec frame (3 x 4 x 4) is 24 bytes at 4 bits, so the
    # 12 bytes of ranges leave K = 5 -> capped at T = 4 for every video: 12 x 4 x 24 + 12 = 1,164 bytes.
    assert (meta["latents_dtype"], meta["frames_per_video"], meta["stored_bytes"]) == ("uint4", 4, 1164)
    assert len(meta["latent_ranges"]) == 3 and all(lo < hi for lo, hi in meta["latent_ranges"])
    assert meta["row_kinds"] == {"real": 12, "derived": 0, "synthetic": 0}
    assert meta["latent_bytes"] == 2 * (meta["stored_bytes"] - 12) and "4-bit codes" in meta["published_note"]
    card = (out / "README.md").read_text()
    assert "latents_dtype: uint4" in card and "latent_ranges:" in card and "4-bit codes q in 0..15" in card

    ds = load_dataset(str(out), name, split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.features["latents"].dtype == "uint8"
    codes = np.stack([np.asarray(x, dtype=np.uint8) for x in ds.with_format("numpy")["latents"]])
    assert codes.max() <= 15 and codes.shape == (12, 4, 3, 4, 4)
    expected = PixelCodec().decode(dequantise(codes, "uint4", meta["latent_ranges"]).flatten(0, 1))
    expected = expected.mul(255).round().byte().permute(0, 2, 3, 1).unflatten(0, (12, 4)).numpy()
    chat = load_chat_dataset(str(out), name, cache_dir=str(tmp_path / "hf"))
    assert np.array_equal(chat[0]["videos"][0], expected[0])

    assert cli(["show", str(out), "--config_name", name, "--num_videos", "2"]) == 0
    assert len(list((out / "show" / name).glob("*.png"))) == 2


def test_evaluate_with_uint4_storage(tmp_path):
    from tests.test_evaluate import _evaluate

    report = _evaluate(tmp_path / "eval", "--methods", "uniform,prism", "--ratios", "k2", "--seeds", "1",
                       "--dtype", "uint4", "--full_data", "false")  # fmt: skip
    cells = {c["method"]: c for c in report["cells"]}
    # k2 at 16 px with the pixel codec: 2 uint8 frames of 3 x 2 x 2 = 24 bytes a video; at 4 bits a frame is 6 bytes,
    # so K = 4 for every video would be the whole budget; the 12 bytes of ranges cost one of the 12 videos instead of
    # a frame of each (rule 6): 11 x 4 x 6 + 12 = 276 of 288 bytes
    uniform = cells["uniform"]
    assert (uniform["frames_per_row"], uniform["stored_bytes"]) == (4, 276)
    assert cells["prism"]["status"] == "n/a" and "uint4" in cells["prism"]["reason"]
    with pytest.raises(ValueError, match="dtype"):
        _evaluate(tmp_path / "bad", "--dtype", "int4")
