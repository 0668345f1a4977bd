"""`load_chat_dataset(..., streaming=True)`: an IterableDataset of the same samples as the map-style dataset, row
for row, decoded as it streams."""

from __future__ import annotations

import numpy as np
import pytest

from compressa_hf.qwen.samples import load_chat_dataset
from tests.test_chat import write_distilled


def _equal(a, b) -> bool:
    """Structural equality with numpy arrays compared by value (a sample's messages hold its frames)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_streamed_samples_equal_the_map_style_ones_row_for_row(tmp_path):
    from datasets import IterableDataset

    folder = write_distilled(tmp_path / "set")
    mapped = load_chat_dataset(folder, "ratio_1", cache_dir=str(tmp_path / "hf"))
    streamed = load_chat_dataset(folder, "ratio_1", streaming=True)
    assert isinstance(streamed, IterableDataset)
    rows = list(streamed)
    assert len(rows) == len(mapped) == 4
    for i, got in enumerate(rows):
        want = mapped[i]
        assert set(got) == set(want)
        for key in want:
            assert _equal(got[key], want[key]), key


def test_streaming_refuses_decode_once(tmp_path):
    folder = write_distilled(tmp_path / "set")
    with pytest.raises(ValueError, match="decode_once"):
        load_chat_dataset(folder, "ratio_1", streaming=True, decode_once=True)
