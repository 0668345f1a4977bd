"""Trajectory-matching baselines: the experts and MTT's loop (`distillation/trajectories.py`), MTT, DATM, and VDSD's static /
dynamic memory learned by DM and by MTT (`distillation/static_dynamic.py`).

Tiny data throughout: 3 classes x 4 clips of T = 4 frames at 16 x 16 through PixelCodec -> latents (12, 4, 3, 2, 2).
"""

from __future__ import annotations

import os

import pytest
import torch

from compressa_hf.codecs.pixel import PixelCodec
from compressa_hf.distillation import trajectories
from compressa_hf.distillation.budget import ratio_for_frames
from compressa_hf.distillation.methods import compress, get_method
from compressa_hf.distillation.methods import datm as datm_mod
from compressa_hf.distillation.methods.base import MethodContext
from compressa_hf.distillation.soft_labels import targets
from compressa_hf.distillation.static_dynamic import PAIRS, combiner_params, plan_memory
from compressa_hf.distillation.trajectories import (
    ExpertOptions,
    FlatNet,
    LatentConvNet,
    MatchOptions,
    expert_trajectories,
    match_trajectories,
    trajectory_loss,
)
from tests.conftest import class_pattern_latents

T, SIZE, LATENT = 4, 16, (3, 2, 2)
EXPERTS = {"num_experts": 2, "train_epochs": 3, "batch_train": 4, "width": 8, "depth": 2}
FAST = {**EXPERTS, "iterations": 4, "syn_steps": 3, "max_start_epoch": 2}
FAST_DATM = {**FAST, "current_max_start_epoch": 1, "expansion_end_iteration": 2}
FAST_DM_VDSD = {"iterations": 3, "width": 8, "depth": 2, "batch_real": 4}
OPTIONS = {"mtt": FAST, "datm": FAST_DATM, "mtt_vdsd": FAST, "dm_vdsd": FAST_DM_VDSD}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny nets: a second thread only adds OpenMP spin-waits on a busy 2-core CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    """12 clips: a smooth pattern per class, a per-clip change over time and a little noise."""
    return class_pattern_latents(12, T, SIZE, LATENT)


def make_ctx(data, frames: float, **kw) -> MethodContext:
    """A context at the exact ratio of `frames` uint8 latent frames per clip."""
    latents, labels = data
    ratio = float(ratio_for_frames(1, T, SIZE, LATENT)) * frames
    return MethodContext(
        latents=latents, labels=labels, num_classes=3, codec=PixelCodec(), ratio=ratio, frame_size=(SIZE, SIZE), **kw
    )


@pytest.fixture
def count_trainings(monkeypatch):
    """Counts `train_expert` calls (the one place an expert is trained)."""
    calls = []
    real = trajectories.train_expert

    def counted(*args, **kwargs):
        calls.append(args[4] if len(args) > 4 else kwargs["index"])
        return real(*args, **kwargs)

    monkeypatch.setattr(trajectories, "train_expert", counted)
    return calls


# ------------------------------------------------------------------------------------------ experts and matching


def test_flat_net_matches_the_module(data):
    net = LatentConvNet(3, 3, (2, 2), width=8, depth=2).reset(torch.Generator().manual_seed(0))
    flat = FlatNet(net)
    x = data[0][:5].float()
    assert flat.num_params == sum(p.numel() for p in net.parameters())
    assert torch.allclose(flat(flat.flatten(), x), net(x))


def test_experts_are_reused_resumed_and_recomputed_on_a_change(data, tmp_path, count_trainings):
    latents, labels = data
    opts = ExpertOptions(**EXPERTS)
    first, record = expert_trajectories(latents, labels, 3, opts, str(tmp_path))
    assert count_trainings == [0, 1] and record["trained"] == 2 and len(first) == 2
    assert first[0].shape == (EXPERTS["train_epochs"] + 1, FlatNet(LatentConvNet(3, 3, (2, 2), 8, 2)).num_params)
    assert not torch.equal(first[0][0], first[0][-1]) and not torch.equal(first[0], first[1])
    key = record["key"]
    folder = os.path.join(tmp_path, key)
    mtimes = {f: os.path.getmtime(os.path.join(folder, f)) for f in os.listdir(folder)}

    again, record = expert_trajectories(latents, labels, 3, opts, str(tmp_path))  # a second run: nothing trained
    assert count_trainings == [0, 1] and record["reused"] == 2 and record["trained"] == 0
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert {f: os.path.getmtime(os.path.join(folder, f)) for f in os.listdir(folder)} == mtimes

    os.remove(os.path.join(folder, "expert_0001.safetensors"))  # killed before expert 1 was saved: only it trains
    more = ExpertOptions(**{**EXPERTS, "num_experts": 3})  # and more experts reuse the first ones
    resumed, _ = expert_trajectories(latents, labels, 3, more, str(tmp_path))
    assert count_trainings == [0, 1, 1, 2]
    assert torch.equal(resumed[1], first[1])  # expert i depends on (expert_seed, i) alone

    _, record = expert_trajectories(
        latents, labels, 3, ExpertOptions(**{**EXPERTS, "lr_teacher": 0.02}), str(tmp_path)
    )
    assert count_trainings == [0, 1, 1, 2, 0, 1] and record["key"] != key
    expert_trajectories(latents[1:], labels[1:], 3, opts, str(tmp_path))
    assert len(count_trainings) == 8  # other clips: other experts
    assert len(os.listdir(tmp_path)) == 3


