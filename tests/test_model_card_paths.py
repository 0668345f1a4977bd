"""A fine-tuned model publishes no path of this machine (issue 24, item 11): a run of `recipes/sft_qwen.py` from a
local base model, a local registry and a local source writes its card and `training_summary.json` naming local folders
by their last component (as a distilled set's card does), keeps the local command in `_local_run.json`, and the
model push sends no such path (the adapter's base included) and refuses a file that would, naming it."""

from __future__ import annotations

import fnmatch
import json
import sys
from pathlib import Path

import pytest

from compressa_hf.publish import find_local_paths
from tests import test_recipes
from tests.test_sft_switches import run_sft, sft_args

workspace = test_recipes.workspace  # the saved tiny model and named sets, rebuilt for this module


@pytest.fixture(scope="module")
def local_run(workspace, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "my-run"
    flags = ["--max_steps", 1, "--max_train_samples", 2, "--per_device_train_batch_size", 2]
    with (
        pytest.MonkeyPatch.context() as patch
    ):  # the command line the card records, as `python sft_qwen.py ...` has it
        patch.setattr(sys, "argv", ["recipes/sft_qwen.py", *sft_args(workspace, out, *flags)])
        parsed = run_sft(workspace, out, *flags)
    return {"dir": out, "args": parsed}


@pytest.mark.real_data
@pytest.mark.slow
def test_card_and_summary_name_local_folders_by_their_last_component(workspace, local_run):
    out = local_run["dir"]
    card = (out / "README.md").read_text()
    summary_text = (out / "training_summary.json").read_text()
    assert find_local_paths(card) == [] and find_local_paths(summary_text) == [], (card, summary_text)
    summary = json.loads(summary_text)
    assert summary["model_name_or_path"] == Path(workspace["model"]).name and summary["output_dir"] == "my-run"
    assert "--data_registry sets.yaml" in summary["eval_command"] and "--output_dir my-run" in card
    assert "(a local folder)" in card and "base_model:" not in card.split("---")[1]  # a folder is no Hub id
    # What ran here, with its paths, stays beside the model in a file the push never sends.
    local = json.loads((out / "_local_run.json").read_text())
    assert local["summary"]["model_name_or_path"] == str(workspace["model"])
    assert str(out) in local["command"] and workspace["registry"] in local["command"]


@pytest.mark.real_data
@pytest.mark.slow
def test_the_model_push_sends_no_local_path_and_refuses_one(local_run, monkeypatch):
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoUrl

    from compressa_hf.qwen.run_files import VOCABULARY_FILES, push_run

    out, sent = local_run["dir"], {}

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=(), **kwargs):
        root = Path(folder_path)
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and not any(fnmatch.fnmatch(rel, i) for i in ignore_patterns):
                sent[rel] = p.read_bytes()

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo, **kw: RepoUrl(f"https://huggingface.co/me/{repo}"))
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    training_args = local_run["args"][1]
    assert push_run(str(out), training_args) == "me/my-run"
    assert {"README.md", "training_summary.json", "adapter_config.json", "adapter_model.safetensors"} <= set(sent)
    assert not {"_local_run.json", "training_args.bin"} & set(sent)  # this machine's files stay here
    adapter = json.loads(sent["adapter_config.json"])
    assert adapter["base_model_name_or_path"] == Path(json.loads((out / "_local_run.json").read_text())["summary"][
        "model_name_or_path"]).name  # fmt: skip
    for rel, data in sent.items():
        if rel.endswith((".json", ".md", ".txt", ".yaml")) and Path(rel).name not in VOCABULARY_FILES:
            assert find_local_paths(data.decode()) == [], rel
    # The local adapter config still names the folder it loads from.
    assert find_local_paths((out / "adapter_config.json").read_text())

    # A file that would still publish a path of this machine is refused, named, before anything is sent.
    (out / "notes.txt").write_text(f"trained on {out}/data\n")
    sent.clear()
    with pytest.raises(ValueError, match=r"would publish paths of this machine \(notes\.txt: /"):
        push_run(str(out), training_args)
    assert sent == {} and not list(out.glob("_push-*"))  # nothing sent, no staging folder left behind


def test_public_summary_names_every_local_folder_by_its_last_component():
    from compressa_hf.publish import public_text
    from compressa_hf.qwen.run_files import public_summary

    run = {
        "model_name_or_path": "/models/Qwen2.5-VL-7B-Instruct",
        "repo": "/data/sets/hmdb51_distilled",
        "source": "hmdb51:root=/data/hmdb51,split_id=1",
        "output_dir": "/scratch/me/run1",
        "eval_command": "accelerate launch recipes/eval_qwen.py --model_name_or_path /scratch/me/run1 "
        "--data_registry=/home/me/sets.yaml",
        "data_description": "the distilled set `/data/sets/hmdb51_distilled`, config `ratio_0.41`",
        "hyperparameters": {"note": "from ~/cache/x and /a/b"},
        "global_step": 3,
    }
    out = public_summary(run)
    assert find_local_paths(json.dumps(out)) == []
    assert (out["model_name_or_path"], out["output_dir"]) == ("Qwen2.5-VL-7B-Instruct", "run1")
    assert out["source"] == "hmdb51:root=hmdb51,split_id=1" and out["global_step"] == 3
    assert out["eval_command"].endswith("--model_name_or_path run1 --data_registry=sets.yaml")
    assert out["data_description"] == "the distilled set `hmdb51_distilled`, config `ratio_0.41`"
    assert public_text("Qwen/Qwen2.5-VL-7B-Instruct and https://hf.co/a/b stay") == (
        "Qwen/Qwen2.5-VL-7B-Instruct and https://hf.co/a/b stay"
    )
