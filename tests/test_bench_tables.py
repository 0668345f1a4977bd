"""bench/table1_cells.py: a run's finished cells as a table, pooling a seed's folds under `--folds`."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest


@pytest.fixture
def cells_module(monkeypatch):
    path = Path(__file__).resolve().parents[1] / "bench" / "table1_cells.py"
    spec = importlib.util.spec_from_file_location("bench_table1_cells", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def _cell(run: Path, method: str, ratio, seed: int, correct: list[int], fold: int | None = None, **extra) -> None:
    name = ("" if fold is None else f"f{fold}_") + f"r{ratio}_s{seed}.json"
    path = run / "cells" / "convnet" / method / name
    path.parent.mkdir(parents=True, exist_ok=True)
    cell = {
        "method": method, "ratio": ratio, "seed": seed, "status": "ok", "correct": correct,
        "accuracy": sum(correct) / len(correct), "rows": 4, "frames_per_row": 1, "stored_bytes": 10 + (fold or 0),
        "budget_bytes": 12 + (fold or 0), "compress_s": 1.0, "train_s": 2.0, **extra,
    }  # fmt: skip
    if fold is not None:
        cell["fold"] = fold
    path.write_text(json.dumps(cell))


def test_split_cells_are_read_per_seed(cells_module, tmp_path):
    _cell(tmp_path, "uniform", 2.0, 0, [1, 0, 1])
    _cell(tmp_path, "uniform", 2.0, 1, [1, 1, 1])
    _cell(tmp_path, "full", None, 0, [1, 1, 0])
    cells = cells_module.read_cells(str(tmp_path), "convnet")
    assert sorted(cells[("uniform", 2.0)]) == [0, 1] and cells[("full", None)][0]["correct"] == [1, 1, 0]


def test_a_seed_counts_once_every_fold_is_done_and_pools_them_in_fold_order(cells_module, tmp_path):
    _cell(tmp_path, "dm", 2.0, 0, [1, 1], fold=1)
    _cell(tmp_path, "dm", 2.0, 0, [0, 0, 1], fold=0)
    _cell(tmp_path, "dm", 2.0, 1, [1, 1, 1], fold=0)  # seed 1: fold 1 not finished
    _cell(tmp_path, "prism", 2.0, 0, [1, 0, 0], fold=0, frames_per_row_stats={"min": 2, "max": 5, "mean": 3.0})
    _cell(tmp_path, "prism", 2.0, 0, [0, 1], fold=1, frames_per_row_stats={"min": 3, "max": 6, "mean": 4.0})
    cells = cells_module.read_cells(str(tmp_path), "convnet")
    pooled = cells[("dm", 2.0)]
    assert list(pooled) == [0]
    assert pooled[0]["correct"] == [0, 0, 1, 1, 1] and pooled[0]["accuracy"] == pytest.approx(3 / 5)
    assert (pooled[0]["stored_bytes"], pooled[0]["budget_bytes"]) == (11, 13)  # the largest fold's
    assert cells[("prism", 2.0)][0]["frames_per_row_stats"] == {"min": 2, "max": 6}


def test_augmented_rows_are_compared_with_augmented_full_data(cells_module, tmp_path):
    _cell(tmp_path, "uniform+aug", 2.0, 0, [1, 1, 0, 1])
    _cell(tmp_path, "full", None, 0, [0, 0, 0, 0])
    _cell(tmp_path, "full+aug", None, 0, [1, 1, 1, 1])
    rows = {
        r["method"]: r
        for r in cells_module.table_rows(cells_module.read_cells(str(tmp_path), "convnet"), ["full", "full+aug"])
    }
    against = rows["uniform+aug"]["against"]
    assert against["full"]["diff"] == pytest.approx(0.75) and against["full+aug"]["diff"] == pytest.approx(-0.25)
    assert set(rows["full"]["against"]) == {"full+aug"}