def test_mtt_matching_loss_falls_on_a_toy_case(data):
    """Synthetic clips of noise learn to carry a student along the experts' segments: the normalised distance over
    every (expert, start epoch) pair, with the same full batches and student lr before and after, falls by over 30 %
    (about 40 % here). The student lr is fixed so that only the clips explain the fall."""
    latents, labels = data
    opts = MatchOptions(**{**FAST, "iterations": 40, "max_start_epoch": 3, "train_lr": False})
    experts, _ = expert_trajectories(latents, labels, 3, opts, None)
    student = FlatNet(LatentConvNet(3, 3, (2, 2), opts.width, opts.depth))
    syn_labels = torch.arange(6) % 3
    syn = torch.randn(6, 1, *LATENT, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    start = syn.detach().clone()

    def distance(clips: torch.Tensor) -> float:
        lr = torch.tensor(opts.lr_teacher)
        pairs = [(e, s) for e in experts for s in range(opts.max_start_epoch)]
        batches = [(clips, syn_labels)] * opts.syn_steps
        return sum(trajectory_loss(student, e[s], e[s + 1], batches, lr).item() for e, s in pairs) / len(pairs)

    optimizer = torch.optim.Adam([syn], lr=0.1)
    result = match_trajectories(experts, student, lambda rows: (syn[rows], syn_labels[rows]), 6, [optimizer], opts, 0)
    assert len(result.losses) == 40 and result.skipped == 0 and result.syn_lr == pytest.approx(opts.lr_teacher)
    before, after = distance(start), distance(syn.detach())
    assert after < 0.7 * before, (before, after)


def test_match_options_check_the_experts_cover_the_segments():
    with pytest.raises(ValueError, match="train_epochs"):
        MatchOptions(train_epochs=5, max_start_epoch=5, expert_epochs=2)
    with pytest.raises(ValueError, match="lr_teacher"):
        ExpertOptions(lr_teacher=0)


# ------------------------------------------------------------------------------------------------------ methods


@pytest.mark.parametrize("method", ["mtt", "datm", "dm_vdsd", "mtt_vdsd"])
def test_methods_are_registered_synthesis_and_reject_unknown_options(method, data):
    assert get_method(method).KIND == "synthesis"
    with pytest.raises(ValueError, match="unknown option"):
        compress(method, make_ctx(data, 2, options={"steps": 3}))


def test_mtt_stores_the_planners_bytes_and_shares_experts_with_datm(data, tmp_path, count_trainings):
    ctx = make_ctx(data, 2, options=FAST, shared_dir=str(tmp_path), seed=1)
    cset = compress("mtt", ctx)
    plan = ctx.plan()
    assert cset.stored_bytes == plan.stored_bytes == ctx.budget_bytes
    assert tuple(cset.latents.shape) == (12, 2, *LATENT) and set(cset.stored) == {"latents"}
    assert cset.info["mtt"]["experts"]["trained"] == 2 and cset.info["mtt"]["iterations"] == FAST["iterations"]
    assert (cset.source_videos >= 0).all() and "drift_mean_steps" in cset.info["diagnostics"]
    assert count_trainings == [0, 1]
    # Another seed, ratio and method of the run reuse the experts.
    other = compress("datm", make_ctx(data, 1.5, options=FAST_DATM, shared_dir=str(tmp_path), seed=2))
    assert other.info["datm"]["experts"]["reused"] == 2 and count_trainings == [0, 1]
    again = compress("mtt", make_ctx(data, 2, options=FAST, shared_dir=str(tmp_path), seed=1))
    assert torch.equal(again.stored["latents"], cset.stored["latents"])  # deterministic for a seed


def test_datm_pays_for_its_soft_labels_and_starts_from_correct_clips(data):
    ctx = make_ctx(data, 2, options=FAST_DATM)
    cset = compress("datm", ctx)
    plan = ctx.plan()  # hard labels: every video; DATM's labels cost 3 classes x 2 bytes a row, so it drops some
    soft = cset.stored["soft_labels"]
    assert soft.dtype == torch.float16 and soft.shape == (cset.num_rows, 3)
    assert cset.num_rows < plan.total_videos
    assert cset.stored_bytes == cset.num_rows * (2 * 12 + 3 * 2) <= ctx.budget_bytes
    assert torch.allclose(soft.float().sum(dim=1), torch.ones(cset.num_rows), atol=3e-3)
    assert torch.allclose(targets(cset), soft.float(), atol=3e-3)  # what `compressa evaluate` trains on
    assert cset.info["datm"]["init_correct"] <= cset.num_rows
    with pytest.raises(ValueError, match="own soft labels"):
        compress("datm", make_ctx(data, 2, options=FAST_DATM, label_bytes_per_video=6))


def test_datm_window_and_correct_first():
    opts = datm_mod.Options(max_start_epoch=10, current_max_start_epoch=4, expansion_end_iteration=6)
    assert [datm_mod.start_window(opts, it)[1] for it in (0, 3, 6, 50)] == [4, 7, 10, 10]
    with pytest.raises(ValueError, match="current_max_start_epoch"):
        datm_mod.Options(current_max_start_epoch=11, max_start_epoch=10)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    correct = torch.tensor([[False, False, True, True, False, False], [False, True, True, False, False, True]])
    # class 0: clip 2 (expert 0), then clip 1 (expert 1); class 1: clip 3 (expert 0) only, then clip 5 (expert 1).
    assert datm_mod.correct_first(labels, correct, [2, 2], seed=0).tolist() == [1, 2, 3, 5]
    assert datm_mod.correct_first(labels, correct, [1, 3], seed=0).tolist() == [2, 3, 4, 5]


@pytest.mark.parametrize("method", ["dm_vdsd", "mtt_vdsd"])
def test_vdsd_memory_bytes_are_counted_exactly(method, data):
    """The stored tensors are the memories at uint8 and the float16 combiner, nothing else; their bytes are the plan's,
    the largest slot count that fits; the rows are every (static, dynamic) choice of every slot, T frames each."""
    ctx = make_ctx(data, 3, options={**OPTIONS[method], "combiner_kernel": 1})
    cset = compress(method, ctx)
    plan = cset.info["memory_plan"]
    c, h, w = LATENT
    vpc = plan["videos_per_class"]
    assert set(cset.stored) == {"static", "dynamic", "combiner.weight", "combiner.bias"}
    assert cset.stored["static"].shape == (3 * PAIRS * vpc, c, h, w) and cset.stored["static"].dtype == torch.uint8
    assert cset.stored["dynamic"].shape == (3, PAIRS * vpc, T, 1, h, w) and cset.stored["dynamic"].dtype == torch.uint8
    assert cset.stored["combiner.weight"].dtype == torch.float16
    exact = 3 * PAIRS * vpc * (c * h * w) + 3 * PAIRS * vpc * (T * h * w) + 2 * combiner_params(c, 1)
    assert cset.stored_bytes == exact == plan["stored_bytes"] <= ctx.budget_bytes
    assert ctx.budget_bytes - exact < 3 * PAIRS * (c * h * w + T * h * w)  # one more slot per class would not fit
    assert tuple(cset.latents.shape) == (3 * vpc * PAIRS**2, T, c, h, w)
    assert cset.labels.tolist() == sorted(cset.labels.tolist()) and (cset.source_videos == -1).all()
    assert cset.info["diagnostics"] == {}  # synthetic rows: nothing to compare with a cached frame


def test_vdsd_identity_combiner_starts_from_the_static_frames(data):
    """With no updates, the identity combiner makes every row its static frame repeated over T; a budget below one
    slot per class and its combiner is an error naming the ratio that works."""
    ctx = make_ctx(data, 3, options={**FAST_DM_VDSD, "iterations": 0, "combiner_kernel": 1})
    cset = compress("dm_vdsd", ctx)
    from compressa_hf.codecs.base import uint8_to_latents

    static = uint8_to_latents(cset.stored["static"])
    first = cset.latents[0]  # slot 0 of class 0, static 0
    assert torch.allclose(first, static[0].expand(T, -1, -1, -1), atol=1e-2)
    assert torch.equal(cset.latents[0], cset.latents[1])  # same static, other dynamic: ignored at the start
    assert not torch.allclose(cset.latents[0], cset.latents[2])  # the other static
    with pytest.raises(ValueError, match="smallest ratio that can is"):
        plan_memory(make_ctx(data, 1), kernel=3)


def test_evaluate_trains_on_every_new_method_and_trains_the_experts_once(tmp_path, count_trainings):
    """`compressa evaluate` with the four methods, two seeds: every cell trains a network on its set, and the
    experts are trained once for the run (MTT, DATM and MTT+VDSD, both seeds share them)."""
    import json

    from compressa_hf.evaluation.runner import EvaluateArguments, run
    from compressa_hf.evaluation.train import TrainConfig

    config = tmp_path / "methods.json"
    config.write_text(json.dumps({m: {**o, "combiner_kernel": 1} if "vdsd" in m else o for m, o in OPTIONS.items()}))
    args = EvaluateArguments(
        source="procedural:num_classes=3,train_per_class=4,test_per_class=2,length=8,frame_size=16",
        output=str(tmp_path / "eval"),
        methods="mtt,datm,dm_vdsd,mtt_vdsd",
        ratios="k3",
        seeds=2,
        full_data=False,
        codec="pixel",
        num_frames=4,
        size=16,
        num_workers=0,
        method_config=str(config),
        device="cpu",
        progress=False,
    )
    report = run(args, TrainConfig(epochs=1, batch_size=8, width=8))
    cells = report["cells"]
    assert len(cells) == 8 and all(c["status"] == "ok" for c in cells), [c.get("reason") for c in cells]
    assert all(c["stored_bytes"] <= c["budget_bytes"] for c in cells)
    assert count_trainings == [0, 1]
    assert os.listdir(tmp_path / "eval" / "work" / "shared" / "experts")


def test_distill_keeps_experts_in_its_work_folder_and_says_vdsd_rows_are_synthetic(tmp_path, count_trainings, capsys):
    """`compressa distill --method mtt_vdsd`, then `--method mtt` with the same `--work_dir`: the second run trains no
    expert; the first's card says its rows are synthetic and that it stores the memories, not the rows; its
    `--dry-run` plans exactly the memory, bytes and rows the run then stores."""
    from compressa_hf.cli import main as cli
    from compressa_hf.store import read_meta

    options = "num_experts=2,train_epochs=2,max_start_epoch=2,iterations=2,syn_steps=2,width=8"
    common = ["distill", "--source", "procedural:num_classes=3,train_per_class=4,length=16,frame_size=32"]
    common += ["--size", "32", "--num_frames", "4", "--codec", "pixel", "--num_workers", "0", "--ratio", "1.0"]
    common += [
        "--cache_dir",
        str(tmp_path / "cache"),
        "--work_dir",
        str(tmp_path / "work"),
        "--method_options",
        options,
    ]
    assert cli([*common, "--method", "mtt_vdsd", "--output", str(tmp_path / "a"), "--dry-run"]) == 0
    planned = capsys.readouterr().out
    assert count_trainings == [] and not (tmp_path / "a").exists()
    assert "static / dynamic memory (VDSD): 1 slot(s) per class x 3 classes" in planned and "plan: K=" not in planned
    assert cli([*common, "--method", "mtt_vdsd", "--output", str(tmp_path / "a")]) == 0
    assert count_trainings == [0, 1]
    meta = read_meta(str(tmp_path / "a"))["mtt_vdsd_ratio_1"]
    assert f"{meta['stored_bytes']:,} of {meta['budget_bytes']:,} bytes" in planned
    assert f"published as {meta['num_videos']} rows of 4 frames" in planned
    assert meta["row_kinds"] == {"real": 0, "derived": 0, "synthetic": 12} and "synthetic" in meta["rows"]
    assert "static" in meta["published_note"] and "combiner.weight" in meta["published_note"]
    assert meta["stored_bytes"] <= meta["budget_bytes"] < meta["latent_bytes"]
    assert cli([*common, "--method", "mtt", "--output", str(tmp_path / "b")]) == 0
    assert count_trainings == [0, 1]
    assert read_meta(str(tmp_path / "b"))["mtt_ratio_1"]["row_kinds"]["derived"] > 0


@pytest.mark.parametrize("method", ["mtt", "dm_vdsd"])
def test_teacher_soft_labels_fit_in_the_room_the_methods_leave(method, data):
    """`<method>+soft` rows of `compressa evaluate`: with label bytes reserved per row, a teacher's soft labels for
    every row the set holds fit the budget (for VDSD, one per video made, four per slot)."""
    from compressa_hf.distillation.soft_labels import relabel
    from compressa_hf.nets import build_net

    options = {**OPTIONS[method], "combiner_kernel": 1} if "vdsd" in method else OPTIONS[method]
    ctx = make_ctx(data, 3, options=options, label_bytes_per_video=6)
    cset = compress(method, ctx)
    teacher = build_net("convnet", 3, (SIZE, SIZE), width=8, depth=1)
    soft = relabel(cset, teacher, PixelCodec(), ctx.budget_bytes)
    assert soft.stored_bytes == cset.stored_bytes + cset.num_rows * 6 <= ctx.budget_bytes
