"""Packed (padding-free) video batches for every Qwen-VL family: a packed row trains exactly as its samples one at a
time, its positions restart per sample, and the switches that ask for it (`packing`, `padding_free`) and for where the
loss goes (`completion_only_loss`, `assistant_only_loss`) are honoured.

The equivalence is checked in fp32 on CPU on three samples of different lengths (1, 4 and 6 frames of different sizes,
answers of 1 to 3 tokens): each sample's loss read from the packed row's logits equals its loss alone within 1e-5, and
the packed batch's gradient equals the token-weighted mean of the single-sample gradients within 1e-3 of each
tensor's largest entry (measured: 2e-6 for the attention-only families, 8e-5 for Qwen3.5, whose Gated DeltaNet runs a
chunked recurrence in another order of sums). Two controls show the checks can fail: Qwen3.5 without
`prepare_packing` (its linear attention carries state across samples) and positions without the text row (attention
across samples) both give losses that differ by far more.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compressa_hf.qwen import FAMILIES
from compressa_hf.qwen.collator import IGNORE_INDEX, QwenVideoCollator
from compressa_hf.qwen.models import random_qwen
from compressa_hf.qwen.packing import is_prepared, pack_batch, prepare_packing, rope_index_of, sample_ids
from compressa_hf.qwen.prompts import PromptTemplate
from compressa_hf.qwen.samples import make_chat_sample, video_metadata
from compressa_hf.qwen.sft_config import VideoSFTConfig
from tests.conftest import QWEN, need_shared
from tests.test_families import NAMES, TINY, tokenizer_dir

CLASS_NAMES = ["ApplyEyeMakeup", "Run", "brush_hair"]
LOSS_ATOL = 1e-5
GRAD_RTOL = 1e-3


def _sample(frames: int, size: int, label: int) -> dict:
    rng = np.random.default_rng(10 * label + frames)
    prompt = PromptTemplate()
    video = rng.integers(0, 256, size=(frames, size, size, 3), dtype=np.uint8)
    meta = video_metadata([4 * i for i in range(frames)], 30.0, total_num_frames=4 * frames)
    return make_chat_sample(video, label, prompt.class_texts(CLASS_NAMES), prompt, meta, f"v{label}")


SAMPLES = [_sample(4, 64, 0), _sample(1, 32, 1), _sample(6, 48, 2)]


@pytest.fixture(scope="module")
def processors(qwen3_5_tokenizer):
    need_shared(QWEN)
    from transformers import AutoProcessor

    from compressa_hf.qwen import build_processor

    out = {n: build_processor(n, tokenizer_dir(n, qwen3_5_tokenizer)) for n in NAMES if n != "qwen2_5_vl"}
    out["qwen2_5_vl"] = AutoProcessor.from_pretrained(str(QWEN))
    return out


def _grads(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _per_sample_losses(logits: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor) -> list[float]:
    """Mean next-token loss of each sample of one packed row."""
    logp = logits[0, :-1].float().log_softmax(-1)
    target, owner = labels[0, 1:], ids[0, :-1]
    out = []
    for i in range(int(ids.max()) + 1):
        keep = (owner == i) & (target != IGNORE_INDEX)
        out.append(float(-logp[keep].gather(-1, target[keep, None]).mean()))
    return out


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_a_packed_batch_trains_as_its_samples_one_at_a_time(processors, name):
    torch.manual_seed(0)
    model = random_qwen(TINY[name]).train()
    processor = processors[name]
    padded = QwenVideoCollator(processor)
    packed = QwenVideoCollator(processor, packing=True, rope_index=prepare_packing(model))

    losses, counts, summed = [], [], None
    for sample in SAMPLES:
        batch = padded([sample])
        count = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        out = model(**batch)
        grads = _grads(model, out.loss * count)
        summed = grads if summed is None else {k: summed[k] + grads[k] for k in grads}
        losses.append(float(out.loss))
        counts.append(count)
    expected = {k: v / sum(counts) for k, v in summed.items()}

    batch = packed(SAMPLES)
    assert set(batch) >= {"input_ids", "labels", "position_ids", "pixel_values_videos", "video_grid_thw"}
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    ids = sample_ids(batch["position_ids"][0])
    lengths = [int((padded([s])["attention_mask"]).sum()) for s in SAMPLES]
    assert torch.bincount(ids[0]).tolist() == lengths  # no padding: every token is a sample's
    out = model(**batch)
    assert _per_sample_losses(out.logits, batch["labels"], ids) == pytest.approx(losses, abs=LOSS_ATOL)
    assert float(out.loss) == pytest.approx(sum(c * v for c, v in zip(counts, losses)) / sum(counts), abs=LOSS_ATOL)
    got = _grads(model, out.loss)
    assert got.keys() == expected.keys()
    assert (
        any(".visual." in k for k in got)
        and any("linear_attn" in k for k in got) == FAMILIES[name].has_linear_attention
    )
    for key, want in expected.items():
        torch.testing.assert_close(got[key], want, rtol=0, atol=GRAD_RTOL * float(want.abs().max()) + 1e-8)
    # the padded batch's loss is the same number: packing changes the cost, not the objective
    assert float(model(**padded(SAMPLES)).loss) == pytest.approx(float(out.loss), abs=LOSS_ATOL)


@pytest.mark.real_data
@pytest.mark.parametrize("name", NAMES)
def test_packed_positions_are_each_samples_own_and_restart(processors, name):
    model = random_qwen(TINY[name])
    processor = processors[name]
    rope_index = prepare_packing(model)
    batch = QwenVideoCollator(processor, packing=True, rope_index=rope_index)(SAMPLES)
    positions, start = batch["position_ids"][:, 0], 0
    for sample in SAMPLES:
        alone = QwenVideoCollator(processor)([sample])
        n = int(alone["attention_mask"].sum())
        extra = {k: alone[k] for k in ("video_grid_thw", "second_per_grid_ts") if k in alone}
        own, _ = rope_index(alone["input_ids"], mm_token_type_ids=alone["mm_token_type_ids"], **extra)
        assert positions[0, start : start + n].tolist() == list(range(n))  # the text row restarts
        assert torch.equal(positions[1:, start : start + n], own[:, 0])  # 3D rows as the model places it alone
        assert batch["labels"][0, start] == IGNORE_INDEX  # never predicted from the previous sample
        assert torch.equal(batch["input_ids"][0, start : start + n], alone["input_ids"][0])
        start += n
    assert start == batch["input_ids"].shape[1]


@pytest.mark.real_data
@pytest.mark.parametrize("control", ["qwen3_5 without prepare_packing", "3-row positions"])
def test_the_equivalence_fails_without_what_keeps_samples_apart(processors, control):
    """Controls: the checks above would catch state flowing through Qwen3.5's linear attention, or attention across
    samples once the text position row is gone."""
    name = "qwen3_5" if control.startswith("qwen3_5") else "qwen2_5_vl"
    model = random_qwen(TINY[name]).eval()
    processor = processors[name]
    with torch.no_grad():
        alone = [float(model(**QwenVideoCollator(processor)([s])).loss) for s in SAMPLES]
    if control.startswith("qwen3_5"):
        batch = pack_batch(QwenVideoCollator(processor)(SAMPLES), rope_index_of(model))  # no bounds hook
        assert not is_prepared(model)
        ids = sample_ids(batch["position_ids"][0])
    else:
        batch = QwenVideoCollator(processor, packing=True, rope_index=prepare_packing(model))(SAMPLES)
        ids = sample_ids(batch["position_ids"][0])
        batch["position_ids"] = batch["position_ids"][1:]
    with torch.no_grad():
        got = _per_sample_losses(model(**batch).logits, batch["labels"], ids)
    assert got[0] == pytest.approx(alone[0], abs=LOSS_ATOL)  # the first sample sees nothing before it
    assert max(abs(a - b) for a, b in zip(got[1:], alone[1:])) > 10 * LOSS_ATOL


def test_prepare_packing_is_idempotent_and_leaves_the_weights_alone():
    model = random_qwen(TINY["qwen3_5"])
    names = [n for n, _ in model.named_parameters()]
    assert not is_prepared(model)
    prepare_packing(model)
    prepare_packing(model)
    assert is_prepared(model) and [n for n, _ in model.named_parameters()] == names
    layer = next(m for m in model.modules() if hasattr(m, "linear_attn"))
    assert len(layer._forward_pre_hooks) == 1
    assert is_prepared(random_qwen(TINY["qwen2_vl"]))  # nothing to prepare without linear attention


@pytest.mark.real_data
def test_the_collator_refuses_packing_without_positions(processors):
    with pytest.raises(ValueError, match="rope_index"):
        QwenVideoCollator(processors["qwen3_5"], packing=True)
    with pytest.raises(ValueError, match="padding_side='right'"):
        QwenVideoCollator(processors["qwen3_5"], packing=True, rope_index=lambda *a, **k: None, padding_side="left")
    with pytest.raises(ValueError, match="train_on"):
        QwenVideoCollator(processors["qwen3_5"], train_on="prompt")


# -- the switches --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, packed",
    [
        ({}, False),
        ({"packing": True}, True),
        ({"padding_free": True}, True),
        ({"packing": True, "padding_free": True}, True),
    ],
)
def test_packing_and_padding_free_are_honoured(tmp_path, flags, packed):
    args = VideoSFTConfig(output_dir=str(tmp_path), bf16=False, **flags)
    assert args.packed == packed and all(getattr(args, k) == v for k, v in flags.items())


def test_a_packing_strategy_that_cuts_samples_is_refused(tmp_path):
    with pytest.raises(ValueError, match="`packing_strategy` 'wrapped'"):
        VideoSFTConfig(output_dir=str(tmp_path), bf16=False, packing=True, packing_strategy="wrapped")


@pytest.mark.parametrize(
    "completion_only_loss, assistant_only_loss, train_on",
    [
        (None, False, "answer"),  # TRL's defaults: a prompt-completion sample learns its completion
        (True, False, "answer"),
        (None, True, "answer"),
        (False, True, "answer"),  # assistant-only: the one assistant turn
        (True, True, "answer"),
        (False, False, "sequence"),  # both off: TRL's "entire sequence"
    ],
)
def test_every_value_of_the_loss_switches_is_honoured(tmp_path, completion_only_loss, assistant_only_loss, train_on):
    args = VideoSFTConfig(
        output_dir=str(tmp_path),
        bf16=False,
        completion_only_loss=completion_only_loss,
        assistant_only_loss=assistant_only_loss,
    )
    assert args.train_on == train_on


@pytest.mark.real_data
@pytest.mark.parametrize("name", ["qwen2_5_vl", "qwen3_5"])
def test_completion_only_loss_false_changes_the_labels(processors, name):
    processor = processors[name]
    answer = QwenVideoCollator(processor)(SAMPLES[:2])
    sequence = QwenVideoCollator(processor, train_on="sequence")(SAMPLES[:2])
    assert torch.equal(answer["input_ids"], sequence["input_ids"])
    learned = sequence["labels"] != IGNORE_INDEX
    real = sequence["attention_mask"].bool()
    visual = sequence["input_ids"] == processor.video_token_id
    assert torch.equal(learned, real & ~visual)  # every real token but the visual placeholders
    assert (answer["labels"] != IGNORE_INDEX).sum() < learned.sum()
    assert torch.equal(sequence["labels"][learned], sequence["input_ids"][learned])
    # and packed, the same labels move with their tokens
    model = random_qwen(TINY[name])
    packed = QwenVideoCollator(processor, train_on="sequence", packing=True, rope_index=prepare_packing(model))
    labels = packed(SAMPLES[:2])["labels"][0]
    firsts = sequence["labels"][:, 0]
    assert (labels != IGNORE_INDEX).sum() == learned.sum() - (firsts != IGNORE_INDEX).sum()
