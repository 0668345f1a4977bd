"""The SFT and evaluation recipes: configs and YAMLs, LoRA placement, scoring, and the scripts end to end.

End-to-end tests run the real scripts through `accelerate launch` on a random 2-layer Qwen2.5-VL
(`tests/fixtures/tiny_qwen2_5_vl.json`) saved beside the real tokenizer and processor files of ../shared/qwen2_5_vl,
with a tiny distilled set (random `pixel:avgpool8` latents) and the procedural source as raw videos, registered as
the named sets `tiny_0.5` and `tiny_full`.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from compressa_hf.named_sets import NAMED_SETS
from compressa_hf.qwen.collator import QwenVideoCollator
from compressa_hf.qwen.comparison import comparison_markdown, comparison_rows
from compressa_hf.qwen.evaluation import (
    EvalArguments,
    choice_token_ids,
    load_for_eval,
    match_answer,
    prompt_inputs,
    score_choices,
    summarize,
    with_answer,
)
from compressa_hf.qwen.models import (
    freeze_vision,
    lora_config,
    qwen_parts,
    random_qwen,
    save_tiny_model,
    trainable_summary,
)
from compressa_hf.qwen.prompts import PromptTemplate
from compressa_hf.qwen.samples import make_chat_sample, video_metadata
from compressa_hf.qwen.sft import SkipUnreadable, as_hf_dataset
from compressa_hf.qwen.sft_config import SFTScriptArguments, VideoSFTConfig
from compressa_hf.store import DistilledConfig, write_config
from tests.conftest import QWEN, REPO, need_shared

FIXTURES = REPO / "tests" / "fixtures"
TINY_CONFIG = FIXTURES / "tiny_qwen2_5_vl.json"
TINY_RECIPE = FIXTURES / "recipes" / "lora" / "config_tiny_0.5.yaml"
RECIPES = sorted((REPO / "recipes" / "qwen2_5_vl_7b").glob("*/config_*.yaml"))
ACCELERATE = str(Path(sys.executable).parent / "accelerate")
PROCEDURAL = "procedural:num_classes=2,train_per_class=4,test_per_class=2,length=32,frame_size=56"
TINY_EVAL = ["--dtype", "float32", "--max_new_tokens", "4"]  # frames and prompt: compare_qwen.py takes the recipe's


def load_script(name: str):
    """A recipe script as a module (recipes/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", REPO / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- configs and YAMLs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", RECIPES + [TINY_RECIPE], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_recipe_yaml_parses_through_the_sft_parser(path, tmp_path):
    script_args, training_args, model_args = (
        load_script("sft_qwen")
        .make_parser()
        # --use_cpu: transformers refuses bf16 without a GPU unless told the run is on the CPU
        .parse_args_and_config(["--config", str(path), "--output_dir", str(tmp_path), "--use_cpu", "true"])
    )
    data = path.stem.removeprefix("config_")
    assert script_args.data == data
    assert model_args.use_peft == (path.parent.name == "lora")
    assert training_args.remove_unused_columns is False
    assert training_args.dataset_kwargs == {"skip_prepare_dataset": True}
    if path != TINY_RECIPE:
        assert data in NAMED_SETS and NAMED_SETS[data].distilled == (not data.endswith("_full"))
        assert model_args.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct" and model_args.dtype == "bfloat16"
        assert training_args.bf16 and training_args.gradient_checkpointing
        assert yaml.safe_load(path.read_text())["output_dir"].endswith(f"{path.parent.name}-{data}")
        assert (
            f"--config recipes/qwen2_5_vl_7b/{path.parent.name}/{path.name}" in (path.parent / "README.md").read_text()
        )


@pytest.mark.parametrize(
    "name, kind, stage",
    [("ddp", "MULTI_GPU", None), ("zero2", "DEEPSPEED", 2), ("zero3", "DEEPSPEED", 3), ("fsdp", "FSDP", None)],
)
def test_accelerate_configs_load_for_8_gpus(name, kind, stage):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO / "accelerate_configs" / f"{name}.yaml"))
    assert config.distributed_type.value == kind and config.num_processes == 8 and config.mixed_precision == "bf16"
    if stage:
        assert config.deepspeed_config["zero_stage"] == stage


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (SFTScriptArguments, {"tune_vision": "all"}, "'all'"),
        (SFTScriptArguments, {"vision_lora_target_modules": ["q_proj"]}, "q_proj"),
        (SFTScriptArguments, {"answer": "no placeholder"}, "class_name"),
        (EvalArguments, {"methods": ["vote"]}, "vote"),
        (EvalArguments, {"batch_size": 0}, "got 0"),
    ],
)
def test_argument_validation_names_the_bad_value(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_sft_config_refuses_dropping_the_sample_columns(tmp_path):
    with pytest.raises(ValueError, match="remove_unused_columns"):
        VideoSFTConfig(output_dir=str(tmp_path), remove_unused_columns=True, bf16=False)
    with pytest.raises(ValueError, match="skip_prepare_dataset"):
        VideoSFTConfig(output_dir=str(tmp_path), dataset_kwargs={}, bf16=False)


# -- LoRA placement and freezing -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model():
    return random_qwen(TINY_CONFIG)


def _lora_layers(peft_model) -> set[str]:
    """'language' / 'visual' for every module that got an adapter."""
    parts = qwen_parts(peft_model.get_base_model())
    names = [n.removeprefix("base_model.model.") for n, m in peft_model.named_modules() if hasattr(m, "lora_A")]
    return {"visual" if n.startswith(parts["visual"] + ".") else "language" for n in names}


@pytest.mark.parametrize(
    "tune_vision, adapters, trainable_parts",
    [
        ("frozen", {"language"}, {"language"}),
        ("merger", {"language"}, {"language", "merger"}),
        ("tower", {"language", "visual"}, {"language", "visual", "merger"}),
    ],
)
def test_lora_placement_follows_tune_vision(tiny_model, tune_vision, adapters, trainable_parts):
    from peft import get_peft_model
    from trl import ModelConfig

    model_args = ModelConfig(use_peft=True, lora_r=4, lora_target_modules=["all-linear"])
    script_args = SFTScriptArguments(tune_vision=tune_vision)
    peft_model = get_peft_model(copy.deepcopy(tiny_model), lora_config(tiny_model, model_args, script_args))
    assert _lora_layers(peft_model) == adapters
    counts = trainable_summary(peft_model)
    assert {k for k in ("language", "visual", "merger") if counts[k]} == trainable_parts
    assert counts["other"] == 0  # no embedding, no LM head
    # The vision MLPs share the language model's layer names; plain names would have put adapters there.
    text_mlp_only = ModelConfig(use_peft=True, lora_target_modules=["gate_proj"])
    frozen = get_peft_model(copy.deepcopy(tiny_model), lora_config(tiny_model, text_mlp_only, SFTScriptArguments()))
    assert _lora_layers(frozen) == {"language"}


@pytest.mark.parametrize(
    "tune_vision, trainable_parts",
    [("frozen", {"language", "other"}), ("merger", {"language", "merger", "other"}), ("tower", None)],
)
def test_full_sft_freezes_the_vision_side(tiny_model, tune_vision, trainable_parts):
    model = copy.deepcopy(tiny_model)
    freeze_vision(model, tune_vision)
    counts = trainable_summary(model)
    if trainable_parts is None:
        assert counts["trainable"] == counts["total"]
    else:
        assert {k for k in ("language", "visual", "merger", "other") if counts[k]} == trainable_parts


def test_lora_refuses_target_modules_outside_the_language_model(tiny_model):
    from trl import ModelConfig

    with pytest.raises(ValueError, match="qkv"):
        lora_config(tiny_model, ModelConfig(lora_target_modules=["q_proj", "qkv"]), SFTScriptArguments())


# -- answers, tables -----------------------------------------------------------------------------------------------

CLASS_TEXTS = ["ride horse", "ride", "brush hair", "putting [something] into [something]", "yo yo"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ride horse", 0),
        ("Ride Horse.", 0),
        ("ride_horse", 0),
        ("The answer is: ride horse", 0),  # contains "ride" too: the longer name contains it
        ("ride", 1),
        ("a ride", 1),
        ("brush hair!", 2),
        ("Putting [something] into [something]", 3),
        ("Yo-yo", 4),
        ("brush hair or ride", None),  # two names, neither contains the other
        ("riding", None),
        ("", None),
    ],
)
def test_generated_answers_match_class_names(text, expected):
    assert match_answer(text, CLASS_TEXTS) == expected


