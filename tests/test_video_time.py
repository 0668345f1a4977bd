"""Time that is true for any clip: a variable-frame-rate clip is sampled evenly in time and described by its real
times and duration through the probe, the cache, the distilled rows, both raw readers and every Qwen family's
metadata; constant-rate clips keep the bytes they had before variable rates were measured.

The variable-rate clip is the one of issue 24 (phone recordings, screen captures, re-muxed web video; decord#77,
PySceneDetect#168): 30 frames in its first second, then 10 frames 0.8 s apart, so 9.0 s from its first frame to the
end of its last. Frame i is a flat grey of `GREY0 + GREY_STEP * i`, so a test can tell which frame it got.
"""

from __future__ import annotations

import json
import os
import re
from fractions import Fraction

import numpy as np
import pytest

from compressa_hf.cache import EncodeConfig, LatentCache, encode_split
from compressa_hf.clips import ClipConfig, resize_crop, sample_clip, uniform_indices
from compressa_hf.decode import probe
from compressa_hf.qwen.samples import raw_chat_samples, video_metadata
from compressa_hf.sources import parse_source_spec
from tests.conftest import QWEN, need_shared, write_video

GREY0, GREY_STEP = 10, 6
#: presentation times in ms: 30 frames at 30 fps, then 10 frames 0.8 s apart
VFR_MS = [round(1000 * i / 30) for i in range(30)] + [1000 + 800 * j for j in range(10)]
VFR_TIMES = [t / 1000 for t in VFR_MS]
VFR_DURATION = 9.0  # 8.2 s to the last frame, which is shown for the 0.8 s gap before it


def _grey_frames(n: int, h: int = 32, w: int = 48) -> np.ndarray:
    return np.stack([np.full((h, w, 3), GREY0 + GREY_STEP * i, np.uint8) for i in range(n)])


def _frame_number(image: np.ndarray) -> int:
    return round((float(image.mean()) - GREY0) / GREY_STEP)


def vfr_clip(path, container: str = "mp4", bframes: int = 0) -> str:
    """The variable-rate clip (H.264), in an mp4 (1/16000 s ticks) or a Matroska file (1 ms ticks); with B-frames,
    packets come in decoding order, not presentation order."""
    return write_video(
        path, _grey_frames(len(VFR_MS)), fps=30, codec="libx264", options={"bf": str(bframes), "crf": "0"},
        pts=VFR_MS, time_base=Fraction(1, 1000), container_format="matroska" if container == "mkv" else None,
    )  # fmt: skip


def _shown_at(times: list[float], t: float) -> int:
    """The frame a player shows at time t: the last one that starts at or before it."""
    return max(i for i, start in enumerate(times) if start <= t + 1e-9)


# -- probe and the time-uniform policy -------------------------------------------------------------------------------


@pytest.mark.parametrize("container, bframes", [("mp4", 0), ("mkv", 0), ("mp4", 2)])
def test_probe_measures_a_variable_rate(tmp_path, container, bframes):
    path = vfr_clip(tmp_path / f"vfr.{container}", container, bframes)
    info = probe(path)
    assert info.num_frames == 40 and info.variable_rate and info.start == 0.0
    assert list(info.times) == pytest.approx(VFR_TIMES, abs=1e-4)
    assert info.duration == pytest.approx(VFR_DURATION, abs=1e-3) and info.fps == pytest.approx(40 / VFR_DURATION)
    # the decoder numbers the frames as the probe does, in presentation order
    from compressa_hf.decode import read_frames

    got = [(i, _frame_number(f), t) for i, f, t in read_frames(path, [0, 16, 29, 30, 39])]
    assert [(i, n) for i, n, _ in got] == [(0, 0), (16, 16), (29, 29), (30, 30), (39, 39)]
    assert [t for *_, t in got] == pytest.approx([VFR_TIMES[i] for i in (0, 16, 29, 30, 39)], abs=1e-4)


def test_a_window_of_a_variable_rate_clip_starts_at_its_first_frame(tmp_path):
    info = probe(vfr_clip(tmp_path / "vfr.mp4"), 0.5, 8.0)
    # frames 15..29 (0.5-0.97 s) and the 9 later ones before 8.0 s; the last is held for the 0.8 s before it
    assert (info.num_frames, info.start) == (24, 0.5) and info.duration == pytest.approx(7.4 + 0.8 - 0.5, abs=1e-3)
    meta = video_metadata([0, 15, 23], info.fps, timestamps=[0.5, 1.0, 7.4], start=0.5, duration=info.duration)
    assert meta == {"fps": 1000.0, "frames_indices": [0, 500, 6900], "total_num_frames": 7700}


