"""The latent cache: contents, bad files, resume after SIGKILL, and rank sharding under `accelerate launch`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from compressa_hf.cache import EncodeConfig, LatentCache, encode_split
from compressa_hf.clips import ClipConfig, sample_clip
from compressa_hf.codecs.pixel import PixelCodec
from compressa_hf.sources import build_source
from tests.conftest import REPO, free_port

PROC = "procedural:num_classes=3,train_per_class=4,test_per_class=2,length=24,frame_size=32"


def _cfg(out, **kw) -> EncodeConfig:
    base = dict(source=PROC, output_dir=str(out), codec="pixel", num_frames=4, size=32, shard_size=5, num_workers=0)
    return EncodeConfig(**(base | kw))


def test_cache_holds_every_clip_with_its_encoded_frames(tmp_path):
    summary = encode_split(_cfg(tmp_path / "c"), progress=False)
    assert summary["clips_cached"] == 12 and summary["clips_skipped"] == 0 and summary["shards"] == 3
    cache = LatentCache(tmp_path / "c")
    latents, labels = cache.load_latents()
    assert latents.shape == (12, 4, 3, 4, 4) and latents.dtype == torch.float16
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # row 7 holds exactly the codec's encoding of clip 7's sampled frames
    src = build_source("procedural", num_classes=3, train_per_class=4, test_per_class=2, length=24, frame_size=32)
    ref = src.list_clips("train")[7]
    frames = sample_clip(src, ref, ClipConfig(num_frames=4, size=32)).frames
    expected = PixelCodec().encode(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    assert cache.index[7]["clip_id"] == ref.clip_id and cache.index[7]["frame_indices"] == [3, 9, 15, 21]
    torch.testing.assert_close(latents[7].float(), expected, atol=2e-3, rtol=0)
    assert json.loads((tmp_path / "c" / "summary.json").read_text())["clips_cached"] == 12


def test_bad_files_are_skipped_reported_and_counted(tmp_path, videofolder):
    (videofolder / "train" / "Run" / "zero.mp4").write_bytes(b"")
    (videofolder / "train" / "Jump" / "garbage.mp4").write_bytes(b"\x00garbage" * 100)
    summary = encode_split(_cfg(tmp_path / "c", source=str(videofolder), size=16), progress=False)
    assert summary["clips_total"] == 6 and summary["clips_cached"] == 4 and summary["clips_skipped"] == 2
    report = [json.loads(line) for line in (tmp_path / "c" / "skipped.jsonl").read_text().splitlines()]
    assert sorted(Path(r["path"]).name for r in report) == ["garbage.mp4", "zero.mp4"]
    assert all(r["reason"] for r in report)
    assert len(LatentCache(tmp_path / "c")) == 4


def test_encode_of_a_split_without_one_readable_clip_is_an_error(tmp_path, videofolder, capsys):
    """`compressa encode` (and `compressa_hf.encode`) stop with exit code 2 naming the report, not a 0-clip cache."""
    from compressa_hf.cli import main

    for path in (videofolder / "train").rglob("*.mp4"):
        path.write_bytes(b"\x00garbage" * 10)
    argv = ["encode", "--source", str(videofolder), "--output_dir", str(tmp_path / "c"), "--size", "16"]
    assert main([*argv, "--codec", "pixel", "--num_workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "none of the 4 clips of split 'train'" in err and "0 missing files, 4 unreadable" in err
    assert str(tmp_path / "c" / "skipped.jsonl") in err


def test_aliases_of_a_split_share_one_cache_and_reports_name_the_folder(tmp_path, videofolder):
    """A source with `val/` and no `test/`: `--split test`, `validation` and `val` read one folder, so they are one
    cache (not three), and evaluate says which folder its test split is."""
    from compressa_hf.evaluation.runner import EvaluateArguments, run
    from compressa_hf.evaluation.train import TrainConfig

    os.rename(videofolder / "test", videofolder / "val")
    dirs = {
        split: encode_split(
            EncodeConfig(source=str(videofolder), split=split, codec="pixel", num_frames=4, size=16, num_workers=0),
            progress=False,
        )["output_dir"]
        for split in ("test", "validation", "val")
    }
    assert len(set(dirs.values())) == 1 and "-val-" in os.path.basename(dirs["test"])
    args = EvaluateArguments(
        source=str(videofolder), output=str(tmp_path / "e"), methods="uniform", ratios="k1", seeds=1, codec="pixel",
        num_frames=4, size=16, num_workers=0, full_data=False, progress=False,
    )  # fmt: skip
    report = run(args, TrainConfig(epochs=1, width=8))
    assert report["protocol"]["description"] == "train on 'train', test on 'test' (folder val/)"


def test_short_clips_are_counted(tmp_path, videofolder):
    summary = encode_split(_cfg(tmp_path / "c", source=str(videofolder), num_frames=24, size=16), progress=False)
    assert summary["short_clips"] == 2  # train clips have 20, 21, 25 and 26 frames: two are under T = 24


def test_existing_cache_with_other_settings_is_refused(tmp_path):
    encode_split(_cfg(tmp_path / "c"), progress=False)
    with pytest.raises(ValueError, match="other settings.*clip"):
        encode_split(_cfg(tmp_path / "c", num_frames=8), progress=False)
    encode_split(_cfg(tmp_path / "c", num_frames=8, overwrite=True), progress=False)
    assert LatentCache(tmp_path / "c").load_latents()[0].shape[1] == 8


def _cli(out: Path, *extra: str) -> list[str]:
    return [
        "-m", "compressa_hf.cli", "--log-level", "WARNING", "encode", "--source",
        "procedural:num_classes=6,train_per_class=10,length=64,frame_size=112",
        "--output_dir", str(out), "--codec", "pixel", "--shard_size", "2", "--clips_per_batch", "1",
        "--num_workers", "0", *extra,
    ]  # fmt: skip


def _cache_bytes(out: Path) -> dict[str, bytes]:
    files = sorted((out / "shards").glob("*.safetensors")) + [out / "index.jsonl"]
    return {f.name: f.read_bytes() for f in files}


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_bytes(tmp_path):
    env = os.environ | {"PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, *_cli(tmp_path / "ref")], check=True, env=env, capture_output=True)

    proc = subprocess.Popen([sys.executable, *_cli(tmp_path / "run")], env=env, stderr=subprocess.DEVNULL)
    shards = tmp_path / "run" / "shards"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shards.glob("*.safetensors"))) < 3:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(shards.glob("*.safetensors")))
    assert 0 < done < 30, f"the kill must land mid-run ({done} of 30 shards were written)"
    assert not (tmp_path / "run" / "index.jsonl").exists()

    subprocess.run([sys.executable, *_cli(tmp_path / "run")], check=True, env=env, capture_output=True)
    assert _cache_bytes(tmp_path / "run") == _cache_bytes(tmp_path / "ref")
    assert not list(shards.glob("*.tmp*"))


@pytest.mark.slow
def test_two_processes_cover_every_clip_exactly_once(tmp_path):
    env = os.environ | {"PYTHONPATH": str(REPO)}
    launch = [
        # `--cpu` would start one process (accelerate's simple launcher); see compressa_hf.distributed.get_state
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
    ]  # fmt: skip
    subprocess.run([*launch, *_cli(tmp_path / "ddp")], check=True, env=env, capture_output=True)
    subprocess.run([sys.executable, *_cli(tmp_path / "one")], check=True, env=env, capture_output=True)
    index = [json.loads(line) for line in (tmp_path / "ddp" / "index.jsonl").read_text().splitlines()]
    ids = [row["clip_id"] for row in index]
    assert len(ids) == 60 and len(set(ids)) == 60
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["processes"] == 2
    # the same shards, byte for byte, as one process writes
    assert _cache_bytes(tmp_path / "ddp") == _cache_bytes(tmp_path / "one")
    a, _ = LatentCache(tmp_path / "ddp").load_latents()
    b, _ = LatentCache(tmp_path / "one").load_latents()
    assert np.array_equal(a.numpy(), b.numpy())
