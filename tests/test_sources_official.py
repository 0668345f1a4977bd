"""The official-layout sources (UCF101, HMDB51, Kinetics-400, SSv2) and the `datasets` source on tiny copies.

Every fixture writes the real annotation formats (CRLF UCF lists, HMDB 0/1/2 split files, Kinetics CSVs, SSv2
JSONs) around a few 8-frame videos, so a parser that passes here reads the real downloads.
"""

from __future__ import annotations

import json
import logging
import os

import av
import numpy as np
import pytest

from compressa_hf.clips import ClipConfig, sample_clip
from compressa_hf.sources import ClipReadError, SourceError, build_source, get_source_class
from compressa_hf.sources.hf_dataset import HFDatasetSource, parse_split_mapping
from compressa_hf.sources.hmdb51 import HMDB51Source
from compressa_hf.sources.kinetics import Kinetics400Source
from compressa_hf.sources.ssv2 import SomethingSomethingV2Source
from compressa_hf.sources.ucf101 import UCF101Source
from tests.conftest import write_video

FPS = 8
SAMPLE = ClipConfig(num_frames=4, size=16)


# -- tiny real videos ------------------------------------------------------------------------------------------
def _level(i: int) -> int:
    """Grey level of frame i, so that a test can tell which frame it got back."""
    return 20 + 8 * i


def _webm_codec() -> str | None:
    return next((c for c in ("libvpx-vp9", "libvpx", "vp8") if c in av.codecs_available), None)


def write_clip(path, num_frames: int = 8) -> str:
    """A clip of `num_frames` grey frames at `FPS`, with the codec its extension calls for.

    .webm gets VP9/VP8 as in SSv2; when PyAV's FFmpeg lacks both, MPEG-4 in Matroska under the .webm name
    (PyAV probes the content, not the name).
    """
    frames = np.stack([np.full((24, 32, 3), _level(i), np.uint8) for i in range(num_frames)])
    path = os.fspath(path)
    if not path.endswith(".webm"):
        return write_video(path, frames, fps=FPS)
    codec = _webm_codec()
    if codec is not None:
        return write_video(path, frames, fps=FPS, codec=codec)
    os.replace(write_video(path[: -len(".webm")] + ".mkv", frames, fps=FPS), path)
    return path


def _write_lines(path, lines: list[str], eol: str = "\n") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write("".join(line + eol for line in lines))


def _assert_samples(source, ref) -> None:
    clip = sample_clip(source, ref, SAMPLE)
    assert clip.frames.shape == (4, 16, 16, 3) and clip.frames.dtype == np.uint8
    assert clip.label == ref.label and clip.filled == 0


def test_registry_builds_each_official_source():
    assert get_source_class("ucf101") is UCF101Source
    assert get_source_class("hmdb51") is HMDB51Source
    assert get_source_class("kinetics400") is Kinetics400Source
    assert get_source_class("ssv2") is SomethingSomethingV2Source
    assert get_source_class("hf") is HFDatasetSource


# -- UCF101 ------------------------------------------------------------------------------------------------------
UCF_CLASSES = ["ApplyEyeMakeup", "Archery", "HandstandPushups"]


@pytest.fixture
def ucf_root(tmp_path):
    """UCF-101/ + ucfTrainTestlist/ with the on-disk `HandStandPushups` spelling and CRLF lists (as shipped)."""
    root = tmp_path / "ucf"
    disk_name = {"HandstandPushups": "HandStandPushups"}
    for cls in UCF_CLASSES:
        d = disk_name.get(cls, cls)
        for g in ("01", "08", "09"):
            write_clip(root / "UCF-101" / d / f"v_{d}_g{g}_c01.avi")
    lists = root / "ucfTrainTestlist"
    _write_lines(lists / "classInd.txt", [f"{i} {c}" for i, c in enumerate(UCF_CLASSES, 1)], "\r\n")
    train = {1: ("08", "09"), 2: ("01", "09")}
    test = {1: ("01",), 2: ("08",)}
    for fold in (1, 2):
        tr = [f"{c}/v_{c}_g{g}_c01.avi {i}" for i, c in enumerate(UCF_CLASSES, 1) for g in train[fold]]
        te = [f"{c}/v_{c}_g{g}_c01.avi" for c in UCF_CLASSES for g in test[fold]]
        if fold == 1:
            tr.append("Archery/v_Archery_g10_c01.avi 2")  # listed, never downloaded
        _write_lines(lists / f"trainlist0{fold}.txt", tr, "\r\n")
        _write_lines(lists / f"testlist0{fold}.txt", te, "\r\n")
    return root


