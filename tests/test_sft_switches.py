"""The SFT recipe's switches, and runs that report the truth.

Switches: TRL's `packing` / `padding_free` (batches packed by the collator) and `completion_only_loss` (where the loss
goes) reaching the run, a learning rate per model part (`vision_lr`, `merger_lr`), `attn_implementation` and `use_liger_kernel` wired through the recipe (the GPU suite,
`tests/test_gpu.py`, runs the kernels; here the wiring and the refusals). Truth: a run that made no optimizer step
fails (a resumed finished checkpoint carries its loss over), the Hub gets the folder after its card and summary exist,
the card's evaluation command runs as printed, a ZeRO-3 full-SFT save keeps the base model's weight names, and a
multi-process launch on CPU either forms one run or is refused.

`recipes/sft_qwen.py` runs in-process (its `main`) on the tiny model and sets of `tests/test_recipes.py`; only the
multi-process launch goes through `accelerate launch`, since the launch is what it tests.
"""

from __future__ import annotations

import concurrent.futures
import copy
import fnmatch
import json
import shlex
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from compressa_hf.qwen.models import keep_used_weight_conversions, lora_config, qwen_parts, random_qwen
from compressa_hf.qwen.prompts import PromptTemplate
from compressa_hf.qwen.sft import as_hf_dataset
from compressa_hf.qwen.sft_config import SFTScriptArguments, VideoSFTConfig
from compressa_hf.qwen.sft_trainer import NoTrainingStepError, VideoSFTTrainer, logged_train_loss
from tests import test_recipes
from tests.conftest import QWEN, REPO, need_shared
from tests.test_recipes import ACCELERATE, FIXTURES, TINY_CONFIG, _samples, load_script

#: The saved tiny model and the named sets `tiny_0.5` / `tiny_full` (a module-scoped fixture, rebuilt for this module).
workspace = test_recipes.workspace

TINY_FULL = FIXTURES / "recipes" / "lora" / "config_tiny_full.yaml"
SHIPPED_LORA = REPO / "recipes" / "qwen2_5_vl_7b" / "lora" / "config_hmdb51_0.41.yaml"


def sft_args(workspace, output_dir, *flags) -> list[str]:
    """`sft_qwen.py` flags for the tiny raw set `tiny_full` (LoRA, CPU) with `flags` on top."""
    return [
        "--config", str(TINY_FULL), "--model_name_or_path", workspace["model"],
        "--data_registry", workspace["registry"], "--output_dir", str(output_dir), *map(str, flags),
    ]  # fmt: skip


def run_sft(workspace, output_dir, *flags):
    """`recipes/sft_qwen.py`'s main, in this process; returns the parsed (script, training, model) arguments."""
    script = load_script("sft_qwen")
    parsed = script.make_parser().parse_args_and_config(sft_args(workspace, output_dir, *flags))
    script.main(*copy.deepcopy(parsed))
    return parsed


# -- packing and the loss switches, through the recipe -------------------------------------------------------------


