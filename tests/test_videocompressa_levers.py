"""The levers of issue 13: segment-constrained sampling, the scorer's uniform start, guide warm-up, latent
optimisers, objectives, annealing, inner steps; the diagnostics (drift, PSNR, overlap with uniform); random frames."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from compressa_hf.clips import uniform_indices
from compressa_hf.codecs.base import LATENT_MAGNITUDE, latents_to_uint8, uint8_to_latents
from compressa_hf.distillation.diagnostics import decoded_psnr, latent_drift, set_diagnostics, uniform_overlap
from compressa_hf.distillation.gumbel import segment_argmax, segment_bounds, segment_gumbel_samples
from compressa_hf.distillation.methods import MethodContext, compress
from compressa_hf.distillation.videocompressa import (
    DenseAdam,
    FrameScorer,
    LazyRowAdam,
    VideoCompressaConfig,
    distill,
)
from tests.test_videocompressa import CLASSES, CrashingCodec, T, TinyCodec, make_set, small_config

STEP = 2 * LATENT_MAGNITUDE / 255  # one uint8 storage step of a raw latent


@pytest.fixture(scope="module")
def data():
    return make_set()


# -- segments ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("t", "k"), [(8, 1), (8, 2), (8, 3), (16, 4), (5, 4), (7, 7), (32, 5)])
def test_segments_cover_the_clip_and_hold_the_uniform_frames(t, k):
    bounds = segment_bounds(t, k)
    assert bounds[0][0] == 0 and bounds[-1][1] == t
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # contiguous, disjoint
    for (start, end), centre in zip(bounds, uniform_indices(t, k)):
        assert start <= centre < end


@pytest.mark.parametrize(("t", "k"), [(8, 1), (8, 2), (8, 3), (16, 4), (5, 4), (7, 7), (32, 5)])
def test_segment_selection_equals_uniform_under_a_constant_scorer(t, k):
    for value in (0.0, -3.5):
        picked = segment_argmax(torch.full((3, t), value), k)
        assert picked.tolist() == [uniform_indices(t, k)] * 3


def test_a_scorer_with_the_uniform_start_keeps_the_uniform_frames():
    scorer = FrameScorer(width=8)
    torch.nn.init.zeros_(scorer.head.weight)
    torch.nn.init.zeros_(scorer.head.bias)
    q = scorer(torch.rand(4, 16, 3, 16, 16))
    assert torch.equal(q, torch.zeros_like(q))
    assert segment_argmax(q, 4).tolist() == [uniform_indices(16, 4)] * 4


def test_segment_argmax_follows_the_scores_inside_each_segment():
    q = torch.zeros(1, 8)
    q[0, 0] = 1.0  # segment 0 is frames 0-3 at K = 2
    q[0, 7] = 2.0
    assert segment_argmax(q, 2).tolist() == [[0, 7]]


def test_segment_gumbel_samples_stay_in_their_segment():
    gen = torch.Generator().manual_seed(0)
    w = segment_gumbel_samples(torch.randn(5, 16), 4, generator=gen)
    assert w.shape == (5, 4, 16)
    torch.testing.assert_close(w.sum(-1), torch.ones(5, 4))
    for j, (start, end) in enumerate(segment_bounds(16, 4)):
        outside = torch.ones(16, dtype=torch.bool)
        outside[start:end] = False
        assert (w[:, j, outside] == 0).all()
    hard = segment_gumbel_samples(torch.randn(5, 16), 4, hard=True, generator=gen)
    assert ((hard == 0) | (hard == 1)).all()


# -- latent optimisers ---------------------------------------------------------------------------------------------


def test_dense_adam_keeps_moving_a_row_between_visits_lazy_adam_does_not():
    grad = torch.ones(1, 2)
    dense_z, lazy_z = torch.zeros(3, 2), torch.zeros(3, 2)
    dense, lazy = DenseAdam(dense_z, lr=0.1), LazyRowAdam(lazy_z, lr=0.1)
    for opt in (dense, lazy):
        opt.step(torch.tensor([0]), grad)
    after_first = dense_z[0].clone(), lazy_z[0].clone()
    moved_dense = dense.step(torch.tensor([1]), grad)
    moved_lazy = lazy.step(torch.tensor([1]), grad)
    assert sorted(moved_dense.tolist()) == [0, 1] and moved_lazy.tolist() == [1]
    assert not torch.equal(dense_z[0], after_first[0])  # momentum from the first visit
    assert torch.equal(lazy_z[0], after_first[1])
    assert (dense_z[2] == 0).all() and (lazy_z[2] == 0).all()  # never given gradient


@pytest.mark.parametrize(
    "lever",
    [
        {},  # the defaults: segments, uniform start, warm-up
        {"latent_optimizer": "adam"},
        {"latent_optimizer": "sgd", "lr_latents": 10.0},
        {"objective": "dm"},
        {"objective": "ce+dm", "dm_weight": 0.5},
        {"tau_final": 0.1, "hard": True},
        {"inner_steps": 2},
    ],
    ids=["defaults", "dense_adam", "sgd", "dm", "ce+dm", "anneal_hard", "inner2"],
)
def test_every_lever_runs_and_resumes_bit_identically(data, tmp_path, lever):
    latents, labels, _ = data
    assert VideoCompressaConfig().sampling == "segments"
    cfg = VideoCompressaConfig(
        frames_per_video=2, passes=2, batch_size=16, guide_width=16, scorer_width=8, guide_warmup_epochs=2,
        dm_batch_real=4, dm_width=8, checkpoint_steps=1, **lever,
    )  # fmt: skip
    full = distill(latents, labels, TinyCodec(), cfg, CLASSES, progress=False)
    with pytest.raises(RuntimeError, match="simulated crash"):  # dies after some mid-run checkpoint
        distill(latents, labels, CrashingCodec(calls=14), cfg, CLASSES, progress=False, checkpoint_dir=tmp_path)
    resumed = distill(latents, labels, TinyCodec(), cfg, CLASSES, False, checkpoint_dir=tmp_path, resume=True)
    assert torch.equal(full.frame_indices, resumed.frame_indices)
    assert torch.equal(full.latents, resumed.latents)
    assert [h["losses"] for h in full.history] == [h["losses"] for h in resumed.history]
    assert not torch.equal(full.latents, latents[torch.arange(len(labels))[:, None], full.frame_indices].float())
    assert full.warmup["epochs"] == 2 and 0 <= full.warmup["acc"] <= 1
    for h in full.history:
        assert 0 <= h["scorer_entropy"] <= 1 + 1e-6
    if lever.get("tau_final"):
        assert full.history[-1]["tau"] == pytest.approx(0.1)
        longer = dataclasses.replace(cfg, passes=3)
        with pytest.raises(ValueError, match="tau_final anneals"):
            distill(latents, labels, TinyCodec(), longer, CLASSES, False, checkpoint_dir=tmp_path, resume=True)


def test_config_refuses_unknown_lever_values():
    for bad in ({"sampling": "random"}, {"latent_optimizer": "lbfgs"}, {"objective": "mse"}, {"tau_final": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            VideoCompressaConfig(**bad)


def test_scorer_only_under_the_defaults_stores_cached_frames(data):
    latents, labels, _ = data
    result = distill(
        latents, labels, TinyCodec(), small_config(sampling="segments", update_latents=False), CLASSES, False
    )
    kept = latents[torch.arange(len(labels))[:, None], result.frame_indices].float()
    assert torch.equal(result.latents, kept)
    # one kept frame per segment
    for j, (start, end) in enumerate(segment_bounds(T, 2)):
        assert ((result.frame_indices[:, j] >= start) & (result.frame_indices[:, j] < end)).all()


# -- diagnostics ---------------------------------------------------------------------------------------------------


def test_drift_counts_storage_steps_on_a_hand_made_case():
    original = uint8_to_latents(torch.full((2, 1, 4, 2, 2), 100, dtype=torch.uint8))
    refined = original.clone()
    refined[0] += 2 * STEP  # 16 values moved by exactly 2 steps
    refined[1, 0, 0, 0, 0] -= 5 * STEP  # 1 value moved by 5 steps
    d = latent_drift(original, refined)
    assert d["max_steps"] == 5
    assert d["share_changed"] == pytest.approx(17 / 32)
    assert d["mean_steps"] == pytest.approx((16 * 2 + 5) / 32)
    assert d["mean_abs"] == pytest.approx((16 * 2 + 5) / 32 * STEP, rel=1e-4)
    assert latent_drift(original, original)["share_changed"] == 0
    # below half a step the stored value does not change: the refinement is invisible once written
    tiny = latent_drift(original, original + 0.4 * STEP)
    assert tiny["share_changed"] == 0 and latents_to_uint8(original + 0.4 * STEP).equal(latents_to_uint8(original))
    with pytest.raises(ValueError, match="differ"):
        latent_drift(original, refined[:1])


def test_uniform_overlap_on_a_hand_made_case():
    assert uniform_overlap(torch.tensor([[2, 6], [2, 5], [0, 1]]), 8) == pytest.approx(3 / 6)  # uniform: 2, 6


def test_set_diagnostics_of_uniform_and_videocompressa(data):
    latents, labels, _ = data
    common = dict(latents=latents, labels=labels, num_classes=CLASSES, codec=TinyCodec(), ratio=10.0, dtype="float16")
    uniform = compress("uniform", MethodContext(**common))
    d = uniform.info["diagnostics"]
    assert d["uniform_overlap"] == 1.0 and d["drift_share_changed"] == 0 and d["decoded_psnr_db"] is None
    options = {"passes": 2, "batch_size": 16, "guide_width": 16, "scorer_width": 8, "lr_latents": 0.1}
    options["guide_warmup_epochs"] = 1
    vc = compress("videocompressa", MethodContext(**common, options=options))
    d = vc.info["diagnostics"]
    assert d["drift_share_changed"] > 0 and d["drift_max_steps"] >= 1
    assert 0 < d["decoded_psnr_db"] < 100
    assert d == set_diagnostics(vc, latents, TinyCodec())


def test_decoded_psnr_decodes_at_most_max_frames_evenly_spread():
    original = torch.zeros(10, 4, 2, 2)
    refined = original.clone()
    refined[1:] += torch.arange(1, 10).float().view(9, 1, 1, 1) * 0.01  # frame 0 equal, 1..9 ever further away
    calls = []

    class Counting(TinyCodec):
        def decode(self, z):
            calls.append(len(z))
            return super().decode(z)

    full = decoded_psnr(Counting(), original, refined, max_frames=None)
    assert calls == [9, 9]
    calls.clear()
    three = decoded_psnr(Counting(), original, refined, max_frames=3)
    assert calls == [3, 3]  # frames 1, 5 and 9 of the nine that differ
    assert three == pytest.approx(decoded_psnr(TinyCodec(), original[[1, 5, 9]], refined[[1, 5, 9]], max_frames=None))
    assert three != pytest.approx(full)


# -- random frames -------------------------------------------------------------------------------------------------


def test_random_frame_keeps_k_distinct_sorted_frames_seeded(data):
    latents, labels, _ = data
    ctx = dict(latents=latents, labels=labels, num_classes=CLASSES, codec=TinyCodec(), dtype="float16")
    a = compress("random_frame", MethodContext(**ctx, ratio=10.0, seed=0))
    b = compress("random_frame", MethodContext(**ctx, ratio=10.0, seed=0))
    c = compress("random_frame", MethodContext(**ctx, ratio=10.0, seed=1))
    k = a.frame_indices.shape[1]
    assert k >= 2
    assert (a.frame_indices.diff(dim=1) > 0).all()  # distinct, in time order
    assert torch.equal(a.frame_indices, b.frame_indices) and not torch.equal(a.frame_indices, c.frame_indices)
    rows = torch.arange(len(a.source_videos))[:, None]
    torch.testing.assert_close(a.latents, latents[a.source_videos][rows, a.frame_indices].half().float())
    assert a.info["diagnostics"]["uniform_overlap"] < 1
