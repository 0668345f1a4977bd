"""bench/procedural_size.py's pieces: event hit rates on hand-made cases, the grid's keys, and its generated clips
against the source's own event frames."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_procedural_size", REPO / "bench" / "procedural_size.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_event_hits_on_a_hand_made_case(bench):
    # Two clips of 32 source frames, T = 4 cached frames at 1, 9, 17, 25 (uniform of 32).
    cached = [[1, 9, 17, 25], [1, 9, 17, 25]]
    events = [range(8, 16), range(20, 28)]  # clip 0's event holds cached frame 9, clip 1's holds 25
    kept = [[1], [0, 1], [3], [2, 3], [0]]  # positions among the cached frames
    videos = [0, 0, 1, 1, -1]  # the last row is synthetic: left out
    hits = bench.event_hits(kept, cached, events, videos)
    # kept source frames: [9] hit; [1, 9] one of two; [25] hit; [17, 25] one of two -> 4 of 6 frames, 4 of 4 rows
    assert hits == {"frame_hit_rate": 4 / 6, "video_hit_rate": 1.0, "frames": 6, "videos": 4}

    misses = bench.event_hits([[0], [2]], cached, events, [0, 1])
    assert misses == {"frame_hit_rate": 0.0, "video_hit_rate": 0.0, "frames": 2, "videos": 2}
    assert bench.event_hits([[0]], cached, events, [-1])["frame_hit_rate"] is None
    with pytest.raises(ValueError, match="2 rows of kept frames but 1 source videos"):
        bench.event_hits([[0], [1]], cached, events, [0])


def test_generated_clips_and_event_share_follow_the_source(bench):
    from compressa_hf.sources.procedural import ProceduralSource

    source = ProceduralSource(
        num_classes=2, train_per_class=2, test_per_class=1, length=32, event_length=8, frame_size=16
    )
    pixels, labels, refs, cached = bench.generate(source, "train", 16)
    assert pixels.shape == (4, 16, 3, 16, 16) and labels.tolist() == [0, 0, 1, 1]
    assert cached == [list(range(1, 32, 2))] * 4  # uniform T = 16 of 32: every other frame
    events = [source.event_frames(r) for r in refs]
    share = bench.event_hits([list(range(16))] * 4, cached, events, [0, 1, 2, 3])
    assert share["frame_hit_rate"] == 16 / 64  # an 8-frame event holds 4 of the 16 every-other frames
    # the frames are the source's own: an event frame differs from the same clip's frame outside the event
    first = cached[0].index(next(i for i in cached[0] if i in events[0]))
    outside = cached[0].index(next(i for i in cached[0] if i not in events[0]))
    _, frame, _ = next(source.read_frames(refs[0], [cached[0][first]]))
    assert (pixels[0, first].permute(1, 2, 0).numpy() == frame).all()
    assert not (pixels[0, first] == pixels[0, outside]).all()


def test_grid_keys_and_product(bench):
    axes = bench.parse_grid(["frame_size=32,48", "event_length=8", "width=16,32", "arch=convnet"])
    settings = bench.expand(bench.TABLE1, axes)
    assert len(settings) == 4 and {s["frame_size"] for s in settings} == {32, 48}
    source, num_frames, arch, train = bench.split_setting(settings[0])
    assert source["frame_size"] == 32 and num_frames == 16 and arch == "convnet"
    assert train == {"width": 16, "epochs": 40, "batch_size": 32}
    with pytest.raises(SystemExit, match="'colour' is not a setting"):
        bench.parse_grid(["colour=1"])
    with pytest.raises(SystemExit, match="expected KEY=V1,V2"):
        bench.parse_grid(["frame_size"])


def test_set_hit_rates_map_saved_sets_to_source_frames(bench, tmp_path):
    """A saved set's kept positions go through the cache's clip order and sampling to the source's event frames."""
    import json

    import torch

    from compressa_hf.distillation.methods.base import CompressedSet
    from compressa_hf.sources.procedural import ProceduralSource

    source = ProceduralSource(
        num_classes=2, train_per_class=2, test_per_class=1, length=32, event_length=8, frame_size=16
    )
    refs = source.list_clips("train")
    order = [refs[2], refs[0], refs[3], refs[1]]  # the cache's order, not the source's
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "pixels_train_T16.safetensors.ids.json").write_text(json.dumps([r.clip_id for r in order]))
    cached = list(range(1, 32, 2))  # uniform 16 of 32
    inside = [[p for p, f in enumerate(cached) if f in source.event_frames(r)] for r in order]
    outside = [[p for p, f in enumerate(cached) if f not in source.event_frames(r)] for r in order]
    # row 0: clip 1 with one event frame; row 1: clip 3 with none; row 2: clip 0 with one of each; row 3: synthetic
    videos = torch.tensor([1, 3, 0, -1])
    kept = torch.tensor([[inside[1][0], outside[1][0]], outside[3][:2], [inside[0][0], outside[0][0]], [0, 1]])
    (tmp_path / "sets" / "uniform").mkdir(parents=True)
    CompressedSet(
        method="uniform",
        labels=torch.zeros(4, dtype=torch.long),
        stored={},
        pixels=torch.zeros(4, 2, 3, 16, 16, dtype=torch.uint8),
        source_videos=videos,
        frame_indices=kept,
    ).save(str(tmp_path / "sets" / "uniform" / "r2_s0.safetensors"))

    rates = bench.set_hit_rates(str(tmp_path), source, 16, 16, {"methods": ["uniform"], "ratios": [2.0]})
    assert rates["uniform"]["2"] == {"frame_hit_rate": 2 / 6, "video_hit_rate": 2 / 3, "frames": 6, "videos": 3}
    assert rates["full"]["full"]["frame_hit_rate"] == 16 / 64 and rates["full"]["full"]["video_hit_rate"] == 1.0


def test_grid_mode_end_to_end_without_av_or_diffusers(tmp_path):
    """The grid runs where the GPU machine stands (no `av`, no `diffusers`), writes its rows and reads them back."""
    import json
    import subprocess

    out = tmp_path / "grid.json"
    script = (
        "import runpy, sys; sys.modules['av'] = None; sys.modules['diffusers'] = None; "
        f"sys.argv = ['procedural_size.py', '--grid', 'num_classes=2', 'train_per_class=2', 'test_per_class=1', "
        f"'frame_size=16', 'num_frames=4', 'epochs=1,2', '--seeds', '2', '--codec_check', '--output', r'{out}']; "
        "runpy.run_path(r'" + str(REPO / "bench" / "procedural_size.py") + "', run_name='__main__')"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["setting"]["epochs"] for r in rows] == [1, 2]
    assert all(len(r["accuracy"]) == 2 and len(r["decoded"]["tae:taef2"]["accuracy"]) == 2 for r in rows)
    assert all(r["event_share"] == 4 / 16 for r in rows)  # T = 4 of 32: an 8-frame event holds exactly 1
    again = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0 and again.stdout.count("(read back)") == 2, again.stdout
