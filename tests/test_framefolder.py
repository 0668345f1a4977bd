"""The `framefolder` source (clips as folders of frame images, mmaction2's rawframes): order, time, errors, and the
cache pass over it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from compressa_hf.cache import EncodeConfig, LatentCache, encode_split
from compressa_hf.clips import ClipConfig, resize_crop, sample_clip
from compressa_hf.codecs.pixel import PixelCodec
from compressa_hf.sources import SourceError, build_source, parse_source_spec
from compressa_hf.sources.base import ClipReadError
from tests.conftest import ramp_frames


def write_clip(folder: Path, frames: np.ndarray, pattern: str = "img_{:05d}.png", start: int = 1) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / pattern.format(i + start))


@pytest.fixture
def framefolder(tmp_path) -> Path:
    """2 classes x (2 train, 1 test) clips of 12-14 PNG frames; Run's clips are numbered without padding."""
    root = tmp_path / "ff"
    for split, n in (("train", 2), ("test", 1)):
        for c, cls in enumerate(("Jump", "Run")):
            for j in range(n):
                pattern = "img_{:05d}.png" if cls == "Jump" else "frame_{}.png"
                write_clip(root / split / cls / f"clip{j}", ramp_frames(12 + j + c, 24, 32, seed=j), pattern)
    return root


def test_frames_come_in_numeric_order_with_their_times(framefolder):
    src = build_source("framefolder", root=str(framefolder), fps=25)
    assert parse_source_spec(str(framefolder)).name == "framefolder"  # a bare folder of frame folders
    assert src.class_names == ["Jump", "Run"]
    train = src.list_clips("train")
    assert [r.clip_id for r in train] == ["train/Jump/clip0", "train/Jump/clip1", "train/Run/clip0", "train/Run/clip1"]
    run0 = train[2]  # frame_1.png ... frame_13.png: frame_10 must come after frame_9, not after frame_1
    assert [Path(f).name for f in src.frame_files(run0.path)][8:11] == ["frame_9.png", "frame_10.png", "frame_11.png"]
    info = src.probe(run0)
    assert info.num_frames == 13 and info.fps == 25.0 and not info.variable_rate
    got = list(src.read_frames(run0, [10, 2, 2, 40]))  # sorted, unique, in range
    assert [(i, t) for i, _, t in got] == [(2, 0.08), (10, 0.4)]
    expected = ramp_frames(13, 24, 32, seed=0)
    assert all(np.array_equal(frame, expected[i]) for i, frame, _ in got)  # PNG: the exact pixels


def test_sampled_clip_matches_the_frames_it_names(framefolder):
    src = build_source("framefolder", root=str(framefolder))
    ref = src.list_clips("test")[0]
    clip = sample_clip(src, ref, ClipConfig(num_frames=4, size=16))
    assert clip.frame_indices == [1, 4, 7, 10] and clip.fps == 30.0 and clip.num_source_frames == 12
    assert clip.timestamps == pytest.approx([i / 30 for i in clip.frame_indices])
    expected = resize_crop(ramp_frames(12, 24, 32, seed=0)[clip.frame_indices], 16)
    assert np.array_equal(clip.frames, expected)


def test_exif_orientation_is_applied(tmp_path):
    frame = np.zeros((8, 16, 3), np.uint8)
    frame[:, :8] = 255  # left half white
    clip = tmp_path / "train" / "A" / "c"
    clip.mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(frame).save(clip / "0.png", exif=exif)
    src = build_source("framefolder", root=str(tmp_path))
    ((_, shown, _),) = src.read_frames(src.list_clips("train")[0], [0])
    assert shown.shape == (16, 8, 3) and shown[:8].min() == 255 and shown[8:].max() == 0  # white on top


