"""Real-world video conditions (../shared/field_cases): each test writes its own input with PyAV and checks the
value a player or the official tools would give.

Kinds: display-matrix orientation, non-UTF-8 container tags, true frame rates and timestamps, streams that do not
start at 0 (the video's own offset, or audio that starts first), windows deep into long files, edit lists that hide
stored pictures, frame sizes that change mid-stream, file and class names that are not plain ASCII or not UTF-8, and
`datasets` folders whose only "labels" are their split folders. Variable frame rates: `tests/test_video_time.py`.
"""

from __future__ import annotations

import json
import os
import struct
from fractions import Fraction

import numpy as np
import pytest
import torch

from compressa_hf.cache import EncodeConfig, LatentCache, encode_split
from compressa_hf.clips import ClipConfig, sample_clip
from compressa_hf.decode import orient, probe, read_frames
from compressa_hf.qwen.samples import load_chat_dataset, raw_chat_samples
from compressa_hf.sources import SourceError, build_source, parse_source_spec
from tests.conftest import QWEN, need_shared, write_video

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def _encode(source: str, split: str, out, **kw) -> dict:
    cfg = EncodeConfig(source=source, split=split, output_dir=str(out), codec="pixel", num_workers=0, **kw)
    return encode_split(cfg, progress=False)


def _colour(pixel) -> tuple:
    """The nearest of the four test colours (H.264 moves values by a few steps)."""
    options = {RED: "R", GREEN: "G", BLUE: "B", WHITE: "W"}
    best = min(options, key=lambda c: np.abs(np.asarray(pixel, float) - c).sum())
    return options[best]


# -- orientation ----------------------------------------------------------------------------------------------------


def _set_tkhd_matrix(path: str, a: int, b: int, c: int, d: int) -> None:
    """Patch an mp4's track header matrix (16.16 fixed point for a, b, c, d), as a phone writes its orientation."""
    data = bytearray(open(path, "rb").read())
    k = data.find(b"tkhd")
    assert k > 0, "no tkhd box"
    version = data[k + 4]
    off = k + 4 + 4 + (32 if version == 1 else 20) + 8 + 8  # -> matrix
    one = 0x00010000
    data[off : off + 36] = struct.pack(">9i", a * one, b * one, 0, c * one, d * one, 0, 0, 0, 0x40000000)
    open(path, "wb").write(bytes(data))


def _quadrant_clip(path) -> str:
    """Stored 64 wide x 32 tall: red top-left, green top-right, blue bottom-left, white bottom-right."""
    frames = np.zeros((8, 32, 64, 3), np.uint8)
    frames[:, :16, :32], frames[:, :16, 32:] = RED, GREEN
    frames[:, 16:, :32], frames[:, 16:, 32:] = BLUE, WHITE
    return write_video(path, frames, codec="libx264", options={"crf": "10"})


