"""What a new user on their own clips met in issue 24 (items 3, 4 and 6): plans that counted clips the cache knows are
unreadable, one-class sets written without a word, and warnings logged twice on a partial UCF101 download."""

from __future__ import annotations

import json
import logging

from compressa_hf.cli import main as cli
from tests.conftest import ramp_frames, write_video
from tests.test_sources_official import _write_lines, write_clip

TINY = ["--size", "16", "--num_frames", "4", "--codec", "pixel", "--num_workers", "0", "--batch_size", "4",
        "--guide_width", "8", "--passes", "1", "--guide_warmup_epochs", "0", "--preview", "false"]  # fmt: skip


def _videofolder(root, classes=("Jump", "Run", "Sit"), clips=2, corrupt=()) -> None:
    """`root/train/<class>/clip<j>.mp4`; the classes in `corrupt` get one more clip of garbage bytes."""
    for c, cls in enumerate(classes):
        for j in range(clips):
            write_video(root / "train" / cls / f"clip{j}.mp4", ramp_frames(8, 16, 16, seed=c + j))
        if cls in corrupt:
            (root / "train" / cls / "broken.mp4").write_bytes(b"\x00not a video" * 64)


def _summary(out: str) -> dict:
    return json.loads(out[out.index("\n{") + 1 :] if not out.startswith("{") else out)


def test_dry_run_leaves_out_clips_the_cache_knows_are_unreadable(tmp_path, capsys):
    _videofolder(tmp_path / "vf", corrupt=("Jump", "Run", "Sit"))
    argv = ["distill", "--source", str(tmp_path / "vf"), "--ratio", "k1", "--output", str(tmp_path / "s"),
            "--method", "uniform", *TINY[:8], "--preview", "false"]  # fmt: skip
    assert cli([*argv, "--dry-run"]) == 0  # nothing known yet: 9 files, 9 videos planned
    first = _summary(capsys.readouterr().out)
    assert first["plan"]["num_videos"] == 9 and first["unreadable_clips"] == 0

    assert cli(argv) == 0  # the real run finds the 3 broken files and keeps 6 videos
    real = json.loads((tmp_path / "s.work" / "summary_uniform_ratio_k1.json").read_text())
    assert real["output"]["videos"] == 6 and real["cache"]["clips_skipped"] == 3
    capsys.readouterr()

    assert cli([*argv, "--dry-run"]) == 0  # now the plan is the run's
    out = capsys.readouterr().out
    plan = _summary(out)
    assert plan["plan"]["num_videos"] == 6 and plan["unreadable_clips"] == 3
    assert plan["plan"]["stored_bytes"] == real["output"]["stored_bytes"]
    assert "3 clips the latent cache" in out and "found unreadable are left out of the plan" in out
    assert "no latent cache for these settings yet" not in out


def test_a_one_class_set_is_refused(tmp_path, capsys):
    _videofolder(tmp_path / "vf", classes=("ApplyEyeMakeup", "Run"))
    for f in (tmp_path / "vf" / "train" / "Run").iterdir():
        f.unlink()
    argv = ["distill", "--source", str(tmp_path / "vf"), "--ratio", "k1", "--output", str(tmp_path / "s"), *TINY]
    for extra in (["--dry-run"], []):
        assert cli([*argv, "--drop_empty_classes", *extra]) == 2
        err = capsys.readouterr().err
        assert "clips of one class only ('ApplyEyeMakeup')" in err and "teaches nothing to tell apart" in err
    assert not (tmp_path / "s").exists()

    _videofolder(tmp_path / "one", classes=("Jump",))  # a source of one class, no flag needed to get there
    assert cli(["distill", "--source", str(tmp_path / "one"), "--ratio", "k1", "--output", str(tmp_path / "o"),
                *TINY]) == 2  # fmt: skip
    assert "clips of one class only ('Jump')" in capsys.readouterr().err