def test_bad_folders_and_images_are_named(tmp_path, framefolder, caplog):
    with pytest.raises(SourceError, match="is not a directory"):
        build_source("framefolder", root=str(tmp_path / "missing"))
    with pytest.raises(SourceError, match="fps must be a finite number > 0, got 0"):
        build_source("framefolder", root=str(framefolder), fps=0)
    (framefolder / "train" / "Jump" / "empty").mkdir()
    (framefolder / "train" / "Jump" / "clip0" / "notes.txt").write_text("not a frame")
    src = build_source("framefolder", root=str(framefolder))
    with caplog.at_level(logging.WARNING):
        refs = src.list_clips("train")
    assert len(refs) == 4 and "1 clip folders hold no" in caplog.text and "empty" in caplog.text
    assert len(src.frame_files(refs[0].path)) == 12  # notes.txt is no frame
    broken = framefolder / "train" / "Jump" / "clip1" / "img_00003.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(ClipReadError, match="img_00003.png"):
        list(src.read_frames(refs[1], [0, 2, 5]))
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(framefolder / "train" / "Run" / "clip0" / "frame_5.png")
    with pytest.raises(ClipReadError, match=r"frame_5.png is 10x10, the clip's earlier frames 32x24"):
        list(src.read_frames(refs[2], [0, 4]))


def test_cache_pass_encodes_frame_folders_and_skips_a_broken_clip(tmp_path, framefolder):
    (framefolder / "train" / "Run" / "clip1" / "frame_2.png").write_bytes(b"\x00broken")
    cfg = EncodeConfig(
        source=str(framefolder), output_dir=str(tmp_path / "c"), codec="pixel", num_frames=4, size=16, num_workers=0
    )
    summary = encode_split(cfg, progress=False)
    assert summary["clips_cached"] == 3 and summary["clips_skipped"] == 1
    skipped = [json.loads(line) for line in (tmp_path / "c" / "skipped.jsonl").read_text().splitlines()]
    assert "frame_2.png" in skipped[0]["reason"]
    latents, labels = LatentCache(tmp_path / "c").load_latents()
    assert labels.tolist() == [0, 0, 1]
    frames = resize_crop(ramp_frames(12, 24, 32, seed=0)[[1, 4, 7, 10]], 16)
    expected = PixelCodec().encode(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    torch.testing.assert_close(latents[0].float(), expected, atol=2e-3, rtol=0)


def test_frames_written_for_the_gpu_read_back_as_the_same_clips(tmp_path, videofolder):
    """bench/gpu/frames.py keeps the T frames the cache pass takes; read back with T frames at the same side, the
    frame folder gives those frames (up to JPEG's loss), the same clips, labels and class names."""
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("gpu_frames", REPO / "bench" / "gpu" / "frames.py")
    frames = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frames)
    info = frames.write_frames(str(videofolder), str(tmp_path / "ff"), num_frames=4, size=16, quality=95, workers=0)
    assert info["clips"] == {"test": 2, "train": 4} and info["unreadable"] == []
    assert not (tmp_path / "ff.partial").exists()
    (tmp_path / "mine").mkdir()
    with pytest.raises(SystemExit, match="was not written by frames.py"):  # a folder of the user's is not replaced
        frames.write_frames(str(videofolder), str(tmp_path / "mine"), num_frames=4, size=16, quality=95, workers=0)
    videos, folders = build_source("videofolder", root=str(videofolder)), parse_source_spec(str(tmp_path / "ff"))
    assert folders.name == "framefolder" and folders.class_names == videos.class_names
    cfg = ClipConfig(num_frames=4, size=16)
    for split in ("train", "test"):
        for a, b in zip(videos.list_clips(split), folders.list_clips(split), strict=True):
            assert (a.clip_id, a.label) == (b.clip_id, b.label)
            x, y = sample_clip(videos, a, cfg), sample_clip(folders, b, cfg)
            assert y.frame_indices == [0, 1, 2, 3]  # T of T
            assert y.duration == pytest.approx(x.duration)  # the recorded rate keeps the clip's time
            diff = np.abs(x.frames.astype(int) - y.frames.astype(int))
            assert diff.mean() < 2 and diff.max() < 24, (a.clip_id, diff.mean(), diff.max())


