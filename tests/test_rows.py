"""Row files: tensor-like reads and writes, safetensors tensors read in place, and the undo journal's rollback."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from compressa_hf.rows import RowConcat, RowFile, UndoJournal, safetensors_rows


def test_row_file_reads_and_writes_like_a_tensor(tmp_path):
    ref = torch.randn(10, 3, 2)
    f = RowFile(tmp_path / "a.bin", 10, (3, 2), torch.float32, create=True)
    assert torch.equal(f[torch.arange(10)], torch.zeros(10, 3, 2))  # created zero-filled
    f[torch.arange(10)] = ref
    idx = torch.tensor([7, 2, 3, 2, 9])  # any order, repeats
    assert torch.equal(f[idx], ref[idx])
    assert torch.equal(f[2:6], ref[2:6]) and torch.equal(f[-1], ref[-1:])
    mask = torch.rand(10) < 0.5
    assert torch.equal(f[mask], ref[mask])
    rows, cols = torch.tensor([[1], [4]]), torch.tensor([[0, 2]])
    assert torch.equal(f[rows, cols], ref[rows, cols])  # element (row, column) pairs, broadcast
    f[torch.tensor([5, 0])] = 1.5  # scalar broadcast
    ref[torch.tensor([5, 0])] = 1.5
    f[torch.tensor([4, 1])] += 1  # read, add, write back, as on a tensor
    ref[torch.tensor([4, 1])] += 1
    assert torch.equal(f.read_all(), ref)
    again = RowFile(tmp_path / "a.bin", 10, (3, 2), torch.float32)  # reopened: the bytes are in the file
    assert torch.equal(again.read_all(), ref) and again.shape == (10, 3, 2) and len(again) == 10
    with pytest.raises(IndexError, match="out of range"):
        f[torch.tensor([10])]
    with pytest.raises(ValueError, match="distinct"):
        f.write(torch.tensor([1, 1]), torch.zeros(2, 3, 2))
    with pytest.raises(PermissionError, match="read-only"):
        again[0] = 0.0
    with pytest.raises(ValueError, match="fewer than"):
        RowFile(tmp_path / "a.bin", 11, (3, 2), torch.float32)


def test_bfloat16_and_bool_rows_round_trip(tmp_path):
    for dtype, values in [(torch.bfloat16, torch.randn(4, 5).bfloat16()), (torch.bool, torch.rand(4, 5) < 0.5)]:
        f = RowFile(tmp_path / f"{dtype}.bin", 4, (5,), dtype, create=True)
        f[torch.arange(4)] = values
        assert torch.equal(f.read_all(), values)


def test_safetensors_tensor_read_in_place_and_concatenated(tmp_path):
    a, b = torch.randn(3, 4, 2).half(), torch.randn(5, 4, 2).half()
    save_file({"latents": a, "other": torch.zeros(7)}, tmp_path / "a.safetensors", metadata={"x": "y"})
    save_file({"latents": b}, tmp_path / "b.safetensors")
    fa = safetensors_rows(tmp_path / "a.safetensors", "latents")
    assert torch.equal(fa.read_all(), a)
    both = RowConcat([fa, safetensors_rows(tmp_path / "b.safetensors", "latents")])
    ref = torch.cat([a, b])
    idx = torch.tensor([7, 0, 3, 2, 6])
    assert both.shape == (8, 4, 2) and torch.equal(both[idx], ref[idx]) and torch.equal(both.read_all(), ref)
    sub = both.select(torch.tensor([6, 1, 4]))
    assert torch.equal(sub.read_all(), ref[[6, 1, 4]]) and torch.equal(sub[torch.tensor([2, 0])], ref[[4, 6]])
    rows, cols = torch.tensor([0, 2]), torch.tensor([3, 1])
    assert torch.equal(sub[rows, cols], ref[[6, 4], [3, 1]])
    with pytest.raises(KeyError, match="no tensor 'missing'"):
        safetensors_rows(tmp_path / "a.safetensors", "missing")


def test_journal_rolls_back_to_the_last_commit_and_ignores_a_cut_record(tmp_path):
    journal = UndoJournal(tmp_path / "journal")
    f = RowFile(tmp_path / "z.bin", 6, (4,), torch.float32, create=True, journal=journal)
    g = RowFile(tmp_path / "s.bin", 6, (), torch.bool, create=True, journal=journal)
    committed = torch.randn(6, 4)
    f[torch.arange(6)] = committed
    g[torch.tensor([1, 3])] = True
    journal.commit(1)
    f[torch.tensor([0, 2])] = 5.0  # saved once...
    f[torch.tensor([2, 5])] = 7.0  # ...row 2 saved again, with bytes that were not committed
    g[torch.tensor([3, 4])] = torch.tensor([False, True])
    journal.save(f, torch.tensor([1]), bytearray(b"\x00" * 16))  # a record...
    with open(tmp_path / "journal", "r+b") as fh:  # ...that a kill cut short
        fh.truncate(fh.seek(0, 2) - 3)
    assert journal.rollback(2) == 0 and not torch.equal(f.read_all(), committed)  # another generation: discarded
    f[torch.tensor([0, 2])] = 5.0  # redo, now journaled under generation 2
    journal.commit(3)  # what a checkpoint does after writing its state
    f[torch.tensor([4])] = -1.0
    expect = committed.clone()
    expect[[0, 2]] = 5.0
    expect[5] = 7.0
    assert journal.rollback(3) == 1
    assert torch.equal(f.read_all(), expect)


def test_journal_rollback_restores_every_overwritten_row(tmp_path):
    journal = UndoJournal(tmp_path / "journal")
    f = RowFile(tmp_path / "z.bin", 8, (2,), torch.float32, create=True, journal=journal)
    f[torch.arange(8)] = torch.arange(16.0).view(8, 2)
    journal.commit(1)
    committed = f.read_all()
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        rows = torch.randperm(8, generator=gen)[:3]
        f[rows] = torch.randn(3, 2, generator=gen)
    reopened = UndoJournal(tmp_path / "journal")  # as a resumed process finds it
    f2 = RowFile(tmp_path / "z.bin", 8, (2,), torch.float32, writable=True, journal=reopened)
    assert reopened.generation == 1 and reopened.rollback(1) == 60
    assert torch.equal(f2.read_all(), committed)