@pytest.mark.real_data
@pytest.mark.parametrize(
    "flags", [["--padding_free", "true"], ["--packing", "true", "--completion_only_loss", "false"]]
)
def test_packing_and_the_loss_switches_reach_the_run(workspace, tmp_path, flags, monkeypatch):
    """TRL would refuse a custom collator with padding_free, or pack the data set itself: the recipe packs each batch
    in its collator, and the summary says how the run trained."""
    import compressa_hf.qwen.sft_trainer as sft_trainer

    seen = []
    step = sft_trainer.VideoSFTTrainer.training_step

    def training_step(self, model, inputs, *args, **kwargs):
        seen.append({k: tuple(v.shape) for k, v in inputs.items() if torch.is_tensor(v)})
        return step(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(sft_trainer.VideoSFTTrainer, "training_step", training_step)
    _, training_args, _ = run_sft(workspace, tmp_path / "out", *flags)
    assert training_args.packed  # the switches are left as given
    summary = json.loads((tmp_path / "out" / "training_summary.json").read_text())
    assert summary["global_step"] == 2 and summary["packing"] is True
    assert summary["loss_on"] == ("sequence" if "--completion_only_loss" in flags else "answer")
    assert len(seen) == 2 and all("attention_mask" not in b and b["input_ids"][0] == 1 for b in seen)
    assert all(b["position_ids"][:2] == (4, 1) for b in seen)


@pytest.mark.real_data
def test_packing_with_a_collator_that_does_not_pack_is_refused(processor, tmp_path):
    with pytest.raises(ValueError, match="the data collator does not pack"):
        make_trainer(processor, tmp_path, "frozen", use_peft=True, padding_free=True)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vision_lr": 0.0}, "`vision_lr` must be > 0"),
        ({"merger_lr": -1e-5}, "`merger_lr` must be > 0"),
        ({"push_to_hub": True, "hub_strategy": "checkpoint"}, "`hub_strategy` 'checkpoint'"),
    ],
)
def test_sft_config_validation_names_the_bad_value(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        VideoSFTConfig(output_dir=str(tmp_path), bf16=False, **kwargs)


# -- a learning rate per model part --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def processor():
    need_shared(QWEN)
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(QWEN))


def make_trainer(processor, tmp_path, tune_vision="tower", use_peft=True, **config) -> VideoSFTTrainer:
    """A `VideoSFTTrainer` on the tiny model and 2 chat samples; `config` goes to `VideoSFTConfig`."""
    from trl import ModelConfig

    from compressa_hf.qwen.collator import QwenVideoCollator
    from compressa_hf.qwen.models import freeze_vision
    from compressa_hf.qwen.sft import SkipUnreadable

    model = random_qwen(TINY_CONFIG)
    script_args = SFTScriptArguments(tune_vision=tune_vision)
    peft_config = None
    if use_peft:
        peft_config = lora_config(
            model, ModelConfig(use_peft=True, lora_r=4, lora_target_modules=["q_proj"]), script_args
        )
    else:
        freeze_vision(model, tune_vision)
    args = VideoSFTConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", max_steps=1, save_strategy="no",
        per_device_train_batch_size=2, learning_rate=1e-3, weight_decay=0.1, **config,
    )  # fmt: skip
    return VideoSFTTrainer(
        model=model,
        args=args,
        train_dataset=as_hf_dataset(_samples(2, ["Jump", "Run"], PromptTemplate())),
        data_collator=SkipUnreadable(QwenVideoCollator(processor)),
        processing_class=processor,
        peft_config=peft_config,
    )


@pytest.mark.real_data
@pytest.mark.parametrize(
    "use_peft, lrs, expected",
    [
        (True, {"vision_lr": 1e-5, "merger_lr": 1e-4}, {"visual": 1e-5, "merger": 1e-4, "language": 1e-3}),
        (True, {"merger_lr": 1e-4}, {"visual": 1e-3, "merger": 1e-4, "language": 1e-3}),
        (False, {"vision_lr": 1e-5, "merger_lr": 1e-4}, {"visual": 1e-5, "merger": 1e-4, "language": 1e-3}),
    ],
    ids=["lora", "lora-merger-only", "full"],
)
def test_each_model_part_trains_at_its_own_learning_rate(processor, tmp_path, use_peft, lrs, expected):
    trainer = make_trainer(processor, tmp_path, "tower", use_peft, **lrs)
    optimizer = trainer.create_optimizer()
    parts = qwen_parts(trainer.model.get_base_model() if use_peft else trainer.model)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    trainable = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert len(group_of) == sum(len(g["params"]) for g in optimizer.param_groups) == len(trainable)  # each once
    decays, seen = set(trainer.get_decay_parameter_names(trainer.model)), set()
    for name, param in trainable.items():
        bare = name.removeprefix("base_model.model.")
        part = next((k for k in ("merger", "visual", "language") if bare.startswith(parts[k] + ".")), "other")
        group = group_of[id(param)]
        assert group["lr"] == expected.get(part, 1e-3), name
        assert group["weight_decay"] == (0.1 if name in decays else 0.0), name  # Trainer's own split
        seen.add(part)
    assert {"visual", "merger", "language"} <= seen
    if not (use_peft and len(lrs) == 2):
        return
    # The schedule scales every group alike: after one step of the linear decay the rates keep their ratios.
    trainer.train()
    ratios = {g["lr"] / g["initial_lr"] for g in trainer.optimizer.param_groups}
    assert len(ratios) == 1


