"""`compressa push` (dry run: no network in tests), the preview column, and the named-set registry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from compressa_hf.hub import files_to_upload
from compressa_hf.named_sets import NAMED_SETS, NamedSet, load_named_sets, resolve_named_set
from compressa_hf.store import load_config, preview_png, read_meta, write_config
from tests.conftest import REPO
from tests.test_store import _cfg


def _repo_with_preview(path):
    cfg = _cfg("ratio_0.41")
    frames = np.random.default_rng(0).integers(0, 255, size=(4, 2, 8, 8, 3)).astype(np.uint8)
    cfg.previews = [preview_png(f) for f in frames]
    write_config(path, cfg)
    return cfg, frames


def test_preview_column_shows_the_keyframes_and_is_reported_apart(tmp_path):
    cfg, frames = _repo_with_preview(tmp_path)
    ds = load_config(str(tmp_path), "ratio_0.41", cache_dir=str(tmp_path / "c"))
    strip = np.asarray(ds[1]["preview"])
    assert strip.shape == (8, 16, 3) and np.array_equal(strip, np.concatenate(list(frames[1]), axis=1))
    meta = read_meta(tmp_path)["ratio_0.41"]
    assert meta["preview_bytes"] == sum(map(len, cfg.previews)) > 0
    assert meta["latent_bytes"] == cfg.latents.nbytes  # the ratio counts these only
    assert "not counted in the ratio" in (tmp_path / "README.md").read_text()


def test_push_dry_run_lists_exactly_a_loadable_repo_and_never_prints_the_token(tmp_path):
    repo = tmp_path / "set"
    _repo_with_preview(repo)
    (repo / "show").mkdir()
    (repo / "show" / "00000.png").write_bytes(b"png")  # local pictures stay behind
    env = os.environ | {"PYTHONPATH": str(REPO), "HF_TOKEN": "hf_SECRETSENTINEL123"}
    out = subprocess.run(
        [sys.executable, "-m", "compressa_hf.cli", "push", str(repo), "me/set", "--dry-run"],
        check=True, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert "SECRETSENTINEL" not in out.stdout + out.stderr
    listed = json.loads(out.stdout)["files"]
    assert listed == files_to_upload(str(repo)) and "show/00000.png" not in listed
    assert "README.md" in listed and any(f.startswith("data/ratio_0.41/") for f in listed)
    # what would be uploaded, alone in a folder, is a loadable dataset
    upload = tmp_path / "upload"
    for rel in listed:
        (upload / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo / rel, upload / rel)
    ds = load_config(str(upload), "ratio_0.41", cache_dir=str(tmp_path / "c"))
    assert len(ds) == 4 and ds.features["label"].names == ["Jump", "Run"]


def test_push_refuses_to_publish_a_local_path(tmp_path):
    from compressa_hf.hub import push_repo

    cfg = _cfg("ratio_0.41")
    cfg.sources[2] = "/home/alice/data/hmdb51/wave/clip.avi"
    write_config(tmp_path / "set", cfg)
    with pytest.raises(ValueError, match=r"would publish paths of this machine \(data/ratio_0.41/.*/home/alice/data"):
        push_repo(str(tmp_path / "set"), "me/set", dry_run=True)


def test_push_refuses_a_folder_that_is_not_a_set(tmp_path):
    env = os.environ | {"PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "compressa_hf.cli", "push", str(tmp_path), "me/set", "--dry-run"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode != 0 and "not a distilled set" in out.stderr


def test_named_sets_cover_the_paper_ratios_and_expand_env(monkeypatch):
    for name in ("hmdb51_0.21", "hmdb51_0.41", "hmdb51_0.82", "ucf101_0.13", "ucf101_0.26", "ucf101_0.52"):
        entry = NAMED_SETS[name]
        assert entry.distilled and entry.config == "ratio_" + name.split("_")[1]
    monkeypatch.delenv("HMDB51_ROOT", raising=False)
    with pytest.raises(ValueError, match="HMDB51_ROOT"):
        resolve_named_set("hmdb51_full")
    monkeypatch.setenv("HMDB51_ROOT", "/data/hmdb")
    assert resolve_named_set("hmdb51_full").source == "hmdb51:root=/data/hmdb"
    assert resolve_named_set("hmdb51_0.41").repo == "compressa_hf/hmdb51_distilled"
    with pytest.raises(ValueError, match="unknown data set 'nope'; known: .*hmdb51_0.41"):
        resolve_named_set("nope")


def test_named_sets_from_yaml(tmp_path):
    path = tmp_path / "sets.yaml"
    path.write_text(
        "mine_0.5:\n  repo: /d/mine\n  config: ratio_0.5\n  eval_source: /d/videos\nmine_full:\n  source: /d/videos\n"
    )
    assert resolve_named_set("mine_0.5", str(path)) == NamedSet(
        "mine_0.5", repo="/d/mine", config="ratio_0.5", eval_source="/d/videos"
    )
    path.write_text("bad:\n  repo: x\n  config: ratio_1\n  colour: red\n")
    with pytest.raises(ValueError, match="unknown keys \\['colour'\\]"):
        load_named_sets(str(path))
    with pytest.raises(ValueError, match="exactly one of"):
        NamedSet("both", repo="a", config="c", source="b")