def test_accuracy_leaves_unreadable_clips_out_and_counts_unmatched_answers():
    records = [
        {"index": 0, "label": 0, "loglik_pred": 0, "generate_pred": 0},
        {"index": 1, "label": 1, "loglik_pred": 0, "generate_pred": None},
        {"index": 2, "skipped": True},
    ]
    out = summarize(records, ["loglik", "generate"])
    assert out["num_samples"] == 2 and out["num_skipped"] == 1
    assert out["accuracy_loglik"] == out["accuracy_generate"] == 0.5 and out["unmatched_generate"] == 0.5
    assert out["stderr_loglik"] == pytest.approx(np.sqrt(0.25 / 2))


def test_comparison_table_computes_gains_against_zero_shot_and_full(tmp_path):
    runs = []
    for name, acc, train in [("zero_shot", 0.5, None), ("full", 0.6, 100), ("distilled_0.41", 0.65, 40)]:
        eval_dir = tmp_path / "eval" / name
        eval_dir.mkdir(parents=True)
        (eval_dir / "results.json").write_text(json.dumps({"accuracy_loglik": acc, "num_samples": 10}))
        run = {"name": name, "label": name, "eval_dir": str(eval_dir)}
        if train:
            (tmp_path / name).mkdir()
            summary = {"ratio": 0.41 if train == 40 else None, "num_train_samples": train, "frames_per_sample": 4}
            (tmp_path / name / "training_summary.json").write_text(json.dumps(summary))
            run["train_dir"] = str(tmp_path / name)
        runs.append(run)
    runs.append({"name": "distilled_0.82", "label": "distilled_0.82", "eval_dir": str(tmp_path / "missing")})
    rows = comparison_rows(runs)
    assert rows[2]["gain_vs_zero_shot_loglik"] == pytest.approx(15.0)
    assert rows[2]["gain_vs_full_loglik"] == pytest.approx(5.0)
    assert "gain_vs_zero_shot_loglik" not in rows[0]
    table = comparison_markdown(rows, "tiny")
    assert "| distilled_0.41 | 0.41 | 40 | 4 | - | 65.00 | +15.00 | +5.00 |" in table
    assert "distilled_0.82 (not run)" in table


