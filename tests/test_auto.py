"""`compressa distill --method auto` (compressa_hf/evaluation/auto.py): the choice of method and allocation on a
validation split of the training split, never the test split, and the card that records it."""

from __future__ import annotations

import json

import pytest

from compressa_hf.cli import main as cli
from compressa_hf.evaluation import auto as auto_mod
from compressa_hf.evaluation.auto import AutoArguments, Candidate, candidates, choose
from compressa_hf.store import read_meta
from tests.test_distill_method import COMMON


def _fake_report(means: dict[str, float], ratio: float = 1.0) -> dict:
    """What `evaluate.runner.run` returns, for methods with these mean validation accuracies (None: n/a)."""
    rk = f"{ratio:g}"
    table, cells = {}, []
    for method, mean in means.items():
        if mean is None:
            table[method] = {rk: {"status": "n/a", "reason": "cannot"}}
            cells.append({"method": method, "status": "n/a", "reason": "cannot"})
            continue
        table[method] = {
            rk: {
                "status": "ok", "mean": mean, "std": 0.0, "accuracies": [mean], "stored_bytes": 100.0,
                "budget_bytes": 100, "compress_s": 0.0,
            }
        }  # fmt: skip
        cells.append({"method": method, "status": "ok", "rows": 12, "frames_per_row": 1})
    table["full"] = {"full": {"status": "ok", "mean": 0.9, "std": 0.0}}
    return {
        "ratios": [ratio], "tables": {"convnet": table}, "cells": cells, "test_clips": 4, "train_clips": 8,
        "protocol": {"name": "validation", "groups": None},
    }  # fmt: skip


class _Args:
    source, work_dir, ratio, split = "procedural", "/unused", "1.0", "train"
    codec, codec_dtype, num_frames, size, policy, num_workers = "pixel", "float32", 4, 32, "uniform", 0


def test_the_planner_picks_the_best_validation_score_on_a_hand_made_case(monkeypatch):
    """Validation means set by hand per (dtype, K) run: the best candidate wins whatever its place in the grid, a
    tie goes to the first in candidate order, n/a candidates are listed and never chosen."""
    scores = {
        ("uint8", None): {"uniform": 0.50, "dm": 0.60, "prism": None},
        ("uint4", None): {"uniform": 0.55, "dm": 0.75, "prism": None},
        ("uint8", 2): {"uniform": 0.75, "dm": 0.40},  # ties dm at uint4: dm comes first in candidate order
        ("uint4", 2): {"uniform": 0.30, "dm": 0.20},
    }
    calls = []

    def fake_run(eval_args, train_cfg):
        calls.append((eval_args.dtype, eval_args.frames_per_video, eval_args.methods, eval_args.validation_fraction))
        assert eval_args.validation_groups == "auto"
        assert eval_args.protocol == "validation"
        return _fake_report(scores[(eval_args.dtype, eval_args.frames_per_video)])

    monkeypatch.setattr("compressa_hf.evaluation.runner.run", fake_run)
    auto = AutoArguments(auto_methods="dm,uniform,prism", auto_dtypes="uint8,uint4", auto_frames_per_video="plan,2")
    selection = choose(_Args(), auto)
    assert selection["chosen"] == {
        "method": "dm",
        "dtype": "uint4",
        "frames_per_video": None,
        "soft_labels": None,
        "store_side": None,
        "mean": 0.75,
        "std": 0.0,
        "codec": "pixel",
        "ratio": "1.0",
    }
    # prism takes no fixed K: it is not run at K = 2, and listed as n/a with the reason
    assert [c[2] for c in calls] == ["dm,uniform,prism", "dm,uniform", "dm,uniform,prism", "dm,uniform"]
    assert all(c[3] == 0.3 for c in calls)
    rows = {(e["method"], e["dtype"], e["frames_per_video"]): e for e in selection["table"]}
    assert list(rows) == [(c.method, c.dtype, c.frames_per_video) for c in candidates(auto)]  # candidate order
    assert len(rows) == 12 and rows[("prism", "uint8", 2)]["status"] == "n/a"
    assert rows[("prism", "uint8", None)]["reason"] == "cannot"
    assert selection["full_data"] == {"mean": 0.9, "std": 0.0}
    assert "whole groups" not in auto_mod.card_text(selection)
    selection["protocol"]["groups"] = "auto"  # as the runner reports a carve of UCF101-named clips
    assert "training split held out in whole groups" in auto_mod.card_text(selection)

    scores[("uint8", 2)]["uniform"] = 0.80  # now strictly best
    assert choose(_Args(), auto)["chosen"]["method"] == "uniform"
    for key in scores:
        scores[key] = {m: None for m in scores[key]}
    with pytest.raises(ValueError, match="no candidate can be run"):
        choose(_Args(), auto)


