"""`compressa distill --method NAME`: every method of the registry publishes a set that loads with `datasets`, reads as
Qwen-VL chat samples, names its method and options on the card and keeps its stored bytes within the budget."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from compressa_hf.cli import main as cli
from compressa_hf.distillation.methods import METHODS, get_method
from compressa_hf.store import read_meta

SOURCE = "procedural:num_classes=3,train_per_class=4,length=16,frame_size=32"
# 12 clips x T=4 x 3 x 32 x 32: at 1 % the pixel codec's 48-byte uint8 frames buy K = 2 for every video, whole-clip
# coresets 2 clips per class, and LVDD 3 recompressed clips per class.
COMMON = ["--source", SOURCE, "--size", "32", "--num_frames", "4", "--codec", "pixel", "--num_workers", "0",
          "--ratio", "1.0"]  # fmt: skip
VIDEOCOMPRESSA_FLAGS = ["--batch_size", "4", "--guide_width", "8", "--passes", "1", "--guide_warmup_epochs", "1"]
# The trajectory methods at their smallest: 2 experts of 2 epochs, 2 matching iterations of 2 student steps.
TRAJECTORY = {"num_experts": 2, "train_epochs": 2, "max_start_epoch": 2, "iterations": 2, "syn_steps": 2, "width": 8}
# Cheap options per method (a method missing here runs with its defaults); dm's come from a file in
# `compressa evaluate --method_config` form, the others inline.
OPTIONS = {
    "dm": {"iterations": 2, "width": 8, "depth": 1, "batch_real": 4},
    "herding": {"epochs": 1, "width": 8, "batch_size": 4},
    "forgetting": {"epochs": 2, "width": 8, "batch_size": 4},
    "grand": {"epochs": 1, "repeats": 1, "width": 8, "batch_size": 4},
    "lvdd": {"select": "kmeans", "tucker_iterations": 5},
    "prism": {"iterations": 4, "width": 8, "depth": 1, "batch_real": 4, "insert_every": 1},
    "mtt": TRAJECTORY,
    "datm": TRAJECTORY | {"current_max_start_epoch": 1, "expansion_end_iteration": 1},
    "mtt_vdsd": TRAJECTORY,
    "dm_vdsd": {"iterations": 2, "width": 8, "depth": 1, "batch_real": 4},
}
PUBLISHED = [m for m in METHODS if m != "full"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One latent cache for the module: every method distils the same cached split."""
    return str(tmp_path_factory.mktemp("cache") / "c")


def _argv(method: str, out, cache_dir: str, tmp_path) -> list[str]:
    argv = ["distill", *COMMON, "--output", str(out), "--cache_dir", cache_dir, "--method", method]
    if get_method(method).Options.__name__ == "VideoCompressaConfig":
        return argv + VIDEOCOMPRESSA_FLAGS
    if method not in OPTIONS:
        return argv
    if method == "dm":
        path = tmp_path / "methods.yaml"
        path.write_text(json.dumps({"dm": OPTIONS["dm"]}))  # JSON is YAML
        return argv + ["--method_options", str(path)]
    return argv + ["--method_options", ",".join(f"{k}={v}" for k, v in OPTIONS[method].items())]