@pytest.mark.real_data
@pytest.mark.parametrize(
    "tune_vision, key", [("frozen", "vision_lr"), ("merger", "vision_lr"), ("frozen", "merger_lr")]
)
def test_a_learning_rate_for_a_part_that_does_not_train_is_refused(processor, tmp_path, tune_vision, key):
    trainer = make_trainer(processor, tmp_path, tune_vision, use_peft=True, **{key: 1e-5})
    with pytest.raises(ValueError, match=f"`{key}` is 1e-05 but no parameter of the"):
        trainer.create_optimizer()


# -- attention kernels and Liger -----------------------------------------------------------------------------------


@pytest.mark.real_data
@pytest.mark.parametrize("override", [None, "eager"])
def test_the_recipes_attention_implementation_reaches_both_towers(workspace, tmp_path, override):
    from compressa_hf.qwen.models import load_model

    flags = ["--config", str(SHIPPED_LORA), "--model_name_or_path", workspace["model"], "--dtype", "float32"]
    flags += ["--output_dir", str(tmp_path), "--use_cpu", "true"] + (
        ["--attn_implementation", override] if override else []
    )
    _, _, model_args = load_script("sft_qwen").make_parser().parse_args_and_config(flags)
    model = load_model(model_args)
    expected = override or "sdpa"  # the shipped recipes' setting
    assert model_args.attn_implementation == expected
    config = model.config
    assert (config.text_config._attn_implementation, config.vision_config._attn_implementation) == (expected,) * 2


@pytest.mark.real_data
@pytest.mark.parametrize(
    "flags, module, needs",
    [
        (["--attn_implementation", "flash_attention_2"], "flash_attn", "attn_implementation flash_attention_2"),
        (["--use_liger_kernel", "true"], "liger_kernel", "use_liger_kernel: true"),
    ],
)
def test_kernels_this_machine_cannot_run_are_refused_before_the_model_loads(
    workspace, tmp_path, monkeypatch, flags, module, needs
):
    import importlib.util

    import compressa_hf.qwen.models

    if torch.cuda.is_available() and importlib.util.find_spec(module) is not None:
        pytest.skip(f"this machine can run {module}: tests/test_gpu.py runs it")

    def no_load(*args, **kwargs):
        raise AssertionError("the model loaded before the refusal")

    monkeypatch.setattr(compressa_hf.qwen.models, "load_model", no_load)
    with pytest.raises((ImportError, ValueError), match=needs):
        run_sft(workspace, tmp_path / "out", *flags)
    assert not (tmp_path / "out").exists()


class _LigerApplied(Exception):
    pass


@pytest.mark.real_data
def test_use_liger_kernel_reaches_the_trainer_with_the_fused_loss_off(processor, tmp_path, monkeypatch):
    """On CPU Liger cannot run: the call that would patch the model is caught and stops `train()`."""
    import transformers.trainer

    seen = {}

    def apply_liger_kernel(model, config):
        seen.update(model=model, config=config)
        raise _LigerApplied

    monkeypatch.setattr(transformers.trainer, "apply_liger_kernel", apply_liger_kernel)
    with pytest.warns(FutureWarning, match="use_liger_kernel"):  # TRL points to the Hub kernels instead
        trainer = make_trainer(processor, tmp_path, "frozen", use_peft=True, use_liger_kernel=True)
    with pytest.raises(_LigerApplied):
        trainer.train()
    assert seen["model"] is trainer.model and seen["config"]["fused_linear_cross_entropy"] is False


