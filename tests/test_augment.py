"""DSA-style augmentation of training clips (compressa_hf/evaluation/augment.py) and `compressa evaluate --augment`."""

from __future__ import annotations

import json

import pytest
import torch

from compressa_hf.evaluation.augment import DSA_STRATEGY, TRANSFORMS, Augmentation

SPATIAL = [t for t in TRANSFORMS if t != "temporal"]


def _clips(b=12, k=4, h=16, w=20, seed=0):
    return torch.rand(b, k, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _run(aug: Augmentation, x: torch.Tensor, seed: int = 7) -> torch.Tensor:
    return aug(x.clone(), torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("strategy", [*SPATIAL, "color_crop_cutout_flip_scale_rotate"])
@pytest.mark.parametrize("mode", ["single", "all"])
def test_every_frame_of_a_clip_gets_the_same_transform(strategy, mode):
    """Frame k of an augmented clip is what the same draw does to frame k alone: one draw per clip, all frames."""
    aug, x = Augmentation(strategy, mode), _clips()
    whole = _run(aug, x)
    for k in range(x.shape[1]):
        alone = _run(aug, x[:, k : k + 1])
        torch.testing.assert_close(whole[:, k], alone[:, 0], rtol=0, atol=1e-6)
    # and a clip of identical frames stays a clip of identical frames
    same = _run(aug, x[:, :1].expand(-1, 4, -1, -1, -1))
    assert torch.equal(same, same[:, :1].expand_as(same))


@pytest.mark.parametrize("strategy", list(TRANSFORMS))
def test_each_transform_changes_clips_and_repeats_for_a_seed(strategy):
    aug, x = Augmentation(strategy, "all"), _clips()
    out = _run(aug, x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not torch.equal(out, x)
    assert torch.equal(out, _run(aug, x))  # same generator seed, same clips
    assert not torch.equal(out, _run(aug, x, seed=8))


def test_crop_is_an_integer_shift_with_zeros_shifted_in():
    x = _clips(b=16, k=2, h=16, w=16)
    out = _run(Augmentation("crop"), x)
    for i in range(len(x)):
        found = []
        for dy in range(-2, 3):  # 0.125 x 16 = 2 pixels each way
            for dx in range(-2, 3):
                shifted = torch.zeros_like(x[i])
                ys, xs = slice(max(0, -dy), 16 - max(0, dy)), slice(max(0, -dx), 16 - max(0, dx))
                yr, xr = slice(max(0, dy), 16 - max(0, -dy)), slice(max(0, dx), 16 - max(0, -dx))
                shifted[..., ys, xs] = x[i][..., yr, xr]
                if torch.equal(out[i], shifted):
                    found.append((dy, dx))
        assert len(found) == 1, (i, found)


def test_temporal_jitter_shifts_the_frame_order_by_at_most_one():
    x = _clips(b=64, k=4)
    out = _run(Augmentation("temporal"), x)
    shifts = []
    for i in range(len(x)):
        matches = [s for s in (-1, 0, 1) if torch.equal(out[i], x[i][(torch.arange(4) + s).clamp(0, 3)])]
        assert len(matches) == 1
        shifts += matches
    assert set(shifts) == {-1, 0, 1}
    one = _clips(k=1)
    assert torch.equal(_run(Augmentation("temporal"), one), one)


def test_single_mode_applies_one_transform_per_batch():
    """DSA's 'S' mode: one transform of the strategy per call, drawn from the generator; over many calls every one."""
    x = _clips(b=4, k=1)
    seen = set()
    for seed in range(40):
        out = _run(Augmentation("flip_cutout", "single"), x, seed)
        flipped = [bool(torch.equal(out[i], x[i].flip(-1))) for i in range(4)]
        holes = [bool((out[i] == 0).any()) for i in range(4)]
        assert not (any(flipped) and any(holes))  # never both in one call
        seen |= {"flip"} if any(flipped) else set()
        seen |= {"cutout"} if any(holes) else set()
    assert seen == {"flip", "cutout"}


def test_dsa_names_its_transforms_and_bad_names_are_refused():
    assert Augmentation("dsa").transforms == DSA_STRATEGY.split("_")
    with pytest.raises(ValueError, match="unknown augmentation.*'blur'"):
        Augmentation("flip_blur")
    with pytest.raises(ValueError, match="mode"):
        Augmentation("flip", "some")
    with pytest.raises(ValueError, match="unknown augmentation"):
        Augmentation("")


def test_evaluate_augment_rows_train_on_the_same_sets_and_resume(tmp_path, monkeypatch):
    from compressa_hf.distillation import methods as methods_mod
    from tests.test_evaluate import _evaluate

    calls = []
    real = methods_mod.compress
    monkeypatch.setattr(methods_mod, "compress", lambda name, ctx: calls.append(name) or real(name, ctx))
    out = tmp_path / "eval"
    args = ("--methods", "uniform,random", "--ratios", "k2", "--seeds", "1", "--augment", "dsa")
    report = _evaluate(out, *args)
    assert report["methods"] == ["uniform", "random", "uniform+aug", "random+aug", "full+aug"]
    assert sorted(calls) == ["full", "full", "random", "uniform"]  # each set made once (full: no set file)
    assert not (out / "sets" / "uniform+aug").exists()
    rk = f"{report['ratios'][0]:g}"
    cells = {c["method"]: c for c in report["cells"]}
    for row in ("uniform", "random", "full"):
        plain, aug = cells[row], cells[row + "+aug"]
        assert aug["augment"] == {"strategy": "dsa", "mode": "single"} and "augment" not in plain
        assert (aug["rows"], aug["stored_bytes"], aug["kind"]) == (plain["rows"], plain["stored_bytes"], plain["kind"])
        assert aug["final_loss"] != plain["final_loss"]  # the augmentation reached the training
    comparisons = report["significance"]["convnet"][rk]["comparisons"]
    assert comparisons["uniform+aug"]["against"] == "uniform"
    assert report["tables"]["convnet"]["full+aug"]["full"]["status"] == "ok"
    markdown = (out / "report.md").read_text()
    assert "| full+aug | reference |" in markdown and "with augmentation `dsa` (one transform per batch" in markdown

    # A rerun with other augmentation settings is refused, naming the cell.
    with pytest.raises(ValueError, match=r"uniform\+aug.*trained with augmentation"):
        _evaluate(out, *args[:-1], "flip_crop")
    cell = out / "cells" / "convnet" / "uniform+aug" / f"r{rk}_s0.json"
    assert json.loads(cell.read_text())["augment"]["strategy"] == "dsa"