def test_raw_samples_read_as_a_datasets_dataset_and_unreadable_clips_are_dropped():
    prompt = PromptTemplate()
    ds = as_hf_dataset(_samples(2, ["Jump", "Run"], prompt) + [None])  # None: a clip that could not be decoded
    assert len(ds) == 3 and ds[2]["messages"] is None
    assert ds[1]["answer"] == "run" and ds[1]["videos"][0].shape == (4, 56, 56, 3)
    assert ds.select(range(2))[1]["video_id"] == "v1"  # --max_train_samples keeps the transform
    seen = []
    SkipUnreadable(seen.append)([ds[0], ds[2], None])
    assert [s if s is None else s["video_id"] for s in seen[0]] == ["v0", None, None]


# -- scoring with the real processor -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def processor():
    need_shared(QWEN)
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(QWEN))


def _samples(n: int, class_names: list[str], prompt: PromptTemplate) -> list[dict]:
    rng = np.random.default_rng(0)
    texts = prompt.class_texts(class_names)
    out = []
    for i in range(n):
        frames = rng.integers(0, 256, size=(4, 56, 56, 3), dtype=np.uint8)
        meta = video_metadata([8 * j for j in range(4)], 30.0, total_num_frames=32)
        out.append(make_chat_sample(frames, i % len(texts), texts, prompt, meta, f"v{i}"))
    return out