def _partial_ucf101(root) -> None:
    """UCF101's layout with 'HandstandPushups' never downloaded and one 'Archery' clip missing."""
    classes = ["ApplyEyeMakeup", "Archery", "HandstandPushups"]
    for cls in classes[:2]:
        for g in ("08", "09"):
            write_clip(root / "UCF-101" / cls / f"v_{cls}_g{g}_c01.avi")
    lists = root / "ucfTrainTestlist"
    _write_lines(lists / "classInd.txt", [f"{i} {c}" for i, c in enumerate(classes, 1)], "\r\n")
    train = [f"{c}/v_{c}_g{g}_c01.avi {i}" for i, c in enumerate(classes, 1) for g in ("08", "09", "10")]
    _write_lines(lists / "trainlist01.txt", train, "\r\n")
    _write_lines(lists / "testlist01.txt", [f"{c}/v_{c}_g01_c01.avi" for c in classes], "\r\n")


def test_a_partial_ucf101_download_logs_each_warning_once(tmp_path, caplog):
    _partial_ucf101(tmp_path / "ucf")
    argv = ["distill", "--source", f"ucf101:root={tmp_path / 'ucf'}", "--ratio", "k1", "--output",
            str(tmp_path / "s"), "--drop_empty_classes", *TINY]  # fmt: skip
    with caplog.at_level(logging.WARNING):
        assert cli(argv) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    missing = [m for m in warnings if "listed clips are not under" in m]
    dropped = [m for m in warnings if "leaving out" in m]
    assert len(missing) == 1 and "5 of 9" in missing[0], warnings
    assert len(dropped) == 1 and "HandstandPushups" in dropped[0], warnings
    assert len(warnings) == len(set(warnings)), warnings  # no warning twice


def test_show_frames_the_kept_frame_not_its_looped_copies(tmp_path, monkeypatch):
    """A 3-frame clip looped to T = 8 repeats each frame; K = 1 keeps one of them, and only that one is framed."""
    from compressa_hf import strips as show_module

    for c, cls in enumerate(("Jump", "Run")):
        for j in range(2):
            write_video(tmp_path / "vf" / "train" / cls / f"clip{j}.mp4", ramp_frames(3, 16, 16, seed=c + j))
    repo = tmp_path / "s"
    argv = ["distill", "--source", str(tmp_path / "vf"), "--ratio", "k1", "--output", str(repo), "--method",
            "uniform", "--size", "16", "--num_frames", "8", "--codec", "pixel", "--num_workers", "0"]  # fmt: skip
    assert cli(argv) == 0
    drawn = []
    real = show_module.render_strip
    monkeypatch.setattr(
        show_module, "render_strip", lambda frames, kept, *a: drawn.append(kept) or real(frames, kept, *a)
    )
    pictures = show_module.show(show_module.ShowConfig(repo=str(repo), num_videos=4))
    assert len(pictures) == 4 and len(drawn) == 4
    for kept in drawn:  # sampled source frames [0, 1, 2, 0, 1, 2, 0, 1]; uniform K = 1 keeps position 4 = frame 1
        assert kept == [False, True, False, False, False, False, False, False]


def test_framed_positions_counts_each_kept_frame_once():
    from compressa_hf.strips import framed_positions

    assert framed_positions([0, 1, 2, 0, 1, 2], [2]) == [False, False, True, False, False, False]
    assert framed_positions([0, 1, 1, 1], [1, 1]) == [False, True, True, False]  # pad: the last frame kept twice
    assert framed_positions(list(range(4)), [0, 3]) == [True, False, False, True]


# -- compressa evaluate: Kinetics' validation split, the report's table and picture (item 8) -------------------------


