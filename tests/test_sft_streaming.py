"""`recipes/sft_qwen.py --streaming true`: a distilled set streamed as an IterableDataset trains for `max_steps`, and
the recipe says why it needs them."""

from __future__ import annotations

import json

import pytest

from tests import test_recipes
from tests.test_sft_switches import run_sft

workspace = test_recipes.workspace


@pytest.mark.real_data
def test_a_streamed_distilled_set_trains_for_max_steps(workspace, tmp_path):
    out = tmp_path / "streamed"
    flags = ["--data", "tiny_0.5", "--streaming", "true", "--max_steps", 2, "--per_device_train_batch_size", 2]
    run_sft(workspace, out, *flags, "--save_strategy", "no")
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["streaming"] is True and summary["num_train_samples"] is None
    assert summary["global_step"] == summary["steps_this_run"] == 2
    assert summary["frames_per_sample"] == 4 and summary["visual_tokens_per_sample"] > 0
    assert "streamed videos of 4 latent keyframes" in summary["data_description"]


@pytest.mark.real_data
def test_streaming_without_max_steps_or_on_a_raw_set_is_refused(workspace, tmp_path):
    with pytest.raises(ValueError, match="set --max_steps"):
        run_sft(workspace, tmp_path / "a", "--data", "tiny_0.5", "--streaming", "true", "--max_steps", -1)
    with pytest.raises(ValueError, match="applies to distilled sets"):
        run_sft(workspace, tmp_path / "b", "--streaming", "true", "--max_steps", 2)