def _reference_scores(model, processor, samples, class_texts, prompt) -> torch.Tensor:
    """Log-likelihood of each class's answer under the training collator's labels: one full forward per class."""
    collator = QwenVideoCollator(processor)
    rows = []
    for sample in samples:
        batch = collator([with_answer(sample, prompt.format_answer(t)) for t in class_texts])
        labels = batch.pop("labels")
        logp = model(**batch).logits[:, :-1].float().log_softmax(-1)
        target = labels[:, 1:]
        picked = logp.gather(-1, target.clamp(min=0)[..., None]).squeeze(-1)
        rows.append((picked * (target != -100)).sum(-1))
    return torch.stack(rows)


@pytest.mark.real_data
def test_cached_choice_scoring_equals_full_forwards_under_the_training_labels(processor, tiny_model):
    prompt = PromptTemplate()
    names = ["ApplyEyeMakeup", "Run", "brush_hair", "PlayingDaf"]  # answers of 1 to 4 tokens
    texts = prompt.class_texts(names)
    samples = _samples(3, names, prompt)
    model = tiny_model.eval()
    collator = QwenVideoCollator(processor, padding_side="left")
    choices = choice_token_ids(processor.tokenizer, texts, prompt)
    assert len({len(c) for c in choices}) > 1
    with torch.no_grad():
        expected = _reference_scores(model, processor, samples, texts, prompt)
    inputs = prompt_inputs(collator, samples, prompt.format_answer(texts[0]))
    for choice_batch_size in (128, 3):  # one pass over the classes, and several
        got = score_choices(model, inputs, choices, choice_batch_size)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.real_data
def test_prompt_inputs_end_with_the_templates_generation_prompt(processor):
    prompt = PromptTemplate()
    samples = _samples(2, ["Jump", "Run"], prompt)
    inputs = prompt_inputs(QwenVideoCollator(processor, padding_side="left"), samples, "jump")
    shipped = json.loads((QWEN / "chat_template.json").read_text())["chat_template"]
    question_only = [m for m in samples[0]["messages"] if m["role"] != "assistant"]
    text = processor.apply_chat_template(question_only, chat_template=shipped, add_generation_prompt=True)
    tail = text.split("<|vision_end|>")[1]
    ids = inputs["input_ids"][0].tolist()
    after_video = ids[ids.index(processor.tokenizer.convert_tokens_to_ids("<|vision_end|>")) + 1 :]
    assert processor.tokenizer.decode(after_video) == tail and tail.endswith("<|im_start|>assistant\n")
    assert inputs["input_ids"].shape == inputs["attention_mask"].shape == inputs["mm_token_type_ids"].shape