def test_kinetics_val_is_the_validation_split_without_a_false_message(tmp_path, caplog):
    from compressa_hf.sources.kinetics import Kinetics400Source

    root = tmp_path / "k400"
    header = "label,youtube_id,time_start,time_end,split"
    _write_lines(root / "annotations" / "train.csv", [header, "abseiling,aaaaaaaaaaa,0,10,train"])
    _write_lines(root / "annotations" / "val.csv", [header, "abseiling,bbbbbbbbbbb,0,10,val"])
    write_clip(root / "val" / "abseiling" / "bbbbbbbbbbb_000000_000010.mp4")
    src = Kinetics400Source(root=str(root))
    with caplog.at_level(logging.INFO, logger="compressa_hf.sources.kinetics"):
        val = src.list_clips("val")
    assert [r.clip_id for r in val] == ["bbbbbbbbbbb_000000_000010"]
    assert not any("instead" in m or "no labelled" in m for m in caplog.messages), caplog.messages
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="compressa_hf.sources.kinetics"):
        assert src.list_clips("test") == val
    (message,) = caplog.messages
    assert "'test' reads the validation split" in message and "val.csv" in message


def _report(cells, methods):
    from compressa_hf.evaluation.report import summarise

    meta = {"source": "toy", "test_clips": 50, "test_frames": 8, "chance": {"uniform": 0.25, "majority": 0.3},
            "budget_bytes": {"0.5": 500, "1": 1000}, "full_bytes": 100000, "train_config": {}}  # fmt: skip
    return summarise(cells, methods, [0.5, 1.0], ["convnet"], meta)


def test_report_has_no_nan_and_one_row_per_pair_on_ties():
    from compressa_hf.evaluation.report import to_markdown
    from tests.test_evaluate import _cells

    cells = _cells()
    cells += [{**c, "method": "twin"} for c in cells if c["method"] == "good"]  # ties with 'good' everywhere
    report = _report(cells, ["ours", "good", "twin", "bad", "na"])
    md = to_markdown(report)
    assert "nan" not in md
    (na_row,) = [line for line in md.splitlines() if line.startswith("| na |")]
    assert na_row.endswith("| - | - |")  # no time for a method that ran nowhere
    for ratio in ("0.5", "1"):
        sig = report["significance"]["convnet"][ratio]
        assert sig["tied_best_baselines"] == ["good", "twin"]
        pairs = [frozenset((m, c["against"])) for m, c in sig["comparisons"].items()]
        assert len(pairs) == len(set(pairs))  # the pair good / twin is compared once, not twice mirrored
        assert sig["comparisons"]["good"]["against"] == "twin" and "twin" not in sig["comparisons"]
    rows = [line for line in md.splitlines() if line.startswith("| 0.5 % |")]
    assert len(rows) == len(set(rows)) and "Tied for the best baseline" in md