def test_the_cpu_lm_head_scores_labelled_positions_only_with_the_same_loss_and_gradients(monkeypatch):
    """`score_labelled_positions_only_on_cpu`: TRL's fused head on CPU takes the labelled-positions path (as on
    Triton devices) and gives the loss, log-probabilities and gradients of scoring every position (fp32, 1e-5)."""
    import trl.trainer.utils as trl_utils
    from trl.kernels.chunked_logprob import _use_triton as trls_own_choice  # never patched
    from trl.trainer.utils import add_fused_lm_head

    from compressa_hf.qwen.sft_trainer import score_labelled_positions_only_on_cpu

    # TRL's own choice (a trainer built earlier in this session has patched it; undone after the test)
    monkeypatch.setattr(trl_utils, "_use_triton", trls_own_choice)
    assert trls_own_choice(torch.device("cpu")) is False  # on CPU: score every position

    torch.manual_seed(0)
    model = random_qwen(TINY_CONFIG).float()
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    ids = torch.randint(0, 1000, (2, 40))
    labels = torch.full_like(ids, -100)
    labels[0, 30:34], labels[1, 20:25] = ids[0, 30:34], ids[1, 20:25]
    probe = model.get_output_embeddings().weight

    def scored():
        model.zero_grad()
        counted = {}

        def counting_apply(hidden, *args, **kwargs):
            counted["rows"] = hidden.shape[0]
            return apply(hidden, *args, **kwargs)

        apply = trl_utils._ChunkedLogProbFunction.apply
        monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting_apply)
        out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", apply)
        out.loss.backward()
        return out, probe.grad.clone(), counted["rows"]

    full, full_grad, full_rows = scored()
    assert score_labelled_positions_only_on_cpu() and score_labelled_positions_only_on_cpu()  # idempotent
    compact, compact_grad, compact_rows = scored()
    assert (full_rows, compact_rows) == (2 * 39, 9)  # every shifted position against the 9 labelled ones
    torch.testing.assert_close(compact.loss, full.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compact.log_probs, full.log_probs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compact.entropy, full.entropy, rtol=1e-5, atol=1e-5)
    assert torch.equal(compact.is_top1, full.is_top1)
    torch.testing.assert_close(compact_grad, full_grad, rtol=1e-5, atol=1e-7)
    assert full_grad.abs().sum() > 0


# -- runs that trained nothing -------------------------------------------------------------------------------------


@pytest.mark.real_data
def test_a_run_without_an_optimizer_step_fails_and_saves_nothing(workspace, tmp_path):
    out = tmp_path / "out"
    # 8 training clips, batches of 16 with the last partial batch dropped: no batch at all.
    with pytest.raises(NoTrainingStepError, match="8 training samples give 0 batches.*dataloader_drop_last True"):
        run_sft(workspace, out, "--per_device_train_batch_size", 16, "--dataloader_drop_last", "true")
    assert not out.exists() or not any(out.iterdir())