def test_candidates_and_bad_options():
    auto = AutoArguments(auto_methods="uniform,dm", auto_dtypes="uint4", auto_frames_per_video="2,plan")
    assert candidates(auto) == [
        Candidate("uniform", "uint4", 2), Candidate("uniform", "uint4", None),
        Candidate("dm", "uint4", 2), Candidate("dm", "uint4", None),
    ]  # fmt: skip
    for bad, message in [
        (dict(auto_methods="full"), "auto_methods"),
        (dict(auto_methods="magic"), "auto_methods"),
        (dict(auto_dtypes="int4"), "auto_dtypes"),
        (dict(auto_frames_per_video="some"), "auto_frames_per_video"),
        (dict(auto_validation_fraction=1.0), "auto_validation_fraction"),
        (dict(auto_arch="vit"), "auto_arch"),
    ]:
        with pytest.raises(ValueError, match=message):
            AutoArguments(**bad)


def test_distill_auto_chooses_on_validation_never_reads_the_test_split_and_says_so(tmp_path, monkeypatch, capsys):
    from compressa_hf.sources.procedural import ProceduralSource

    listed, decoded = [], []
    real_list, real_read = ProceduralSource.list_clips, ProceduralSource.read_frames
    monkeypatch.setattr(
        ProceduralSource, "list_clips", lambda self, split: listed.append(split) or real_list(self, split)
    )
    monkeypatch.setattr(
        ProceduralSource,
        "read_frames",
        lambda self, ref, idx: decoded.append(ref.clip_id) or real_read(self, ref, idx),
    )
    monkeypatch.setenv("COMPRESSA_CACHE", str(tmp_path / "shared_cache"))
    out = tmp_path / "set"
    argv = [
        "distill", *COMMON, "--output", str(out), "--method", "auto", "--auto_methods", "uniform,random_frame",
        "--auto_dtypes", "uint8,uint4", "--auto_frames_per_video", "plan,1", "--auto_seeds", "1", "--auto_epochs", "2",
        "--auto_width", "8", "--auto_batch_size", "4",
    ]  # fmt: skip
    assert cli([*argv, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "--method auto: 8 candidates" in dry and "into config auto_ratio_1" in dry
    assert cli(argv) == 0, capsys.readouterr().err[-3000:]
    summary = json.loads(capsys.readouterr().out)
    assert "test" not in listed and decoded and not [c for c in decoded if c.startswith("test/")]

    selection = summary["auto"]
    chosen = selection["chosen"]
    ok = [e for e in selection["table"] if e["status"] == "ok"]
    assert len(selection["table"]) == 8 and len(ok) == 8
    assert chosen["mean"] == max(e["mean"] for e in ok)
    first_best = next(e for e in ok if e["mean"] == chosen["mean"])
    assert all(chosen[k] == first_best[k] for k in auto_mod.KEY_FIELDS)
    meta = read_meta(out)["auto_ratio_1"]
    assert meta["method"] == chosen["method"] and meta["latents_dtype"] == chosen["dtype"]
    assert meta["auto"]["chosen"] == chosen and meta["stored_bytes"] <= meta["budget_bytes"]
    card = (out / "README.md").read_text()
    assert "Chosen by `compressa distill --method auto`" in card and "The test split was not read" in card
    assert "| method | dtype | K | labels | stored side | validation accuracy % mean +- std (per seed) |" in card
    assert "| full data (reference) |" in card
    # every candidate's validation run is a resumable `compressa evaluate` run in the work folder
    assert (tmp_path / "set.work" / "auto" / "uint4_k1" / "report.json").exists()


def test_auto_refuses_what_it_cannot_use(tmp_path):
    base = ["--debug", "distill", *COMMON, "--output", str(tmp_path / "s"), "--method", "auto"]
    with pytest.raises(ValueError, match="no VideoCompressaConfig flags"):
        cli([*base, "--passes", "2"])
    with pytest.raises(ValueError, match="below the frame side"):  # checked before any work, in a dry run too
        cli([*base, "--codec", "pixel", "--auto_store_sides", "48", "--dry-run"])
    with pytest.raises(ValueError, match="file of"):
        cli([*base, "--method_options", "iterations=2"])
    no_ratio = [a for a in base if a not in ("--ratio", "1.0")]
    with pytest.raises(ValueError, match="needs --ratio"):
        cli(no_ratio)
    assert auto_mod.AUTO == "auto"


def test_soft_labels_compete_as_candidates_and_a_soft_winner_is_published_with_its_labels(
    monkeypatch, tmp_path, capsys
):
    seen = []

    def fake_run(eval_args, train_cfg):
        seen.append((eval_args.soft_labels, eval_args.soft_label_dtype, eval_args.soft_label_teacher))
        return _fake_report({"uniform": 0.5, "uniform+soft": 0.7, "dm": 0.6, "dm+soft": 0.65})

    monkeypatch.setattr("compressa_hf.evaluation.runner.run", fake_run)
    auto = AutoArguments(auto_methods="uniform,dm", auto_dtypes="uint8", auto_soft_labels="none,uint8")
    selection = choose(_Args(), auto)
    assert seen == [(True, "uint8", "convnet")]
    assert (selection["chosen"]["method"], selection["chosen"]["soft_labels"]) == ("uniform", "uint8")
    assert [(e["method"], e["soft_labels"]) for e in selection["table"]] == [
        ("uniform", None), ("uniform", "uint8"), ("dm", None), ("dm", "uint8"),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="at most one soft-label dtype"):
        AutoArguments(auto_soft_labels="float16,uint8")

    # The distilled winner stores the teacher's labels, its teacher trained with the candidates' protocol.
    monkeypatch.setattr(auto_mod, "choose", lambda args, auto, seed=0, method_config=None: selection)
    out = tmp_path / "set"
    argv = ["distill", *COMMON, "--output", str(out), "--cache_dir", str(tmp_path / "cache"), "--method", "auto",
            "--auto_epochs", "2", "--auto_width", "8", "--auto_batch_size", "4"]  # fmt: skip
    assert cli(argv) == 0, capsys.readouterr().err[-3000:]
    meta = read_meta(out)["auto_ratio_1"]
    assert meta["method"] == "uniform" and meta["soft_labels"]["dtype"] == "uint8"
    teacher = json.loads(capsys.readouterr().out)["soft_labels"]["teacher"]
    assert teacher["arch"] == "convnet"
    from safetensors import safe_open

    with safe_open(str(tmp_path / "set.work" / "teachers" / "convnet_s0.safetensors"), "pt") as f:
        trained = json.loads(f.metadata()["teacher"])["train_config"]
    assert (trained["epochs"], trained["width"], trained["batch_size"]) == (2, 8, 4)


def test_stored_sides_compete_at_the_exact_bytes_of_the_ratio(monkeypatch, caplog):
    import logging
    from fractions import Fraction

    seen = []

    def fake_run(eval_args, train_cfg):
        seen.append((eval_args.codec, eval_args.ratios))
        small = eval_args.codec.startswith("resize:")
        return _fake_report({"uniform": 0.7 if small else 0.6}, ratio=float(Fraction(eval_args.ratios)))

    monkeypatch.setattr("compressa_hf.evaluation.runner.run", fake_run)
    args = _Args()
    args.ratio = "k1"  # one plain 32-px pixel-codec frame (3 x 4 x 4 = 48 bytes) per 4 x 3 x 32 x 32-byte clip
    auto = AutoArguments(auto_methods="uniform", auto_dtypes="uint8", auto_store_sides="size,16")
    with caplog.at_level(logging.INFO, logger="compressa_hf.evaluation.auto"):
        selection = choose(args, auto)
    assert "chose uniform (uint8, K=plan, stored at 16 px, hard labels): validation accuracy 70.0 %" in caplog.text
    assert seen == [("pixel", "25/64"), ("resize:16/32:pixel", "25/64")]  # k1 = 48 / 12,288 = 0.390625 %
    chosen = selection["chosen"]
    assert (chosen["store_side"], chosen["codec"], chosen["ratio"]) == (16, "resize:16/32:pixel", "25/64")
    assert "| uniform | uint8 | plan | hard | 16 px |" in auto_mod.table_markdown(selection)
    with pytest.raises(ValueError, match="auto_store_sides"):
        AutoArguments(auto_store_sides="half")