def test_report_points_do_not_hide_each_other(tmp_path, monkeypatch):
    import matplotlib.axes

    from compressa_hf.evaluation.report import plot
    from tests.test_evaluate import _cells

    cells = _cells()
    cells += [{**c, "method": "twin"} for c in cells if c["method"] == "good"]  # the same points as 'good'
    report = _report(cells, ["ours", "good", "twin", "bad", "na"])
    drawn = {}
    real = matplotlib.axes.Axes.errorbar

    def errorbar(self, x, y, *args, **kwargs):
        drawn[kwargs["label"]] = (list(x), kwargs["fmt"])
        return real(self, x, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", errorbar)
    plot(report, str(tmp_path / "r.png"))
    assert sorted(drawn) == ["bad", "good", "ours", "twin"]
    assert len({fmt for _, fmt in drawn.values()}) == 4  # a marker of its own per method
    for i in range(2):  # at each budget every method's point has an x of its own, within the budget's neighbourhood
        xs = [x[i] for x, _ in drawn.values()]
        assert len(set(xs)) == 4 and max(xs) / min(xs) < 2
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


# -- the dataset card's licence (item 9) -------------------------------------------------------------------------


def _card_header(repo) -> dict:
    import yaml

    text = (repo / "README.md").read_text()
    return yaml.safe_load(text.split("---\n")[1])


def test_known_sources_state_their_terms():
    from compressa_hf.sources import get_source_class

    terms = {
        name: get_source_class(name).LICENSE for name in ("ucf101", "hmdb51", "kinetics400", "ssv2", "procedural")
    }
    assert terms["hmdb51"]["license"] == "cc-by-4.0" and "serre-lab" in terms["hmdb51"]["note"]
    assert terms["kinetics400"]["license"] == "cc-by-4.0" and "YouTube" in terms["kinetics400"]["note"]
    assert terms["ucf101"]["license"] == "unknown" and "crcv.ucf.edu" in terms["ucf101"]["note"]
    assert terms["ssv2"]["license"] == "other" and terms["ssv2"]["license_name"] and terms["ssv2"]["license_link"]
    assert terms["procedural"]["license"] == "apache-2.0"
    assert get_source_class("videofolder").LICENSE is None  # your own clips: unknown unless you say


def test_hf_source_reads_its_own_licence(tmp_path):
    import datasets

    from compressa_hf.sources.hf_dataset import HFDatasetSource

    clips = [write_video(tmp_path / f"c{i}.mp4", ramp_frames(4, 16, 16, seed=i)) for i in range(2)]
    info = datasets.DatasetInfo(license="cc-by-sa-4.0")  # a loaded dataset (or a save_to_disk folder) with its info
    ds = datasets.Dataset.from_dict({"video": clips, "label": [0, 1]}, info=info)
    assert HFDatasetSource(datasets.DatasetDict({"train": ds})).license_info()["license"] == "cc-by-sa-4.0"
    plain = datasets.Dataset.from_dict({"video": clips, "label": [0, 1]})
    datasets.DatasetDict({"train": plain}).save_to_disk(str(tmp_path / "plain"))
    (tmp_path / "plain" / "README.md").write_text("---\nlicense: mit\n---\n# clips\n")
    terms = HFDatasetSource(str(tmp_path / "plain")).license_info()
    assert terms["license"] == "mit" and "card of the source dataset (plain)" in terms["note"]


def test_the_card_states_a_licence(tmp_path, capsys, caplog):
    from compressa_hf.hub import push_repo

    tiny = ["--size", "16", "--num_frames", "4", "--codec", "pixel", "--num_workers", "0", "--method", "uniform",
            "--preview", "false", "--ratio", "k1"]  # fmt: skip
    proc = "procedural:num_classes=2,train_per_class=2,length=8,frame_size=16"
    assert cli(["distill", "--source", proc, "--output", str(tmp_path / "p"), *tiny]) == 0
    assert _card_header(tmp_path / "p")["license"] == "apache-2.0"
    assert "**licence**: apache-2.0: generated by compressa_hf" in (tmp_path / "p" / "README.md").read_text()

    _videofolder(tmp_path / "vf", classes=("Jump", "Run"))
    out = tmp_path / "v"
    assert cli(["distill", "--source", str(tmp_path / "vf"), "--output", str(out), *tiny]) == 0
    assert _card_header(out)["license"] == "unknown"
    with caplog.at_level(logging.WARNING):
        summary = push_repo(str(out), "org/name", dry_run=True)
    assert any("states no licence" in w and "--license" in w for w in summary["warnings"])

    # Stated by the user; a second config with other terms makes the repo's licence `other`, each config saying its own.
    argv = ["distill", "--source", str(tmp_path / "vf"), "--output", str(out), *tiny]
    assert cli([*argv, "--license", "cc-by-nc-4.0"]) == 0
    assert _card_header(out)["license"] == "cc-by-nc-4.0"
    assert not push_repo(str(out), "org/name", dry_run=True)["warnings"]
    link = "https://example.org/terms"
    assert cli([*argv, "--license", "other", "--license_name", "my-terms", "--license_link", link,
                "--config_name", "mine"]) == 0  # fmt: skip
    assert cli([*argv, "--config_name", "mine", "--license", "other"]) == 2  # other without its name and link
    assert "--license other needs --license_name" in capsys.readouterr().err
    header = _card_header(out)
    assert (header["license"], header["license_name"]) == ("other", "several")
    card = (out / "README.md").read_text()
    assert "**licence**: cc-by-nc-4.0" in card and f"**licence**: other (my-terms, {link})" in card
    assert cli([*argv, "--license", "CC BY 4.0"]) == 2
    assert "not a Hub licence identifier" in capsys.readouterr().err


# -- VideoCompressa's state: memory or disk by its size (item 10) ---------------------------------------------------


def test_state_estimate_is_what_memory_state_allocates():
    import torch

    from compressa_hf.distillation.videocompressa import _Distiller, state_bytes
    from tests.test_videocompressa import CLASSES, TinyCodec, make_set, small_config

    latents, labels, _ = make_set()
    for levers in ({}, {"objective": "ce+dm", "latent_optimizer": "sgd", "frame_cache_dtype": "float32"}):
        cfg = small_config(state_storage="memory", **levers)
        run = _Distiller(latents, labels, TinyCodec(), cfg, CLASSES, torch.device("cpu"), 0, 1, None)
        held = sum(a.numel() * a.element_size() for a in run._arrays())
        n, t = latents.shape[:2]
        assert state_bytes(cfg, n, t, latents.shape[2:], (32, 32)) == held, levers


def test_auto_state_storage_picks_disk_over_its_limit_and_says_so(tmp_path, caplog):
    import torch

    from compressa_hf.distillation.videocompressa import distill
    from tests.test_videocompressa import CLASSES, TinyCodec, make_set, small_config

    latents, labels, _ = make_set()
    results = {}
    for limit in ("1KB", "1GB"):
        cfg = small_config(passes=1, state_memory_limit=limit)
        assert cfg.state_storage == "auto"  # the default
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="compressa_hf.distillation.videocompressa"):
            results[limit] = distill(latents, labels, TinyCodec(), cfg, CLASSES, False, tmp_path / limit)
        (line,) = [m for m in caplog.messages if m.startswith("state storage:")]
        storage = results[limit].summary()["state_storage"]
        assert storage["estimated_bytes"] > 1000 and storage["limit_bytes"] == {"1KB": 1000, "1GB": 10**9}[limit]
        assert "estimated state" in line and "limit" in line
    assert results["1KB"].storage["state_storage"] == "disk" and (tmp_path / "1KB" / "state_rank0" / "z.bin").exists()
    assert results["1GB"].storage["state_storage"] == "memory" and not (tmp_path / "1GB" / "state_rank0").exists()
    assert results["1KB"].config["state_storage"] == "disk"  # the config as it ran
    assert torch.equal(results["1KB"].latents, results["1GB"].latents)  # the storage changes no byte

    # A resumed run keeps the storage it started with, whatever the limit says now.
    more = small_config(passes=2, state_memory_limit="1GB")
    resumed = distill(latents, labels, TinyCodec(), more, CLASSES, False, tmp_path / "1KB", resume=True)
    assert resumed.storage["state_storage"] == "disk" and "checkpoint being resumed" in resumed.storage["reason"]


def test_distill_summary_states_the_storage_choice(tmp_path, caplog):
    proc = "procedural:num_classes=2,train_per_class=3,length=8,frame_size=16"
    argv = ["distill", "--source", proc, "--ratio", "k1", "--output", str(tmp_path / "s"), "--state_memory_limit",
            "2KB", *TINY]  # fmt: skip
    with caplog.at_level(logging.INFO):
        assert cli(argv) == 0
    summary = json.loads((tmp_path / "s.work" / "summary_ratio_k1.json").read_text())["distill"]["state_storage"]
    assert summary["state_storage"] == "disk" and summary["limit_bytes"] == 2000 and summary["estimated_bytes"] > 2000
    assert any(m.startswith("state storage: disk (auto)") for m in caplog.messages)