# -- the scripts, end to end ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A saved tiny model, a tiny distilled set + raw source registered as named sets, and a clean HF_HOME."""
    need_shared(QWEN)
    from compressa_hf.sources import parse_source_spec

    root = tmp_path_factory.mktemp("recipes")
    model_dir = save_tiny_model(TINY_CONFIG, root / "tiny-qwen", QWEN)
    rng = np.random.default_rng(0)
    n, k = 8, 4
    write_config(
        root / "tiny_distilled",
        DistilledConfig(
            name="ratio_0.5",
            video_ids=[f"train/{i:02d}" for i in range(n)],
            labels=[i % 2 for i in range(n)],
            latents=rng.integers(0, 256, size=(n, k, 3, 7, 7), dtype=np.uint8),  # pixel codec: 56 x 56 frames
            frame_indices=np.array([[2 + 8 * j for j in range(k)]] * n),
            timestamps=np.array([[(2 + 8 * j) / 30 for j in range(k)]] * n),
            fps=[30.0] * n,
            sources=[f"clip{i}" for i in range(n)],
            class_names=parse_source_spec(PROCEDURAL).class_names,
            meta={"codec_id": "pixel:avgpool8", "source": PROCEDURAL, "split": "train", "frames_per_video": k},
        ),
    )
    registry = root / "sets.yaml"
    registry.write_text(
        yaml.safe_dump(
            {
                "tiny_0.5": {"repo": str(root / "tiny_distilled"), "config": "ratio_0.5", "eval_source": PROCEDURAL},
                "tiny_full": {"source": PROCEDURAL, "eval_source": PROCEDURAL},
            }
        )
    )
    env = os.environ | {
        "PYTHONPATH": str(REPO),
        "HF_HOME": str(root / "hf_home"),  # no user accelerate config, a fresh datasets cache
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return {"root": root, "model": model_dir, "registry": str(registry), "env": env}


def run(cmd: list[str], env: dict, timeout: int = 300) -> str:
    out = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}"
    return out.stdout + out.stderr


def lora_b_norms(adapter_dir) -> dict[str, float]:
    from safetensors.torch import load_file

    weights = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    return {k: float(v.abs().sum()) for k, v in weights.items() if "lora_B" in k}


