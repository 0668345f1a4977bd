"""Clip sampling: policies, short clips, resize + crop, and bad files."""

from __future__ import annotations

import numpy as np
import pytest

from compressa_hf.clips import ClipConfig, ClipDataset, choose_indices, resize_crop, sample_clip, uniform_indices
from compressa_hf.sources import ClipReadError, ClipRef, build_source
from tests.conftest import ramp_frames, write_video


@pytest.mark.parametrize(
    "n, t, expected",
    [(16, 16, list(range(16))), (32, 4, [4, 12, 20, 28]), (10, 5, [1, 3, 5, 7, 9]), (7, 1, [3])],
)
def test_uniform_indices(n, t, expected):
    assert uniform_indices(n, t) == expected


def test_gap4_is_every_fourth_frame_from_a_seeded_start():
    cfg = ClipConfig(num_frames=8, policy="gap4", seed=3)
    idx, filled = choose_indices(100, cfg, "clip_a")
    assert filled == 0 and np.all(np.diff(idx) == 4) and 0 <= idx[0] <= 100 - 29
    assert choose_indices(100, cfg, "clip_a") == (idx, 0)  # deterministic per (seed, clip)
    starts = {choose_indices(100, cfg, f"clip_{i}")[0][0] for i in range(20)}
    assert len(starts) > 5  # but random across clips
    # too short for the gap: falls back to uniform over the clip
    assert choose_indices(20, cfg, "clip_a")[0] == uniform_indices(20, 8)


@pytest.mark.parametrize("mode, expected", [("loop", [0, 1, 2, 0, 1, 2]), ("pad", [0, 1, 2, 2, 2, 2])])
def test_short_clips_are_filled_and_counted(mode, expected):
    idx, filled = choose_indices(3, ClipConfig(num_frames=6, short_clips=mode), "c")
    assert idx == expected and filled == 3


def test_resize_crop_short_side_then_centre():
    frames = np.zeros((2, 60, 100, 3), np.uint8)
    frames[:, :, 45:55] = 255  # a bright vertical band in the middle
    out = resize_crop(frames, 30)
    assert out.shape == (2, 30, 30, 3) and out.dtype == np.uint8
    assert out[0, :, 15].mean() > 200 and out[0, :, 0].mean() < 10


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="policy 'nope'"):
        ClipConfig(policy="nope")
    with pytest.raises(ValueError, match="num_frames"):
        ClipConfig(num_frames=0)


def test_sample_real_file_odd_size(tmp_path):
    src = _one_file_source(write_video(tmp_path / "odd.mp4", ramp_frames(20, h=38, w=50)))
    clip = sample_clip(src, src.list_clips("train")[0], ClipConfig(num_frames=4, size=16))
    assert clip.frames.shape == (4, 16, 16, 3) and clip.num_source_frames == 20 and clip.filled == 0
    brightness = clip.frames.reshape(4, -1).mean(1)
    assert np.all(np.diff(brightness) > 0)  # frames come back in time order, the ones asked for


def _one_file_source(path):
    from compressa_hf.sources.base import VideoSource

    class OneFile(VideoSource):
        class_names = ["a"]

        def list_clips(self, split):
            return [ClipRef("x", 0, str(path))]

    return OneFile()


def test_one_frame_clip_is_looped(tmp_path):
    path = write_video(tmp_path / "one.mp4", ramp_frames(1))
    src = _one_file_source(path)
    clip = sample_clip(src, src.list_clips("train")[0], ClipConfig(num_frames=8, size=16))
    assert clip.frames.shape == (8, 16, 16, 3) and clip.filled == 7 and clip.frame_indices == [0] * 8


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty file"), (b"this is not a video" * 50, "cannot open"), (None, "file not found")],
)
def test_unreadable_files_raise_a_named_error(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    src = _one_file_source(path)
    with pytest.raises(ClipReadError, match=reason) as err:
        sample_clip(src, src.list_clips("train")[0], ClipConfig(num_frames=4, size=16))
    assert "bad.mp4" in str(err.value)


def test_truncated_file_keeps_what_decodes(tmp_path):
    path = write_video(tmp_path / "trunc.mp4", ramp_frames(60, h=64, w=64))
    data = open(path, "rb").read()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    src = _one_file_source(tmp_path / "cut.mp4")
    ref = src.list_clips("train")[0]
    try:
        clip = sample_clip(src, ref, ClipConfig(num_frames=8, size=16))
    except ClipReadError as err:  # also acceptable: a clear, named refusal
        assert "cut.mp4" in str(err)
    else:
        assert clip.frames.shape == (8, 16, 16, 3)


def test_clip_dataset_turns_errors_into_skip_records(tmp_path, videofolder):
    src = build_source("videofolder", root=str(videofolder))
    refs = src.list_clips("train") + [ClipRef("broken", 0, str(tmp_path / "zero.mp4"))]
    (tmp_path / "zero.mp4").write_bytes(b"")
    ds = ClipDataset(src, refs, ClipConfig(num_frames=4, size=16))
    items = [ds[i] for i in range(len(ds))]
    assert all("frames" in it for it in items[:-1])
    assert "empty file" in items[-1]["error"] and items[-1]["path"].endswith("zero.mp4")