def test_uniform_takes_the_frame_shown_at_each_segment_centre(tmp_path):
    vfr_clip(tmp_path / "vf" / "train" / "phone" / "clip.mp4")
    src = parse_source_spec(str(tmp_path / "vf"))
    clip = sample_clip(src, src.list_clips("train")[0], ClipConfig(num_frames=8, size=32))
    centres = [(i + 0.5) * VFR_DURATION / 8 for i in range(8)]
    expected = [_shown_at(VFR_TIMES, c) for c in centres]
    assert clip.frame_indices == expected == [16, 30, 32, 33, 35, 36, 37, 39]
    assert [_frame_number(f) for f in clip.frames] == expected  # the pictures themselves
    assert clip.timestamps == pytest.approx([VFR_TIMES[i] for i in expected], abs=1e-4)
    # by index it would be [2, 7, 12, 17, 22, 27, 32, 37]: 6 of 8 frames in the first of 9 seconds
    assert sum(t < 1.0 for t in clip.timestamps) == 1
    assert clip.start == 0.0 and clip.duration == pytest.approx(VFR_DURATION, abs=1e-3) and clip.filled == 0

    # T = 16 segments (0.56 s) are shorter than the 0.8 s a late frame is shown: it is kept at each centre it covers
    dense = sample_clip(src, src.list_clips("train")[0], ClipConfig(num_frames=16, size=32))
    assert dense.frame_indices == [_shown_at(VFR_TIMES, (i + 0.5) * VFR_DURATION / 16) for i in range(16)]
    assert len(set(dense.frame_indices)) < 16


def test_the_time_rule_is_the_index_rule_on_an_even_grid():
    for n, t in ((20, 8), (23, 8), (30, 8), (32, 16), (17, 17), (100, 7)):
        times = [i / 30 for i in range(n)]
        assert uniform_indices(n, t, times=times, duration=n / 30) == uniform_indices(n, t), (n, t)


# -- the cache and the distilled rows ----------------------------------------------------------------------------


def _mixed_folder(root) -> None:
    vfr_clip(root / "train" / "phone" / "clip.mp4")
    write_video(root / "train" / "tripod" / "clip.mp4", _grey_frames(40), fps=25)  # constant 25 fps


def _encode(source: str, out, **kw) -> dict:
    cfg = EncodeConfig(source=source, output_dir=str(out), codec="pixel", num_workers=0, **kw)
    return encode_split(cfg, progress=False)


def test_the_cache_states_the_real_times_and_duration(tmp_path):
    _mixed_folder(tmp_path / "vf")
    summary = _encode(str(tmp_path / "vf"), tmp_path / "cache", num_frames=8, size=16)
    assert summary["variable_rate_clips"] == 1
    phone, tripod = LatentCache(tmp_path / "cache").index
    assert phone["frame_indices"] == [16, 30, 32, 33, 35, 36, 37, 39] and phone["start"] == 0.0
    assert phone["timestamps"] == pytest.approx([VFR_TIMES[i] for i in phone["frame_indices"]], abs=1e-4)
    assert phone["num_source_frames"] / phone["fps"] == pytest.approx(VFR_DURATION, abs=1e-3)  # the real duration
    # constant-rate rows are what they always were: no `start`, the declared rate, frames by index
    assert "start" not in tripod and tripod["fps"] == 25.0
    assert tripod["frame_indices"] == uniform_indices(40, 8) and tripod["num_source_frames"] / 25.0 == 1.6


def test_raw_reader_metadata_states_real_times_and_duration(tmp_path):
    _mixed_folder(tmp_path / "vf")
    phone, tripod = raw_chat_samples(str(tmp_path / "vf"), "train", ClipConfig(num_frames=8, size=32))
    (meta,) = phone["video_metadata"]
    # a millisecond grid: frames_indices / fps is each frame's real time, total_num_frames / fps the real duration
    assert meta["fps"] == 1000.0 and meta["total_num_frames"] == 9000
    assert meta["frames_indices"] == [VFR_MS[i] for i in (16, 30, 32, 33, 35, 36, 37, 39)]
    assert tripod["video_metadata"] == [
        {"fps": 25.0, "frames_indices": uniform_indices(40, 8), "total_num_frames": 40}
    ]


