"""Synthesis baselines: DM in latent space and LVDD (diverse whole clips, Tucker / PCA recompressed).

Tiny data throughout: 3 classes x 4 clips of T = 4 frames at 16 x 16 through PixelCodec -> latents (12, 4, 3, 2, 2).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compressa_hf.codecs.pixel import PixelCodec
from compressa_hf.distillation.budget import ratio_for_frames
from compressa_hf.distillation.methods import compress, get_method
from compressa_hf.distillation.methods import dm as dm_mod
from compressa_hf.distillation.methods import lvdd as lvdd_mod
from compressa_hf.distillation.methods.base import MethodContext
from tests.conftest import class_pattern_latents

T, SIZE, LATENT = 4, 16, (3, 2, 2)
FAST_DM = {"iterations": 10, "width": 16, "depth": 2, "batch_real": 4}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The nets here are tiny: a second thread only adds OpenMP spin-waits, which cost minutes on a busy 2-core CI
    machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    """Latents and labels of 12 clips: a smooth pattern per class, a per-clip change over time and a little noise
    (so a clip's K < T frames do not already match its T frames, and classes differ)."""
    return class_pattern_latents(12, T, SIZE, LATENT)


def make_ctx(data, frames: int, **kw) -> MethodContext:
    """A context at the exact ratio of `frames` uint8 latent frames per clip."""
    latents, labels = data
    ratio = float(ratio_for_frames(frames, T, SIZE, LATENT))
    return MethodContext(
        latents=latents, labels=labels, num_classes=3, codec=PixelCodec(), ratio=ratio, frame_size=(SIZE, SIZE), **kw
    )


# ------------------------------------------------------------------------------------------------------------- DM


def test_dm_stores_videocompressa_bytes(data):
    ctx = make_ctx(data, frames=2, options=FAST_DM)
    cset = compress("dm", ctx)
    plan = ctx.plan()
    assert cset.stored_bytes == plan.stored_bytes <= ctx.budget_bytes
    assert tuple(cset.latents.shape) == (12, plan.frames_per_video, *LATENT)
    assert torch.equal(cset.labels, data[1])
    assert get_method("dm").KIND == "synthesis"


def test_dm_coreset_plan_uses_the_seeded_subset(data):
    """At half a frame per clip the plan keeps K = 1 for 2 clips per class, the same ones as VideoCompressa."""
    from compressa_hf.distillation.methods.base import choose_videos

    ctx = make_ctx(data, frames=1, options=FAST_DM)
    ctx.ratio = ctx.ratio / 2
    plan = ctx.plan()
    assert plan.coreset and plan.frames_per_video == 1
    cset = compress("dm", ctx)
    assert cset.stored_bytes == plan.stored_bytes
    assert cset.source_videos.tolist() == choose_videos(data[1].tolist(), plan.videos_per_class, ctx.seed)


def _fixed_net_loss(real, real_labels, syn, syn_labels, nets):
    return np.mean([dm_mod.matching_loss(n, real, real_labels, syn, syn_labels, 3) for n in nets])


def test_dm_reduces_matching_loss_and_changes_latents(data):
    latents, labels = data
    init = latents[:, [0, 2]].float()
    opts = dm_mod.Options(iterations=80, width=16, depth=2, lr=0.01, batch_real=4)
    out, losses = dm_mod.distribution_matching(latents, labels, init, labels, 3, opts, seed=0)
    generator = torch.Generator().manual_seed(123)  # held-out random nets, not the ones trained against
    nets = [dm_mod.LatentEmbedNet(3, 16, 2).reset(generator) for _ in range(8)]
    before = _fixed_net_loss(latents.float(), labels, init, labels, nets)
    after = _fixed_net_loss(latents.float(), labels, out, labels, nets)
    assert after < 0.6 * before, (before, after)
    assert (out - init).abs().max() > 0.1
    assert out.abs().max() <= 3.0 + 1e-6  # clamped to the uint8-storable range
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_dm_is_deterministic_for_a_seed(data):
    a = compress("dm", make_ctx(data, frames=2, options=FAST_DM, seed=3))
    b = compress("dm", make_ctx(data, frames=2, options=FAST_DM, seed=3))
    c = compress("dm", make_ctx(data, frames=2, options=FAST_DM, seed=4))
    assert torch.equal(a.stored["latents"], b.stored["latents"])
    assert a.info["dm"] == b.info["dm"]
    assert not torch.equal(a.latents, c.latents)
    assert a.info["dm"]["loss_end"] < a.info["dm"]["loss_start"]


def test_dm_rejects_bad_options(data):
    with pytest.raises(ValueError, match="lr"):
        compress("dm", make_ctx(data, frames=2, options={"lr": 0}))
    with pytest.raises(ValueError, match="unknown option"):
        compress("dm", make_ctx(data, frames=2, options={"steps": 3}))


# ----------------------------------------------------------------------------------------------------------- LVDD


@pytest.mark.parametrize("method", ["tucker", "pca"])
@pytest.mark.parametrize("select", ["kdpp", "kmeans"])
def test_lvdd_fits_more_clips_than_the_uint8_coreset(data, method, select):
    ctx = make_ctx(data, frames=2, options={"method": method, "select": select, "keep": 0.75})
    whole = ctx.plan(frames_per_video=T)  # uint8 whole clips: 2 of 4 per class
    cset = compress("lvdd", ctx)
    info = cset.info["lvdd"]
    assert cset.stored_bytes <= ctx.budget_bytes
    assert cset.stored_bytes == cset.num_rows * info["bytes_per_video"]
    assert info["bytes_per_video"] <= 0.75 * T * 12  # keep x the uint8 clip's bytes
    assert cset.num_rows > whole.total_videos == info["whole_clip_coreset_videos"] == 6
    assert sorted(set(cset.source_videos.tolist())) == cset.source_videos.tolist()  # distinct clips
    assert torch.equal(cset.labels, data[1][cset.source_videos])
    # keep 0.75 of a 48-byte clip is 18 float16 numbers: PCA rank 1 (16) or Tucker ranks (1, 1, 1, 1) (12)
    assert torch.bincount(cset.labels).tolist() == info["videos_per_class"] == [3 if method == "pca" else 4] * 3
    assert tuple(cset.latents.shape) == (cset.num_rows, T, *LATENT)
    assert all(t.dtype == torch.float16 for t in cset.stored.values())


def test_lvdd_too_small_a_ratio_names_the_smallest_that_works(data):
    ctx = make_ctx(data, frames=1, options={"method": "pca"})  # pca at keep 0.75: 32 bytes a clip
    ctx.ratio = 100 * 60 / ctx.full_bytes  # 60 bytes: not 3 x 32
    with pytest.raises(ValueError, match="smallest ratio") as err:
        compress("lvdd", ctx)
    smallest = float(str(err.value).split("smallest ratio that can is ")[1].split("%")[0])
    ctx.ratio = smallest
    assert compress("lvdd", ctx).num_rows == 3


def test_lvdd_is_deterministic_for_a_seed(data):
    a = compress("lvdd", make_ctx(data, frames=2, seed=5))
    b = compress("lvdd", make_ctx(data, frames=2, seed=5))
    assert torch.equal(a.source_videos, b.source_videos)
    assert all(torch.equal(a.stored[k], b.stored[k]) for k in a.stored)


def test_kmeans_picks_the_centre_of_each_cluster():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    offsets = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # centre + 4 around it
    points = (centres[:, None] + offsets[None]).reshape(-1, 2)
    order = rng.permutation(len(points))
    chosen = lvdd_mod.select_kmeans(points[order], 3, seed=0)
    assert sorted(order[chosen].tolist()) == [0, 5, 10]  # the three centre points


def test_kdpp_never_picks_the_duplicate_pair():
    features = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    picks = {tuple(lvdd_mod.select_kdpp(features, 2, seed).tolist()) for seed in range(30)}
    assert (0, 1) not in picks
    assert all(len(set(p)) == 2 for p in picks)
    assert len(picks) > 1  # a sample, not a fixed answer
    assert lvdd_mod.select_kdpp(features, 4, seed=0).tolist() == [0, 1, 2, 3]


def test_tucker_picks_the_true_ranks_and_reconstructs_low_rank_clips():
    gen = torch.Generator().manual_seed(0)
    shape, true_ranks = (6, 3, 4, 4), (2, 2, 1, 1)
    core = torch.randn(5, *true_ranks, generator=gen, dtype=torch.float64)
    factors = [
        torch.linalg.qr(torch.randn(5, n, r, generator=gen, dtype=torch.float64))[0] for n, r in zip(shape, true_ranks)
    ]
    clips = lvdd_mod.tucker_reconstruct({"core": core, **{f"factor_{i}": f for i, f in enumerate(factors)}})
    assert clips.shape == (5, *shape)
    budget = lvdd_mod.tucker_elements(shape, true_ranks)
    assert budget == 4 + 12 + 6 + 4 + 4
    ranks = lvdd_mod.tucker_ranks(shape, budget, lvdd_mod.mode_spectra(clips))
    assert ranks == true_ranks
    stored = lvdd_mod.tucker_compress(clips, ranks)
    assert sum(t.numel() * t.element_size() for t in stored.values()) == 5 * 2 * budget
    error = (lvdd_mod.tucker_reconstruct(stored) - clips).norm() / clips.norm()
    assert error < 5e-3  # float16 storage only


def test_pca_reconstructs_low_rank_clips_with_exact_bytes():
    gen = torch.Generator().manual_seed(0)
    shape = (6, 3, 4, 4)
    clips = (torch.randn(5, 6, 2, generator=gen) @ torch.randn(5, 2, 48, generator=gen)).view(5, *shape)
    rank = lvdd_mod.pca_rank(shape, 2 * (6 + 48) + 5)
    assert rank == 2
    stored = lvdd_mod.pca_compress(clips, rank)
    assert sum(t.numel() * t.element_size() for t in stored.values()) == 5 * 2 * lvdd_mod.pca_elements(shape, rank)
    error = (lvdd_mod.pca_reconstruct(stored, shape) - clips).norm() / clips.norm()
    assert error < 5e-3
    with pytest.raises(ValueError, match="needs >= 54"):
        lvdd_mod.pca_rank(shape, 53)
