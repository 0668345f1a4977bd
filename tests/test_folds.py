"""Other evaluation protocols: stratified k folds over the pooled splits, and a validation carve of the train split
that never reads the test split (`compressa_hf.evaluation.splits`, `compressa evaluate --folds / --validation_fraction`).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from compressa_hf.evaluation.report import summarise, to_markdown
from compressa_hf.evaluation.splits import clip_groups, fold_split, stratified_folds, validation_split
from compressa_hf.sources.procedural import ProceduralSource

# Imbalanced on purpose: 7, 5, 9 and 3 clips, shuffled.
LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(4), [7, 5, 9, 3]))


@pytest.mark.parametrize("k", [2, 3])
def test_folds_are_stratified_disjoint_covering_and_seeded(k):
    folds = stratified_folds(LABELS, k, seed=0)
    assert folds.shape == LABELS.shape and set(folds.tolist()) == set(range(k))
    per_class = np.array([np.bincount(folds[LABELS == c], minlength=k) for c in range(4)])
    assert (per_class.max(1) - per_class.min(1) <= 1).all(), per_class  # every class spread evenly
    sizes = np.bincount(folds, minlength=k)
    assert sizes.max() - sizes.min() <= 1, sizes
    tests = [fold_split(folds, f)[1] for f in range(k)]
    assert sorted(np.concatenate(tests).tolist()) == list(range(len(LABELS)))  # disjoint and covering
    for f in range(k):
        train, test = fold_split(folds, f)
        assert not set(train.tolist()) & set(test.tolist()) and len(train) + len(test) == len(LABELS)
    assert (stratified_folds(list(LABELS), k, seed=0) == folds).all()  # deterministic, any array-like
    assert not (stratified_folds(LABELS, k, seed=1) == folds).all()


def test_folds_refuse_too_few_clips():
    with pytest.raises(ValueError, match=r"'d' \(label 3\): 3.*fewer folds"):
        stratified_folds(LABELS, 4, class_names=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="label 4: 0"):  # a class absent from the pool
        stratified_folds(LABELS, 2, num_classes=5)
    with pytest.raises(ValueError, match="at least 2 folds"):
        stratified_folds(LABELS, 1)
    with pytest.raises(ValueError, match="1-D"):
        stratified_folds(LABELS.reshape(2, -1), 2)
    with pytest.raises(ValueError, match="fold 3"):
        fold_split(stratified_folds(LABELS, 3), 3)


def test_validation_carve_is_stratified_and_seeded():
    train, held = validation_split(LABELS, 0.3, seed=0)
    assert sorted([*train.tolist(), *held.tolist()]) == list(range(len(LABELS)))
    for c, n in enumerate([7, 5, 9, 3]):
        n_held = int((LABELS[held] == c).sum())
        assert n_held == min(max(round(0.3 * n + 1e-9), 1), n - 1), (c, n_held)  # 2, 2, 3, 1
    again = validation_split(LABELS, 0.3, seed=0)
    assert (again[1] == held).all()
    assert not np.array_equal(validation_split(LABELS, 0.3, seed=1)[1], held)
    with pytest.raises(ValueError, match="fewer than 2"):
        validation_split([0, 0, 1], 0.5, class_names=["x", "y"])
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        validation_split(LABELS, 1.0)


# UCF101-named clips: class 0 has groups g01 (3 clips), g02 (2), g03 (1); class 1 has g01 (2), g04 (2).
UCF_IDS = [
    *(f"train/A/v_A_g01_c0{i}.avi" for i in range(1, 4)),
    *(f"train/A/v_A_g02_c0{i}.avi" for i in range(1, 3)),
    "train/A/v_A_g03_c01.avi",
    *(f"train/B/v_B_g01_c0{i}" for i in range(1, 3)),
    *(f"train/B/v_B_g04_c0{i}" for i in range(1, 3)),
]
UCF_LABELS = np.array([0] * 6 + [1] * 4)


def test_clip_groups_read_ucf101_names_or_a_pattern():
    assert clip_groups(UCF_IDS, "auto") == ["01", "01", "01", "02", "02", "03", "01", "01", "04", "04"]
    assert clip_groups(UCF_IDS, "none") is None
    assert clip_groups([*UCF_IDS, "train/A/extra.mp4"], "auto") is None  # not every clip UCF101-named: clip level
    assert clip_groups(["x/s1_a.mp4", "x/s2_b.mp4"], r"^(s\d+)_") == ["s1", "s2"]
    assert clip_groups(["x/s1_a.mp4"], r"s\d") == ["s1"]  # no capture group: the whole match
    with pytest.raises(ValueError, match="'b' does not match"):
        clip_groups(["x/s1_a.mp4", "x/b.mp4"], r"^(s\d+)_")
    with pytest.raises(ValueError, match="not a regular expression"):
        clip_groups(UCF_IDS, "(")


@pytest.mark.parametrize("seed", range(6))
def test_grouped_validation_carve_holds_out_whole_groups(seed):
    groups = clip_groups(UCF_IDS, "auto")
    train, held = validation_split(UCF_LABELS, 0.3, seed=seed, groups=groups)
    assert sorted([*train.tolist(), *held.tolist()]) == list(range(len(UCF_LABELS)))
    side = {}
    for i in range(len(UCF_LABELS)):
        key = (int(UCF_LABELS[i]), groups[i])
        side.setdefault(key, set()).add(i in set(held.tolist()))
    assert all(len(s) == 1 for s in side.values()), side  # no group on both sides
    for c, n in ((0, 6), (1, 4)):
        n_held = int((UCF_LABELS[held] == c).sum())
        assert 1 <= n_held < n  # every class both trains and is validated
        assert n_held >= max(round(0.3 * n), 1)  # the target reached here (the last group is never needed)
    assert np.array_equal(validation_split(UCF_LABELS, 0.3, seed=seed, groups=groups)[1], held)  # seeded


def test_grouped_validation_carve_refuses_a_class_of_one_group():
    groups = ["g1"] * 6 + ["g1", "g1", "g2", "g2"]
    with pytest.raises(ValueError, match=r"single group.*'A' \(label 0\)"):
        validation_split(UCF_LABELS, 0.3, groups=groups, class_names=["A", "B"])
    with pytest.raises(ValueError, match="3 groups for 10 clips"):
        validation_split(UCF_LABELS, 0.3, groups=["a", "b", "c"])


def test_arguments_name_the_protocol():
    from compressa_hf.evaluation.runner import EvaluateArguments

    assert EvaluateArguments().protocol == "split"
    assert EvaluateArguments(folds=5).protocol == "folds"
    assert EvaluateArguments(validation_fraction=0.3).protocol == "validation"
    with pytest.raises(ValueError, match="exclude each other"):
        EvaluateArguments(folds=5, validation_fraction=0.3)
    with pytest.raises(ValueError, match="got 1"):
        EvaluateArguments(folds=1)
    with pytest.raises(ValueError, match="got 1.5"):
        EvaluateArguments(validation_fraction=1.5)
    with pytest.raises(ValueError, match="--validation_groups '\\(' is not a regular expression"):
        EvaluateArguments(validation_fraction=0.3, validation_groups="(")


def _fold_cells(na_fold: int | None = None) -> list[dict]:
    """2 seeds x 3 folds of 4 clips for 'a' (right on 3 of 4) and 'b' (right on 1 of 4)."""
    cells = []
    for seed in range(2):
        for fold in range(3):
            for method, kind, correct in (("a", "selection", [1, 1, 1, 0]), ("b", "coreset", [1, 0, 0, 0])):
                cell = {"method": method, "kind": kind, "ratio": 1.0, "seed": seed, "fold": fold, "arch": "convnet"}
                if method == "b" and fold == na_fold:
                    cells.append({**cell, "status": "n/a", "reason": "budget"})
                    continue
                cells.append(
                    {
                        **cell,
                        "status": "ok",
                        "accuracy": sum(correct) / 4,
                        "correct": correct,
                        "train_accuracy": 1.0,
                        "stored_bytes": 100,
                        "budget_bytes": 100,
                        "compress_s": 1.0,
                        "train_s": 1.0,
                    }
                )
    return cells


def test_report_pools_folds_per_seed():
    meta = {
        "source": "toy",
        "test_clips": 12,
        "test_frames": 4,
        "chance": {"uniform": 0.5, "majority": 0.5},
        "budget_bytes": {"1": 100},
        "full_bytes": 10000,
        "train_config": {},
        "protocol": {
            "name": "folds",
            "folds": 3,
            "fold_seed": 0,
            "splits": ["train", "test"],
            "fold_train_clips": [8, 8, 8],
            "budget_bytes_per_fold": {"1": [99, 100, 100]},
            "full_bytes_per_fold": [9900, 10000, 10000],
        },
    }
    report = summarise(_fold_cells(), ["a", "b"], [1.0], ["convnet"], meta)
    a = report["tables"]["convnet"]["a"]["1"]
    assert a["clips"] == 12 and a["folds"] == [0, 1, 2, 0, 1, 2] and a["seeds"] == [0, 0, 0, 1, 1, 1]
    assert a["mean"] == pytest.approx(0.75)
    comp = report["significance"]["convnet"]["1"]["comparisons"]["a"]
    assert comp["against"] == "b" and comp["diff"] == pytest.approx(0.5) and comp["verdict"] == "better"
    md = to_markdown(report)
    assert "3-fold stratified cross-validation" in md and "pools 12 held-out clips" in md
    assert "1 % = 99 B - 100 B" in md
    # A method that misses the budget on one fold is n/a, not averaged over the other folds.
    b = summarise(_fold_cells(na_fold=1), ["a", "b"], [1.0], ["convnet"], meta)["tables"]["convnet"]["b"]["1"]
    assert b == {"status": "n/a", "reason": "fold 1: budget"}


SPEC = "procedural:num_classes=3,train_per_class=4,test_per_class=2,length=8,event_length=2,frame_size=16"
TINY = "--codec pixel --num_frames 4 --size 16 --epochs 1 --width 8 --progress false".split()


def _evaluate(out, *extra, source=SPEC):
    from compressa_hf.cli import main

    assert main(["--debug", "evaluate", "--source", source, *TINY, "--output", str(out), *extra]) == 0
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)


def _mtimes(root) -> dict[str, int]:
    return {
        os.path.relpath(os.path.join(d, f), root): os.stat(os.path.join(d, f)).st_mtime_ns
        for d, _, files in os.walk(root)
        for f in files
    }


def test_evaluate_folds_tests_every_clip_once_per_seed_and_resumes(tmp_path):
    out = tmp_path / "eval"
    # Tested on 2 frames, trained on 4: each split is read in both views, four pixel files.
    argv = ["--methods", "uniform,random", "--ratios", "k1", "--seeds", "2", "--test_frames", "2", "--folds", "3"]
    report = _evaluate(out, *argv)
    source = ProceduralSource(num_classes=3, train_per_class=4, test_per_class=2, length=8, event_length=2)
    every = [f"{s}:{r.clip_id}" for s in ("train", "test") for r in source.list_clips(s)]
    assert report["protocol"]["name"] == "folds" and report["protocol"]["fold_test_clips"] == [6, 6, 6]
    assert report["test_clips"] == 18 and sorted(report["held_out_ids"]) == sorted(every)  # each clip once
    assert report["chance"]["majority"] == pytest.approx(1 / 3)
    table = report["tables"]["convnet"]
    for method in ("uniform", "random", "full"):
        rk = "full" if method == "full" else f"{report['ratios'][0]:g}"
        assert table[method][rk]["status"] == "ok" and table[method][rk]["clips"] == 18
        for seed in range(2):
            cells = [c for c in report["cells"] if c["method"] == method and c["seed"] == seed]
            assert sorted(c["fold"] for c in cells) == [0, 1, 2]
            assert sum(len(c["correct"]) for c in cells) == 18
    # Budgets are per fold's training set (12 clips x 4 frames x 3 x 16 x 16 uint8 each, all folds the same here).
    assert report["protocol"]["full_bytes_per_fold"] == [12 * 4 * 3 * 16 * 16] * 3
    assert sorted(os.listdir(out / "cells" / "convnet" / "uniform"))[0].startswith("f0_r")
    pixels = {f for f in os.listdir(out / "work") if f.endswith(".safetensors")}
    assert pixels == {f"pixels_{v}.safetensors" for v in ("train_T4", "test_T2", "train_T2_test", "test_T4_train")}
    md = (out / "report.md").read_text()
    assert "3-fold stratified cross-validation" in md and "18 clips" in md

    before = {**_mtimes(out / "cells"), **_mtimes(out / "sets")}
    _evaluate(out, *argv)
    assert {**_mtimes(out / "cells"), **_mtimes(out / "sets")} == before  # nothing recomputed
    with pytest.raises(ValueError, match="protocol"):  # other folds are other cells: refused, not mixed
        _evaluate(out, *argv[:-1], "2")


class GuardedSource(ProceduralSource):
    """A procedural source whose test split must not be read."""

    name = "guarded"

    def list_clips(self, split):
        if split != "train":
            raise AssertionError(f"the {split!r} split was listed")
        return super().list_clips(split)


def test_evaluate_validation_never_reads_the_test_split(tmp_path, monkeypatch):
    from compressa_hf.sources import SOURCES

    monkeypatch.setitem(SOURCES, "guarded", f"{__name__}:GuardedSource")
    out = tmp_path / "val"
    source = SPEC.replace("procedural:", "guarded:")
    argv = ["--methods", "uniform", "--ratios", "k1", "--seeds", "1", "--full_data", "false"]
    report = _evaluate(out, *argv, "--validation_fraction", "0.5", source=source)
    protocol = report["protocol"]
    assert protocol["name"] == "validation" and protocol["train_clips"] == 6 and protocol["held_out_clips"] == 6
    rk = f"{report['ratios'][0]:g}"
    assert report["test_clips"] == 6 and report["tables"]["convnet"]["uniform"][rk]["clips"] == 6
    assert all(i.startswith("train:train/") for i in report["held_out_ids"])
    assert sorted(os.listdir(out / "cells" / "convnet" / "uniform")) == [f"val_r{rk}_s0.json"]
    assert "The test split was not read" in (out / "report.md").read_text()
    with pytest.raises(AssertionError, match="'test' split was listed"):  # the guard works
        _evaluate(tmp_path / "split", *argv, source=source)


def test_evaluate_validation_holds_out_whole_ucf101_groups(tmp_path):
    """UCF101-named clips: the carve keeps every group (one actor and scene) on one side; `none` turns it off."""
    from conftest import ramp_frames, write_video

    root = tmp_path / "ucf"
    for c, cls in enumerate(("Archery", "Biking")):
        for g, n in ((1, 2), (2, 2), (3, 2)):
            for j in range(n):
                frames = ramp_frames(10, 16, 16, seed=10 * c + g)
                write_video(root / "train" / cls / f"v_{cls}_g{g:02d}_c{j + 1:02d}.mp4", frames)
        write_video(root / "test" / cls / f"v_{cls}_g09_c01.mp4", ramp_frames(10, 16, 16, seed=c))
    argv = ["--methods", "uniform", "--ratios", "k1", "--seeds", "1", "--full_data", "false"]
    report = _evaluate(tmp_path / "val", *argv, "--validation_fraction", "0.3", source=f"videofolder:root={root}")
    protocol = report["protocol"]
    assert protocol["groups"] == "auto" and "in whole groups (6 in the split)" in protocol["description"]
    held = {i.split(":", 1)[1] for i in report["held_out_ids"]}
    assert len(held) == 4  # one group of 2 per class: round(0.3 * 6) = 2 clips

    def group(clip_id):
        return clip_id.rsplit("_c", 1)[0]

    train = {f"train/{cls}/{f[:-4]}" for cls in ("Archery", "Biking") for f in os.listdir(root / "train" / cls)} - held
    assert not {group(i) for i in held} & {group(i) for i in train}
    plain = _evaluate(
        tmp_path / "plain", *argv, "--validation_fraction", "0.3", "--validation_groups", "none",
        source=f"videofolder:root={root}",
    )  # fmt: skip
    assert plain["protocol"]["groups"] is None and "whole groups" not in plain["protocol"]["description"]
    with pytest.raises(ValueError, match="other settings \\(protocol\\)"):  # a run's carve cannot change on resume
        _evaluate(tmp_path / "val", *argv, "--validation_fraction", "0.3", "--validation_groups", "none",
                  source=f"videofolder:root={root}")  # fmt: skip
