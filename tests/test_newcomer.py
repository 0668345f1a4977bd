"""A newcomer's path on their own data: plain errors with exit code 2, sets that open anywhere, nothing machine-local
published, one shared cache, partial downloads, `k<K>` ratios, pictures whose header is never cut."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from compressa_hf.cli import main as cli
from compressa_hf.publish import find_local_paths, public_command, public_path, public_spec
from tests.conftest import REPO, ramp_frames, write_video

PROCEDURAL = "procedural:num_classes=3,train_per_class=4,test_per_class=1,length=16,frame_size=32"
TINY = ["--size", "32", "--num_frames", "4", "--codec", "pixel", "--num_workers", "0", "--batch_size", "4",
        "--guide_width", "8", "--passes", "1"]  # fmt: skip


def _env() -> dict:
    return os.environ | {"PYTHONPATH": str(REPO)}


# -- errors users cause --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["distill", "--source", PROCEDURAL, "--ratio", "-1"], "bad ratio '-1'"),
        (["distill", "--source", PROCEDURAL, "--ratio", "k0"], "bad ratio 'k0'"),
        (["encode", "--source", "./no/such/folder"], "no such folder"),
        (["encode", "--source", PROCEDURAL, "--codec", "tae:taef9"], "no taef9_encoder"),
    ],
)
def test_user_errors_are_one_paragraph_and_exit_2(argv, message, capsys):
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert f"compressa {argv[0]}: error: " in err and message in err and "Traceback" not in err
    with pytest.raises((ValueError, OSError)):
        cli(["--debug", *argv])


def test_a_cache_made_with_other_settings_is_a_plain_error_naming_the_setting(tmp_path, capsys):
    base = ["encode", "--source", PROCEDURAL, "--codec", "pixel", "--num_workers", "0", "--num_frames", "4"]
    assert cli([*base, "--size", "32", "--output_dir", str(tmp_path / "c")]) == 0
    assert cli([*base, "--size", "16", "--output_dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "holds a cache made with other settings (clip.size: 32 there vs 16 now)" in err and "Traceback" not in err
    # distill finds the same conflict in its dry run, before any encoding, and names no option it lacks
    argv = ["distill", "--source", PROCEDURAL, "--ratio", "k1", "--output", str(tmp_path / "s"), *TINY]
    assert cli([*argv, "--size", "16", "--cache_dir", str(tmp_path / "c"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "clip.size: 32 there vs 16 now" in err and "compressa encode --overwrite" in err


def test_the_shared_cache_follows_the_list_of_clips(tmp_path, capsys):
    _videofolder(tmp_path / "vf", empty_in_train=())
    argv = ["encode", "--source", str(tmp_path / "vf"), "--codec", "pixel", "--num_workers", "0", "--size", "16"]

    def encode() -> dict:
        assert cli(argv) == 0
        return json.loads(capsys.readouterr().out)

    first, again = encode(), encode()
    assert again["output_dir"] == first["output_dir"] and again["this_pass"]["main_process"]["clips"] == 0
    # The same number of clips, one of them another file: another cache, encoded again.
    os.rename(tmp_path / "vf" / "train" / "Run" / "clip1.mp4", tmp_path / "vf" / "train" / "Run" / "clip9.mp4")
    moved = encode()
    assert moved["output_dir"] != first["output_dir"] and moved["this_pass"]["main_process"]["clips"] == 6


def test_misspelled_and_abbreviated_options_are_refused(capsys):
    assert cli(["distill", "--source", PROCEDURAL, "--ration", "k1"]) == 2
    assert "unknown option(s) ['--ration', 'k1']; `compressa distill --help`" in capsys.readouterr().err
    assert cli(["distill", "--source", PROCEDURAL, "--ratio", "k1", "--num_frame", "4", "--dry-run"]) == 2
    assert "unknown option(s) ['--num_frame', '4']" in capsys.readouterr().err


def _videofolder(root, classes=("Jump", "Run", "Sit"), empty_in_train=("Sit",)) -> None:
    for split in ("train", "test"):
        for c, cls in enumerate(classes):
            if split == "train" and cls in empty_in_train:
                (root / split / cls).mkdir(parents=True)
                continue
            for j in range(2):
                write_video(root / split / cls / f"clip{j}.mp4", ramp_frames(12, 32, 32, seed=c + j))


def test_a_class_without_clips_is_named_and_can_be_dropped(tmp_path, capsys):
    _videofolder(tmp_path / "vf")
    argv = ["distill", "--source", str(tmp_path / "vf"), "--ratio", "k1", "--output", str(tmp_path / "s"), *TINY]
    assert cli([*argv, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "1 of 3 classes have no video in the split: 'Sit' (label 2)" in err and "--drop_empty_classes" in err
    assert cli(argv) == 2  # the real run stops before encoding anything
    assert "'Sit' (label 2)" in capsys.readouterr().err and not os.path.exists(os.environ["COMPRESSA_CACHE"])

    assert cli([*argv, "--drop_empty_classes", "--preview", "false"]) == 0
    from compressa_hf.store import load_config, read_meta

    meta = read_meta(tmp_path / "s")["ratio_k1"]
    assert meta["dropped_classes"] == ["Sit"] and meta["class_names"] == ["Jump", "Run"]
    assert "classes left out (no readable clip in the split)**: Sit" in (tmp_path / "s" / "README.md").read_text()
    ds = load_config(str(tmp_path / "s"), "ratio_k1", cache_dir=str(tmp_path / "hf"))
    assert ds.features["label"].names == ["Jump", "Run"] and sorted(ds["label"]) == [0, 0, 1, 1]

    # Another split gets its own config, named by the split; the train config stays as it was.
    assert cli([*argv, "--split", "test", "--preview", "false"]) == 0
    metas = read_meta(tmp_path / "s")
    assert sorted(metas) == ["ratio_k1", "test_ratio_k1"] and metas["ratio_k1"]["split"] == "train"
    assert "of the test split's uint8 clips" in (tmp_path / "s" / "README.md").read_text()


def _partial_hmdb51(root) -> None:
    """HMDB51 layout: 3 classes listed, 'wave' never downloaded, one 'brush_hair' clip missing."""
    for cls in ("brush_hair", "climb", "wave"):
        (root / cls).mkdir(parents=True)
        if cls != "wave":
            for j in range(2):
                write_video(root / cls / f"{cls}_{j}.avi", ramp_frames(10, 24, 32, seed=j))
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir()
    for cls in ("brush_hair", "climb", "wave"):
        lines = [f"{cls}_{j}.avi 1" for j in range(3)]  # clip 2 of each class is listed but never there
        (splits / f"{cls}_test_split1.txt").write_text("\n".join(lines) + "\n")


def test_a_partial_download_plans_on_existing_clips_and_names_empty_classes(tmp_path, capsys, caplog):
    _partial_hmdb51(tmp_path / "hmdb51")
    source = f"hmdb51:root={tmp_path / 'hmdb51'}"
    argv = ["distill", "--source", source, "--ratio", "k1", "--output", str(tmp_path / "s"), *TINY]
    assert cli([*argv, "--dry-run"]) == 2
    assert "1 of 3 classes have no video in the split: 'wave' (label 2)" in capsys.readouterr().err
    caplog.clear()
    assert cli([*argv, "--dry-run", "--drop_empty_classes"]) == 0
    out = capsys.readouterr().out
    plan = json.loads(out[out.index("\n{") + 1 :])  # the JSON summary after the plan text
    assert plan["clips"] == 4 and plan["missing_clips"] == 5 and plan["dropped_classes"] == ["wave"]
    assert plan["class_names"] == ["brush_hair", "climb"] and plan["plan"]["videos_per_class"] == [2, 2]
    assert plan["plan"]["num_videos"] == 4
    warnings = [r.getMessage() for r in caplog.records if "listed clips are not under" in r.getMessage()]
    assert len(warnings) == 1 and "5 of 9" in warnings[0]  # one line, not one per missing file

    assert cli([*argv, "--drop_empty_classes", "--preview", "false"]) == 0
    summary = json.loads((tmp_path / "s.work" / "summary_ratio_k1.json").read_text())["cache"]
    assert (summary["clips_cached"], summary["clips_missing"], summary["clips_skipped"]) == (4, 5, 5)
    skipped = [json.loads(line) for line in open(summary["skipped_report"])]
    assert len(skipped) == 5 and all("file not found" in s["reason"] for s in skipped)


# -- sets that open anywhere, and publish nothing local -------------------------------------------------------------


@pytest.mark.slow
def test_a_set_made_here_opens_elsewhere_and_publishes_no_local_path(tmp_path):
    _videofolder(tmp_path / "data" / "clips", empty_in_train=())
    made = tmp_path / "made"
    made.mkdir()
    source = str(tmp_path / "data" / "clips")  # an absolute path
    argv = [sys.executable, "-m", "compressa_hf.cli", "distill", "--source", source, "--ratio", "k1", "--output",
            "set", *TINY, "--codec", "tae:taef2", "--size", "16"]  # fmt: skip
    subprocess.run(argv, cwd=made, env=_env(), check=True, capture_output=True)

    out = subprocess.run([sys.executable, "-m", "compressa_hf.cli", "push", "set", "me/set", "--dry-run"],
                         cwd=made, env=_env(), check=True, capture_output=True, text=True)  # fmt: skip
    files = json.loads(out.stdout)["files"]
    assert not any(f.startswith("local/") for f in files)
    from compressa_hf.hub import local_paths_in

    assert local_paths_in(str(made / "set"), files) == []
    meta = json.loads((made / "set" / "meta" / "ratio_k1.json").read_text())
    assert meta["source"] == "clips" and meta["codec_id"] == "tae:taef2"
    assert str(tmp_path) not in (made / "set" / "README.md").read_text()

    # Another machine: only what push uploads, another folder, no COMPRESSA_TAE_DIR, the source not there.
    elsewhere = tmp_path / "elsewhere"
    for rel in files:
        (elsewhere / "set" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(made / "set" / rel, elsewhere / "set" / rel)
    env = {k: v for k, v in _env().items() if k != "COMPRESSA_TAE_DIR"}
    probe = ("from compressa_hf.qwen.samples import load_chat_dataset; ds = load_chat_dataset('set', 'ratio_k1'); "
             "s = ds[0]; print(s['videos'][0].shape, s['video_metadata'][0]['fps'], s['answer'])")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[:4] == ["(1,", "16,", "16,", "3)"]
    out = subprocess.run([sys.executable, "-m", "compressa_hf.cli", "show", "set", "--num_videos", "2"],
                         cwd=elsewhere, env=env, capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "drawing the decoded frames only" in out.stderr and len(json.loads(out.stdout)["pictures"]) == 2


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/data/arid6", "arid6"),
        ("ucf101:root=/mnt/x/ucf101,fold=1", "ucf101:root=ucf101,fold=1"),
        ("tae:/home/me/weights/taef2", "tae:taef2"),
        ("procedural:num_classes=4", "procedural:num_classes=4"),
        ("hf:path=user/videos", "hf:path=user/videos"),
        ("../shared/data/arid6", "../shared/data/arid6"),
    ],
)
def test_public_spec(given, expected):
    assert public_spec(given) == expected


def test_public_paths_and_commands_hold_nothing_local():
    assert public_path("/data/hmdb51/wave/a b.avi", "/data/hmdb51") == "wave/a b.avi"
    assert public_path("/elsewhere/x.mp4", "/data/hmdb51") == "x.mp4"
    command = "compressa distill --source /data/k400 --output=/home/me/out --codec tae:/w/taef2 --ratio k1"
    assert public_command(command) == "compressa distill --source k400 --output=out --codec tae:taef2 --ratio k1"
    assert find_local_paths(public_command(command)) == []


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('"source": "/data/arid6/train/x.mp4"', ["/data/arid6/train/x.mp4"]),
        ("made in ~/work/sets", ["~/work/sets"]),
        ("C:\\Users\\me\\clips", ["C:\\Users\\me\\clips"]),
        ("see https://github.com/compressa-hf/compressa_hf and data/ratio_1/train.parquet", []),
        ("uint8 = round(255 * clamp(z / 6 + 0.5, 0, 1)); 3/10 %; and/or", []),
    ],
)
def test_find_local_paths(text, found):
    assert find_local_paths(text) == found


# -- pictures ------------------------------------------------------------------------------------------------------


def test_show_wraps_a_long_header_instead_of_cutting_it():
    from PIL import Image, ImageDraw, ImageFont

    from compressa_hf.strips import _title_lines, render_strip

    title = (
        "train/" + "Über Sprung " * 6 + "caf\\xe9_a_very_long_clip_name_without_any_spaces_at_all  kept frames [3, 9]"
    )
    draw, font = ImageDraw.Draw(Image.new("RGB", (1, 1))), ImageFont.load_default()
    lines = _title_lines(title, 120, draw, font)
    assert len(lines) > 3 and all(draw.textlength(line, font=font) <= 120 for line in lines)
    assert "".join(lines).replace(" ", "") == title.replace(" ", "")  # every character is drawn
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    picture = render_strip(frames, [True, False, False, True], frames[:2], title)
    one_line = render_strip(frames, [True, False, False, True], frames[:2], "short")
    assert picture.shape[1] == one_line.shape[1] and picture.shape[0] > one_line.shape[0] + 2 * 10


# -- Hub weights pinned by revision ---------------------------------------------------------------------------------


def test_hub_codec_weights_are_pinned_by_their_commit(tmp_path):
    """A diffusers codec from the local Hub cache records the snapshot's commit; `<id>@<commit>` loads it back."""
    from compressa_hf.codecs import DiffusersTinyCodec
    from tests.test_codecs import TINY_DIFFUSERS_CONFIG

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-vae"
    DiffusersTinyCodec.from_config(TINY_DIFFUSERS_CONFIG).vae.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    probe = ("import json; from compressa_hf.codecs import load_codec, pinned_spec; c = load_codec('someone/tiny-vae'); "
             "p = load_codec(pinned_spec(c.codec_id, c.revision)); print(json.dumps([c.codec_id, c.revision, p.revision]))")  # fmt: skip
    env = _env() | {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["diffusers:someone/tiny-vae", commit, commit]