def compare_command(workspace, out, *flags) -> list:
    """recipes/compare_qwen.py on the tiny sets (LoRA recipes of tests/fixtures/recipes, one CPU process)."""
    return [
        sys.executable, REPO / "recipes" / "compare_qwen.py",
        "--dataset", "tiny", "--ratios", "0.5", "--method", "lora",
        "--recipe_dir", FIXTURES / "recipes", "--model_name_or_path", workspace["model"],
        "--accelerate_config", "", "--num_processes", "1", "--data_registry", workspace["registry"],
        "--output_dir", out, "--eval_args", " ".join(TINY_EVAL + ["--batch_size", "3"]), *flags,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def comparison(workspace):
    """recipes/compare_qwen.py on the tiny sets: zero-shot, LoRA on tiny_full and on tiny_0.5, each evaluated."""
    out = workspace["root"] / "compare"
    log = run(compare_command(workspace, out), workspace["env"], timeout=600)
    return out, log


@pytest.mark.real_data
@pytest.mark.slow
def test_compare_trains_evaluates_and_tabulates(comparison):
    out, log = comparison
    table = (out / "comparison.md").read_text()
    assert table in log  # printed too
    rows = {r["name"]: r for r in json.loads((out / "comparison.json").read_text())}
    assert set(rows) == {"zero_shot", "full", "distilled_0.5"} and all(r["finished"] for r in rows.values())
    for name in ("full", "distilled_0.5"):
        for method in ("loglik", "generate"):
            gain = rows[name][f"gain_vs_zero_shot_{method}"]
            assert gain == pytest.approx(
                100 * (rows[name][f"accuracy_{method}"] - rows["zero_shot"][f"accuracy_{method}"])
            )
    # Distilled samples carry K = 4 keyframes (8 visual tokens at 56 x 56), raw ones T = 8 frames (16 tokens).
    assert (rows["distilled_0.5"]["frames_per_sample"], rows["distilled_0.5"]["visual_tokens_per_sample"]) == (4, 8)
    assert (rows["full"]["frames_per_sample"], rows["full"]["visual_tokens_per_sample"]) == (8, 16)
    for line in ("| zero-shot |", "| full-data SFT |", "| distilled SFT, 0.5 % | 0.5 | 8 | 4 | 8 |"):
        assert line in table


@pytest.mark.real_data
@pytest.mark.slow
def test_lora_run_changes_the_adapters_and_writes_a_model_card(comparison):
    out, _ = comparison
    run_dir = out / "tiny_0.5"
    assert all(norm > 0 for norm in lora_b_norms(run_dir).values())  # PEFT starts every lora_B at exactly zero
    config = json.loads((run_dir / "adapter_config.json").read_text())
    assert "language_model" in config["target_modules"] and "visual" not in config["target_modules"]
    card = (run_dir / "README.md").read_text()
    assert "**tiny_0.5**" in card and "| ratio | 0.5 % |" in card and "config `ratio_0.5`" in card
    summary = json.loads((run_dir / "training_summary.json").read_text())
    assert summary["global_step"] == 2 and summary["method"] == "lora" and summary["num_train_samples"] == 8
    assert (run_dir / "processor_config.json").is_file() and (run_dir / "tokenizer.json").is_file()


@pytest.mark.real_data
@pytest.mark.slow
def test_evaluation_of_the_lora_output_is_reproduced_in_process(comparison):
    out, _ = comparison
    results = json.loads((out / "eval" / "distilled_0.5" / "results.json").read_text())
    assert results["num_samples"] == 4 and results["class_names"] == ["square event", "disc event"]
    records = [json.loads(line) for line in (out / "eval" / "distilled_0.5" / "predictions.jsonl").open()]
    assert [r["index"] for r in records] == [0, 1, 2, 3]
    assert results["accuracy_loglik"] == sum(r["loglik_pred"] == r["label"] for r in records) / 4
    assert all(r["generate_pred"] == match_answer(r["generated"], results["class_names"]) for r in records)

    # The adapter loads back onto its base and scores the first test clip as the script did.
    from compressa_hf.qwen.samples import raw_chat_samples
    from compressa_hf.qwen.video import QwenVideoConfig

    model, processor = load_for_eval(str(out / "tiny_0.5"), torch.float32)
    prompt = PromptTemplate()
    # the recipe's raw-video settings: 8 frames through qwen-vl-utils, pinned to 56 x 56
    reader = QwenVideoConfig(nframes=8, min_pixels=56 * 56, max_pixels=56 * 56)
    sample = raw_chat_samples(PROCEDURAL, "test", reader)[0]
    inputs = prompt_inputs(QwenVideoCollator(processor, padding_side="left"), [sample], "square event")
    scores = score_choices(model, inputs, choice_token_ids(processor.tokenizer, results["class_names"], prompt))
    np.testing.assert_allclose(scores[0].tolist(), records[0]["loglik_scores"], atol=2e-3)


@pytest.mark.real_data
@pytest.mark.slow
def test_full_sft_trains_the_language_model_and_merger_only(workspace):
    from transformers import AutoModelForImageTextToText

    out = workspace["root"] / "full_sft"
    run(
        [
            ACCELERATE, "launch", "--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", REPO / "recipes" / "sft_qwen.py", "--config", FIXTURES / "recipes" / "lora" / "config_tiny_full.yaml",
            "--model_name_or_path", workspace["model"], "--data_registry", workspace["registry"],
            "--use_peft", "false", "--tune_vision", "merger", "--max_steps", "1", "--output_dir", out,
        ],
        workspace["env"],
    )  # fmt: skip
    trained = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)
    before = AutoModelForImageTextToText.from_pretrained(workspace["model"], dtype=torch.float32)
    parts = qwen_parts(trained)
    after = dict(trained.named_parameters())
    changed = {n for n, p in before.named_parameters() if not torch.equal(p, after[n])}
    assert any(n.startswith(parts["merger"] + ".") for n in changed)
    assert any(n.startswith(parts["language"] + ".layers.") for n in changed)
    assert not any(n.startswith(parts["visual"] + ".") and not n.startswith(parts["merger"] + ".") for n in changed)
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["method"] == "full" and summary["data"] == "tiny_full" and summary["ratio"] is None
    assert "full training split" in (out / "README.md").read_text()


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("accelerate_config", ["zero2", "zero3"])
def test_lora_through_deepspeed_on_cpu(workspace, accelerate_config):
    """One process through a real DeepSpeedEngine; the first launch JIT-compiles a DeepSpeed op (~45 s)."""
    pytest.importorskip("deepspeed")
    out = workspace["root"] / accelerate_config
    run(
        [
            ACCELERATE, "launch", "--config_file", REPO / "accelerate_configs" / f"{accelerate_config}.yaml",
            "--num_processes", "1", "--mixed_precision", "no", REPO / "recipes" / "sft_qwen.py",
            "--config", TINY_RECIPE, "--model_name_or_path", workspace["model"],
            "--data_registry", workspace["registry"], "--output_dir", out,
        ],
        workspace["env"],
        timeout=600,
    )  # fmt: skip
    assert json.loads((out / "training_summary.json").read_text())["distributed_type"] == "DEEPSPEED"
    norms = lora_b_norms(out)  # ZeRO-3 must gather the shards: an unsaved shard would come back empty or zero
    assert len(norms) == 4 and all(norm > 0 for norm in norms.values())
    model, _ = load_for_eval(str(out), torch.float32)
    assert not any("lora" in n for n, _ in model.named_parameters())  # merged into the base for evaluation