# (a, b, c, d) of the display matrix -> displayed (top-left, top-right, bottom-left, bottom-right), worked out by hand
# from where each stored corner lands. FFmpeg: a stored pixel (x, y) is shown at (a x + c y, b x + d y).
ORIENTATIONS = {
    "identity": ((1, 0, 0, 1), "RGBW"),
    "rotate 90 clockwise (portrait phone)": ((0, 1, -1, 0), "BRWG"),
    "rotate 180": ((-1, 0, 0, -1), "WBGR"),
    "rotate 90 counter-clockwise": ((0, -1, 1, 0), "GWRB"),
    "mirror (front camera)": ((-1, 0, 0, 1), "GRWB"),
    "transpose": ((0, 1, 1, 0), "RBGW"),
}


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_frames_come_out_as_a_player_shows_them(tmp_path, name):
    (a, b, c, d), expected = ORIENTATIONS[name]
    path = _quadrant_clip(tmp_path / "vf" / "train" / "phone" / "clip.mp4")
    _set_tkhd_matrix(path, a, b, c, d)

    (_, frame, _), *_ = read_frames(path, [0])
    transposed = b != 0
    assert frame.shape == ((64, 32, 3) if transposed else (32, 64, 3))
    h, w = frame.shape[:2]
    corners = [
        frame[h // 4, w // 4],
        frame[h // 4, 3 * w // 4],
        frame[3 * h // 4, w // 4],
        frame[3 * h // 4, 3 * w // 4],
    ]
    assert "".join(_colour(p) for p in corners) == expected

    # The orientation is applied before the short-side resize and centre crop: a portrait clip is cropped in height.
    src = parse_source_spec(str(tmp_path / "vf"))
    f = sample_clip(src, src.list_clips("train")[0], ClipConfig(num_frames=2, size=16)).frames[0]
    assert "".join(_colour(p) for p in (f[4, 4], f[4, 12], f[12, 4], f[12, 12])) == expected


def test_qwen_vl_utils_reader_gives_the_portrait_clip_upright(tmp_path):
    """The recipes' default raw reader (qwen-vl-utils' rules, `compressa_hf.qwen.video`) decodes through the source,
    so a phone's display matrix is applied before qwen-vl-utils keeps the aspect: portrait stays portrait."""
    from compressa_hf.qwen.video import QwenVideoConfig

    (a, b, c, d), expected = ORIENTATIONS["rotate 90 clockwise (portrait phone)"]
    _set_tkhd_matrix(_quadrant_clip(tmp_path / "vf" / "train" / "phone" / "clip.mp4"), a, b, c, d)
    sample = raw_chat_samples(str(tmp_path / "vf"), "train", QwenVideoConfig(nframes=2))[0]
    f = sample["videos"][0][0]
    h, w = f.shape[:2]
    assert h == 2 * w  # 32 wide x 64 tall as shown, resized with its aspect onto the 28-pixel grid
    corners = [f[h // 4, w // 4], f[h // 4, 3 * w // 4], f[3 * h // 4, w // 4], f[3 * h // 4, 3 * w // 4]]
    assert "".join(_colour(p) for p in corners) == expected


def test_orient_without_a_matrix_is_the_identity():
    image = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    assert orient(image, None) is image


# -- container metadata ---------------------------------------------------------------------------------------------


def _hmdb51_with_latin1_tags(root) -> None:
    """HMDB51 layout; each class's training clip carries a Latin-1 (not UTF-8) title tag, as many real .avi do."""
    frames = np.stack([np.full((24, 32, 3), 20 + 8 * i, np.uint8) for i in range(12)])
    for cls in ("brush_hair", "wave"):
        for i in range(2):
            path = write_video(
                root / cls / f"clip{i}_{cls}.avi",
                frames,
                container_format="avi",
                metadata={"title": "Caf\u00e9 scene"},
            )
            data = bytearray(open(path, "rb").read())
            k = data.find("Caf\u00e9".encode())
            assert k >= 0
            data[k + 3 : k + 5] = b"\xe9 "  # Latin-1 e-acute + space: same length, invalid UTF-8
            open(path, "wb").write(bytes(data))
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir()
    for cls in ("brush_hair", "wave"):
        (splits / f"{cls}_test_split1.txt").write_text(f"clip0_{cls}.avi 1 \nclip1_{cls}.avi 2 \n")


def test_a_non_utf8_container_tag_does_not_cost_the_clip(tmp_path):
    _hmdb51_with_latin1_tags(tmp_path / "hmdb51")
    summary = _encode(f"hmdb51:root={tmp_path / 'hmdb51'}", "train", tmp_path / "cache", num_frames=4, size=16)
    assert (summary["clips_cached"], summary["clips_skipped"]) == (2, 0)


# -- time: real frame rates, timestamps on the container's timeline, windows, edit lists, frame sizes -----------------


def _ssv2_at_12fps(root) -> None:
    """Two SSv2-style clips: 60 frames at 12 fps (5 s), VP9 webm, as Something-Something v2 ships them."""
    templates = ["Holding [something] next to [something]", "Pushing [something] from left to right"]
    (root / "20bn-something-something-v2").mkdir(parents=True)
    json.dump(
        {t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(templates)}, open(root / "labels.json", "w")
    )
    entries = [{"id": str(i + 1), "label": "x", "template": t, "placeholders": []} for i, t in enumerate(templates)]
    json.dump(entries, open(root / "train.json", "w"))
    json.dump(entries, open(root / "validation.json", "w"))
    frames = np.stack([np.full((32, 48, 3), 30 + 3 * i, np.uint8) for i in range(60)])
    for e in entries:
        write_video(root / "20bn-something-something-v2" / f"{e['id']}.webm", frames, fps=12, codec="libvpx-vp9",
                    options={"deadline": "realtime", "cpu-used": "8", "crf": "30", "b": "0"})  # fmt: skip


def test_raw_samples_carry_the_real_frame_rate_and_timestamps(tmp_path):
    _ssv2_at_12fps(tmp_path / "ssv2")
    source = f"ssv2:root={tmp_path / 'ssv2'}"
    src = parse_source_spec(source)
    info = src.probe(src.list_clips("train")[0])
    assert (info.num_frames, info.fps) == (60, 12.0)

    sample = raw_chat_samples(source, "train", ClipConfig(num_frames=4, size=32))[0]
    assert sample["video_metadata"] == [{"fps": 12.0, "frames_indices": [7, 22, 37, 52], "total_num_frames": 60}]

    _encode(source, "train", tmp_path / "cache", num_frames=4, size=32)
    row = LatentCache(tmp_path / "cache").index[0]
    assert row["fps"] == 12.0 and row["timestamps"] == pytest.approx([7 / 12, 22 / 12, 37 / 12, 52 / 12], abs=1e-3)


def test_qwen_vl_utils_reader_samples_at_two_per_second_of_the_real_rate(tmp_path):
    """qwen-vl-utils' 2 frames per second are counted on the clip's real 12 fps, and its metadata says 12 fps."""
    from compressa_hf.qwen.video import QwenVideoConfig

    _ssv2_at_12fps(tmp_path / "ssv2")
    sample = raw_chat_samples(f"ssv2:root={tmp_path / 'ssv2'}", "train", QwenVideoConfig())[0]
    (meta,) = sample["video_metadata"]
    assert (meta["fps"], meta["total_num_frames"]) == (12.0, 60)
    # 5 s at 2 frames per second: 10 frames spread over the 60 (a 30 fps assumption would give 4, the minimum)
    assert meta["frames_indices"] == np.linspace(0, 59, 10).round().astype(int).tolist()
    assert len(sample["videos"][0]) == 10


@pytest.mark.real_data
def test_qwen_temporal_spacing_comes_from_the_real_rate(tmp_path):
    """The 12 fps case's raw T = 4 sample: frames 1.25 s apart, 2 per temporal patch -> 2.5 s per grid step."""
    need_shared(QWEN)
    from transformers import AutoProcessor

    from compressa_hf.qwen.collator import QwenVideoCollator

    _ssv2_at_12fps(tmp_path / "ssv2")
    sample = raw_chat_samples(f"ssv2:root={tmp_path / 'ssv2'}", "train", ClipConfig(num_frames=4, size=56))[0]
    batch = QwenVideoCollator(AutoProcessor.from_pretrained(str(QWEN)))([sample])
    assert batch["second_per_grid_ts"].tolist() == pytest.approx([2.5])


def _binary_frames(n: int) -> np.ndarray:
    """Frame i shows i in binary: 8 vertical bars of 8 pixels, bright for a 1 bit."""
    frames = np.zeros((n, 32, 64, 3), np.uint8)
    for i in range(n):
        for bit in range(8):
            if (i >> bit) & 1:
                frames[i, :, 8 * bit : 8 * bit + 8] = 235
    return frames


def _frame_number(image: np.ndarray) -> int:
    return sum(1 << bit for bit in range(8) if image[image.shape[0] // 2, 8 * bit + 4].mean() > 128)


def _kinetics_with_start_offset(root) -> None:
    """Untrimmed Kinetics downloads at 10 fps; one stream starts at pts 2.0 s, one at 0; both annotated 3-5 s."""
    tb = Fraction(1, 1000)
    for vid, start in (("offset_clip", 2000), ("zero_clip", 0)):
        write_video(root / "train" / f"{vid}.mkv", _binary_frames(100), fps=10, codec="libx264",
                    options={"bf": "0", "crf": "12"}, pts=[start + 100 * i for i in range(100)], time_base=tb)  # fmt: skip
    (root / "annotations").mkdir()
    (root / "annotations" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\njuggling balls,offset_clip,3,5,train\n"
        '"passing American football (in game)",zero_clip,3,5,train\n'
    )


def test_annotated_windows_count_from_the_first_frame_of_the_stream(tmp_path):
    _kinetics_with_start_offset(tmp_path / "k400")
    src = build_source("kinetics400", root=str(tmp_path / "k400"))
    for ref in src.list_clips("train"):
        clip = sample_clip(src, ref, ClipConfig(num_frames=20, size=32))
        assert [_frame_number(f) for f in _frames_at(ref)] == list(range(30, 50)), ref.clip_id
        assert clip.frame_indices == list(range(20)) and clip.fps == 10.0
        assert clip.timestamps == pytest.approx([3.0 + 0.1 * i for i in range(20)])

    _encode(f"kinetics400:root={tmp_path / 'k400'}", "train", tmp_path / "cache", num_frames=4, size=32)
    for row in LatentCache(tmp_path / "cache").index:
        assert row["timestamps"] == pytest.approx([3.2, 3.7, 4.2, 4.7]), row["clip_id"]


def _frames_at(ref) -> list[np.ndarray]:
    return [f for _, f, _ in read_frames(ref.path, list(range(20)), ref.start_sec, ref.end_sec)]


def test_a_deep_window_seeks_and_gives_the_frames_a_full_decode_gives(tmp_path, monkeypatch):
    """40 s at 10 fps with a keyframe every 3 s: the window 31-33 s read by seeking equals reading from the start."""
    from compressa_hf import decode

    frames = _binary_frames(400)
    path = write_video(tmp_path / "long.mp4", frames, fps=10, codec="libx264", options={"g": "30", "crf": "12"})
    seeked = list(read_frames(path, list(range(20)), 31.0, 33.0))
    info = probe(path, 31.0, 33.0)

    decoded = []
    monkeypatch.setattr(decode, "_seek_before", lambda *a: decoded.append("seek"))  # as if the file could not seek
    from_start = list(read_frames(path, list(range(20)), 31.0, 33.0))
    assert decoded == ["seek"]  # the stub ran, so this pass did read from the start
    assert info.num_frames == 20 == len(seeked)
    assert [_frame_number(f) for _, f, _ in seeked] == [i % 256 for i in range(310, 330)]  # 8 bits shown
    assert [(i, t) for i, _, t in seeked] == [(i, t) for i, _, t in from_start]
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(seeked, from_start))


def _kinetics_audio_led(root) -> None:
    """Untrimmed downloads at 10 fps with audio from 0 s: one's video starts at 1 s, the other's at 0; both 3-5 s.

    Muxed downloads often start their streams apart (fflewddur/archivo#16, microsoft/FFmpegInterop#262).
    """
    import av

    for vid, first in (("avoffset_clip", 10), ("zero_clip", 0)):
        path = root / "train" / f"{vid}.mkv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w") as c:
            audio = c.add_stream("flac", rate=8000)
            audio.layout = "mono"
            video = c.add_stream("libx264", rate=10, options={"bf": "0", "crf": "12"})
            video.width, video.height, video.pix_fmt = 64, 32, "yuv420p"
            video.codec_context.time_base = Fraction(1, 10)
            silence = av.AudioFrame.from_ndarray(np.zeros((1, 80_000), np.int16), format="s16", layout="mono")
            silence.sample_rate, silence.pts, silence.time_base = 8000, 0, Fraction(1, 8000)
            for packet in [*audio.encode(silence), *audio.encode()]:
                c.mux(packet)
            for i, image in enumerate(_binary_frames(80)):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = first + i, Fraction(1, 10)
                for packet in video.encode(frame):
                    c.mux(packet)
            for packet in video.encode():
                c.mux(packet)
    (root / "annotations").mkdir()
    (root / "annotations" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\njuggling balls,avoffset_clip,3,5,train\n"
        '"passing American football (in game)",zero_clip,3,5,train\n'
    )


def test_annotated_windows_are_on_the_containers_timeline_when_audio_leads(tmp_path):
    """`ffmpeg -ss 3 -t 2` measures from the container's start (its earliest stream, the audio here): video 3.0-4.9 s
    is picture 20..39 of the file whose video starts at 1 s, not the video stream's own 3-5 s (pictures 30..49)."""
    _kinetics_audio_led(tmp_path / "k400")
    src = build_source("kinetics400", root=str(tmp_path / "k400"))
    expected = {"avoffset_clip": range(20, 40), "zero_clip": range(30, 50)}
    for ref in src.list_clips("train"):
        assert [_frame_number(f) for f in _frames_at(ref)] == list(expected[ref.clip_id.split("_0")[0]])
        clip = sample_clip(src, ref, ClipConfig(num_frames=20, size=32))
        assert clip.frame_indices == list(range(20)) and clip.num_source_frames == 20 and clip.fps == 10.0
        assert clip.timestamps == pytest.approx([3.0 + 0.1 * i for i in range(20)])  # on the file's timeline


def _edit_list_clip(path) -> str:
    """An mp4 whose edit list starts after its first 5 stored pictures, as `ffmpeg -ss X -i in.mp4 -c copy` writes:
    40 pictures stored (picture i shows i in binary), the first 5 flagged discard, 35 shown at 25 fps
    (meta-pytorch/torchcodec#1502, PyAV-Org/PyAV#976)."""
    import av

    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(path, "w") as c:
        stream = c.add_stream("libx264", rate=25, options={"bf": "0", "crf": "12", "g": "50"})
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 25)

        def mux(packets):
            for packet in packets:  # the first 5 pictures land before time 0: before the edit
                packet.pts, packet.dts = packet.pts - 5, packet.dts - 5
                c.mux(packet)

        for i, image in enumerate(_binary_frames(40)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            mux(stream.encode(frame))
        mux(stream.encode())
    return path


def test_an_edit_list_hides_pictures_from_the_count_and_the_samples(tmp_path):
    from compressa_hf.qwen.video import QwenVideoConfig, sample_qwen_clip

    path = _edit_list_clip(tmp_path / "vf" / "train" / "cut" / "trimmed_copy.mp4")
    assert (probe(path).num_frames, probe(path).fps) == (35, 25.0)
    src = parse_source_spec(str(tmp_path / "vf"))
    (ref,) = src.list_clips("train")
    clip = sample_clip(src, ref, ClipConfig(num_frames=8, size=32))
    assert (clip.num_source_frames, clip.filled) == (35, 0)
    pictures = [_frame_number(f) for _, f, _ in read_frames(path, clip.frame_indices)]
    assert pictures == [7, 11, 15, 20, 24, 29, 33, 37]  # not [7, 12, ..., 37, 37] with one filled
    assert clip.timestamps == pytest.approx([(p - 5) / 25 for p in pictures])  # the shown pictures' own times

    # qwen-vl-utils' rules over the 35 shown frames: 1.4 s -> its minimum of 4 frames, none repeated
    qwen = sample_qwen_clip(src, ref, QwenVideoConfig())
    assert (qwen.num_source_frames, qwen.filled, qwen.frame_indices) == (35, 0, [0, 11, 23, 34])
    assert [_frame_number(f) for _, f, _ in read_frames(path, qwen.frame_indices)] == [5, 16, 28, 39]


def _resolution_change(root) -> None:
    """A Matroska H.264 clip whose frame size changes mid-stream, as browser / WebRTC recordings do
    (radek-k/FFMediaToolkit#105, bvibber/OGVKit#132): 20 red frames at 64x48, then 20 blue ones at 96x64."""
    import io

    import av

    packets = []
    for width, height, colour in ((64, 48, RED), (96, 64, BLUE)):
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt, codec.time_base = width, height, "yuv420p", Fraction(1, 25)
        codec.options = {"bf": "0"}
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), colour, np.uint8), format="rgb24")
            frame.pts = i
            packets += [bytes(p) for p in codec.encode(frame)]
        packets += [bytes(p) for p in codec.encode(None)]
    stream = io.BytesIO(b"".join(packets))
    for split in ("train", "test"):
        path = root / split / "call" / "webrtc_recording.mkv"
        path.parent.mkdir(parents=True)
        stream.seek(0)
        with av.open(stream, format="h264") as src, av.open(str(path), "w") as out:
            template = src.streams.video[0]
            target = out.add_stream_from_template(template)
            target.time_base = Fraction(1, 25)
            for k, packet in enumerate(p for p in src.demux(template) if p.size):
                packet.stream, packet.pts, packet.dts, packet.time_base = target, k, k, Fraction(1, 25)
                out.mux(packet)


def test_a_frame_size_change_mid_stream_is_scaled_to_the_first_size(tmp_path):
    from compressa_hf.qwen.video import QwenVideoConfig

    _resolution_change(tmp_path / "vf")
    path = str(tmp_path / "vf" / "train" / "call" / "webrtc_recording.mkv")
    frames = [f for _, f, _ in read_frames(path, list(range(40)))]
    assert {f.shape for f in frames} == {(48, 64, 3)}  # what ffmpeg makes of it: the first frame's size
    assert [_colour(f[24, 32]) for f in frames] == ["R"] * 20 + ["B"] * 20

    summary = _encode(str(tmp_path / "vf"), "train", tmp_path / "cache", num_frames=8, size=16)
    assert (summary["clips_cached"], summary["clips_skipped"]) == (1, 0)
    (sample,) = raw_chat_samples(str(tmp_path / "vf"), "train", QwenVideoConfig(nframes=4))
    assert sample is not None and len(sample["videos"][0]) == 4


def test_the_raw_reader_skips_a_clip_that_breaks_in_an_unforeseen_way(tmp_path, monkeypatch, caplog):
    """An error no reader anticipated (a bare ValueError from deep inside a decoder) costs the clip, not the run."""
    from compressa_hf.qwen import samples

    write_video(tmp_path / "vf" / "train" / "a" / "clip.mp4", _binary_frames(8))
    dataset = raw_chat_samples(str(tmp_path / "vf"), "train", ClipConfig(num_frames=4, size=16))
    assert dataset[0] is not None

    def broken(*args, **kwargs):
        raise ValueError("all input arrays must have the same shape")

    monkeypatch.setattr(samples, "read_raw_clip", broken)
    with caplog.at_level("WARNING"):
        assert dataset[0] is None
    assert "clip.mp4" in caplog.text and "ValueError" in caplog.text and "same shape" in caplog.text


# -- processes -----------------------------------------------------------------------------------------------------


class _ReadClips(torch.utils.data.Dataset):
    def __init__(self, paths: list[str]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.stack([f for _, f, _ in read_frames(self.paths[i], [0, 3])])


def test_a_worker_forked_after_the_parent_scaled_a_frame_decodes(tmp_path):
    """PyAV (>= 17) scales through a cached, thread-local swscale context that owns a pool of slice threads; a
    DataLoader worker forked after the parent used it inherits the context without its threads. Scaling through it
    hung the CI's decode worker forever (PyAV 18.1.1); `read_frames` scales with its own single-threaded context. The
    parent scales a frame PyAV's way first, as encoding or `frame.to_ndarray` does; the loader's timeout turns a hang
    into a failure."""
    import av

    frames = np.random.default_rng(0).integers(0, 256, (4, 240, 320, 3), dtype=np.uint8)
    path = write_video(tmp_path / "clip.mp4", frames)
    with av.open(path) as container:
        next(container.decode(video=0)).to_ndarray(format="rgb24", width=160, height=120)

    loader = torch.utils.data.DataLoader(
        _ReadClips([path, path]), batch_size=None, num_workers=1, multiprocessing_context="fork", timeout=60
    )
    clips = list(loader)
    assert [tuple(c.shape) for c in clips] == [(2, 240, 320, 3)] * 2


# -- names ---------------------------------------------------------------------------------------------------------


CLASSES = ["Über Sprung", "跳绳", "yo-yo (trick) #2"]


def _odd_names(root) -> bytes:
    """Class folders with spaces, punctuation and non-Latin scripts; one file name that is not UTF-8 (Latin-1)."""
    frames = np.stack([np.full((24, 32, 3), 20 + 8 * i, np.uint8) for i in range(12)])
    for split in ("train", "test"):
        for c, cls in enumerate(CLASSES):
            for j in range(2):
                write_video(root / split / cls / f"clip {j:02d} & more.mp4", frames + 10 * c)
    latin1 = os.fsencode(root / "train" / CLASSES[0]) + b"/caf\xe9 clip.mp4"
    with open(os.fsencode(root / "train" / CLASSES[0] / "clip 00 & more.mp4"), "rb") as f, open(latin1, "wb") as g:
        g.write(f.read())
    return latin1


@pytest.mark.slow
def test_odd_names_are_read_and_round_trip_through_cache_set_card_and_show(tmp_path):
    from compressa_hf.distillation.arguments import DistillArguments
    from compressa_hf.distillation.pipeline import run
    from compressa_hf.distillation.videocompressa import VideoCompressaConfig
    from compressa_hf.store import load_config, read_meta
    from compressa_hf.strips import ShowConfig, show

    _odd_names(tmp_path / "vf")
    summary = _encode(str(tmp_path / "vf"), "train", tmp_path / "cache", num_frames=4, size=16)
    assert (summary["clips_cached"], summary["clips_skipped"]) == (7, 0)
    ids = [row["clip_id"] for row in LatentCache(tmp_path / "cache").index]
    assert "train/Über Sprung/caf\\xe9 clip" in ids and "train/跳绳/clip 01 & more" in ids

    args = DistillArguments(source=str(tmp_path / "vf"), output=str(tmp_path / "set"), ratio=5.0, codec="pixel",
                            num_frames=4, size=16, num_workers=0, preview=False)  # fmt: skip
    run(args, VideoCompressaConfig(passes=1, batch_size=4, guide_width=8))
    ds = load_config(str(tmp_path / "set"), "ratio_5", cache_dir=str(tmp_path / "hf"))
    assert ds.features["label"].names == sorted(CLASSES)
    assert sorted(ds["video_id"]) == sorted(ids)
    assert read_meta(tmp_path / "set")["ratio_5"]["class_names"] == sorted(CLASSES)
    card = (tmp_path / "set" / "README.md").read_text(encoding="utf-8")
    assert all(c in card for c in CLASSES)
    pictures = show(ShowConfig(repo=str(tmp_path / "set"), num_videos=7))
    assert len(pictures) == 7


def test_a_file_that_cannot_be_read_is_skipped_by_path_and_the_rest_is_cached(tmp_path):
    latin1 = _odd_names(tmp_path / "vf")
    with open(latin1, "wb") as f:
        f.write(b"not a video")
    summary = _encode(str(tmp_path / "vf"), "train", tmp_path / "cache", num_frames=4, size=16)
    assert (summary["clips_cached"], summary["clips_skipped"]) == (6, 1)
    (skipped,) = [json.loads(line) for line in open(tmp_path / "cache" / "skipped.jsonl")]
    assert skipped["clip_id"] == "train/Über Sprung/caf\\xe9 clip" and skipped["path"] == os.fsdecode(latin1)
    assert os.fsdecode(latin1) in skipped["reason"]


# -- labels --------------------------------------------------------------------------------------------------------


def _split_only_folder(root, with_metadata: bool) -> None:
    """A `datasets` video folder laid out by split only (huggingface/datasets#7880), optionally with metadata.csv."""
    for split in ("train", "test"):
        rows = ["file_name,action"]
        for j in range(2):
            write_video(root / split / f"clip{j}.mp4", np.full((6, 16, 16, 3), 60 + 40 * j, np.uint8))
            rows.append(f"clip{j}.mp4,{'run' if j else 'walk'}")
        if with_metadata:
            (root / split / "metadata.csv").write_text("\n".join(rows) + "\n")


def test_split_folders_taken_for_classes_are_refused_before_encoding(tmp_path):
    _split_only_folder(tmp_path / "hfv", with_metadata=False)
    with pytest.raises(SourceError, match=r"names \['test', 'train'\] are the split names.*datasets#7880"):
        _encode(f"hf:path={tmp_path / 'hfv'}", "train", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()

    _split_only_folder(tmp_path / "hfm", with_metadata=True)
    with pytest.raises(SourceError, match="has no column 'label'.*pass label_column=action"):
        _encode(f"hf:path={tmp_path / 'hfm'}", "train", tmp_path / "cache")
    summary = _encode(f"hf:path={tmp_path / 'hfm'},label_column=action", "train", tmp_path / "cache", size=16)
    assert summary["clips_cached"] == 2


def test_a_split_without_labelled_rows_is_refused_naming_split_and_column(tmp_path):
    from datasets import Dataset, DatasetDict

    path = write_video(tmp_path / "a.mp4", np.zeros((4, 16, 16, 3), np.uint8))
    data = DatasetDict(
        train=Dataset.from_dict({"video": [path, path], "action": ["run", "walk"]}),
        test=Dataset.from_dict({"video": [path, path], "action": [None, None]}),
    )
    src = build_source("hf", path=data, label_column="action")
    assert len(src.list_clips("train")) == 2
    with pytest.raises(SourceError, match="split 'test' .* no labelled rows: all 2 rows .* column 'action'"):
        src.list_clips("test")


def test_class_errors_name_the_class():
    from compressa_hf.distillation.budget import counts_per_class

    with pytest.raises(ValueError, match=r"1 of 3 classes have no video in the split: 'Run' \(label 1\)"):
        counts_per_class([0, 2, 2], ["Jump", "Run", "Sit"])
    assert counts_per_class([0, 1, 2, 2], ["Jump", "Run", "Sit"]) == [1, 1, 2]


def test_distilled_rows_give_qwen_their_own_frame_rate(tmp_path):
    from tests.test_chat import write_distilled

    ds = load_chat_dataset(write_distilled(tmp_path / "set", fps=12.0), "ratio_1")
    meta = ds[0]["video_metadata"][0]
    # Indices 2, 10, 18, 26 at 12 fps: 2 s apart ... spread 24 frames over 3 gaps -> 32 frames stood for.
    assert meta == {"fps": 12.0, "frames_indices": [2, 10, 18, 26], "total_num_frames": 32}