def test_ucf101_folds_labels_and_case_mismatch(ucf_root, caplog):
    src = UCF101Source(root=str(ucf_root), fold=1)
    assert src.class_names == UCF_CLASSES
    with caplog.at_level(logging.WARNING):
        train = src.list_clips("train")
    assert [r.clip_id for r in train] == sorted(r.clip_id for r in train)
    assert len(train) == 6 and {r.label for r in train} == {0, 1, 2}
    # The list says HandstandPushups, the disk HandStandPushups: resolved to the real file.
    hsp = [r for r in train if r.label == 2]
    assert all(os.path.isfile(r.path) and "HandStandPushups" in r.path for r in hsp)
    # A listed file that is missing is left out, kept in missing_clips, and one warning counts it.
    assert all(os.path.isfile(r.path) for r in train)
    (missing,) = src.missing_clips("train")
    assert missing.clip_id == "Archery/v_Archery_g10_c01" and missing.label == 1
    assert any("1 of 7" in m and "v_Archery_g10_c01" in m for m in caplog.messages)
    with pytest.raises(ClipReadError, match="v_Archery_g10_c01"):
        sample_clip(src, missing, SAMPLE)

    test = src.list_clips("test")  # no labels in testlist: the folder's class via classInd
    assert [(r.clip_id, r.label) for r in test] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01", 0),
        ("Archery/v_Archery_g01_c01", 1),
        ("HandstandPushups/v_HandstandPushups_g01_c01", 2),
    ]
    _assert_samples(src, test[2])

    fold2 = build_source("ucf101", root=str(ucf_root), fold=2)
    assert {r.clip_id.rsplit("_", 2)[1] for r in fold2.list_clips("test")} == {"g08"}
    assert len(fold2.list_clips("train")) == 6


def test_ucf101_root_at_video_folder(ucf_root):
    src = UCF101Source(root=str(ucf_root / "UCF-101"))  # split files beside it
    assert len(src.list_clips("test")) == 3


def test_ucf101_errors_name_the_file(ucf_root):
    with pytest.raises(SourceError, match="fold"):
        UCF101Source(root=str(ucf_root), fold=4)
    with pytest.raises(SourceError, match="trainlist03.txt"):
        UCF101Source(root=str(ucf_root), fold=3).list_clips("train")
    bad = ucf_root / "ucfTrainTestlist" / "trainlist02.txt"
    with open(bad, "a", newline="") as f:
        f.write("Bowling/v_Bowling_g08_c01.avi 4\r\n")
    with pytest.raises(SourceError, match=r"trainlist02\.txt:7: class 'Bowling'"):
        UCF101Source(root=str(ucf_root), fold=2).list_clips("train")
    with pytest.raises(SourceError, match="classInd"):
        UCF101Source(root=str(ucf_root.parent / "nowhere"))


# -- HMDB51 ------------------------------------------------------------------------------------------------------
HMDB = {
    "brush_hair": ["April_09_brush_hair_u_nm_np1_ba_goo_0", "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0"],
    "draw_sword": ["Anna_Kreshuk_draw_sword_u_cm_np1_fr_med_0", "Blade_draw_sword_f_nm_np1_le_bad_1"],
    "fall_floor": ["Falling_off_a_chair_fall_floor_f_cm_np1_ba_med_0", "Parkour_fall_floor_f_cm_np1_fr_goo_2"],
}
#: split -> (code of the first clip, code of the second): 1 train, 2 test, 0 unused
HMDB_CODES = {1: ("1", "2"), 2: ("2", "0")}


@pytest.fixture
def hmdb_root(tmp_path):
    root = tmp_path / "hmdb51"
    for cls, clips in HMDB.items():
        for clip in clips:
            write_clip(root / cls / f"{clip}.avi")
        for split, codes in HMDB_CODES.items():
            # The official lines end in a space.
            lines = [f"{clip}.avi {code} " for clip, code in zip(clips, codes)]
            _write_lines(root / "testTrainMulti_7030_splits" / f"{cls}_test_split{split}.txt", lines)
    return root


