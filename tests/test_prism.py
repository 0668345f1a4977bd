"""PRISM (`compressa_hf.distillation.methods.prism`): the insertion rule, the byte budget met exactly with a variable
number of key frames per video, and rows of different K through the store, `compressa show`, the chat samples, the
collator of every Qwen-VL family and `compressa evaluate`.

Tiny data: 3 classes x 6 clips of T = 8 frames at 16 x 16 through PixelCodec -> latents (18, 8, 3, 2, 2).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from compressa_hf.codecs.base import uint8_to_latents
from compressa_hf.codecs.pixel import PixelCodec
from compressa_hf.distillation.budget import ratio_for_frames
from compressa_hf.distillation.keyframes import (
    decode_index,
    encode_index,
    expand_rows,
    interpolation_weights,
    mask_to_padded,
)
from compressa_hf.distillation.methods import compress
from compressa_hf.distillation.methods.base import CompressedSet, MethodContext
from compressa_hf.distillation.methods.prism import (
    choose_insertions,
    insertion_events,
    insertion_scores,
    plan_keyframes,
)
from tests.conftest import class_pattern_latents

T, SIZE, LATENT = 8, 16, (3, 2, 2)
FAST = {"iterations": 12, "width": 8, "depth": 1, "batch_real": 4, "insert_every": 2}
SOURCE = "procedural:num_classes=3,train_per_class=6,test_per_class=2,length=16,event_length=3,frame_size=16"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny nets: a second thread only adds OpenMP spin-waits on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    """Latents and labels of 18 clips: a smooth pattern per class and a per-clip change over time."""
    return class_pattern_latents(18, T, SIZE, LATENT)


def make_ctx(data, frames: int, **kw) -> MethodContext:
    latents, labels = data
    ratio = float(ratio_for_frames(frames, T, SIZE, LATENT))
    return MethodContext(
        latents=latents, labels=labels, num_classes=3, codec=PixelCodec(), ratio=ratio, frame_size=(SIZE, SIZE), **kw
    )


# ------------------------------------------------------------------------------------------------- the rule


def test_interpolated_frames_are_the_linear_blend_of_their_neighbouring_key_frames():
    mask = torch.tensor([[True, False, False, True, False, True]])
    frames = torch.tensor([[0.0, 9, 9, 3, 9, 7]])[..., None]
    clip = (interpolation_weights(mask) @ frames)[0, :, 0]
    assert clip.tolist() == pytest.approx([0, 1, 2, 3, 5, 7])


def test_the_insertion_rule_promotes_a_frame_whose_gradient_opposes_both_neighbours():
    # Key frames at 0 and 4 with gradients e1 and e2. Frame 2's gradient points against both (inserted); frame 1's
    # agrees with both and frame 3's opposes only the left one (neither is inserted).
    mask = torch.tensor([[True, False, False, False, True]])
    grads = torch.tensor([[[1.0, 0], [1, 1], [-1, -1], [-1, 1], [0, 1]]])
    scores = insertion_scores(grads, mask)
    assert scores[0, 1:4].tolist() == pytest.approx([math.sqrt(0.5), -math.sqrt(0.5), math.sqrt(0.5)])
    assert choose_insertions(scores, mask, epsilon=0.0).nonzero().tolist() == [[0, 2]]
    # No frame of a clip whose gradients all agree is inserted; a zero gradient (cosine 0) is not "against" at 0.
    calm = torch.tensor([[[1.0, 0], [1, 0.2], [0, 0], [1, -0.2], [1, 0]]])
    assert not choose_insertions(insertion_scores(calm, mask), mask, epsilon=0.0).any()
    # A looser epsilon makes frames 1 and 3 candidates too, but a segment gives only its most conflicting frame.
    assert choose_insertions(scores, mask, epsilon=0.8).nonzero().tolist() == [[0, 2]]
    assert not choose_insertions(scores, mask, epsilon=0.0, limit=0).any()


def test_insertion_pauses_in_warmup_and_cooldown():
    assert insertion_events(100, 0.2, 0.2, 10) == [30, 40, 50, 60, 70, 80]
    assert insertion_events(100, 0.2, 0.2, 25) == [45, 70, 80]  # always one at the start of the cool-down
    assert insertion_events(0, 0.2, 0.2, 10) == []


# ------------------------------------------------------------------------------------------------------ bytes


@pytest.mark.parametrize("objective", ["dm", "gm"])
def test_prism_meets_the_budget_exactly_with_variable_k(data, objective, tmp_path):
    ctx = make_ctx(data, frames=2, options=FAST | {"objective": objective})
    cset = compress("prism", ctx)
    plan, per_frame = cset.info["plan"], math.prod(LATENT)
    counts, v = cset.row_frames, cset.num_rows
    # Key frames (uint8) + a 1-byte mask per video (T = 8), at most the budget and less than a key frame below it.
    assert cset.stored["keyframe_mask"].shape == (v, 1)
    assert cset.stored_bytes == int(counts.sum()) * per_frame + v <= ctx.budget_bytes
    assert ctx.budget_bytes - cset.stored_bytes < per_frame
    assert len(set(counts.tolist())) > 1 and int(counts.min()) >= 2  # K really varies; first and last always kept
    assert plan["key_frames"] == int(counts.sum()) and cset.info["prism"]["unused_bytes"] == plan["unused_bytes"]
    # The stored tensors alone give back every row: the mask says where each key frame sits.
    mask = decode_index(cset.stored["keyframe_mask"], "mask", v, T)
    assert mask[:, 0].all() and mask[:, -1].all() and torch.equal(mask.sum(1), counts)
    full = torch.zeros(v, T, *LATENT, dtype=torch.uint8)
    full[mask] = cset.stored["latents"]
    padded, positions, _ = mask_to_padded(full, mask)
    assert torch.equal(positions, cset.frame_indices)
    valid = torch.arange(counts.max()) < counts[:, None]
    assert torch.equal(uint8_to_latents(padded[valid]), cset.latents[valid]) and not cset.latents[~valid].any()
    # What trains is the interpolation to T, with the key frames at their positions.
    frames = cset.frames(PixelCodec())
    assert frames.shape == (v, T, 3, SIZE, SIZE)
    clips = expand_rows(cset.latents, cset.frame_indices, counts, T)
    assert torch.equal(clips[mask], cset.latents[valid])
    cset.save(str(tmp_path / "set.safetensors"))
    back = CompressedSet.load(str(tmp_path / "set.safetensors"))
    assert back.interpolate_to == T and torch.equal(back.frame_counts, counts)
    assert torch.equal(back.frames(PixelCodec()), frames)


def test_prism_reserves_soft_label_bytes(data):
    ctx = make_ctx(data, frames=2, options=FAST, label_bytes_per_video=6)
    cset = compress("prism", ctx)
    labels = 6 * cset.num_rows
    assert 0 <= ctx.budget_bytes - (cset.stored_bytes + labels) < math.prod(LATENT)


def test_the_plan_takes_the_cheaper_index_and_names_the_ratio_that_fits():
    # T = 64 and 1-byte frames: a mask costs 8 bytes a video, a position 1 byte a key frame.
    small = plan_keyframes(12, [4, 4], 64, (1, 1, 1), 10**6, videos_per_class=1)
    assert (small.index, small.key_frames, small.stored_bytes) == ("positions", 6, 12)
    large = plan_keyframes(1000, [4, 4], 64, (1, 1, 1), 10**6, videos_per_class=1)
    assert (large.index, large.key_frames, large.stored_bytes) == ("mask", 128, 144)  # every frame of both videos
    mask = torch.zeros(3, 64, dtype=torch.bool)
    mask[:, [0, 5, 63]] = True
    mask[1, 40] = True
    for encoding in ("mask", "positions"):
        index = encode_index(mask, encoding)
        assert torch.equal(decode_index(index, encoding, 3, 64), mask)
    assert encode_index(mask, "positions").numel() == 10 and encode_index(mask, "mask").numel() == 24
    with pytest.raises(ValueError, match=r"a ratio of at least 0\.000600%"):
        plan_keyframes(5, [4, 4], 8, (1, 1, 1), 10**6)  # one video per class needs 2 x (2 frames + 1 mask byte)


# ------------------------------------------------------------------------- rows of different K, every layer


@pytest.fixture(scope="module")
def prism_repo(tmp_path_factory):
    """`compressa distill --method prism` on a tiny procedural source (in process): a set of rows of different K."""
    from compressa_hf.cli import main

    root = tmp_path_factory.mktemp("prism")
    cache = root / "cache"
    argv = ["--log-level", "WARNING", "distill", "--source", SOURCE, "--size", "16", "--num_frames", "8",
            "--codec", "pixel", "--num_workers", "0", "--ratio", "k2", "--method", "prism",
            "--method_options", "iterations=12,width=8,depth=1,batch_real=4,insert_every=2",
            "--output", str(root / "set"), "--cache_dir", str(cache)]  # fmt: skip
    assert main(argv) == 0
    return root / "set"


def test_distilled_prism_rows_load_with_their_key_frames_times(prism_repo):
    from compressa_hf.store import load_config, read_meta

    meta = read_meta(prism_repo)["prism_ratio_k2"]
    ds = load_config(str(prism_repo), "prism_ratio_k2", cache_dir=str(prism_repo) + ".hf")
    assert ds.features["latents"].shape == (None, 3, 2, 2) and meta["latents_shape"] == [None, 3, 2, 2]
    rows = ds.with_format("numpy")
    ks = [len(x) for x in rows["latents"]]
    assert len(set(ks)) > 1 and meta["frames_per_video"] == {"mean": np.mean(ks), "min": min(ks), "max": max(ks)}
    assert meta["stored_bytes"] == sum(ks) * 12 + len(ks) <= meta["budget_bytes"]  # key frames + a mask byte each
    assert meta["budget_bytes"] - meta["stored_bytes"] < 12
    for i in range(len(ds)):
        row = rows[i]
        positions, indices = list(row["keyframe_positions"]), list(row["frame_indices"])
        assert len(positions) == len(indices) == len(row["timestamps"]) == ks[i]
        assert positions[0] == 0 and positions[-1] == T - 1 and positions == sorted(positions)
        assert indices == sorted(indices) and row["timestamps"] == pytest.approx(np.asarray(indices) / 30, abs=1e-6)
    card = (prism_repo / "README.md").read_text()
    assert "varies by video: mean" in card and "interpolation in latent space to T = 8" in card


def test_show_draws_rows_of_different_k_and_their_interpolation(prism_repo, tmp_path, monkeypatch):
    from compressa_hf import strips as show_mod

    drawn = []
    render = show_mod.render_strip
    monkeypatch.setattr(show_mod, "render_strip", lambda *a: drawn.append(a) or render(*a))
    pictures = show_mod.show(show_mod.ShowConfig(repo=str(prism_repo), num_videos=6, output_dir=str(tmp_path)))
    assert len(pictures) == 6 and all(p.endswith(".png") for p in pictures)
    ks = set()
    for source_frames, kept, decoded, title, (clip, keys) in drawn:
        ks.add(len(decoded))
        assert source_frames.shape[0] == T and sum(kept) == len(decoded) == sum(keys)  # the source read back here
        assert clip.shape == (T, 16, 16, 3) and keys[0] and keys[-1] and f"{len(decoded)} key frames" in title
    assert len(ks) > 1


def test_chat_samples_of_rows_of_different_k(prism_repo):
    from compressa_hf.qwen.samples import load_chat_dataset

    ds = load_chat_dataset(str(prism_repo), "prism_ratio_k2", cache_dir=str(prism_repo) + ".hf")
    batch = ds[: len(ds)]
    ks = [len(v[0]) for v in batch["videos"]]
    assert len(set(ks)) > 1
    for videos, metadata in zip(batch["videos"], batch["video_metadata"]):
        assert videos[0].shape[1:] == (16, 16, 3) and len(metadata[0]["frames_indices"]) == len(videos[0])
    once = load_chat_dataset(str(prism_repo), "prism_ratio_k2", decode_once=True, cache_dir=str(prism_repo) + ".hf")
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(once[: len(ds)]["videos"], batch["videos"]))
    stream = load_chat_dataset(str(prism_repo), "prism_ratio_k2", streaming=True)
    first = next(iter(stream))
    assert np.array_equal(np.asarray(first["videos"][0]), batch["videos"][0][0])


@pytest.mark.slow  # building five processors and a Qwen3.5 tokenizer takes ~20 s of CPU
@pytest.mark.real_data
def test_a_batch_mixing_k_collates_for_every_family(prism_repo, qwen3_5_tokenizer):
    from transformers import AutoProcessor

    from compressa_hf.qwen import FAMILIES, build_processor
    from compressa_hf.qwen.collator import QwenVideoCollator
    from compressa_hf.qwen.samples import load_chat_dataset
    from tests.conftest import QWEN, need_shared
    from tests.test_families import tokenizer_dir

    need_shared(QWEN)
    ds = load_chat_dataset(str(prism_repo), "prism_ratio_k2", cache_dir=str(prism_repo) + ".hf")
    samples = [ds[i] for i in range(len(ds))]
    ks = [len(s["videos"][0]) for s in samples]
    pick = [ks.index(k) for k in sorted(set(ks))]  # one row of each K
    assert len(pick) > 1
    batch_samples = [samples[i] for i in pick]
    for name in FAMILIES:
        if name == "qwen2_5_vl":
            processor = AutoProcessor.from_pretrained(str(QWEN))
        else:
            processor = build_processor(name, tokenizer_dir(name, qwen3_5_tokenizer))
        batch = QwenVideoCollator(processor)(batch_samples)
        grid = batch["video_grid_thw"].tolist()
        assert [g[0] for g in grid] == [math.ceil(ks[i] / 2) for i in pick], name  # each row's own K
        tokens = (batch["input_ids"] == processor.video_token_id).sum(1).tolist()
        assert tokens == [g[0] * g[1] * g[2] // 4 for g in grid], name


def test_a_run_on_rows_of_different_k_says_so(prism_repo):
    """The SFT run summary and card sentence: K's range from the local card, or from the first rows of a Hub set."""
    from types import SimpleNamespace

    from compressa_hf.qwen.run_files import describe_data, set_frames_per_video
    from compressa_hf.store import read_meta

    per_video = read_meta(prism_repo)["prism_ratio_k2"]["frames_per_video"]
    local = SimpleNamespace(distilled=True, repo=str(prism_repo), config="prism_ratio_k2")
    assert set_frames_per_video(local) == per_video
    stats = {"frames_per_sample": 3, "frames_range": [2, 5]}
    expected = f"{per_video['min']} to {per_video['max']} latent keyframes each (mean {per_video['mean']:.2f})"
    assert describe_data(local, 36, stats).endswith(f"36 videos of {expected}")
    hub = SimpleNamespace(distilled=True, repo="org/prism_set", config="prism_ratio_k2")
    assert set_frames_per_video(hub) is None
    assert describe_data(hub, 36, stats).endswith("a varying number of latent keyframes (2 to 5 in the first rows)")
    same = {"frames_per_sample": 2, "frames_range": [2, 2]}
    assert describe_data(hub, 36, same).endswith("36 videos of 2 latent keyframes each")