def test_qwen_vl_utils_reader_spreads_its_frames_evenly_in_time(tmp_path):
    from qwen_vl_utils import vision_process as qv

    from compressa_hf.qwen.video import QwenVideoConfig

    vfr_clip(tmp_path / "vf" / "train" / "phone" / "clip.mp4")
    (sample,) = raw_chat_samples(str(tmp_path / "vf"), "train", QwenVideoConfig())
    (meta,) = sample["video_metadata"]
    # qwen-vl-utils' count: 2 frames per second of the real 9 s (a 30 fps reading would give 2.7 s and 4 frames)
    count = qv.smart_nframes(QwenVideoConfig().element(None), total_frames=40, video_fps=40 / VFR_DURATION)
    assert count == 18 == len(meta["frames_indices"]) == len(sample["videos"][0])
    targets = np.linspace(VFR_TIMES[0], VFR_TIMES[-1], count)
    nearest = [int(np.argmin(np.abs(np.asarray(VFR_TIMES) - t))) for t in targets]
    assert meta["frames_indices"] == [VFR_MS[i] for i in nearest]
    assert (meta["fps"], meta["total_num_frames"]) == (1000.0, 9000)
    assert [_frame_number(f) for f in sample["videos"][0]] == nearest
    assert sum(VFR_TIMES[i] < 1.0 for i in nearest) == 3  # by index, 13 of the 18 would be in the first second


def test_distilled_rows_of_a_variable_rate_clip_carry_its_start(tmp_path):
    from compressa_hf.distillation.arguments import DistillArguments
    from compressa_hf.distillation.pipeline import run
    from compressa_hf.distillation.videocompressa import VideoCompressaConfig
    from compressa_hf.qwen.samples import load_chat_dataset
    from compressa_hf.store import load_config, read_meta

    _mixed_folder(tmp_path / "vf")
    args = DistillArguments(source=str(tmp_path / "vf"), output=str(tmp_path / "set"), ratio="k4", codec="pixel",
                            num_frames=8, size=16, num_workers=0, preview=False, method="uniform")  # fmt: skip
    run(args, VideoCompressaConfig())
    ds = load_config(str(tmp_path / "set"), "uniform_ratio_k4", cache_dir=str(tmp_path / "hf"))
    rows = {r["video_id"]: r for r in ds}
    phone, tripod = rows["train/phone/clip"], rows["train/tripod/clip"]
    assert phone["start"] == 0.0 and tripod["start"] is None
    assert phone["timestamps"] == pytest.approx([VFR_TIMES[i] for i in phone["frame_indices"]], abs=1e-4)
    assert "in time" in read_meta(tmp_path / "set")["uniform_ratio_k4"]["sampling"]

    samples = {s["video_id"]: s for s in load_chat_dataset(str(tmp_path / "set"), "uniform_ratio_k4")}
    meta = samples["train/phone/clip"]["video_metadata"][0]
    assert meta["fps"] == 1000.0 and meta["frames_indices"] == [VFR_MS[i] for i in phone["frame_indices"]]
    gaps = np.diff(meta["frames_indices"])  # K = 4 of the T = 8 time-uniform frames; their span + one mean gap
    assert meta["total_num_frames"] == round((meta["frames_indices"][-1] - meta["frames_indices"][0]) * 4 / 3)
    assert gaps.min() > 0
    assert samples["train/tripod/clip"]["video_metadata"][0] == video_metadata(
        tripod["frame_indices"], 25.0, timestamps=tripod["timestamps"]
    )


# -- what each Qwen family makes of it ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def processors():
    need_shared(QWEN)
    from transformers import AutoProcessor

    from compressa_hf.qwen import build_processor

    return {
        "qwen2_vl": build_processor("qwen2_vl", QWEN),
        "qwen2_5_vl": AutoProcessor.from_pretrained(str(QWEN)),
        "qwen3_vl": build_processor("qwen3_vl", QWEN),
    }