@pytest.fixture(scope="module")
def finished_run(workspace, tmp_path_factory):
    """One epoch of one step (2 clips, batch 2) with a checkpoint, pushed to a Hub that records what it was sent."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoUrl

    out = tmp_path_factory.mktemp("finished") / "run"
    pushes = []

    def create_repo(self, repo_id, **kwargs):
        pushes.append({"create_repo": repo_id, **kwargs})
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=(), **kwargs):
        root = Path(folder_path)
        files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
        files = {f: p for f, p in files.items() if not any(fnmatch.fnmatch(f, i) for i in ignore_patterns)}
        card = files["README.md"].read_text() if "README.md" in files else ""
        pushes.append({"upload_folder": repo_id, "files": sorted(files), "card": card, **kwargs})
        pushes[-1]["ignore_patterns"] = list(ignore_patterns)
        if kwargs.get("run_as_future"):  # how Trainer pushes checkpoints: it waits on the future
            done = concurrent.futures.Future()
            done.set_result(None)
            return done

    train = ["--max_steps", -1, "--num_train_epochs", 1, "--max_train_samples", 2, "--per_device_train_batch_size", 2]
    train += ["--save_strategy", "epoch"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HfApi, "create_repo", create_repo)
        patch.setattr(HfApi, "upload_folder", upload_folder)
        parsed = run_sft(workspace, out, *train, "--push_to_hub", "true", "--hub_model_id", "someone/tiny-run")
    return {"dir": out, "pushes": pushes, "args": parsed, "train_flags": train}


@pytest.mark.real_data
@pytest.mark.slow
def test_resuming_a_finished_checkpoint_carries_its_loss_over_and_says_no_step_ran(workspace, finished_run, tmp_path):
    checkpoint = finished_run["dir"] / "checkpoint-1"
    logged = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    out = tmp_path / "resumed"
    run_sft(workspace, out, *finished_run["train_flags"], "--resume_from_checkpoint", checkpoint)
    summary = json.loads((out / "training_summary.json").read_text())
    assert (summary["global_step"], summary["steps_this_run"], summary["resumed_from_step"]) == (1, 0, 1)
    expected = logged_train_loss(logged, 1)
    assert expected is not None and expected > 0  # Trainer itself reports 0.0 here
    assert summary["train_loss"] == pytest.approx(expected, abs=1e-4)
    card = (out / "README.md").read_text()
    assert f"| final training loss | {summary['train_loss']} |" in card and "no step ran in this run" in card


def test_logged_train_loss_weights_each_logging_interval_by_its_steps():
    history = [{"loss": 2.0, "step": 2}, {"loss": 1.0, "step": 3}, {"eval_loss": 9.0, "step": 3}, {"train_loss": 0.0}]
    assert logged_train_loss(history, 3) == pytest.approx((2 * 2 + 1) / 3)
    assert logged_train_loss(history, 2) == 2.0 and logged_train_loss([], 5) is None


# -- push, card ----------------------------------------------------------------------------------------------------


@pytest.mark.real_data
@pytest.mark.slow
def test_the_hub_gets_the_folder_after_its_card_and_summary_exist(finished_run):
    create, upload = finished_run["pushes"]  # one repo, one upload: nothing from inside save_model
    assert create["create_repo"] == "someone/tiny-run" and upload["upload_folder"] == "someone/tiny-run"
    assert {"training_summary.json", "README.md", "adapter_model.safetensors"} <= set(upload["files"])
    assert (finished_run["dir"] / "checkpoint-1").is_dir()
    assert not any(f.startswith("checkpoint-") for f in upload["files"])
    assert upload["card"] == (finished_run["dir"] / "README.md").read_text()  # our card, not TRL's generic one
    assert "| named set | `tiny_full` |" in upload["card"]


@pytest.mark.real_data
@pytest.mark.slow
def test_the_cards_evaluation_command_runs_as_printed(finished_run, tmp_path):
    from compressa_hf.publish import find_local_paths, public_command

    card = (finished_run["dir"] / "README.md").read_text()
    printed = card.split("Evaluate on the real test split:")[1].split("```bash\n")[1].split("\n```")[0]
    # The card names this machine's folders by their last component; `_local_run.json` keeps the command as run here.
    command = json.loads((finished_run["dir"] / "_local_run.json").read_text())["summary"]["eval_command"]
    assert printed == public_command(command) and not find_local_paths(printed)
    argv = shlex.split(command)
    assert argv[:3] == ["accelerate", "launch", "recipes/eval_qwen.py"]
    evaluation = load_script("eval_qwen")
    (eval_args,) = evaluation.make_parser().parse_args_and_config(argv[3:])
    script_args = finished_run["args"][0]
    # What training read and asked, evaluation reads and asks: the named set (from its registry), frames, prompt.
    assert eval_args.named_set() == script_args.named_set()
    assert eval_args.clip_config() == script_args.clip_config()
    assert eval_args.prompt_template() == script_args.prompt_template()
    assert (eval_args.fps, eval_args.max_fps, eval_args.frame_size) == (
        script_args.fps,
        script_args.max_fps,
        script_args.frame_size,
    )
    # And it runs: the printed flags plus where to write and how little to do.
    extra = ["--output_dir", str(tmp_path), "--dtype", "float32", "--max_samples", "1", "--max_new_tokens", "2"]
    (run_args,) = evaluation.make_parser().parse_args_and_config(argv[3:] + extra)
    evaluation.main(run_args)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["data"] == "tiny_full" and results["num_samples"] == 1


def test_the_evaluation_command_carries_every_data_setting_that_differs_from_the_default():
    from compressa_hf.qwen.run_files import eval_command

    trained = SFTScriptArguments(
        data="tiny_full", data_registry="sets dir/sets.yaml", max_fps=None, question="Which of {choices}?",
        humanize_class_names=False, video_reader="clips", num_frames=8, clip_size=56, tune_vision="merger",
    )  # fmt: skip
    argv = shlex.split(eval_command("out dir", trained))[3:]
    (evaluated,) = load_script("eval_qwen").make_parser().parse_args_and_config(argv)
    assert evaluated.model_name_or_path == "out dir"
    for name in ("data", "data_registry", "max_fps", "question", "humanize_class_names", "video_reader", "num_frames"):
        assert getattr(evaluated, name) == getattr(trained, name), name
    assert evaluated.clip_config() == trained.clip_config()
    assert "--tune_vision" not in argv and "--video_fps" not in argv  # training-only keys, defaults


# -- the saved model -----------------------------------------------------------------------------------------------


@pytest.mark.real_data
def test_a_zero3_loaded_model_saves_its_weights_under_the_base_models_names(workspace, tmp_path):
    """transformers' ZeRO-3 loader (run here without DeepSpeed: the renamings it keeps are what matters) leaves the
    save renaming `model.language_model.*` to `model.model.*`; the recipe's `keep_used_weight_conversions` fixes it."""
    from safetensors.torch import load_file
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.integrations.deepspeed import _load_state_dict_into_zero3_model
    from transformers.modeling_utils import LoadStateDictConfig

    base = f"{workspace['model']}/model.safetensors"
    base_names = set(safe_open(base, "pt").keys())
    assert any(n.startswith("model.layers.") for n in base_names)  # the released layout, which readers expect
    model = random_qwen(TINY_CONFIG, seed=1)
    config = LoadStateDictConfig(weight_mapping=get_model_conversion_mapping(model))
    _load_state_dict_into_zero3_model(model, load_file(base), config)
    keep_used_weight_conversions(model)  # what recipes/sft_qwen.py does right after loading
    model.save_pretrained(tmp_path)
    assert set(safe_open(str(tmp_path / "model.safetensors"), "pt").keys()) == base_names


