"""Teacher soft labels: their bytes counted exactly in the budget for every kind of method, the planner making room,
the quantisation error bounds, soft-target training, and `compressa evaluate --soft_labels true` end to end.

Tiny data as in test_methods.py / test_synthesis.py: 3 classes x 4 clips of T = 4 frames at 16 x 16 through
PixelCodec, latents (3, 2, 2) = 12 bytes per uint8 frame; float16 soft labels are 3 x 2 = 6 bytes per row.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from compressa_hf.codecs.pixel import PixelCodec
from compressa_hf.distillation import soft_labels
from compressa_hf.distillation.budget import plan_budget, ratio_for_frames
from compressa_hf.distillation.methods import compress
from compressa_hf.distillation.methods.base import CompressedSet, MethodContext
from compressa_hf.evaluation.train import TrainConfig, train_and_test, train_network
from compressa_hf.nets import build_net

T, SIZE, LATENT, CLASSES, PER_CLASS = 4, 16, (3, 2, 2), 3, 4
FRAME_BYTES = 12


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny nets: a second thread only adds OpenMP spin-waits on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    n = CLASSES * PER_CLASS
    labels = torch.arange(n) % CLASSES
    base = F.interpolate(torch.rand(CLASSES, 3, 4, 4, generator=g), size=SIZE, mode="bilinear")[labels, None]
    pixels = (0.7 * base + 0.3 * torch.rand(n, T, 3, SIZE, SIZE, generator=g)).clamp(0, 1)
    latents = PixelCodec().encode(pixels.flatten(0, 1)).view(n, T, *LATENT).half()
    return latents, labels, (pixels * 255).round().to(torch.uint8)


def _ctx(data, frames: int, label_bytes: int = 0, **options) -> MethodContext:
    latents, labels, pixels = data
    return MethodContext(
        latents=latents, labels=labels, num_classes=CLASSES, codec=PixelCodec(), frame_size=(SIZE, SIZE),
        ratio=float(ratio_for_frames(frames, T, SIZE, LATENT)), pixels_fn=lambda: pixels, options=options,
        label_bytes_per_video=label_bytes,
    )  # fmt: skip


def _teacher() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_net("convnet", CLASSES, (SIZE, SIZE), width=8).eval()


# One method of each kind: frame selection, whole-clip coreset, and both synthesis methods (their own tensors).
KINDS = [
    ("uniform", 1, {}),
    ("random", 4, {}),
    ("dm", 1, {"iterations": 2, "width": 8, "depth": 1, "batch_real": 2}),
    ("lvdd", 2, {"method": "pca", "select": "kmeans"}),
]


@pytest.mark.parametrize("method, frames, options", KINDS)
@pytest.mark.parametrize("dtype", ["float16", "uint8"])
def test_soft_label_bytes_are_counted_exactly_and_fit(data, method, frames, options, dtype, tmp_path):
    reserve = soft_labels.label_bytes(CLASSES, dtype)
    assert reserve == CLASSES * {"float16": 2, "uint8": 1}[dtype]
    hard = compress(method, _ctx(data, frames, **options))
    ctx = _ctx(data, frames, reserve, **options)
    cset = compress(method, ctx)
    # At these ratios the hard-label set fills the budget to within less than a row's labels, so making room costs
    # rows, and every row still costs the same frames.
    assert hard.stored_bytes + hard.num_rows * reserve > ctx.budget_bytes
    assert cset.num_rows < hard.num_rows and cset.frames_per_row == hard.frames_per_row

    soft = soft_labels.relabel(cset, _teacher(), ctx.codec, ctx.budget_bytes, dtype=dtype)
    assert soft.stored_bytes - cset.stored_bytes == cset.num_rows * CLASSES * soft_labels.DTYPES[dtype].itemsize
    assert soft.stored["soft_labels"].shape == (cset.num_rows, CLASSES)
    assert soft.stored_bytes <= ctx.budget_bytes == soft.budget_bytes
    assert soft.method == f"{method}+soft" and torch.equal(soft.labels, cset.labels)
    targets = soft_labels.targets(soft)
    assert targets.shape == (cset.num_rows, CLASSES) and torch.allclose(targets.sum(1), torch.ones(cset.num_rows))
    assert soft_labels.targets(cset) is None  # hard labels

    path = str(tmp_path / "set.safetensors")
    soft.save(path)
    back = CompressedSet.load(path)
    assert back.stored_bytes == soft.stored_bytes and torch.equal(
        back.stored["soft_labels"], soft.stored["soft_labels"]
    )


def test_a_set_without_room_is_refused_with_the_way_out(data):
    ctx = _ctx(data, 1)
    cset = compress("uniform", ctx)  # k1 exactly: the frames fill the budget
    assert cset.stored_bytes == ctx.budget_bytes
    with pytest.raises(ValueError, match=r"uniform: the soft labels .*label_bytes_per_video=6"):
        soft_labels.relabel(cset, _teacher(), ctx.codec, ctx.budget_bytes)


def test_a_whole_clip_coreset_that_cannot_fit_one_labelled_clip_per_class_fails_clearly(data):
    # k1 holds 3 whole clips of 48 bytes (one per class); with 6 label bytes each only 2 fit.
    with pytest.raises(ValueError, match=r"4 uint8 latent frame\(s\) and its 6 label bytes .* smallest ratio"):
        compress("random", _ctx(data, 1, label_bytes=6))


def test_planner_keeps_k_and_drops_videos_to_make_room():
    kw = dict(num_frames=16, frame_size=112, latent_shape=(4, 14, 14))  # 784 bytes per uint8 frame
    counts = [10, 10, 10]
    for k in (1, 2, 4):
        exact = ratio_for_frames(k, **kw)
        hard = plan_budget(exact, counts, **kw)
        soft = plan_budget(exact, counts, label_bytes_per_video=12, **kw)
        assert hard.frames_per_video == soft.frames_per_video == k and not hard.coreset
        assert soft.coreset and soft.total_videos < hard.total_videos
        assert soft.stored_bytes == soft.total_videos * (k * 784 + 12) <= soft.budget_bytes == hard.budget_bytes
        assert soft.label_bytes == 12 * soft.total_videos and hard.label_bytes == 0
        # the largest equal count per class: one more video per class would not fit
        v = max(soft.videos_per_class)
        assert 3 * (v + 1) * (k * 784 + 12) > soft.budget_bytes
        assert "12 bytes reserved per kept video" in soft.describe()
    # With room to spare (0.5 % buys K = 3 with 0.13 % left over), the labels cost no video.
    roomy = plan_budget(0.5, counts, label_bytes_per_video=12, **kw)
    assert roomy.frames_per_video == 3 and not roomy.coreset
    with pytest.raises(ValueError, match="label_bytes_per_video must be >= 0"):
        plan_budget(0.5, counts, label_bytes_per_video=-1, **kw)


def test_quantisation_error_bounds():
    g = torch.Generator().manual_seed(0)
    for classes in (3, 101):
        logits = torch.randn(400, classes, generator=g) * torch.rand(400, 1, generator=g) * 20  # flat to peaked
        probs = logits.softmax(dim=1)
        half = soft_labels.quantise(probs, "float16")
        assert half.dtype == torch.float16 and (half.float() - probs).abs().max() <= 2**-12
        byte = soft_labels.quantise(probs, "uint8")
        assert byte.dtype == torch.uint8 and (byte.sum(dim=1, dtype=torch.int64) == 255).all()
        assert (byte.float() / 255 - probs).abs().max() < 1 / 255
        for stored, bound in ((half, 2**-10), (byte, 1 / 255)):
            back = soft_labels.dequantise(stored)
            assert (back.sum(dim=1) - 1).abs().max() < 1e-6 and (back - probs).abs().max() < bound
    one_hot = F.one_hot(torch.tensor([0, 2]), 3).float()
    assert torch.equal(soft_labels.dequantise(soft_labels.quantise(one_hot, "uint8")), one_hot)
    with pytest.raises(ValueError, match="soft label dtype must be one of"):
        soft_labels.quantise(one_hot, "int4")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        soft_labels.check_options("float16", 0.0)


def test_temperature_flattens_the_teacher(data):
    frames = data[2][:6]
    sharp = soft_labels.teacher_probabilities(_teacher(), frames, temperature=0.5)
    flat = soft_labels.teacher_probabilities(_teacher(), frames, temperature=4.0)
    assert torch.allclose(sharp.sum(1), torch.ones(6)) and (flat.max(1).values < sharp.max(1).values).all()


def test_one_hot_targets_train_as_hard_labels(data):
    """Cross-entropy to one-hot probabilities is the hard-label loss; only the float summation differs (the soft
    path sums -p_c log q_c over all classes, zeros included, where the hard path gathers one term), so parameters
    agree to float rounding, not bit for bit: 1e-8 in the loss after 6 epochs here."""
    _, labels, pixels = data
    cfg = TrainConfig(epochs=6, batch_size=4, width=8)
    hard, hard_loss, _ = train_network(pixels, labels, CLASSES, "convnet", cfg, seed=3)
    soft, soft_loss, _ = train_network(
        pixels, labels, CLASSES, "convnet", cfg, seed=3, train_targets=F.one_hot(labels, CLASSES).float()
    )
    assert soft_loss == pytest.approx(hard_loss, rel=1e-5)
    for a, b in zip(hard.parameters(), soft.parameters()):
        assert (a - b).abs().max() < 1e-5
    a = train_and_test(pixels, labels, pixels, labels, CLASSES, "convnet", cfg, seed=3)
    b = train_and_test(pixels, labels, pixels, labels, CLASSES, "convnet", cfg, seed=3,
                       train_targets=F.one_hot(labels, CLASSES).float())  # fmt: skip
    assert a.predictions == b.predictions
    # Soft targets change training (the loss is their cross-entropy), and bad ones are refused.
    flat = torch.full((len(labels), CLASSES), 1 / CLASSES)
    c = train_and_test(pixels, labels, pixels, labels, CLASSES, "convnet", cfg, seed=3, train_targets=flat)
    assert c.final_loss == pytest.approx(torch.log(torch.tensor(float(CLASSES))).item(), abs=0.05)
    with pytest.raises(ValueError, match="sum to 1"):
        train_and_test(pixels, labels, pixels, labels, CLASSES, train_targets=2 * flat, cfg=cfg)
    with pytest.raises(ValueError, match=r"train_targets must be float \(12, 3\)"):
        train_and_test(pixels, labels, pixels, labels, CLASSES, train_targets=flat[:5], cfg=cfg)


def _mtimes(root) -> dict[str, int]:
    return {
        os.path.relpath(os.path.join(d, f), root): os.stat(os.path.join(d, f)).st_mtime_ns
        for d, _, files in os.walk(root)
        for f in files
    }


def test_evaluate_soft_label_rows_end_to_end_and_resume(tmp_path, monkeypatch):
    from compressa_hf.evaluation import train as train_mod
    from tests.test_evaluate import _evaluate

    out = tmp_path / "eval"
    args = ("--methods", "uniform,random", "--ratios", "k2", "--seeds", "1", "--soft_labels", "true")
    report = _evaluate(out, *args)
    table, rk = report["tables"]["convnet"], f"{report['ratios'][0]:g}"
    budget = report["budget_bytes"][rk]
    cells = {c["method"]: c for c in report["cells"]}
    for method in ("uniform", "random"):
        hard, soft = cells[method], cells[f"{method}+soft"]
        assert table[f"{method}+soft"][rk]["status"] == "ok" and soft["kind"] == hard["kind"]
        assert soft["frames_per_row"] == hard["frames_per_row"] and soft["rows"] < hard["rows"]
        assert soft["stored_bytes"] <= budget and hard["stored_bytes"] <= budget
        assert report["significance"]["convnet"][rk]["comparisons"][f"{method}+soft"]["against"] == method
    # uniform at k2: 12 videos x 2 frames fill the 288 bytes; with 6 label bytes a row, 3 per class fit (270 bytes)
    assert (cells["uniform+soft"]["rows"], cells["uniform+soft"]["stored_bytes"]) == (9, 9 * (2 * FRAME_BYTES + 6))
    assert report["methods"] == ["uniform", "random", "uniform+soft", "random+soft"]
    assert "| uniform+soft | selection |" in (out / "report.md").read_text()
    teacher = out / "work" / "teachers" / "convnet_s0.safetensors"
    assert teacher.exists()

    # A rerun recomputes nothing: no network trained, no file rewritten.
    before = _mtimes(out / "cells") | _mtimes(out / "sets") | _mtimes(out / "work" / "teachers")

    def no_training(*a, **k):
        raise AssertionError("a finished run trained a network")

    monkeypatch.setattr(train_mod, "train_network", no_training)
    _evaluate(out, *args)
    assert (_mtimes(out / "cells") | _mtimes(out / "sets") | _mtimes(out / "work" / "teachers")) == before
    monkeypatch.undo()

    # A lost soft set is remade with the cached teacher (only the student trains) and gets the same labels.
    old = CompressedSet.load(str(out / "sets" / "uniform+soft" / f"r{rk}_s0.safetensors"))
    (out / "sets" / "uniform+soft" / f"r{rk}_s0.safetensors").unlink()
    (out / "cells" / "convnet" / "uniform+soft" / f"r{rk}_s0.json").unlink()
    calls = []
    real = train_mod.train_network
    monkeypatch.setattr(train_mod, "train_network", lambda *a, **k: calls.append(1) or real(*a, **k))
    _evaluate(out, *args)
    new = CompressedSet.load(str(out / "sets" / "uniform+soft" / f"r{rk}_s0.safetensors"))
    assert len(calls) == 1 and torch.equal(new.stored["soft_labels"], old.stored["soft_labels"])
    assert new.info["soft_labels"]["settings"] == {"dtype": "float16", "temperature": 1.0, "teacher": "convnet"}

    # Other soft-label settings than the saved sets were made with are refused.
    (out / "cells" / "convnet" / "uniform+soft" / f"r{rk}_s0.json").unlink()
    with pytest.raises(ValueError, match="soft-label settings"):
        _evaluate(out, *args, "--soft_label_dtype", "uint8")