@pytest.mark.real_data
def test_every_family_presents_the_real_times(tmp_path, processors):
    from compressa_hf.qwen.collator import QwenVideoCollator
    from compressa_hf.qwen.models import random_qwen
    from tests.test_families import TINY, _temporal_groups

    vfr_clip(tmp_path / "vf" / "train" / "phone" / "clip.mp4")
    (sample,) = raw_chat_samples(str(tmp_path / "vf"), "train", ClipConfig(num_frames=8, size=56))
    kept = [VFR_TIMES[i] for i in (16, 30, 32, 33, 35, 36, 37, 39)]

    # Qwen3-VL writes each pair's mean real time
    text = processors["qwen3_vl"].tokenizer.decode(QwenVideoCollator(processors["qwen3_vl"])([sample])["input_ids"][0])
    times = [float(t) for t in re.findall(r"<(\d+\.\d) seconds>", text)]
    assert times == [round((kept[2 * g] + kept[2 * g + 1]) / 2, 1) for g in range(4)] == [0.8, 3.0, 5.4, 7.4]

    # Qwen2.5-VL: 8 frames evenly spread over 9 s, 1.125 s apart: 2.25 s per temporal group, positions 4.5 apart
    batch = QwenVideoCollator(processors["qwen2_5_vl"])([sample])
    assert batch["second_per_grid_ts"].tolist() == [pytest.approx(2 * VFR_DURATION / 8)]
    groups = _temporal_groups(random_qwen(TINY["qwen2_5_vl"]), batch)
    assert [g - groups[0] for g in groups] == [int(t * 2 * 2.25) for t in range(4)]

    # Qwen2-VL places group t at t whatever the times: it only has to collate
    assert QwenVideoCollator(processors["qwen2_vl"])([sample])["video_grid_thw"].tolist() == [[4, 4, 4]]


# -- constant-rate clips keep their bytes -------------------------------------------------------------------------


def _constant_rate_inputs(root) -> None:
    """Constant-rate clips in the containers datasets ship (frames of noise: content plays no part in timing)."""
    rng = np.random.default_rng(0)

    def noise(n):
        return rng.integers(0, 255, size=(n, 32, 48, 3), dtype=np.uint8)

    write_video(root / "vf" / "train" / "a" / "mp4_mpeg4.mp4", noise(20))
    write_video(root / "vf" / "train" / "a" / "mkv_2997.mkv", noise(23), fps=Fraction(30000, 1001), codec="libx264")
    write_video(root / "vf" / "train" / "b" / "avi_25.avi", noise(17), fps=25, container_format="avi")
    write_video(root / "vf" / "train" / "b" / "webm_12.webm", noise(30), fps=12, codec="libvpx-vp9",
                options={"deadline": "realtime", "cpu-used": "8", "b": "0", "crf": "30"})  # fmt: skip
    write_video(root / "vf" / "train" / "b" / "short.mp4", noise(5), codec="libx264")
    for vid, start in (("offset_clip", 2000), ("zero_clip", 0)):
        write_video(root / "k400" / "train" / f"{vid}.mkv", noise(60), fps=10, codec="libx264",
                    options={"bf": "0"}, pts=[start + 100 * i for i in range(60)], time_base=Fraction(1, 1000))  # fmt: skip
    (root / "k400" / "annotations").mkdir()
    (root / "k400" / "annotations" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\njuggling balls,offset_clip,1.5,4,train\n"
        "zumba,zero_clip,3,5.5,train\n"
    )