def test_flow_hidden_files_and_prefix(tmp_path):
    """mmaction2's `--task both` folders hold optical flow beside the RGB frames; macOS leaves `.DS_Store` and `._*`
    files: none of them is a frame, and a `.DS_Store` does not hide the layout from the detection."""
    clip = tmp_path / "train" / "A" / "c"
    write_clip(clip, ramp_frames(6, 8, 8), "img_{:05d}.png")
    write_clip(clip, np.zeros((6, 8, 8, 3), np.uint8), "flow_x_{:05d}.png")
    write_clip(clip, np.zeros((6, 8, 8, 3), np.uint8), "flow_y_{:05d}.png")
    (clip / "._img_00001.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (tmp_path / "train" / "A" / ".DS_Store").write_bytes(b"\x00")
    (tmp_path / "train" / ".DS_Store").write_bytes(b"\x00")
    src = parse_source_spec(str(tmp_path))
    assert src.name == "framefolder" and src.class_names == ["A"]
    (ref,) = src.list_clips("train")
    assert [Path(f).name for f in src.frame_files(ref.path)] == [f"img_{i:05d}.png" for i in range(1, 7)]
    only = build_source("framefolder", root=str(tmp_path), prefix="flow_x")
    assert len(only.frame_files(only.list_clips("train")[0].path)) == 6 and only.describe()["prefix"] == "flow_x"
    one = build_source("framefolder", root=str(tmp_path), extensions=".PNG|jpg")  # as the command line passes it
    assert one.extensions == (".png", ".jpg")


def test_frame_rates_given_recorded_or_assumed(tmp_path, framefolder, caplog):
    ref_of = {"train/Jump/clip0": 12.5}
    (framefolder / "frames.json").write_text(json.dumps({"fps": ref_of}))
    recorded = build_source("framefolder", root=str(framefolder))
    jump0, jump1 = recorded.list_clips("train")[:2]
    assert recorded.probe(jump0).fps == 12.5 and recorded.describe()["fps"] == "frames.json"
    with caplog.at_level(logging.WARNING):
        assert recorded.probe(jump1).fps == 30.0  # not recorded: assumed, and said once
        recorded.probe(jump1)
    assert caplog.text.count("timestamps assume 30 fps") == 1
    assert build_source("framefolder", root=str(framefolder), fps=24).probe(jump0).fps == 24.0  # given: it wins
    for bad in ("abc", "inf", "nan", -1):
        with pytest.raises(SourceError, match=f"fps must be a finite number > 0, got {bad!r}"):
            build_source("framefolder", root=str(framefolder), fps=bad)
    (framefolder / "frames.json").write_text(json.dumps({"fps": {"train/Jump/clip0": "fast"}}))
    with pytest.raises(SourceError, match="frames.json.*'train/Jump/clip0'.*got 'fast'"):
        build_source("framefolder", root=str(framefolder))


def test_sixteen_bit_and_grey_images_become_8_bit_rgb(tmp_path):
    clip = tmp_path / "train" / "A" / "c"
    clip.mkdir(parents=True)
    ramp16 = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    Image.fromarray(ramp16).save(clip / "0.png")  # mode I;16
    Image.fromarray((ramp16 >> 8).astype(np.uint8)).save(clip / "1.png")  # mode L
    src = build_source("framefolder", root=str(tmp_path))
    (_, wide, _), (_, grey, _) = src.read_frames(src.list_clips("train")[0], [0, 1])
    assert wide.shape == grey.shape == (8, 8, 3) and wide.dtype == np.uint8
    assert np.abs(wide.astype(int) - grey.astype(int)).max() <= 1  # scaled, not clipped to 255
    assert wide.min() == 0 and wide.max() == 255


def test_images_in_class_folders_and_files_for_folders_are_explained(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "ds" / "train" / "A").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ds" / "train" / "A" / "img_00001.jpg")
    with pytest.raises(SourceError, match=r"holds images \(img_00001.jpg, ...\).*<split>/<class>/<clip>/img_00001"):
        parse_source_spec(str(tmp_path / "ds")).list_clips("train")
    with pytest.raises(SourceError, match="is a file: give the dataset folder"):
        parse_source_spec(str(tmp_path / "x.png"))
    with pytest.raises(SourceError, match="is a file, not a directory"):
        build_source("framefolder", root=str(tmp_path / "x.png"))