@pytest.mark.parametrize("method", PUBLISHED)
def test_every_method_publishes_a_set_that_reads_as_chat_samples(method, cache_dir, tmp_path, capsys):
    from datasets import load_dataset

    from compressa_hf.qwen.prompts import PromptTemplate
    from compressa_hf.qwen.samples import load_chat_dataset

    out = tmp_path / "set"
    assert cli(_argv(method, out, cache_dir, tmp_path)) == 0, capsys.readouterr().err[-2000:]
    name = "ratio_1" if method == "videocompressa" else f"{method}_ratio_1"
    meta = read_meta(out)[name]
    ds = load_dataset(str(out), name, split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == meta["num_videos"] > 0

    # The card names the method, its kind and the options it ran with.
    kind = get_method(method).KIND
    assert (meta["method"], meta["method_kind"]) == (method, kind)
    card = (out / "README.md").read_text()
    assert f"**method**: {method}\n" in card and f"**method kind**: {kind}" in card and "**method options**" in card
    wanted = OPTIONS.get(method, {})
    assert all(meta["method_options"][k] == v for k, v in wanted.items())
    assert all(f"{k}={v}" in card for k, v in wanted.items())

    # Stored bytes within the budget of 1 % of the split; the rows' bytes are the stored ones or said apart.
    full = 12 * 4 * 3 * 32 * 32
    assert meta["full_bytes"] == full and meta["budget_bytes"] == math.floor(Fraction(1, 100) * full)
    assert 0 < meta["stored_bytes"] <= meta["budget_bytes"]
    assert meta["achieved_ratio"] == pytest.approx(meta["stored_bytes"] / full * 100)
    if meta.get("keyframes"):  # prism: the key frames are published; a 1-byte mask per video (T = 4) says where
        assert meta["latent_bytes"] + meta["num_videos"] == meta["stored_bytes"] and meta["published_note"] is None
    elif method == "datm":  # latents published as stored; its learned soft labels as a column of their own
        soft = meta["soft_labels"]
        assert meta["published_note"] is None and meta["latent_bytes"] + soft["bytes"] == meta["stored_bytes"]
        assert soft["dtype"] == "float16" and "DATM" in soft["made_by"] and "**soft labels" in card
        row = load_dataset(str(out), name, split="train", cache_dir=str(tmp_path / "hf"))[0]
        assert len(row["soft_label"]) == 3 and abs(sum(row["soft_label"]) - 1) < 1e-2
    elif meta["published_note"] is None:
        assert meta["latent_bytes"] == meta["stored_bytes"]
    else:  # lvdd: Tucker factors stored, the clips read back published (the VDSD memories: the videos they make)
        assert meta["latent_bytes"] > meta["stored_bytes"] and f"{meta['latent_bytes']:,}" in card
        assert "**published latent bytes**" in card

    # Rows: real frames for selection and coresets; clip ids, source frames and times of the cached clips.
    cache = [json.loads(x) for x in open(f"{cache_dir}/index.jsonl").read().splitlines()]
    by_id = {row["clip_id"]: row for row in cache}
    kinds = meta["row_kinds"]
    if kind in ("selection", "coreset"):
        assert kinds == {"real": len(ds), "derived": 0, "synthetic": 0}
    assert sum(kinds.values()) == len(ds) and meta["rows"]
    rows = ds.with_format("numpy")
    for vid, fi, ts, fps in zip(rows["video_id"], rows["frame_indices"], rows["timestamps"], rows["fps"]):
        if str(vid).startswith("synthetic_"):
            continue
        assert set(fi) <= set(by_id[str(vid)]["frame_indices"]) and list(fi) == sorted(fi)
        assert fps == 30.0 and ts == pytest.approx(fi / 30.0, abs=1e-6)

    # What the method did to the kept frames (issue 13's diagnostics), in the metadata and on the card.
    diag = meta["diagnostics"]
    if kind in ("selection", "ours"):
        assert 0 <= diag["uniform_overlap"] <= 1 and "drift_mean_steps" in diag
        assert "**what the method did to the kept frames**" in card
    if kind == "selection":
        assert diag["drift_share_changed"] == 0
    if method == "uniform":
        assert diag["uniform_overlap"] == 1
    if method == "videocompressa":
        assert 0 <= diag["scorer_entropy"] <= 1 + 1e-6 and 0 <= diag["guide_acc"] <= 1
        assert "final scorer entropy" in card

    # ... and they decode into Qwen-VL chat samples of K frames.
    chat = load_chat_dataset(str(out), name, cache_dir=str(tmp_path / "hf"))
    sample = chat[0]
    frames = sample["videos"][0]
    k = len(ds[0]["latents"])  # prism's rows each have their own K (`frames_per_video` holds mean, min and max)
    assert k == meta["frames_per_video"] or meta["frames_per_video"]["min"] <= k <= meta["frames_per_video"]["max"]
    assert frames.shape == (k, 32, 32, 3) and frames.dtype == np.uint8
    prompt = PromptTemplate()
    texts = prompt.class_texts(meta["class_names"])
    assert sample["label"] == ds[0]["label"] and sample["answer"] == prompt.format_answer(texts[sample["label"]])
    assert len(sample["video_metadata"][0]["frames_indices"]) == k


def test_full_is_refused_and_unknown_options_and_foreign_flags_name_the_method(tmp_path, capsys):
    base = ["distill", *COMMON, "--output", str(tmp_path / "s"), "--dry-run"]
    assert cli([*base, "--method", "full"]) == 2
    assert "--method full is the uncompressed reference" in capsys.readouterr().err
    assert cli([*base, "--method", "dm", "--method_options", "iters=3"]) == 2
    assert "unknown option(s) ['iters'] for method 'dm'" in capsys.readouterr().err
    assert cli([*base, "--method", "uniform", "--passes", "2"]) == 2
    assert "--passes belong to videocompressa" in capsys.readouterr().err
    assert cli([*base, "--method", "videocompressa", "--method_options", "passes=2"]) == 2
    assert "not --method_options" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_dry_run_shows_the_methods_plan(tmp_path, capsys):
    base = ["distill", *COMMON, "--output", str(tmp_path / "s"), "--dry-run"]
    assert cli([*base, "--method", "random"]) == 0  # a whole-clip coreset: K = T for 2 clips per class
    out = capsys.readouterr().out
    assert "method: random (coreset)" in out and "plan: K=4 frame(s) per video for 6 of 12 videos" in out
    assert cli([*base, "--method", "uniform"]) == 0
    out = capsys.readouterr().out
    assert "method: uniform (selection)" in out and "plan: K=2 frame(s) per video for all 12 videos" in out
    assert json.loads(out[out.index("{") :])["method_options"] == {}


def test_synthetic_rows_get_nominal_ids_and_times_that_decode(tmp_path):
    from compressa_hf.distillation.methods.base import CompressedSet, store_latents
    from compressa_hf.distillation.set_writer import row_columns
    from compressa_hf.qwen.samples import load_chat_dataset
    from compressa_hf.store import DistilledConfig, write_config

    latents = torch.randn(3, 2, 3, 4, 4)
    stored, readback = store_latents(latents, "uint8")
    cset = CompressedSet(method="dm", labels=torch.tensor([1, 0, 1]), stored=stored, latents=readback,
                         source_videos=torch.tensor([-1, -1, -1]))  # fmt: skip
    cache_index = [{"frame_indices": [0, 10, 20, 30], "fps": 25.0}, {"frame_indices": [0, 20, 40, 60], "fps": 30.0},
                   {"frame_indices": [0, 10, 20, 30], "fps": 25.0}]  # fmt: skip
    cols = row_columns(cset, stored["latents"].numpy(), torch.zeros(3, 4, 3, 4, 4), cache_index, root=None)
    assert cols["video_ids"] == ["synthetic_1_0", "synthetic_0_0", "synthetic_1_1"]
    assert cols["row_kinds"] == {"real": 0, "derived": 0, "synthetic": 3} and "nominal" in cols["rows"]
    # K = 2 uniform positions among T = 4 ([1, 3]), 10 source frames apart, at the median 25 fps
    assert cols["frame_indices"].tolist() == [[10, 30]] * 3 and cols["fps"] == [25.0] * 3
    assert np.allclose(cols["timestamps"], [[0.4, 1.2]] * 3)
    write_config(
        tmp_path / "set",
        DistilledConfig(name="dm_ratio_1", video_ids=cols["video_ids"], labels=[1, 0, 1], latents=stored["latents"].numpy(),
                        frame_indices=cols["frame_indices"], timestamps=cols["timestamps"], fps=cols["fps"],
                        sources=cols["sources"], class_names=["a", "b"],
                        meta={"codec_id": "pixel:avgpool8", "rows": cols["rows"]}),
    )  # fmt: skip
    sample = load_chat_dataset(str(tmp_path / "set"), "dm_ratio_1", cache_dir=str(tmp_path / "hf"))[0]
    assert sample["video_id"] == "synthetic_1_0" and sample["video_metadata"][0]["fps"] == 25.0
    assert sample["video_metadata"][0]["total_num_frames"] == 40  # the span 20 frames + one mean gap x K / (K - 1)
    assert "synthetic, with no source clip" in (tmp_path / "set" / "README.md").read_text()
