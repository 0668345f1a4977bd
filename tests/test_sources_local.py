"""The videofolder and procedural sources, and the source registry."""

from __future__ import annotations

import numpy as np
import pytest

from compressa_hf.clips import ClipConfig, sample_clip
from compressa_hf.sources import SOURCES, SourceError, build_source, get_source_class, parse_source_spec
from tests.conftest import ARID6, need_shared


def test_registry_names_every_source_and_refuses_unknown():
    for name in SOURCES:
        assert get_source_class(name).name == name
    with pytest.raises(SourceError, match="unknown source 'nope'.*known sources"):
        build_source("nope")


def test_videofolder_lists_classes_and_splits(videofolder):
    src = parse_source_spec(str(videofolder))
    assert src.class_names == ["Jump", "Run"]
    train, test = src.list_clips("train"), src.list_clips("test")
    assert [r.clip_id for r in train] == ["train/Jump/clip0", "train/Jump/clip1", "train/Run/clip0", "train/Run/clip1"]
    assert [r.label for r in train] == [0, 0, 1, 1] and len(test) == 2
    assert src.list_clips("validation") == test  # alias
    with pytest.raises(SourceError, match="split 'extra' not found"):
        src.list_clips("extra")


def test_videofolder_errors_name_the_path(tmp_path):
    with pytest.raises(SourceError, match="is not a directory"):
        build_source("videofolder", root=str(tmp_path / "missing"))
    (tmp_path / "train" / "A").mkdir(parents=True)
    with pytest.raises(SourceError, match="no video files"):
        build_source("videofolder", root=str(tmp_path)).list_clips("train")


def test_procedural_is_deterministic_and_event_defines_the_class():
    src = parse_source_spec("procedural:num_classes=4,train_per_class=3,test_per_class=1,length=32,seed=5")
    again = build_source("procedural", num_classes=4, train_per_class=3, test_per_class=1, length=32, seed=5)
    refs = src.list_clips("train")
    assert len(refs) == 12 and len(src.list_clips("test")) == 4
    a = {i: f for i, f, _ in src.read_frames(refs[0], list(range(32)))}
    b = {i: f for i, f, _ in again.read_frames(again.list_clips("train")[0], list(range(32)))}
    assert all(np.array_equal(a[t], b[t]) for t in range(32))
    events = sorted(src.event_frames(refs[0]))
    before = events[0] - 1 if events[0] > 0 else events[-1] + 1

    def changed(t0, t1):  # share of pixels that change by far more than the sensor noise (std 6)
        return (np.abs(a[t0].astype(int) - a[t1]).max(-1) > 60).mean()

    quiet = [t for t in range(31) if t not in events and t + 1 not in events]
    assert max(changed(t, t + 1) for t in quiet) < 0.002  # redundant frames: noise and a slow distractor only
    assert changed(events[0], before) > 0.02  # the event frame shows the class shape
    # different seeds give different clips
    other = build_source("procedural", num_classes=4, train_per_class=3, length=32, seed=6)
    assert not np.array_equal(a[0], {i: f for i, f, _ in other.read_frames(other.list_clips("train")[0], [0])}[0])


def test_procedural_bad_arguments_are_named():
    with pytest.raises(SourceError, match="num_classes"):
        build_source("procedural", num_classes=20)
    with pytest.raises(SourceError, match="bad arguments for source 'procedural'"):
        build_source("procedural", nonsense=1)
    with pytest.raises(SourceError, match="expected key=value"):
        parse_source_spec("procedural:num_classes")


@pytest.mark.real_data
def test_arid6_videofolder_real_clips():
    need_shared(ARID6)
    src = build_source("videofolder", root=str(ARID6))
    assert src.class_names == ["Jump", "Run", "Sit", "Stand", "Turn", "Walk"]
    train, test = src.list_clips("train"), src.list_clips("test")
    assert len(train) == 150 and len(test) == 108
    clip = sample_clip(src, train[0], ClipConfig(num_frames=16, size=112))
    assert clip.frames.shape == (16, 112, 112, 3) and clip.num_source_frames >= 33