# -- launches ------------------------------------------------------------------------------------------------------


@pytest.mark.real_data
@pytest.mark.slow
def test_two_processes_on_cpu_form_one_run_or_are_refused(workspace, tmp_path):
    """accelerate_configs/ddp.yaml with 2 processes on a machine without GPUs, as its comment says to run it."""
    import subprocess

    if torch.cuda.is_available():
        pytest.skip("tests the launch on a machine without GPUs")
    launch = [ACCELERATE, "launch", "--config_file", REPO / "accelerate_configs" / "ddp.yaml", "--num_processes", "2"]
    launch += ["--mixed_precision", "no", REPO / "recipes" / "sft_qwen.py"]
    flags = ["--max_steps", 1, "--max_train_samples", 4]
    # Without --use_cpu the two processes join no group: refused before anything loads, nothing written.
    refused = subprocess.run(
        [str(c) for c in launch + sft_args(workspace, tmp_path / "alone", *flags)],
        env=workspace["env"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode != 0 and "accelerate launched 2 processes, but this run sees 1" in refused.stderr
    assert not (tmp_path / "alone").exists()
    # With it they train as one DDP run over gloo.
    out = tmp_path / "ddp"
    done = subprocess.run(
        [str(c) for c in launch + sft_args(workspace, out, *flags, "--use_cpu", "true")],
        env=workspace["env"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((out / "training_summary.json").read_text())
    assert (summary["num_processes"], summary["distributed_type"], summary["global_step"]) == (2, "MULTI_CPU", 1)