def test_hmdb51_splits_and_unused(hmdb_root):
    src = HMDB51Source(root=str(hmdb_root), split_id=1)
    assert src.class_names == sorted(HMDB)
    train, test = src.list_clips("train"), src.list_clips("test")
    assert [(r.clip_id, r.label) for r in train] == [
        (f"{c}/{clips[0]}", i) for i, (c, clips) in enumerate(HMDB.items())
    ]
    assert [r.clip_id for r in test] == [f"{c}/{clips[1]}" for c, clips in HMDB.items()]
    _assert_samples(src, test[0])

    split2 = build_source("hmdb51", root=str(hmdb_root), split_id=2)
    assert [r.clip_id for r in split2.list_clips("test")] == [f"{c}/{clips[0]}" for c, clips in HMDB.items()]
    assert split2.list_clips("train") == []  # every other clip is 0 = unused in split 2


def test_hmdb51_custom_splits_dir_and_errors(hmdb_root, tmp_path):
    moved = tmp_path / "splits"
    os.rename(hmdb_root / "testTrainMulti_7030_splits", moved)
    with pytest.raises(SourceError, match="splits_dir"):
        HMDB51Source(root=str(hmdb_root))
    assert len(HMDB51Source(root=str(hmdb_root), splits_dir=str(moved)).list_clips("test")) == 3

    _write_lines(moved / "kick_ball_test_split1.txt", ["Goal_kick_ball_f_cm_np1_ba_goo_0.avi 1 "])
    with pytest.raises(SourceError, match="kick_ball_test_split1.txt"):
        HMDB51Source(root=str(hmdb_root), splits_dir=str(moved))
    os.remove(moved / "kick_ball_test_split1.txt")

    _write_lines(moved / "draw_sword_test_split1.txt", ["Anna_Kreshuk_draw_sword_u_cm_np1_fr_med_0.avi 1", "oops"])
    with pytest.raises(SourceError, match=r"draw_sword_test_split1\.txt:2"):
        HMDB51Source(root=str(hmdb_root), splits_dir=str(moved)).list_clips("train")


# -- Kinetics-400 ------------------------------------------------------------------------------------------------
@pytest.fixture
def kinetics_root(tmp_path):
    """Trimmed clips in label folders (train), a flat trimmed clip and an untrimmed video (val), missing clips."""
    root = tmp_path / "k400"
    header = "label,youtube_id,time_start,time_end,split"
    train = [
        '"air drumming",--9YZyMuqK0,14,24,train',
        "abseiling,-3B32lodo2M,59,69,train",
        "zumba,aaa_bbb-CCC,0,10,train",
        "zumba,gone0000001,30,40,train",  # not downloaded
    ]
    val = ["abseiling,0wR5jVB-WPk,417,427,val", "zumba,untrimmed01,1,2,val", "air drumming,gone0000002,5,15,val"]
    _write_lines(root / "annotations" / "train.csv", [header, *train])
    _write_lines(root / "annotations" / "val.csv", [header, *val])
    _write_lines(root / "annotations" / "test.csv", ["youtube_id,time_start,time_end,split", "xyz,0,10,test"])
    write_clip(root / "train" / "air_drumming" / "--9YZyMuqK0_000014_000024.mp4")
    write_clip(root / "train" / "abseiling" / "-3B32lodo2M_000059_000069.mp4")
    write_clip(root / "train" / "zumba" / "aaa_bbb-CCC_000000_000010.mp4")
    write_clip(root / "val" / "0wR5jVB-WPk_000417_000427.mp4")
    write_clip(root / "val" / "untrimmed01.mp4", num_frames=24)  # 3 s; the annotation keeps [1 s, 2 s)
    return root


def test_kinetics_lists_present_clips_and_warns_once(kinetics_root, caplog):
    src = Kinetics400Source(root=str(kinetics_root))
    assert src.class_names == ["abseiling", "air drumming", "zumba"]
    assert src.splits == ["train", "validation"]
    with caplog.at_level(logging.WARNING):
        train = src.list_clips("train")
    assert [(r.clip_id, r.label) for r in train] == [
        ("--9YZyMuqK0_000014_000024", 1),
        ("-3B32lodo2M_000059_000069", 0),
        ("aaa_bbb-CCC_000000_000010", 2),
    ]
    assert all(r.start_sec is None for r in train)
    (warning,) = [m for m in caplog.messages if "kinetics400 train" in m]
    assert "1 of 4" in warning and "gone0000001" in warning
    _assert_samples(src, train[0])


