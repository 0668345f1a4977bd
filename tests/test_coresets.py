"""Whole-clip coresets (random, herding, forgetting, GraNd): the scoring functions on hand-made inputs with known
answers, the proxy network, and each method end to end through the registry at exact byte budgets."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from compressa_hf.codecs.pixel import PixelCodec
from compressa_hf.distillation.budget import ratio_for_frames
from compressa_hf.distillation.methods import MethodContext, compress, get_method
from compressa_hf.distillation.methods.forgetting import forgetting_events
from compressa_hf.distillation.methods.grand import last_layer_grad_norm
from compressa_hf.distillation.methods.herding import herding_order
from compressa_hf.distillation.methods.proxy import ProxyOptions, rank_by_score, train_proxy

CLASSES, PER_CLASS, T, SIZE = 3, 4, 4, 16
CORESETS = ["random", "herding", "forgetting", "grand"]
# Tiny proxies: the end-to-end tests check plumbing and bytes, the maths is tested on hand-made inputs below.
FAST = {"width": 4, "epochs": 2, "frames": 2}
OPTIONS = {"random": {}, "herding": FAST, "forgetting": FAST, "grand": {**FAST, "repeats": 2}}


def make_clips(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 clips `(12, T, 3, 16, 16)`: class c is bright in channel c, plus noise; labels `(12,)`."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
    clips = 0.25 + 0.15 * torch.rand(len(labels), T, 3, SIZE, SIZE, generator=gen)
    clips[torch.arange(len(labels)), :, labels] += 0.5
    return (clips.clamp(0, 1) * 255).round().to(torch.uint8), labels


def make_ctx(videos_per_class: int = 2, seed: int = 0, options: dict | None = None) -> MethodContext:
    """A context whose budget holds exactly `videos_per_class` whole clips of every class."""
    pixels, labels = make_clips()
    codec = PixelCodec()
    latents = codec.encode(pixels.flatten(0, 1).float() / 255).view(len(labels), T, 3, SIZE // 8, SIZE // 8)
    ratio = ratio_for_frames(T, T, SIZE, (3, SIZE // 8, SIZE // 8), "uint8") * videos_per_class / PER_CLASS
    return MethodContext(
        latents=latents.half(),
        labels=labels,
        num_classes=CLASSES,
        codec=codec,
        ratio=float(ratio),
        seed=seed,
        pixels_fn=lambda: pixels,
        dtype="uint8",
        options=options or {},
    )


# -- herding ---------------------------------------------------------------------------------------------------------


def test_herding_order_on_points_solved_by_hand():
    # mean (3, 2). Step 1: closest to the mean is B (dist sqrt 5). Step 2: target 2*mean - B = (2, 4), closest C.
    # Step 3: target 3*mean - B - C = (5, 5), closest D (sqrt 13 < sqrt 50). Then A. Not the order of distance to
    # the mean (B, C, A, D): herding picks the far point D to pull the running mean back.
    points = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 1.0], [8.0, 7.0]])  # A, B, C, D
    assert herding_order(points, 4).tolist() == [1, 2, 3, 0]
    assert herding_order(points, 1).tolist() == [1]
    assert herding_order(points, 0).tolist() == []


def test_herding_each_pick_minimises_the_running_mean_error():
    features = torch.randn(9, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean = features.mean(0)
    order = herding_order(features, 6).tolist()
    for i in range(1, 7):
        chosen = order[: i - 1]
        errors = {
            j: float(torch.linalg.vector_norm(features[chosen + [j]].mean(0) - mean))
            for j in range(9)
            if j not in chosen
        }
        assert order[i - 1] == min(errors, key=errors.get)


def test_herding_errors():
    with pytest.raises(ValueError, match="cannot herd 5 of 4 rows"):
        herding_order(torch.zeros(4, 2), 5)
    with pytest.raises(ValueError, match="features must be \\(n, d\\)"):
        herding_order(torch.zeros(4), 1)


# -- forgetting ------------------------------------------------------------------------------------------------------

CORRECT = torch.tensor(
    [  # rows: epochs; columns: examples
        [1, 1, 0, 0, 1],
        [1, 0, 0, 1, 0],
        [1, 1, 0, 0, 0],
        [1, 0, 0, 0, 0],
        [1, 1, 0, 1, 0],
    ],
    dtype=torch.bool,
)


def test_forgetting_events_counted_by_hand():
    # ex0 never forgotten; ex1 forgotten at epochs 1 and 3; ex2 never learned; ex3 forgotten at 2; ex4 at 1.
    assert forgetting_events(CORRECT).tolist() == [0, 2, math.inf, 1, 1]
    assert forgetting_events(CORRECT[:1]).tolist() == [0, 0, math.inf, math.inf, 0]


def test_forgetting_ranking_never_learned_first_then_most_forgotten_ties_seeded():
    events = forgetting_events(CORRECT)
    orders = {tuple(rank_by_score(events, seed=s).tolist()) for s in range(20)}
    assert orders == {(2, 1, 3, 4, 0), (2, 1, 4, 3, 0)}  # only the tie between ex3 and ex4 depends on the seed
    assert torch.equal(rank_by_score(events, seed=7), rank_by_score(events, seed=7))
    with pytest.raises(ValueError, match="NaN at positions \\[1\\]"):
        rank_by_score([1.0, float("nan")], seed=0)


# -- GraNd -----------------------------------------------------------------------------------------------------------


def test_grand_score_solved_by_hand():
    # f = (3, 4): ||f||^2 + 1 = 26. Logits (0, 0), label 0: p - y = (-0.5, 0.5), norm sqrt(0.5); score sqrt(13).
    # Logits (log 3, 0), label 0: p = (0.75, 0.25), p - y = (-0.25, 0.25), norm sqrt(0.125); with f = 0: sqrt(0.125).
    embeddings = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    scores = last_layer_grad_norm(embeddings, logits, torch.tensor([0, 0]))
    torch.testing.assert_close(scores, torch.tensor([math.sqrt(13), math.sqrt(0.125)], dtype=torch.float64))


def test_grand_score_equals_autograd_per_example_last_layer_gradient_norm():
    gen = torch.Generator().manual_seed(0)
    head = nn.Linear(6, 4)
    embeddings, labels = torch.randn(10, 6, generator=gen), torch.randint(0, 4, (10,), generator=gen)
    expected = []
    for f, y in zip(embeddings, labels):
        head.zero_grad()
        nn.functional.cross_entropy(head(f[None]), y[None]).backward()
        expected.append(torch.cat([head.weight.grad.flatten(), head.bias.grad]).norm())
    scores = last_layer_grad_norm(embeddings, head(embeddings).detach(), labels)
    torch.testing.assert_close(scores.float(), torch.stack(expected))
    # and the ranking keeps the largest norms first
    assert rank_by_score(scores, seed=0)[:3].tolist() == torch.stack(expected).argsort(descending=True)[:3].tolist()


# -- the proxy network -----------------------------------------------------------------------------------------------


def test_proxy_records_every_epoch_learns_and_is_deterministic():
    pixels, labels = make_clips()
    opts = ProxyOptions(width=8, epochs=6, frames=2, batch_size=4, lr=0.05)
    a = train_proxy(pixels, labels, CLASSES, opts, seed=3)
    b = train_proxy(pixels, labels, CLASSES, opts, seed=3)
    assert a.correct.shape == (6, len(labels)) and a.correct.dtype == torch.bool
    assert a.embeddings.shape == (len(labels), 8 * 2 * 2) and a.logits.shape == (len(labels), CLASSES)
    assert a.frame_indices == [1, 3]
    assert a.final_accuracy == 1.0 and a.train_accuracy[-1] == 1.0  # one colour per class: easy
    assert torch.equal(a.correct, b.correct) and torch.equal(a.embeddings, b.embeddings)
    c = train_proxy(pixels, labels, CLASSES, opts, seed=4)
    assert not torch.equal(a.embeddings, c.embeddings)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"net": "convnet3d"}, "`net` must be one of .* got 'convnet3d'"),
        ({"width": 0}, "`width` must be >= 1, got 0"),
        ({"epochs": -1}, "`epochs` must be >= 0, got -1"),
        ({"lr": 0.0}, "`lr` must be > 0, got 0.0"),
    ],
)
def test_proxy_options_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ProxyOptions(**kwargs)


def test_method_option_errors():
    with pytest.raises(ValueError, match="`epochs` must be >= 2, got 1"):
        compress("forgetting", make_ctx(options={"epochs": 1}))
    with pytest.raises(ValueError, match="`repeats` must be >= 1, got 0"):
        compress("grand", make_ctx(options={"repeats": 0}))
    with pytest.raises(ValueError, match="unknown option\\(s\\) \\['lr'\\] for method 'random'"):
        compress("random", make_ctx(options={"lr": 0.1}))


# -- end to end ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CORESETS)
def test_end_to_end_bytes_rows_and_determinism(name):
    assert get_method(name).KIND == "coreset"
    ctx = make_ctx(videos_per_class=2, options=OPTIONS[name])
    cset = compress(name, ctx)
    plan = ctx.plan(frames_per_video=T)
    assert list(plan.videos_per_class) == [2, 2, 2]
    assert cset.method == name and cset.stored_bytes == plan.stored_bytes <= ctx.budget_bytes
    assert cset.latents.shape == (6, T, 3, SIZE // 8, SIZE // 8)
    assert torch.bincount(cset.labels, minlength=CLASSES).tolist() == [2, 2, 2]
    assert torch.equal(cset.labels, ctx.labels[cset.source_videos])
    assert torch.equal(cset.frame_indices, torch.arange(T).expand(6, T))
    torch.testing.assert_close(cset.latents, ctx.latents[cset.source_videos].float(), atol=0.03, rtol=0)
    json.dumps(cset.info, allow_nan=False)  # the report can store it
    again = compress(name, make_ctx(videos_per_class=2, options=OPTIONS[name]))
    assert torch.equal(cset.source_videos, again.source_videos)


def test_random_depends_on_the_seed():
    picks = {tuple(compress("random", make_ctx(1, seed=s)).source_videos.tolist()) for s in range(6)}
    assert len(picks) > 1


@pytest.mark.parametrize("name", ["herding", "forgetting", "grand"])
def test_a_budget_holding_every_clip_trains_no_proxy(name):
    cset = compress(name, make_ctx(videos_per_class=PER_CLASS, options=OPTIONS[name]))
    assert cset.source_videos.tolist() == list(range(CLASSES * PER_CLASS))
    assert cset.info["proxy"].startswith("not trained")


def test_kept_clips_are_the_best_by_each_methods_own_scores():
    """v = 1: the clip kept in each class is the one the method's score puts first, recomputed here by hand from
    proxies trained with the same options and seeds."""
    ctx = make_ctx(1)
    pixels, labels = ctx.pixels(), ctx.labels
    members = [torch.nonzero(labels == c).flatten() for c in range(CLASSES)]
    proxy = train_proxy(pixels, labels, CLASSES, ProxyOptions(**FAST), seed=0)

    herding = compress("herding", make_ctx(1, options=FAST)).source_videos.tolist()
    # the first herding pick is the clip whose features are closest to the class mean
    nearest = [int(m[(proxy.embeddings[m] - proxy.embeddings[m].mean(0)).norm(dim=1).argmin()]) for m in members]
    assert herding == nearest

    forgetting = compress("forgetting", make_ctx(1, options=FAST)).source_videos.tolist()
    events = forgetting_events(proxy.correct)
    assert [float(events[v]) for v in forgetting] == [float(events[m].max()) for m in members]

    grand = compress("grand", make_ctx(1, options={**FAST, "repeats": 2})).source_videos.tolist()
    scores = sum(
        last_layer_grad_norm(p.embeddings, p.logits, labels)
        for p in (train_proxy(pixels, labels, CLASSES, ProxyOptions(**FAST), seed=r) for r in range(2))
    )
    assert grand == [int(m[scores[m].argmax()]) for m in members]


def test_info_reports_the_scores_of_kept_clips():
    forgetting = compress("forgetting", make_ctx(1, options=FAST))
    assert set(forgetting.info["forgetting_events"]) == {str(v) for v in forgetting.source_videos.tolist()}
    assert len(forgetting.info["proxy"]["train_accuracy"]) == 2
    grand = compress("grand", make_ctx(1, options={**FAST, "repeats": 2}))
    assert len(grand.info["proxies"]) == 2 and all(s > 0 for s in grand.info["grand_scores"].values())
    herding = compress("herding", make_ctx(1, options=FAST))
    assert sorted(v for vs in herding.info["pick_order"].values() for v in vs) == herding.source_videos.tolist()
