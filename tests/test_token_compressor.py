"""Visual-token compressors for Qwen-VL (`compressa_hf.qwen.compress`): SVC and 3D average pooling.

Unit: pooling against a window-by-window reference, SVC with zero learned weights = pooling exactly, the compressed
grid and its ratio, stride splitting, Qwen3-VL's compressed timestamps, the equal-token stride choice, PEFT-style
save/load, and reconstruction pre-training's loss falling below pooling's on a toy case. Per family (Qwen2-VL,
Qwen2.5-VL, Qwen3-VL; tiny models from `tests/fixtures/tiny_<family>.json`, the real tokenizer): the prompt's token
count and the language model's 3D positions on the compressed grid, the tower's tokens (and Qwen3-VL's DeepStack
features) pooled as stated, and two SFT steps that train the compressor. End to end: `recipes/pretrain_svc.py`
resumes after a kill to the same weights and writes a loadable compressor with its card; `recipes/compare_qwen.py`
adds the equal-token rows.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil

import numpy as np
import pytest
import torch

from compressa_hf.qwen import FAMILIES
from compressa_hf.qwen.collator import QwenVideoCollator
from compressa_hf.qwen.compress import (
    TokenCompressor,
    TokenCompressorConfig,
    attach_token_compressor,
    avg_pool_tokens,
    build_token_compressor,
    choose_strides,
    compressed_processor,
    compressed_size,
    compressed_tokens,
)
from compressa_hf.qwen.compress.grid import window_frame_indices
from compressa_hf.qwen.compress.svc import split_stride
from compressa_hf.qwen.prompts import PromptTemplate
from compressa_hf.qwen.samples import make_chat_sample, video_metadata
from tests.conftest import QWEN, REPO, need_shared
from tests.test_families import tokenizer_dir

FIXTURES = REPO / "tests" / "fixtures"
NAMES = list(FAMILIES)
TINY = {name: FIXTURES / f"tiny_{name}.json" for name in NAMES}


def reference_pool(x: torch.Tensor, strides) -> torch.Tensor:
    """Average pooling written window by window: each output token is the mean of the tokens its window covers."""
    t, h, w = x.shape[-3:]
    st, sh, sw = strides
    out = torch.zeros(*x.shape[:2], *compressed_size((t, h, w), strides), dtype=x.dtype)
    for i, j, k in itertools.product(*(range(n) for n in out.shape[-3:])):
        window = x[..., i * st : (i + 1) * st, j * sh : (j + 1) * sh, k * sw : (k + 1) * sw]
        out[..., i, j, k] = window.mean(dim=(-3, -2, -1))
    return out


GRIDS = [
    ((2, 4, 4), (4, 4, 4)),
    ((8, 8, 8), (4, 4, 4)),
    ((5, 7, 3), (2, 3, 2)),
    ((3, 4, 6), (1, 2, 4)),
    ((1, 1, 1), (4, 4, 4)),
]


# -- pooling and SVC as modules --------------------------------------------------------------------------------------


@pytest.mark.parametrize("grid, strides", GRIDS)
def test_average_pooling_averages_each_window_even_past_the_edge(grid, strides):
    x = torch.randn(2, 6, *grid, dtype=torch.float64)
    torch.testing.assert_close(avg_pool_tokens(x, strides), reference_pool(x, strides), rtol=0, atol=1e-12)


@pytest.mark.parametrize("grid, strides", GRIDS)
def test_svc_with_zero_learned_weights_is_average_pooling_exactly(grid, strides):
    torch.manual_seed(0)
    config = TokenCompressorConfig(kind="svc", strides=strides, hidden_size=16, width=8, bottleneck_ratio=2)
    svc = TokenCompressor(config)
    x = torch.randn(1, 16, *grid)
    pooled = TokenCompressor(TokenCompressorConfig(kind="avgpool", strides=strides)).compress(x)
    assert torch.equal(pooled, avg_pool_tokens(x, strides))
    assert torch.equal(svc.compress(x), pooled)  # fresh: C's last convolution starts at zero
    with torch.no_grad():
        for p in svc.parameters():
            p.zero_()
    assert torch.equal(svc.compress(x), pooled)  # every learned weight zero
    with torch.no_grad():
        for p in svc.encoder.parameters():
            p.normal_()
    assert not torch.equal(svc.compress(x), pooled)  # and C is really added


@pytest.mark.parametrize("grid, strides", GRIDS + [((9, 6, 10), (8, 3, 4))])
@pytest.mark.parametrize("num_blocks", [1, 2, 3])
def test_the_cascade_gives_the_pooled_grid_and_the_decoder_the_input_grid(grid, strides, num_blocks):
    config = TokenCompressorConfig(kind="svc", strides=strides, hidden_size=8, num_blocks=num_blocks)
    svc = TokenCompressor(config)
    with torch.no_grad():
        for p in svc.parameters():
            p.normal_(std=0.1)  # no zero convolution hiding a shape error
    x = torch.randn(1, 8, *grid)
    assert svc.compress(x).shape[-3:] == compressed_size(grid, strides)
    assert svc.encoder(x).shape[-3:] == compressed_size(grid, strides)
    assert svc.reconstruct(x).shape == x.shape


def test_compression_ratio_is_the_product_of_the_strides_on_a_divisible_grid():
    for strides in [(4, 4, 4), (2, 4, 4), (1, 2, 2), (4, 1, 1)]:
        config = TokenCompressorConfig(kind="avgpool", strides=strides)
        grid = (8, 8, 8)
        before = int(np.prod(grid))
        assert before // int(np.prod(compressed_size(grid, strides))) == config.compression
    # the processor's patch grid (merge 2): 16 frames at 224 px -> 8 x 16 x 16 patches -> 8 x 8 x 8 tokens
    assert compressed_tokens((8, 16, 16), (4, 4, 4), 2) == 512 // 64
    assert compressed_tokens((2, 8, 8), (4, 4, 4), 2) == 1  # K = 4 at 112 px: 32 tokens -> one window


@pytest.mark.parametrize(
    "stride, blocks, parts", [(4, 2, [2, 2]), (8, 2, [4, 2]), (2, 2, [2, 1]), (3, 2, [3, 1]), (12, 3, [3, 2, 2])]
)
def test_a_stride_is_split_over_the_blocks(stride, blocks, parts):
    assert split_stride(stride, blocks) == parts and int(np.prod(parts)) == stride


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "conv"}, "kind"),
        ({"strides": (4, 0, 4)}, r"\[4, 0, 4\]"),
        ({"strides": (4, 4)}, "three positive"),
        ({"kind": "svc"}, "hidden_size"),
        ({"kind": "svc", "hidden_size": 8, "spatial_kernel": 2}, "spatial_kernel"),
        ({"kind": "svc", "hidden_size": 8, "width": 4, "bottleneck_ratio": 8}, "bottleneck_ratio"),
    ],
)
def test_config_validation_names_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TokenCompressorConfig(**kwargs)


def test_window_frame_indices_give_each_compressed_group_its_first_and_last_frames_mean_time():
    indices = [0, 4, 8, 12, 16, 20, 24]  # 7 frames: 4 groups of 2 (the last padded), 2 compressed groups of 4
    out = window_frame_indices(indices, temporal_patch_size=2, temporal_stride=2)
    assert out == [0, 12, 16, 24]
    # Qwen3-VL's rule, the mean of each group's first and last index, then gives the windows' times
    assert [(out[i] + out[i + 1]) / 2 for i in range(0, len(out), 2)] == [6.0, 20.0]
    assert window_frame_indices(indices, 2, 1) == [0, 4, 8, 12, 16, 20, 24, 24]


@pytest.mark.parametrize(
    "grid, target, strides",
    [
        ((8, 4, 4), 64, (2, 1, 1)),  # half the frames: the temporal stride
        ((8, 4, 4), 32, (1, 2, 2)),  # a quarter: the balanced spatial pair over 4 x 1 x 1
        ((8, 8, 8), 8, (4, 4, 4)),  # the paper's 64x
        ((2, 4, 4), 1, (2, 4, 4)),  # all of it in one token
    ],
)
def test_equal_token_strides_hit_the_target_and_prefer_balance(grid, target, strides):
    assert choose_strides(grid, target) == strides
    assert int(np.prod(compressed_size(grid, strides))) == target


# -- saving and loading like a PEFT adapter ------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    config = TokenCompressorConfig(kind="svc", strides=(2, 2, 2), hidden_size=16, family="qwen2_5_vl")
    svc = TokenCompressor(config)
    with torch.no_grad():
        for p in svc.parameters():
            p.normal_(std=0.1)
    svc.save_pretrained(tmp_path / "svc")
    assert sorted(p.name for p in (tmp_path / "svc").iterdir()) == [
        "compressor_config.json",
        "compressor_model.safetensors",
    ]
    loaded = TokenCompressor.from_pretrained(tmp_path / "svc")
    assert loaded.config == svc.config
    x = torch.randn(1, 16, 3, 4, 5)
    assert torch.equal(loaded.compress(x), svc.compress(x)) and torch.equal(loaded.reconstruct(x), svc.reconstruct(x))

    TokenCompressor(TokenCompressorConfig(kind="avgpool", strides=(2, 1, 1))).save_pretrained(tmp_path / "pool")
    assert [p.name for p in (tmp_path / "pool").iterdir()] == ["compressor_config.json"]  # nothing to learn
    assert TokenCompressor.from_pretrained(tmp_path / "pool").strides == (2, 1, 1)

    (tmp_path / "svc" / "compressor_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="compressor_model.safetensors"):
        TokenCompressor.from_pretrained(tmp_path / "svc")
    data = json.loads((tmp_path / "pool" / "compressor_config.json").read_text()) | {"depth": 3}
    (tmp_path / "pool" / "compressor_config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="depth"):
        TokenCompressor.from_pretrained(tmp_path / "pool")
    with pytest.raises(FileNotFoundError, match="no token compressor folder"):
        TokenCompressor.from_pretrained(tmp_path / "nowhere")


# -- reconstruction pre-training on a toy case ---------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 0.01, 100.0])
def test_reconstruction_pretraining_learns_what_pooling_loses(scale):
    """Tokens that vary inside each pooling window (a moving pattern): the L1 loss falls well below pooling's, at one
    learning rate whatever the tokens' scale (SVC's output follows its input's)."""
    from compressa_hf.qwen.compress.pretrain import reconstruction_losses

    torch.manual_seed(0)
    svc = TokenCompressor(TokenCompressorConfig(kind="svc", strides=(2, 2, 2), hidden_size=8, width=16))
    basis = torch.randn(8, 3)
    t, h, w = torch.meshgrid(torch.arange(4.0), torch.arange(6.0), torch.arange(6.0), indexing="ij")

    def toy(phase: float) -> torch.Tensor:
        waves = torch.stack([torch.sin(w + t + phase), torch.cos(h - t + phase), torch.sin(h + w + phase)])
        return scale * torch.einsum("dk,kthw->dthw", basis, waves)[None]

    optimizer = torch.optim.Adam(svc.parameters(), lr=1e-2)
    history = []
    for step in range(60):
        loss, pooling = reconstruction_losses(svc, [toy(0.37 * step), toy(1.0 + 0.37 * step)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append((loss.item(), pooling))
    first, pooling = history[0]
    assert first == pytest.approx(pooling)  # zero-started: the untrained autoencoder is pooling, then repeating
    final = np.mean([loss for loss, _ in history[-10:]])
    assert final < 0.6 * np.mean([p for _, p in history[-10:]])  # 0.51-0.53 of pooling's at this seed


# -- the recipes' arguments and the comparison's plan --------------------------------------------------------------


def _arguments():
    from types import SimpleNamespace

    from compressa_hf.qwen.comparison import CompareArguments
    from compressa_hf.qwen.compress.config import PretrainSVCArguments
    from compressa_hf.qwen.evaluation import EvalArguments
    from compressa_hf.qwen.sft_config import SFTScriptArguments

    return SimpleNamespace(
        SFTScriptArguments=SFTScriptArguments,
        EvalArguments=EvalArguments,
        CompareArguments=CompareArguments,
        PretrainSVCArguments=PretrainSVCArguments,
    )


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        ("SFTScriptArguments", {"token_compressor": "conv"}, "token_compressor"),
        (
            "SFTScriptArguments",
            {"token_compressor": "avgpool", "tune_token_compressor": True},
            "tune_token_compressor",
        ),
        (
            "SFTScriptArguments",
            {"token_compressor": "avgpool", "token_compressor_path": "svc"},
            "needs token_compressor",
        ),
        ("SFTScriptArguments", {"token_compressor_strides": [2, 2]}, "three positive"),
        ("EvalArguments", {"token_compressor_strides": [0, 1, 1]}, r"\[0, 1, 1\]"),
        ("CompareArguments", {"equal_tokens": ["perceiver"]}, "perceiver"),
        ("PretrainSVCArguments", {"source": "procedural:", "data": "tiny_full"}, "exactly one"),
        ("PretrainSVCArguments", {"source": "procedural:", "token_compressor_strides": [4, 4]}, "three positive"),
        ("PretrainSVCArguments", {"source": "procedural:", "save_steps": 0}, "save_steps"),
    ],
)
def test_argument_validation_names_the_bad_value(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        getattr(_arguments(), cls)(**kwargs)


def test_evaluation_takes_the_model_folders_compressor_unless_told_otherwise():
    configs = _arguments()
    assert configs.EvalArguments().token_compressor is None  # the folder's token_compressor/, if any
    assert configs.EvalArguments(token_compressor_strides=[2, 2, 2]).token_compressor == "avgpool"
    assert configs.EvalArguments(token_compressor_path="me/svc").token_compressor == "svc"
    assert configs.EvalArguments(token_compressor="none").token_compressor == "none"


def test_the_comparison_plans_equal_token_rows_after_each_distilled_row(tmp_path):
    from tests.test_recipes import load_script

    script = load_script("compare_qwen")
    flags = ["--dataset", "tiny", "--ratios", "0.5", "--recipe_dir", str(FIXTURES / "recipes"), "--model_name_or_path"]
    flags += ["base", "--output_dir", str(tmp_path), "--accelerate_config", "", "--equal_tokens", "avgpool", "svc"]
    (args,) = script.make_parser().parse_args_and_config([*flags, "--equal_token_strides", "2", "1", "1"])
    runs = script.plan(args)
    assert [r["name"] for r in runs] == ["zero_shot", "full", "distilled_0.5", "avgpool_0.5", "svc_0.5"]
    pretrain, sft, evaluate = (list(map(str, cmd)) for cmd in runs[-1]["commands"]())
    assert pretrain[1].endswith("pretrain_svc.py") and "--token_compressor_strides 2 1 1" in " ".join(pretrain)
    assert "--data tiny_full" in " ".join(pretrain) and "--video_nframes 8" in " ".join(pretrain)  # the SFT reader
    joined = " ".join(sft)
    assert "--data tiny_full" in joined and "--token_compressor svc --token_compressor_strides 2 1 1" in joined
    assert f"--token_compressor_path {tmp_path / 'svc_2x1x1'} --tune_token_compressor True" in joined
    assert evaluate[evaluate.index("--model_name_or_path") + 1] == str(tmp_path / "tiny_full_svc_0.5")
    avgpool = [" ".join(map(str, c)) for c in runs[-2]["commands"]()]
    assert len(avgpool) == 2 and "--token_compressor avgpool --token_compressor_strides 2 1 1" in avgpool[0]

    (args,) = script.make_parser().parse_args_and_config([*flags, "--dry_run", "true"])
    with pytest.raises(FileNotFoundError, match="training_summary.json"):
        script.plan(args)[-1]["commands"]()  # strides come from the finished runs' summaries
    assert script.main(args) == 0  # a dry run says so instead of failing


# -- per family: prompt, positions, features, training ------------------------------------------------------------


@pytest.fixture(scope="module")
def processors(qwen3_5_tokenizer):
    need_shared(QWEN)
    from transformers import AutoProcessor

    from compressa_hf.qwen import build_processor

    out = {
        name: build_processor(name, tokenizer_dir(name, qwen3_5_tokenizer)) for name in NAMES if name != "qwen2_5_vl"
    }
    out["qwen2_5_vl"] = AutoProcessor.from_pretrained(str(QWEN))
    return out


def _sample(frames: int, size: int, label: int = 0, fps: float = 30.0, step: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng([seed, label])
    video = rng.integers(0, 256, size=(frames, size, size, 3), dtype=np.uint8)
    prompt = PromptTemplate()
    meta = video_metadata([step * i for i in range(frames)], fps, total_num_frames=step * frames)
    return make_chat_sample(video, label, prompt.class_texts(["ApplyEyeMakeup", "Run"]), prompt, meta, f"v{label}")


def _compressed_model(name: str, kind: str, strides):
    from compressa_hf.qwen.models import random_qwen

    model = random_qwen(TINY[name])
    attach_token_compressor(model, build_token_compressor(kind, model, strides=strides))
    return model


@pytest.mark.real_data
@pytest.mark.parametrize("name", ["qwen2_5_vl", "qwen3_5"])
def test_a_packed_batch_through_a_compressor_scores_each_sample_as_alone(processors, name):
    """Packing (`compressa_hf.qwen.packing`) takes its positions from the model's `get_rope_index`, which the
    compressor replaces: prepared after the compressor is attached (as `recipes/sft_qwen.py` does), each sample of a
    packed row gets the loss it gets alone, on the compressed grid."""
    from compressa_hf.qwen.collator import IGNORE_INDEX
    from compressa_hf.qwen.packing import prepare_packing, sample_ids

    torch.manual_seed(0)
    model = _compressed_model(name, "svc", (2, 2, 2)).eval()
    processor = compressed_processor(processors[name], (2, 2, 2))
    samples = [_sample(4, 112), _sample(6, 64, 1), _sample(2, 112, 0, seed=1)]
    batch = QwenVideoCollator(processor, packing=True, rope_index=prepare_packing(model))(samples)
    with torch.no_grad():
        alone = [float(model(**QwenVideoCollator(processor)([s])).loss) for s in samples]
        logits = model(**batch).logits
    logp, target = logits[0, :-1].float().log_softmax(-1), batch["labels"][0, 1:]
    owner = sample_ids(batch["position_ids"][0])[0, :-1]
    packed = []
    for i in range(len(samples)):
        keep = (owner == i) & (target != IGNORE_INDEX)
        packed.append(float(-logp[keep].gather(-1, target[keep, None]).mean()))
    assert packed == pytest.approx(alone, abs=1e-5)


@pytest.mark.real_data
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "frames, size, strides",
    [
        (4, 112, (2, 2, 2)),  # K = 4 keyframes at 112 px: a 2 x 4 x 4 merged grid -> 1 x 2 x 2
        (16, 224, (4, 4, 4)),  # the paper's 64x: 8 x 8 x 8 -> 2 x 2 x 2 (Qwen3-VL: 8 x 7 x 7 -> 2 x 2 x 2)
        (6, 112, (2, 1, 1)),  # 3 temporal groups under stride 2: the last window holds one group
    ],
)
def test_prompt_tokens_and_positions_follow_the_compressed_grid(processors, name, frames, size, strides):
    processor, family = processors[name], FAMILIES[name]
    model = _compressed_model(name, "svc", strides)
    sample = _sample(frames, size)
    plain = QwenVideoCollator(processor)([sample])
    batch = QwenVideoCollator(compressed_processor(processor, strides))([sample])
    # the tower gets every patch; the prompt gets the compressed grid's tokens and the same answer
    assert torch.equal(batch["pixel_values_videos"], plain["pixel_values_videos"])
    assert torch.equal(batch["video_grid_thw"], plain["video_grid_thw"])
    t, h, w = plain["video_grid_thw"][0].tolist()
    merged = (t, h // family.merge_size, w // family.merge_size)
    ct, ch, cw = compressed_size(merged, strides)
    video_id = processor.video_token_id
    before, after = int((plain["input_ids"] == video_id).sum()), int((batch["input_ids"] == video_id).sum())
    assert before == int(np.prod(merged)) and after == ct * ch * cw
    if all(n % s == 0 for n, s in zip(merged, strides)):
        assert before == after * int(np.prod(strides))  # the stated ratio
    assert batch["labels"][batch["labels"] != -100].tolist() == plain["labels"][plain["labels"] != -100].tolist()

    out = model(**batch)  # the model refuses features that do not fill the placeholders
    assert torch.isfinite(out.loss)

    extra = {"second_per_grid_ts": batch["second_per_grid_ts"]} if "second_per_grid_ts" in batch else {}
    position_ids, _ = model.model.get_rope_index(
        batch["input_ids"],
        mm_token_type_ids=batch["mm_token_type_ids"],
        video_grid_thw=batch["video_grid_thw"],
        attention_mask=batch["attention_mask"],
        **extra,
    )
    pos = position_ids[:, 0][:, batch["input_ids"][0] == video_id].view(3, ct, ch * cw)
    for g in range(ct):  # each compressed group: one temporal position, an ch x cw raster of spatial ones
        assert (pos[0, g] == pos[0, g, 0]).all()
        assert (pos[1, g] - pos[1, g].min()).tolist() == torch.arange(ch).repeat_interleave(cw).tolist()
        assert (pos[2, g] - pos[2, g].min()).tolist() == torch.arange(cw).repeat(ch).tolist()
    groups = pos[0, :, 0].tolist()
    if family.time_encoding == "group_index":
        assert [b - a for a, b in zip(groups, groups[1:])] == [1] * (ct - 1)
    elif family.time_encoding == "mrope_seconds":  # a compressed group spans strides[0] groups of the original
        interval = model.config.vision_config.tokens_per_second * float(batch["second_per_grid_ts"][0]) * strides[0]
        assert [g - groups[0] for g in groups] == [int(i * interval) for i in range(ct)]
    else:  # one `<t.t seconds>` per compressed group: the mean time of its first and last frame
        window = family.temporal_patch_size * strides[0]
        idx = [4 * i for i in range(frames)]
        idx += [idx[-1]] * (-len(idx) % window)
        expected = [f"{(idx[lo] + idx[lo + window - 1]) / 2 / 30:.1f}" for lo in range(0, len(idx), window)]
        text = processor.tokenizer.decode(batch["input_ids"][0])
        assert re.findall(r"<(\d+\.\d) seconds>", text) == expected
        assert all(b > a for a, b in zip(groups, groups[1:]))


@pytest.mark.real_data
@pytest.mark.parametrize("name", NAMES)
def test_the_language_model_gets_the_pooled_tower_tokens(processors, name):
    from compressa_hf.qwen.compress.svc import grid_to_tokens, tokens_to_grid

    strides = (2, 2, 1)
    model = _compressed_model(name, "avgpool", strides)
    inner = model.model
    batch = QwenVideoCollator(compressed_processor(processors[name], strides))([_sample(6, 112), _sample(4, 64, 1)])
    pixels, grid_thw = batch["pixel_values_videos"], batch["video_grid_thw"]
    plain = type(inner).get_video_features(inner, pixels, grid_thw, return_dict=True)  # the tower alone
    got = model.get_video_features(pixels, grid_thw, return_dict=True)
    grids = [(t, h // 2, w // 2) for t, h, w in grid_thw.tolist()]
    streams = [(plain.pooler_output, got.pooler_output)]
    if name == "qwen3_vl":  # DeepStack features are pooled with the same windows
        assert len(plain.deepstack_features) == len(got.deepstack_features) == 1
        streams += list(zip(plain.deepstack_features, got.deepstack_features))
    for before, after in streams:
        for tokens, compressed, grid in zip(before, after, grids):
            expected = grid_to_tokens(reference_pool(tokens_to_grid(tokens, grid).double(), strides)).float()
            torch.testing.assert_close(compressed, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_two_sft_steps_train_svc_and_a_resumed_run_takes_its_checkpoints_compressor(processors, name, tmp_path):
    """`VideoSFTTrainer` as `recipes/sft_qwen.py` builds it: LoRA, SVC tuned; the decoder stays as it was."""
    from trl import ModelConfig

    from compressa_hf.qwen.compress.attach import (
        attached_compressor,
        save_token_compressor,
        train_with_token_compressor,
        with_token_compressor,
    )
    from compressa_hf.qwen.models import lora_config, random_qwen
    from compressa_hf.qwen.sft import SkipUnreadable, as_hf_dataset
    from compressa_hf.qwen.sft_config import SFTScriptArguments, VideoSFTConfig
    from compressa_hf.qwen.sft_trainer import VideoSFTTrainer

    def trainer_for(output_dir, resume=None):
        model = random_qwen(TINY[name])
        args = SFTScriptArguments(
            token_compressor="svc", token_compressor_strides=[2, 2, 2], tune_token_compressor=True
        )
        text_processor = with_token_compressor(model, processors[name], args)
        peft = lora_config(model, ModelConfig(use_peft=True, lora_r=4, lora_target_modules=["q_proj"]), args)
        config = VideoSFTConfig(
            output_dir=str(output_dir), use_cpu=True, bf16=False, report_to="none", max_steps=2, save_strategy="steps",
            save_steps=1, per_device_train_batch_size=2, learning_rate=1e-2, seed=0, optim="adamw_torch",
        )  # fmt: skip
        trainer = VideoSFTTrainer(
            model=model,
            args=config,
            train_dataset=as_hf_dataset([_sample(4 + 2 * (i % 2), 64, i % 2, seed=i) for i in range(4)]),
            data_collator=SkipUnreadable(QwenVideoCollator(text_processor)),
            processing_class=processors[name],
            peft_config=peft,
        )
        train_with_token_compressor(trainer, True, resume)
        return trainer

    trainer = trainer_for(tmp_path / "run")
    compressor = attached_compressor(trainer.model)
    before = {k: v.clone() for k, v in compressor.state_dict().items()}
    assert trainer.train(resume_from_checkpoint=None).global_step == 2
    after = compressor.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    assert (tmp_path / "run" / "checkpoint-1" / "token_compressor" / "compressor_model.safetensors").is_file()
    save_token_compressor(trainer.model, tmp_path / "run")
    saved = TokenCompressor.from_pretrained(tmp_path / "run" / "token_compressor").state_dict()
    assert all(torch.equal(saved[k], after[k]) for k in after)
    if name != "qwen2_5_vl":
        return
    # a run killed after step 1 resumes from checkpoint-1 with the compressor it had trained, to the same weights
    shutil.copytree(tmp_path / "run" / "checkpoint-1", tmp_path / "killed" / "checkpoint-1")
    checkpoint = str(tmp_path / "killed" / "checkpoint-1")
    resumed = trainer_for(tmp_path / "killed", resume=checkpoint)
    resumed.train(resume_from_checkpoint=checkpoint)
    again = attached_compressor(resumed.model).state_dict()
    for k in after:
        torch.testing.assert_close(again[k], after[k], rtol=1e-5, atol=1e-6)


# -- recipes/pretrain_svc.py ---------------------------------------------------------------------------------------

PROCEDURAL = "procedural:num_classes=2,train_per_class=4,test_per_class=2,length=32,frame_size=56"


@pytest.mark.real_data
@pytest.mark.slow
def test_pretraining_resumes_after_a_kill_to_the_same_weights_and_saves_a_loadable_compressor(tmp_path):
    from safetensors.torch import load_file

    from compressa_hf.publish import find_local_paths
    from compressa_hf.qwen.compress.pretrain import push_compressor
    from compressa_hf.qwen.models import random_qwen, save_tiny_model
    from tests.test_recipes import load_script

    need_shared(QWEN)
    model_dir = save_tiny_model(TINY["qwen2_5_vl"], tmp_path / "tiny-qwen", QWEN)
    script = load_script("pretrain_svc")
    flags = [
        "--model_name_or_path", model_dir, "--dtype", "float32", "--source", PROCEDURAL, "--video_nframes", "8",
        "--video_min_pixels", "3136", "--video_max_pixels", "3136", "--token_compressor_strides", "2", "2", "2",
        "--max_steps", "6", "--per_device_train_batch_size", "3", "--learning_rate", "3e-3", "--logging_steps", "2",
        "--save_steps", "2", "--save_total_limit", "3",
    ]  # fmt: skip

    def run(output_dir, *more):
        (args,) = script.make_parser().parse_args_and_config([*flags, "--output_dir", str(output_dir), *more])
        return script.main(args)

    whole = run(tmp_path / "whole")
    assert (whole["global_step"], whole["steps_this_run"], whole["num_videos"]) == (6, 6, 8)
    assert whole["epochs"] == 2.0  # 8 videos in batches of 3: 3 steps an epoch
    assert sorted(p.name for p in (tmp_path / "whole").iterdir()) == [
        "README.md", "checkpoint-2", "checkpoint-4", "checkpoint-6", "compressor_config.json",
        "compressor_model.safetensors", "pretrain_summary.json",
    ]  # fmt: skip
    card = (tmp_path / "whole" / "README.md").read_text()
    assert "| strides (t x h x w) | 2 x 2 x 2 (8x fewer tokens" in card and not find_local_paths(card)

    # killed after step 4 (its newest checkpoint): the rerun reads steps 5 and 6 and ends with the same weights
    shutil.copytree(tmp_path / "whole" / "checkpoint-4", tmp_path / "killed" / "checkpoint-4")
    resumed = run(tmp_path / "killed")
    assert (resumed["global_step"], resumed["steps_this_run"]) == (6, 2)
    a = load_file(str(tmp_path / "whole" / "compressor_model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "compressor_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="learning_rate"):
        run(tmp_path / "killed", "--learning_rate", "1e-3")

    svc = TokenCompressor.from_pretrained(tmp_path / "whole")
    assert svc.config.metadata["pretraining"]["global_step"] == 6 and svc.config.base_model_name_or_path == "tiny-qwen"
    model = random_qwen(TINY["qwen2_5_vl"])
    attach_token_compressor(model, svc)  # the width and family of the tower it was trained on

    (tmp_path / "whole" / "pretrain_summary.json").write_text(json.dumps({"data": str(tmp_path / "videos")}))
    with pytest.raises(ValueError, match="paths of this machine"):
        push_compressor(str(tmp_path / "whole"), "me/svc")  # refused before anything is uploaded


@pytest.mark.real_data
@pytest.mark.parametrize("name", NAMES)
def test_evaluation_scores_and_generates_through_the_compressor(processors, name):
    """`eval_qwen.py`'s cached class scoring equals one full forward per class on the compressed prompt (the text
    after the video sits where the compressed grid puts it), and generation runs from it."""
    from compressa_hf.qwen.evaluation import choice_token_ids, generate_answers, prompt_inputs, score_choices
    from tests.test_recipes import _reference_scores

    prompt = PromptTemplate()
    texts = prompt.class_texts(["ApplyEyeMakeup", "Run"])
    processor = compressed_processor(processors[name], (2, 2, 2))
    model = _compressed_model(name, "svc", (2, 2, 2)).eval()
    with torch.no_grad():
        for p in model.model.token_compressor.encoder.proj_out.parameters():
            p.normal_(std=0.1)  # a learned residual, not pooling alone
    samples = [_sample(8, 112), _sample(4, 64, 1)]
    with torch.no_grad():
        expected = _reference_scores(model, processor, samples, texts, prompt)
    inputs = prompt_inputs(QwenVideoCollator(processor, padding_side="left"), samples, prompt.format_answer(texts[0]))
    got = score_choices(model, inputs, choice_token_ids(processor.tokenizer, texts, prompt))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert len(generate_answers(model, inputs, processor.tokenizer, max_new_tokens=2)) == 2