def test_kinetics_untrimmed_window_and_test_alias(kinetics_root, caplog):
    src = build_source("kinetics400", root=str(kinetics_root))
    with caplog.at_level(logging.INFO, logger="compressa_hf.sources.kinetics"):
        val = src.list_clips("test")
    assert any("validation" in m for m in caplog.messages)
    assert [r.clip_id for r in val] == ["0wR5jVB-WPk_000417_000427", "untrimmed01_000001_000002"]
    window = val[1]
    assert (window.start_sec, window.end_sec, window.label) == (1.0, 2.0, 2)
    assert src.count_frames(window) == FPS  # frames 8..15 of 24
    first = {i: f for i, f, _ in src.read_frames(window, [0])}[0]
    assert abs(float(first.mean()) - _level(FPS)) < 6  # window frame 0 is file frame 8
    _assert_samples(src, window)


def test_kinetics_errors(kinetics_root, tmp_path):
    with pytest.raises(SourceError, match="annotation CSV"):
        Kinetics400Source(root=str(tmp_path / "empty"), annotation_dir=str(tmp_path))
    _write_lines(tmp_path / "ann" / "train.csv", ["youtube_id,time_start,time_end,split", "x,0,10,train"])
    with pytest.raises(SourceError, match=r"train\.csv lacks column"):
        Kinetics400Source(root=str(kinetics_root), annotation_dir=str(tmp_path / "ann"))
    # Not one annotated clip on disk is a wrong root, not a partial download: say so instead of an empty split.
    with pytest.raises(SourceError, match="none of the 4 Kinetics-400 train clips"):
        Kinetics400Source(
            root=str(tmp_path / "elsewhere"), annotation_dir=str(kinetics_root / "annotations")
        ).list_clips("train")


# -- Something-Something v2 --------------------------------------------------------------------------------------
SSV2_LABELS = {
    "Approaching something with your camera": "0",
    "Holding something next to something": "1",
    "Putting something on a surface": "2",
}


def _ssv2_record(clip_id: str, template: str) -> dict:
    return {"id": clip_id, "label": template.replace("[", "").replace("]", "").lower(), "template": template}


@pytest.fixture
def ssv2_root(tmp_path):
    root = tmp_path / "ssv2"
    train = [
        _ssv2_record("78687", "Holding [something] next to [something]"),
        _ssv2_record("9", "Putting [something] on a surface"),
        _ssv2_record("42326", "Approaching [something] with your camera"),
    ]
    val = [_ssv2_record("1420", "Putting [something] on a surface")]
    os.makedirs(root / "labels")
    for name, obj in (("labels.json", SSV2_LABELS), ("train.json", train), ("validation.json", val)):
        (root / "labels" / name).write_text(json.dumps(obj))
    for rec in train + val:
        write_clip(root / "20bn-something-something-v2" / f"{rec['id']}.webm")
    return root


def test_ssv2_templates_to_classes(ssv2_root, caplog):
    src = SomethingSomethingV2Source(root=str(ssv2_root))
    assert src.class_names == list(SSV2_LABELS)
    train = src.list_clips("train")
    assert [(r.clip_id, r.label) for r in train] == [("9", 2), ("42326", 0), ("78687", 1)]
    with caplog.at_level(logging.INFO, logger="compressa_hf.sources.ssv2"):
        assert [(r.clip_id, r.label) for r in src.list_clips("test")] == [("1420", 2)]
    assert any("validation" in m for m in caplog.messages)
    _assert_samples(src, train[2])


def test_ssv2_videos_folder_and_unknown_template(ssv2_root):
    os.rename(ssv2_root / "20bn-something-something-v2", ssv2_root / "videos")
    assert len(build_source("ssv2", root=str(ssv2_root)).list_clips("validation")) == 1
    bad = [_ssv2_record("555", "Spinning [something] that quickly stops spinning")]
    (ssv2_root / "labels" / "validation.json").write_text(json.dumps(bad))
    with pytest.raises(SourceError, match=r"validation\.json: clip id 555 .*Spinning something"):
        SomethingSomethingV2Source(root=str(ssv2_root)).list_clips("validation")


# -- datasets ----------------------------------------------------------------------------------------------------
HF_CLASSES = ["cat", "dog"]


@pytest.fixture
def clip_files(tmp_path):
    """train: two cats and a dog; test: one of each."""
    files = {
        "train": [("cat", "c1"), ("cat", "c2"), ("dog", "d1")],
        "test": [("cat", "c3"), ("dog", "d2")],
    }
    return {
        split: [(write_clip(tmp_path / "vf" / split / cls / f"{name}.mp4"), cls) for cls, name in items]
        for split, items in files.items()
    }