@pytest.mark.real_data
@pytest.mark.slow
def test_compare_adds_equal_token_rows_by_average_pooling_and_svc(comparison, workspace):
    """The comparison rerun with `--equal_tokens`: finished rows are kept; full-data SFT at the distilled run's
    visual-token count is added, by pooling and by an SVC that `recipes/pretrain_svc.py` pre-trains first."""
    import shutil

    done, _ = comparison
    out = workspace["root"] / "compare_equal_tokens"
    shutil.copytree(done, out)  # the other tests read the first comparison as it was
    svc_args = "--dtype float32 --max_steps 2 --per_device_train_batch_size 4"
    log = run(compare_command(workspace, out, "--equal_tokens", "avgpool", "svc", "--svc_args", svc_args),
              workspace["env"], timeout=900)  # fmt: skip
    assert log.count("# done: ") == 5  # zero-shot, and SFT + evaluation of full and distilled_0.5
    rows = {r["name"]: r for r in json.loads((out / "comparison.json").read_text())}
    assert list(rows) == ["zero_shot", "full", "distilled_0.5", "avgpool_0.5", "svc_0.5"]
    # 8 raw frames at 56 px are a 4 x 2 x 2 token grid (16 tokens); the distilled row has 8: strides 2 x 1 x 1
    for name in ("avgpool_0.5", "svc_0.5"):
        row = rows[name]
        assert row["finished"] and row["num_train_samples"] == 8 and row["frames_per_sample"] == 8
        assert row["visual_tokens_per_sample"] == rows["distilled_0.5"]["visual_tokens_per_sample"] == 8
        assert row["token_compressor"]["strides"] == [2, 1, 1]
        results = json.loads((out / "eval" / name / "results.json").read_text())
        assert results["token_compressor"]["kind"] == name.split("_")[0] and results["num_samples"] == 4
    assert rows["svc_0.5"]["token_compressor"]["pretraining"]["global_step"] == 2
    assert rows["svc_0.5"]["token_compressor"]["tuned"] is True
    assert (out / "svc_2x1x1" / "compressor_model.safetensors").is_file()
    assert (out / "tiny_full_svc_0.5" / "token_compressor" / "compressor_model.safetensors").is_file()
    table = (out / "comparison.md").read_text()
    assert "| full data, average pooling to distilled 0.5 %'s tokens | 100 | 8 | 8 | 8 |" in table
    assert "| svc 2x1x1, pre-trained, tuned |" in table and "| avgpool 2x1x1 |" in table
