"""The Hub-layout writer: load_dataset round trip, several configs, atomic replacement."""

from __future__ import annotations

import numpy as np
import pytest

from compressa_hf.store import DistilledConfig, config_name_for_ratio, load_config, read_meta, write_config


def _cfg(name: str, n: int = 4, k: int = 2, dtype=np.uint8, seed: int = 0) -> DistilledConfig:
    rng = np.random.default_rng(seed)
    latents = rng.integers(0, 255, size=(n, k, 4, 3, 3)).astype(dtype)
    return DistilledConfig(
        name=name,
        video_ids=[f"v{i}" for i in range(n)],
        labels=[i % 2 for i in range(n)],
        latents=latents,
        frame_indices=(idx := np.sort(rng.integers(0, 16, size=(n, k)), axis=1)),
        timestamps=idx / 12.0,
        fps=[12.0] * n,
        sources=[f"train/v{i}.mp4" for i in range(n)],
        class_names=["Jump", "Run"],
        meta={"source": "videofolder", "split": "train", "method": "videocompressa", "codec_id": "tae:taef2",
              "achieved_ratio": 0.41, "frames_per_video": k, "seed": 0, "command": "compressa distill ..."},
    )  # fmt: skip


def test_load_dataset_round_trip(tmp_path):
    cfg = _cfg("ratio_0.41")
    write_config(tmp_path, cfg)
    ds = load_config(str(tmp_path), "ratio_0.41", cache_dir=str(tmp_path / "hf_cache"))
    assert ds.features["label"].names == ["Jump", "Run"]
    assert ds["video_id"] == cfg.video_ids and ds["label"] == cfg.labels
    # datasets' numpy formatter widens extension arrays to int64; the feature keeps the stored dtype
    assert ds.features["latents"].dtype == "uint8" and ds.features["latents"].shape == (2, 4, 3, 3)
    row = ds.with_format("numpy")[2]
    assert np.array_equal(np.asarray(row["latents"], dtype=ds.features["latents"].dtype), cfg.latents[2])
    assert list(row["frame_indices"]) == list(cfg.frame_indices[2])
    card = (tmp_path / "README.md").read_text()
    for fact in ("videocompressa", "tae:taef2", "0.4100 %", "Jump, Run", "compressa distill"):
        assert fact in card


def test_configs_are_independent_and_replaced_atomically(tmp_path):
    from datasets import get_dataset_config_names

    write_config(tmp_path, _cfg("ratio_0.41"))
    (before,) = (tmp_path / "data" / "ratio_0.41").glob("train-*.parquet")
    content = before.read_bytes()
    write_config(tmp_path, _cfg("ratio_0.82", n=6, k=4, dtype=np.float16))
    assert before.read_bytes() == content
    assert sorted(get_dataset_config_names(str(tmp_path))) == ["ratio_0.41", "ratio_0.82"]
    assert set(read_meta(tmp_path)) == {"ratio_0.41", "ratio_0.82"}
    write_config(tmp_path, _cfg("ratio_0.41", n=2, seed=1))  # replace one config
    ds = load_config(str(tmp_path), "ratio_0.41", cache_dir=str(tmp_path / "hf_cache"))
    assert len(ds) == 2 and not list((tmp_path / "data").glob(".*tmp*"))
    assert (
        load_config(str(tmp_path), "ratio_0.82", cache_dir=str(tmp_path / "c2")).features["latents"].dtype == "float16"
    )


def test_bad_columns_are_refused_with_the_reason():
    good = _cfg("ratio_1")
    with pytest.raises(ValueError, match="column lengths differ"):
        DistilledConfig(**(vars(good) | {"labels": [0]}))
    with pytest.raises(ValueError, match="uint8 or float16"):
        DistilledConfig(**(vars(good) | {"latents": good.latents.astype(np.float32)}))
    with pytest.raises(ValueError, match="config name"):
        DistilledConfig(**(vars(good) | {"name": "bad name"}))


def test_config_name_for_ratio():
    assert config_name_for_ratio(0.41) == "ratio_0.41" and config_name_for_ratio(1.0) == "ratio_1"


def test_rewritten_config_of_the_same_shape_is_not_read_from_a_stale_cache(tmp_path):
    cache = str(tmp_path / "hf_cache")  # one datasets cache for both loads, as a user has
    write_config(tmp_path / "repo", _cfg("ratio_1", seed=0))
    first = np.asarray(load_config(str(tmp_path / "repo"), "ratio_1", cache_dir=cache)["latents"])
    write_config(tmp_path / "repo", _cfg("ratio_1", seed=1))
    second = np.asarray(load_config(str(tmp_path / "repo"), "ratio_1", cache_dir=cache)["latents"])
    assert np.array_equal(second, _cfg("ratio_1", seed=1).latents) and not np.array_equal(first, second)
