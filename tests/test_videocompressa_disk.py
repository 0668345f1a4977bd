"""VideoCompressa with its state on disk: the same bytes as in memory, resumption after a kill at any write, a
checkpoint that does not grow with the number of videos, and the windowed shuffle."""

from __future__ import annotations

import pytest
import torch

from compressa_hf import rows as rows_module
from compressa_hf.distillation.videocompressa import VideoCompressaConfig, distill
from tests.test_videocompressa import CLASSES, TinyCodec, make_set, small_config


@pytest.fixture(scope="module")
def data():
    return make_set()


def _same(a, b) -> None:
    assert torch.equal(a.frame_indices, b.frame_indices)
    assert torch.equal(a.latents, b.latents)
    assert torch.equal(a.scores, b.scores)
    assert [h["losses"] for h in a.history] == [h["losses"] for h in b.history]


@pytest.mark.parametrize(
    "levers",
    [
        {},  # the defaults: segments, uniform scorer start, guide warm-up, lazy Adam
        {"objective": "ce+dm", "latent_optimizer": "sgd", "lr_latents": 5.0, "guide_warmup_epochs": 0},
        {"shuffle_window": 12, "sampling": "free", "inner_steps": 2},
    ],
)
def test_disk_state_gives_the_bytes_of_memory_state(data, tmp_path, levers):
    latents, labels, _ = data
    cfg = small_config(**{"guide_warmup_epochs": 1, **levers})
    memory = distill(latents, labels, TinyCodec(), cfg, CLASSES, progress=False, checkpoint_dir=tmp_path / "m")
    disk_cfg = VideoCompressaConfig(**{**cfg.__dict__, "state_storage": "disk"})
    disk = distill(latents, labels, TinyCodec(), disk_cfg, CLASSES, progress=False, checkpoint_dir=tmp_path / "d")
    _same(memory, disk)
    assert (tmp_path / "d" / "state_rank0" / "z.bin").stat().st_size == latents[:, :, :].numel() * 4  # float32 Z


def test_disk_state_reads_a_lazy_latent_array(data, tmp_path):
    """`distill` takes the cache's lazy `RowConcat` (what `compressa distill` passes) as it takes a tensor."""
    from safetensors.torch import save_file

    latents, labels, _ = data
    save_file({"latents": latents[:20].contiguous()}, tmp_path / "s0.safetensors")
    save_file({"latents": latents[20:].contiguous()}, tmp_path / "s1.safetensors")
    lazy = rows_module.RowConcat(
        [rows_module.safetensors_rows(tmp_path / f"s{i}.safetensors", "latents") for i in (0, 1)]
    )
    cfg = small_config(passes=1, state_storage="disk")
    a = distill(latents, labels, TinyCodec(), cfg, CLASSES, progress=False, checkpoint_dir=tmp_path / "a")
    b = distill(lazy, labels, TinyCodec(), cfg, CLASSES, progress=False, checkpoint_dir=tmp_path / "b")
    _same(a, b)


class _Kill(Exception):
    pass


def test_kill_at_any_write_then_resume_gives_the_same_bytes(data, tmp_path, monkeypatch):
    """A run killed at its n-th state write (mid-step, with some arrays written and others not), resumed, ends with
    the uninterrupted run's bytes; n sweeps the run, including kills before the first checkpoint and right after
    one."""
    latents, labels, _ = data
    cfg = small_config(passes=2, checkpoint_steps=2, state_storage="disk", guide_warmup_epochs=1)
    reference = distill(latents, labels, TinyCodec(), cfg, CLASSES, progress=False, checkpoint_dir=tmp_path / "ref")

    writes = {"left": None, "count": 0}
    real_write = rows_module.RowFile.write

    def write(self, idx, values):
        writes["count"] += 1
        if writes["left"] is not None:
            writes["left"] -= 1
            if writes["left"] < 0:
                raise _Kill
        return real_write(self, idx, values)

    monkeypatch.setattr(rows_module.RowFile, "write", write)
    distill(latents, labels, TinyCodec(), cfg, CLASSES, progress=False, checkpoint_dir=tmp_path / "count")
    total = writes["count"]
    for kill_at in sorted({1, 7, total // 3, total // 2, total - 5, total - 1}):
        folder = tmp_path / f"kill{kill_at}"
        writes["left"] = kill_at
        with pytest.raises(_Kill):
            distill(latents, labels, TinyCodec(), cfg, CLASSES, progress=False, checkpoint_dir=folder)
        writes["left"] = None
        resumed = distill(latents, labels, TinyCodec(), cfg, CLASSES, False, checkpoint_dir=folder, resume=True)
        _same(reference, resumed)


def test_checkpoint_size_does_not_grow_with_the_videos(tmp_path):
    sizes = {}
    for per_class in (4, 16):
        import tests.test_videocompressa as base

        old = base.PER_CLASS
        base.PER_CLASS = per_class
        try:
            latents, labels, _ = make_set()
        finally:
            base.PER_CLASS = old
        cfg = small_config(passes=1, batch_size=4, state_storage="disk", guide_warmup_epochs=0)
        distill(latents, labels, TinyCodec(), cfg, CLASSES, progress=False, checkpoint_dir=tmp_path / str(per_class))
        sizes[per_class] = (tmp_path / str(per_class) / "videocompressa_rank0.pt").stat().st_size
        state = (tmp_path / str(per_class) / "state_rank0" / "z.bin").stat().st_size
        assert state == latents.numel() * 4
    # 4x the videos: the state files grow 4x, the checkpoint only by the per-step loss log (6 -> 24 floats)
    assert sizes[16] / sizes[4] < 1.01, sizes


def test_disk_state_errors(data, tmp_path):
    latents, labels, _ = data
    with pytest.raises(ValueError, match="needs a checkpoint folder"):
        distill(latents, labels, TinyCodec(), small_config(state_storage="disk"), CLASSES, progress=False)
    with pytest.raises(ValueError, match="cannot run latent_optimizer='adam'"):
        small_config(state_storage="disk", latent_optimizer="adam")
    with pytest.raises(ValueError, match="shuffle_window"):
        small_config(shuffle_window=-1)
    cfg = small_config(passes=1, state_storage="disk")
    distill(latents, labels, TinyCodec(), cfg, CLASSES, progress=False, checkpoint_dir=tmp_path)
    (tmp_path / "state_rank0" / "frames.bin").unlink()
    with pytest.raises(FileNotFoundError, match="frames.bin"):
        distill(
            latents, labels, TinyCodec(), small_config(passes=2, state_storage="disk"), CLASSES, False, tmp_path, True
        )


def test_windowed_shuffle_keeps_each_window_together(data):
    """With `shuffle_window` W, each run of W consecutive steps' videos... is one window: the batches of a pass visit
    the windows one after another, every video once."""
    from compressa_hf.distillation.videocompressa import _Distiller

    latents, labels, _ = data
    cfg = small_config(shuffle_window=12, batch_size=4)
    run = _Distiller(latents, labels, TinyCodec(), cfg, CLASSES, torch.device("cpu"), 0, 1, None)
    perm = run.permutation()
    assert sorted(perm.tolist()) == list(range(len(labels)))
    windows = [set((perm[i : i + 12] // 12).tolist()) for i in range(0, len(perm), 12)]
    assert all(len(w) == 1 for w in windows), windows  # 12 consecutive draws come from one window
    layout_labels = run.labels[:12]
    assert len(set(layout_labels.tolist())) > 2  # the layout mixes classes inside a window