def test_evaluate_trains_prism_rows_interpolated_to_t(tmp_path):
    from compressa_hf.cli import main

    config = tmp_path / "methods.yaml"
    config.write_text("prism: {iterations: 8, width: 8, depth: 1, batch_real: 4, insert_every: 2}\n")
    out = tmp_path / "eval"
    argv = ["--debug", "evaluate", "--source", SOURCE, "--codec", "pixel", "--num_frames", "8", "--size", "16",
            "--epochs", "2", "--width", "8", "--seeds", "1", "--progress", "false", "--full_data", "false",
            "--methods", "prism", "--ratios", "k2", "--method_config", str(config), "--output", str(out)]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    (cell,) = report["cells"]
    assert cell["status"] == "ok" and cell["stored_bytes"] <= cell["budget_bytes"]
    stats = cell["frames_per_row_stats"]
    assert 2 <= stats["min"] < stats["max"] <= T and cell["frames_per_row"] == stats["mean"]
    rk = f"{report['ratios'][0]:g}"
    assert report["tables"]["convnet"]["prism"][rk]["frames_per_row"] == stats
    assert f"prism at {rk} %: mean {stats['mean']:.2f}" in (out / "report.md").read_text()
    (path,) = (out / "sets" / "prism").glob("*.safetensors")
    saved = CompressedSet.load(str(path))
    assert saved.interpolate_to == T and saved.frames(PixelCodec()).shape[1] == T


