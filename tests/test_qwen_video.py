"""Raw video read the way Qwen's examples read it (qwen-vl-utils), and its metadata on its way to the processor.

The comparison with `qwen_vl_utils.fetch_video` needs one of its file readers: decord (the `dev` extra installs it on
Linux x86-64, as Qwen's `qwen-vl-utils[decord]` does) or torchcodec; torchvision 0.24+ has no `read_video` left.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from compressa_hf.clips import ClipConfig, sample_clip
from compressa_hf.qwen import build_processor
from compressa_hf.qwen.collator import QwenVideoCollator
from compressa_hf.qwen.evaluation import EvalArguments
from compressa_hf.qwen.prompts import PromptTemplate
from compressa_hf.qwen.samples import raw_chat_samples
from compressa_hf.qwen.sft_config import SFTScriptArguments
from compressa_hf.qwen.video import QwenVideoConfig, qwen_frame_indices, sample_qwen_clip
from compressa_hf.sources import parse_source_spec
from tests.conftest import QWEN, need_shared, write_video


def _noisy_ramp(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Frames whose brightness encodes the index, with texture so that resizing and decoding show in the pixels."""
    rng = np.random.default_rng(seed)
    levels = np.linspace(30, 220, t).reshape(t, 1, 1, 1)
    return np.clip(levels + rng.integers(-25, 25, size=(t, h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A videofolder with one 50-frame, 25 fps, 96 x 128 clip per codec (MPEG-4 Part 2 and H.264)."""
    root = tmp_path_factory.mktemp("qwen_video")
    frames = _noisy_ramp(50, 96, 128)
    write_video(root / "mpeg4" / "train" / "Wave" / "a.mp4", frames, fps=25, codec="mpeg4")
    write_video(root / "h264" / "train" / "Wave" / "a.mp4", frames, fps=25, codec="libx264")
    return root


def test_defaults_are_qwen_vl_utils_own():
    from qwen_vl_utils import vision_process as qv

    cfg = QwenVideoConfig()
    assert (cfg.fps, cfg.min_frames, cfg.max_frames) == (qv.FPS, qv.FPS_MIN_FRAMES, qv.FPS_MAX_FRAMES)
    assert cfg.least_pixels() == qv.VIDEO_MIN_TOKEN_NUM * 28 * 28
    assert QwenVideoConfig(image_patch_size=16).least_pixels() == qv.VIDEO_MIN_TOKEN_NUM * 32 * 32
    assert cfg.element("a.mp4") == {"type": "video", "video": "a.mp4", "fps": 2.0, "min_frames": 4, "max_frames": 768}
    assert "fps" not in QwenVideoConfig(nframes=8).element("a.mp4")  # qwen-vl-utils takes one or the other


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fps": 0}, "fps"),
        ({"nframes": 1}, "nframes"),
        ({"min_frames": 8, "max_frames": 4}, "max_frames"),
        ({"max_pixels": 64 * 64}, "min_pixels"),  # below the default 128-token minimum: qwen-vl-utils would assert
        ({"total_pixels": 0}, "total_pixels"),
    ],
)
def test_settings_are_checked_with_the_bad_value_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QwenVideoConfig(**kwargs)


@pytest.mark.parametrize("codec", ["mpeg4", "h264"])
@pytest.mark.parametrize(
    "cfg",
    [
        QwenVideoConfig(),  # 2 s at 2 fps -> 4 frames, upscaled to the 128-token minimum
        QwenVideoConfig(nframes=8, min_pixels=28 * 28, max_pixels=64 * 64),  # frame count and size pinned down
        QwenVideoConfig(fps=4.0, image_patch_size=16),  # Qwen3-VL's 32-pixel grid
        QwenVideoConfig(fps=2.0, total_pixels=12 * 32 * 32 * 2),  # the video budget caps each frame
    ],
    ids=["defaults", "nframes_small", "patch16", "total_pixels"],
)
def test_frames_are_those_fetch_video_gives(clip_folder, codec, cfg):
    """Same frame indices, metadata, size and pixels as qwen-vl-utils' own reader on the same file."""
    pytest.importorskip("decord", reason="qwen-vl-utils reads files with decord or torchcodec (dev extra)")
    from qwen_vl_utils import fetch_video

    source = parse_source_spec(str(clip_folder / codec))
    ref = source.list_clips("train")[0]
    ours = sample_qwen_clip(source, ref, cfg)
    (video, metadata), sample_fps = fetch_video(
        cfg.element(ref.path),
        image_patch_size=cfg.image_patch_size,
        return_video_sample_fps=True,
        return_video_metadata=True,
    )
    assert ours.frame_indices == list(metadata["frames_indices"])
    assert (ours.fps, ours.num_source_frames) == (metadata["fps"], metadata["total_num_frames"])
    assert len(ours.frame_indices) / ours.num_source_frames * ours.fps == pytest.approx(sample_fps)
    assert ours.frames.dtype == np.uint8 and ours.frames.shape[1] % (2 * cfg.image_patch_size) == 0
    np.testing.assert_array_equal(ours.frames, video.permute(0, 2, 3, 1).numpy().astype(np.uint8))


def test_clip_and_qwen_paths_agree_where_they_should(tmp_path):
    """Every frame of a clip already on the pixel grid: both readers return the decoded frames untouched."""
    write_video(tmp_path / "vf" / "train" / "Wave" / "a.mp4", _noisy_ramp(12, 56, 56), fps=25)
    source = parse_source_spec(str(tmp_path / "vf"))
    ref = source.list_clips("train")[0]
    clips = sample_clip(source, ref, ClipConfig(num_frames=12, size=56))
    qwen = sample_qwen_clip(source, ref, QwenVideoConfig(nframes=12, min_pixels=56 * 56, max_pixels=56 * 56))
    np.testing.assert_array_equal(clips.frames, qwen.frames)
    assert clips.frame_indices == qwen.frame_indices == list(range(12))
    assert (clips.fps, clips.num_source_frames) == (qwen.fps, qwen.num_source_frames) == (25.0, 12)


def test_clip_and_qwen_paths_pick_different_frames_of_a_longer_clip():
    # T uniform frames are segment centres; qwen-vl-utils spreads n frames from the first to the last one.
    from compressa_hf.clips import uniform_indices

    assert qwen_frame_indices(32, 30.0, QwenVideoConfig(nframes=8)) == [0, 4, 9, 13, 18, 22, 27, 31]

    assert uniform_indices(32, 8) == [2, 6, 10, 14, 18, 22, 26, 30]
    # fps rule: 64 frames at 16 fps is 4 s -> 8 frames; 1 s of video -> the minimum of 4.
    assert len(qwen_frame_indices(64, 16.0, QwenVideoConfig())) == 8
    assert len(qwen_frame_indices(30, 30.0, QwenVideoConfig())) == 4


def test_a_clip_too_short_for_the_settings_is_skipped_with_its_name(caplog):
    ds = raw_chat_samples(
        "procedural:num_classes=2,train_per_class=1,test_per_class=1,length=10,frame_size=56",
        "train",
        QwenVideoConfig(nframes=16, min_pixels=56 * 56, max_pixels=56 * 56),
    )
    with caplog.at_level(logging.WARNING):
        assert ds[0] is None
    assert "skipped" in caplog.text and "10 frames" in caplog.text


def test_recipes_read_raw_clips_through_qwen_vl_utils_by_default():
    args = SFTScriptArguments()
    assert args.video_reader == "qwen_vl_utils"
    assert args.clip_config() == QwenVideoConfig()
    assert EvalArguments(video_reader="qwen_vl_utils").clip_config(patch_size=16).image_patch_size == 16
    assert isinstance(SFTScriptArguments(video_reader="clips").clip_config(), ClipConfig)
    with pytest.raises(ValueError, match="'decord'"):
        SFTScriptArguments(video_reader="decord")
    with pytest.raises(ValueError, match="nframes"):
        SFTScriptArguments(video_nframes=1)


# -- the metadata on its way to the processor ----------------------------------------------------------------------

# 60 frames at 30 fps: qwen-vl-utils takes 2 s x 2 fps = 4 frames, indices 0, 20, 39, 59.
LONG = "procedural:num_classes=2,train_per_class=1,test_per_class=1,length=60,frame_size=64,fps=30"


@pytest.mark.real_data
@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_qwen_vl_utils_metadata_reaches_the_processor(family):
    need_shared(QWEN)
    patch = {"qwen2_5_vl": 14, "qwen3_vl": 16}[family]
    cfg = QwenVideoConfig(min_pixels=64 * 64, max_pixels=64 * 64, image_patch_size=patch)
    sample = raw_chat_samples(LONG, "train", cfg, prompt=PromptTemplate())[0]
    meta = sample["video_metadata"][0]
    assert meta == {"fps": 30.0, "frames_indices": [0, 20, 39, 59], "total_num_frames": 60}
    processor = build_processor(family, QWEN)
    batch = QwenVideoCollator(processor)([sample])
    if family == "qwen2_5_vl":
        # second_per_grid_ts = temporal patch / sampled rate = 2 / (4 / 60 * 30) = 1.0: one group per second.
        assert batch["second_per_grid_ts"].tolist() == [1.0]
    else:
        # Qwen3-VL writes each group's time: the mean of its two frames' times, from frames_indices / fps.
        text = processor.tokenizer.decode(batch["input_ids"][0])
        assert [t for t in ("<0.3 seconds>", "<1.6 seconds>") if t in text] == ["<0.3 seconds>", "<1.6 seconds>"]
    # The frames came on the family's grid (64 px -> 84 at 28 px per token, 64 at 32): the processor kept their size.
    h, w = sample["videos"][0].shape[1:3]
    assert (h, w) == {"qwen2_5_vl": (84, 84), "qwen3_vl": (64, 64)}[family]
    assert batch["video_grid_thw"].tolist() == [[2, h // patch, w // patch]]
