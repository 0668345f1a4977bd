"""The import paths that moved into `compressa_hf.qwen` keep working for one release: each warns once with a
`DeprecationWarning` naming its new modules, and hands out the very objects the new modules hold."""

from __future__ import annotations

import ast
import importlib
import sys
import warnings

import pytest

from tests.conftest import REPO

#: Old module -> {new module: the old public names it holds now}.
MOVED = {
    "compressa_hf.chat": {
        "compressa_hf.qwen.samples": (
            "DEFAULT_FPS DistilledChatTransform RawChatDataset check_codec_id distilled_chat_transform "
            "load_chat_dataset make_chat_sample raw_chat_samples video_metadata"
        ),
        "compressa_hf.qwen.collator": "IGNORE_INDEX QwenVideoCollator",
        "compressa_hf.qwen.prompts": "PROMPT_STYLES PromptTemplate humanize_class_name",
        "compressa_hf.qwen.chat_templates": "load_chat_template",
    },
    "compressa_hf.chat.samples": {
        "compressa_hf.qwen.samples": (
            "CARD_KEYS DEFAULT_FPS DistilledChatTransform RawChatDataset TIME_GRID_FPS TRANSFORM_COLUMNS "
            "card_config check_codec_id distilled_chat_transform load_chat_dataset make_chat_sample "
            "raw_chat_samples read_card_config read_raw_clip resolve_fps video_metadata"
        ),
    },
    "compressa_hf.chat.collator": {
        "compressa_hf.qwen.chat_templates": "CHAT_TEMPLATE_DIR load_chat_template",
        "compressa_hf.qwen.collator": "IGNORE_INDEX QwenVideoCollator TRAIN_ON qwen_side",
    },
    "compressa_hf.chat.prompts": {
        "compressa_hf.qwen.prompts": "PROMPT_STYLES PromptTemplate humanize_class_name",
    },
    "compressa_hf.sft": {
        "compressa_hf.qwen.run_files": (
            "LOCAL_RUN_FILE PUSH_IGNORE VOCABULARY_FILES describe_data eval_command model_card public_summary "
            "push_run run_summary set_frames_per_video set_ratio write_run_files"
        ),
        "compressa_hf.qwen.models": (
            "PROCESSOR_FILES freeze_vision keep_used_weight_conversions load_model lora_config lora_target_regex "
            "parameter_part qwen_config qwen_parts random_qwen save_tiny_model torch_dtype trainable_summary"
        ),
        "compressa_hf.qwen.sft": (
            "SAMPLE_KEYS SkipUnreadable as_hf_dataset check_kernels check_processes first_batch_stats num_samples "
            "train_chat_dataset zero3_init_disabled"
        ),
    },
    "compressa_hf.sft_trainer": {
        "compressa_hf.qwen.sft_trainer": (
            "NoTrainingStepError VideoSFTTrainer logged_train_loss parameter_groups "
            "score_labelled_positions_only_on_cpu"
        ),
    },
    "compressa_hf.qwen_eval": {
        "compressa_hf.qwen.evaluation": (
            "choice_token_ids choose evaluate_batch generate_answers load_for_eval match_answer normalize_answer "
            "prompt_inputs results_markdown score_choices summarize with_answer write_results"
        ),
        "compressa_hf.qwen.comparison": "comparison_markdown comparison_rows",
    },
    "compressa_hf.configs": {
        "compressa_hf.qwen.comparison": "CompareArguments",
        "compressa_hf.qwen.evaluation": "EvalArguments",
        "compressa_hf.qwen.sft_config": "LOSS_SPANS SFTScriptArguments TUNE_VISION VideoSFTConfig",
        "compressa_hf.qwen.compress.config": "PretrainSVCArguments TOKEN_COMPRESSORS TokenCompressorArguments",
        "compressa_hf.qwen.families": "TEXT_LINEAR_MODULES VISION_LINEAR_MODULES",
        "compressa_hf.qwen.data_args": "VIDEO_READERS VideoDataArguments",
    },
}


def _fresh_import(monkeypatch, old: str):
    """Import `old` as if for the first time in this process (its stand-in body, and so its warning, runs again)."""
    monkeypatch.delitem(sys.modules, old, raising=False)
    return importlib.import_module(old)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_warns_once_naming_its_new_modules(monkeypatch, old):
    with pytest.warns(DeprecationWarning) as record:
        _fresh_import(monkeypatch, old)
    (message,) = [str(w.message) for w in record if f"`{old}`" in str(w.message)]
    for new in MOVED[old]:
        assert f"`{new}`" in message
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        importlib.import_module(old)  # cached: no second warning
    assert not [w for w in again if f"`{old}`" in str(w.message)]


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_hands_out_the_new_objects(monkeypatch, old):
    with pytest.warns(DeprecationWarning):
        module = _fresh_import(monkeypatch, old)
    expected = {name: new for new, names in MOVED[old].items() for name in names.split()}
    assert sorted(module.__all__) == sorted(expected)
    for name, new in expected.items():
        assert getattr(module, name) is getattr(importlib.import_module(new), name), f"{old}.{name}"


def test_our_own_code_imports_no_old_path():
    """The stand-ins are for users: compressa_hf, the recipes, the benchmarks and the tests import the new modules."""
    stand_ins = {REPO / (old.replace(".", "/") + ".py") for old in MOVED} | {REPO / "compressa_hf/chat/__init__.py"}
    found = []
    for folder in ("compressa_hf", "recipes", "bench", "tests"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path in stand_ins or path == REPO / "tests/test_deprecated_paths.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
                names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names += [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
                found += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names if n in MOVED]
    assert not found, found