def test_sets_of_one_k_keep_their_schema_and_rows_of_different_k_are_checked(tmp_path):
    from compressa_hf.store import DistilledConfig, _features, write_config

    common = dict(video_ids=["a", "b"], labels=[0, 1], fps=[30.0, 30.0], sources=["a", "b"], class_names=["x", "y"],
                  meta={"codec_id": "pixel:avgpool8"})  # fmt: skip
    fixed = DistilledConfig(name="ratio_1", latents=np.zeros((2, 3, 4, 2, 2), np.uint8),
                            frame_indices=[[0, 1, 2]] * 2, timestamps=[[0, 0.1, 0.2]] * 2, **common)  # fmt: skip
    features = _features(fixed)
    assert features["latents"].shape == (3, 4, 2, 2) and "keyframe_positions" not in features
    variable = DistilledConfig(
        name="prism_ratio_1", latents=[np.zeros((2, 4, 2, 2), np.uint8), np.ones((3, 4, 2, 2), np.uint8)],
        frame_indices=[[0, 7], [0, 3, 7]], timestamps=[[0, 0.7], [0, 0.3, 0.7]], keyframe_positions=[[0, 3], [0, 1, 3]],
        **common,
    )  # fmt: skip
    assert _features(variable)["latents"].shape == (None, 4, 2, 2) and variable.row_frames == [2, 3]
    write_config(tmp_path, variable)
    meta = json.loads((tmp_path / "meta" / "prism_ratio_1.json").read_text())
    assert meta["latents_shape"] == [None, 4, 2, 2] and meta["latent_bytes"] == 5 * 16
    with pytest.raises(ValueError, match="row 1 has 3 frames but 2 timestamps"):
        DistilledConfig(**(vars(variable) | {"timestamps": [[0, 0.7], [0, 0.3]]}))
    with pytest.raises(ValueError, match="one frame shape and dtype"):
        DistilledConfig(**(vars(variable) | {"latents": [np.zeros((2, 4, 2, 2), np.uint8), np.ones((3, 4, 2, 2))]}))