def _dataset_dict(clip_files, embed: bool, class_label: bool = True, test_name: str = "test"):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, Video

    splits = {}
    for split, items in clip_files.items():
        if embed:  # bytes only, as in Hub parquet: nothing on disk to fall back to
            videos = [{"path": None, "bytes": open(p, "rb").read()} for p, _ in items]
        else:
            videos = [p for p, _ in items]
        labels = [HF_CLASSES.index(c) if class_label else c for _, c in items]
        video_feature = Video(decode=False) if embed else Value("string")
        label_feature = ClassLabel(names=HF_CLASSES) if class_label else Value("string")
        features = Features({"video": video_feature, "label": label_feature})
        splits[test_name if split == "test" else split] = Dataset.from_dict(
            {"video": videos, "label": labels}, features=features
        )
    return DatasetDict(splits)


def test_hf_saved_dataset_with_paths(clip_files, tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict

    # As the brief's users build it: paths plus a ClassLabel cast, then save_to_disk.
    dd = DatasetDict(
        {
            split: Dataset.from_dict(
                {"video": [p for p, _ in items], "label": [HF_CLASSES.index(c) for _, c in items]}
            ).cast_column("label", ClassLabel(names=HF_CLASSES))
            for split, items in clip_files.items()
        }
    )
    dd.save_to_disk(tmp_path / "saved")
    src = build_source("hf", path=str(tmp_path / "saved"))
    assert src.class_names == HF_CLASSES and sorted(src.splits) == ["test", "train"]
    train = src.list_clips("train")
    assert [(r.clip_id, r.label, r.extra["row"]) for r in train] == [
        ("train/000000", 0, 0),
        ("train/000001", 0, 1),
        ("train/000002", 1, 2),
    ]
    assert train[2].path == clip_files["train"][2][0] and not train[2].extra["embedded"]
    _assert_samples(src, train[2])


def test_hf_embedded_bytes_decode_from_memory(clip_files, tmp_path):
    _dataset_dict(clip_files, embed=True).save_to_disk(tmp_path / "saved_bytes")
    src = HFDatasetSource(path=str(tmp_path / "saved_bytes"))
    test = src.list_clips("test")
    assert [(r.clip_id, r.label) for r in test] == [("test/000000", 0), ("test/000001", 1)]
    assert test[1].extra == {"split": "test", "row": 1, "embedded": True}
    assert src.count_frames(test[1]) == 8
    _assert_samples(src, test[1])


def test_hf_string_labels_split_mapping_and_alias(clip_files, caplog):
    dd = _dataset_dict(clip_files, embed=False, class_label=False, test_name="validation")
    src = HFDatasetSource(path=dd)
    assert src.class_names == HF_CLASSES  # sorted unique strings
    with caplog.at_level(logging.INFO, logger="compressa_hf.sources.hf_dataset"):
        assert [r.label for r in src.list_clips("test")] == [0, 1]
    assert any("'validation'" in m for m in caplog.messages)
    mapped = HFDatasetSource(path=dd, splits="train:validation;test:train")
    assert mapped.splits == ["train", "test"] and len(mapped.list_clips("test")) == 3
    assert parse_split_mapping({"a": "b"}) == {"a": "b"}
    with pytest.raises(SourceError, match="does not have"):
        HFDatasetSource(path=dd, splits={"test": "test"})
    with pytest.raises(SourceError, match="video_column"):
        HFDatasetSource(path=dd, video_column="clip")


def test_hf_streaming_spills_bytes_once(clip_files, tmp_path):
    src = HFDatasetSource(path=_dataset_dict(clip_files, embed=True), streaming=True, cache_dir=str(tmp_path / "c"))
    train = src.list_clips("train")
    assert [r.label for r in train] == [0, 0, 1]
    assert all(r.path.startswith(str(tmp_path / "c")) and os.path.isfile(r.path) for r in train)
    assert src.list_clips("train") == train  # the stream is read once; the listing is kept
    _assert_samples(src, train[0])


@pytest.mark.parametrize("streaming", [False, True])
def test_hf_videofolder_via_load_dataset(clip_files, tmp_path, monkeypatch, streaming):
    import datasets

    # `load_dataset` writes its Arrow cache (and lock files when streaming) there, not under the user's home.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    src = HFDatasetSource(path=str(tmp_path / "vf"), streaming=streaming, cache_dir=str(tmp_path / "c"))
    assert src.class_names == HF_CLASSES
    test = src.list_clips("test")
    assert [(os.path.basename(r.path), r.label) for r in test] == [("c3.mp4", 0), ("d2.mp4", 1)]
    _assert_samples(src, test[0])