#: The index rows of `_constant_rate_inputs` as compressa_hf wrote them before frame spacing was measured (commit
#: 4b39ec5, T = 8 at 16 px, pixel codec), less the path: the same frames, timestamps, rates and keys now.
ROWS_BEFORE = {
    "train/a/mkv_2997": ([1, 4, 7, 10, 12, 15, 18, 21], [0.033, 0.133, 0.234, 0.334, 0.4, 0.501, 0.601, 0.701], 29.97002997002997, 23, 0),
    "train/a/mp4_mpeg4": ([1, 3, 6, 8, 11, 13, 16, 18], [0.033333, 0.1, 0.2, 0.266667, 0.366667, 0.433333, 0.533333, 0.6], 30.0, 20, 0),
    "train/b/avi_25": ([1, 3, 5, 7, 9, 11, 13, 15], [0.04, 0.12, 0.2, 0.28, 0.36, 0.44, 0.52, 0.6], 25.0, 17, 0),
    "train/b/short": ([0, 1, 2, 3, 4, 0, 1, 2], [0.0, 0.033333, 0.066667, 0.1, 0.133333, 0.0, 0.033333, 0.066667], 30.0, 5, 3),
    "train/b/webm_12": ([1, 5, 9, 13, 16, 20, 24, 28], [0.083, 0.417, 0.75, 1.083, 1.333, 1.667, 2.0, 2.333], 12.0, 30, 0),
    "offset_clip_000001_000004": ([1, 5, 9, 13, 16, 20, 24, 28], [1.1, 1.5, 1.9, 2.3, 2.6, 3.0, 3.4, 3.8], 10.0, 30, 0),
    "zero_clip_000003_000005": ([1, 3, 6, 8, 11, 13, 16, 18], [3.1, 3.3, 3.6, 3.8, 4.1, 4.3, 4.6, 4.8], 10.0, 20, 0),
}  # fmt: skip
ROW_KEYS = ["clip_id", "label", "path", "frame_indices", "timestamps", "fps", "num_source_frames", "filled", "shard",
            "offset"]  # fmt: skip
SAMPLING_BEFORE = "uniform: The centre frame of each of `num_frames` equal segments of the clip, by frame index"


def _decoded_independently(path: str, indices: list[int], size: int) -> np.ndarray:
    """The frames at `indices` by a plain PyAV decode of the whole file, resized and cropped as the cache does."""
    import av

    with av.open(path) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]
    return resize_crop(np.stack([frames[i] for i in indices]), size)


def test_constant_rate_caches_and_sets_keep_their_bytes(tmp_path):
    import torch

    from compressa_hf.codecs import load_codec
    from compressa_hf.distillation.arguments import DistillArguments
    from compressa_hf.distillation.pipeline import run
    from compressa_hf.distillation.videocompressa import VideoCompressaConfig
    from compressa_hf.store import load_config, read_meta

    _constant_rate_inputs(tmp_path)
    rows = []
    for source, out in ((str(tmp_path / "vf"), "cache"), (f"kinetics400:root={tmp_path / 'k400'}", "kcache")):
        summary = _encode(source, tmp_path / out, num_frames=8, size=16)
        assert summary["variable_rate_clips"] == 0
        cache = LatentCache(tmp_path / out)
        meta = json.loads((tmp_path / out / "meta.json").read_text())
        assert meta["format_version"] == 2 and meta["sampling"].startswith(SAMPLING_BEFORE)
        assert meta["clip"] == {"num_frames": 8, "size": 16, "policy": "uniform", "short_clips": "loop", "seed": 0}
        latents = cache.latents().read_all()
        codec = load_codec("pixel")
        for j, row in enumerate(cache.index):
            assert list(row) == ROW_KEYS
            got = (row["frame_indices"], row["timestamps"], row["fps"], row["num_source_frames"], row["filled"])
            assert got == ROWS_BEFORE[row["clip_id"]], row["clip_id"]
            if out == "cache":  # windows: the same frames by `test_real_world_video.py`'s frame numbers
                frames = _decoded_independently(row["path"], row["frame_indices"], 16)
                images = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255)
                assert torch.equal(latents[j], codec.encode(images).to(torch.float16)), row["clip_id"]
        rows += cache.index
    assert len(rows) == len(ROWS_BEFORE)

    args = DistillArguments(source=str(tmp_path / "vf"), output=str(tmp_path / "set"), ratio="k2", codec="pixel",
                            num_frames=8, size=16, num_workers=0, preview=False, method="uniform",
                            cache_dir=str(tmp_path / "cache"))  # fmt: skip
    run(args, VideoCompressaConfig())
    ds = load_config(str(tmp_path / "set"), "uniform_ratio_k2", cache_dir=str(tmp_path / "hf"))
    assert ds.column_names == ["video_id", "label", "latents", "frame_indices", "timestamps", "fps", "source"]
    assert read_meta(tmp_path / "set")["uniform_ratio_k2"]["sampling"].startswith(SAMPLING_BEFORE)
    assert "in time" not in (tmp_path / "set" / "README.md").read_text()
    assert os.path.exists(tmp_path / "set" / "README.md")
