"""Chat samples, the Qwen2.5-VL chat template and the video SFT collator.

Tests marked `real_data` use the real tokenizer and processor files in ../shared/qwen2_5_vl and a tiny random
Qwen2.5-VL built from a config (2 text layers, hidden 128; 2 vision blocks, hidden 64).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compressa_hf.clips import ClipConfig
from compressa_hf.codecs import PixelCodec
from compressa_hf.codecs.base import uint8_to_latents
from compressa_hf.qwen.chat_templates import load_chat_template
from compressa_hf.qwen.collator import IGNORE_INDEX, QwenVideoCollator
from compressa_hf.qwen.prompts import PromptTemplate, humanize_class_name
from compressa_hf.qwen.samples import card_config, check_codec_id, load_chat_dataset, raw_chat_samples, video_metadata
from compressa_hf.store import DistilledConfig, write_config
from tests.conftest import QWEN, need_shared

CLASS_NAMES = ["ApplyEyeMakeup", "brush_hair", "YoYo", "PlayingDaf"]
PROCEDURAL = "procedural:num_classes=2,train_per_class=2,test_per_class=1,length=32,frame_size=64"


def write_distilled(root, n=4, k=4, codec_id="pixel:avgpool8", seed=0, fps=30.0) -> str:
    """A distilled set of `n` videos x `k` random uint8 pixel-codec latents (decode to 112 x 112)."""
    rng = np.random.default_rng(seed)
    write_config(
        root,
        DistilledConfig(
            name="ratio_1",
            video_ids=[f"train/{i:02d}" for i in range(n)],
            labels=[i % len(CLASS_NAMES) for i in range(n)],
            latents=rng.integers(0, 256, size=(n, k, 3, 14, 14), dtype=np.uint8),
            frame_indices=(idx := np.array([[2 + 8 * j + i for j in range(k)] for i in range(n)])),
            timestamps=idx / fps,
            fps=[fps] * n,
            sources=[f"clip{i}.mp4" for i in range(n)],
            class_names=CLASS_NAMES,
            meta={
                "codec_id": codec_id,
                "latent_scaling": "uint8 = round(255 * clamp(z / 6 + 0.5, 0, 1)) (TAESD); z = (q / 255 - 0.5) * 6",
                "clip": {"num_frames": 16, "size": 112, "policy": "uniform", "short_clips": "loop", "seed": 0},
                "source": "test",
                "split": "train",
                "frames_per_video": k,
            },
        ),
    )
    return str(root)


# -- prompts and metadata ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, words",
    [
        ("ApplyEyeMakeup", "apply eye makeup"),
        ("brush_hair", "brush hair"),
        ("YoYo", "yo yo"),
        ("TVShow", "tv show"),
        ("Skiing2", "skiing2"),
        ("playing  bass-guitar", "playing bass guitar"),
        ("Putting [something] into [something]", "putting [something] into [something]"),
        ("square_event", "square event"),
    ],
)
def test_humanize_class_name(name, words):
    assert humanize_class_name(name) == words


def test_prompt_template_validation_and_clashes():
    with pytest.raises(ValueError, match="class_name"):
        PromptTemplate(answer="the answer")
    with pytest.raises(ValueError, match="label"):
        PromptTemplate(question="Pick {label}")
    with pytest.raises(ValueError, match="humanize=False"):
        PromptTemplate().class_texts(["BrushHair", "brush_hair"])
    assert PromptTemplate(humanize=False).class_texts(["BrushHair", "brush_hair"]) == ["BrushHair", "brush_hair"]
    prompt = PromptTemplate(question="{num_classes} classes: {choices}?", choice_separator=" | ", system="Be brief.")
    messages = prompt.messages({"type": "video", "video": None}, prompt.format_question(["a", "b"]), "a")
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[1]["content"][1]["text"] == "2 classes: a | b?"


def test_video_metadata_estimates_the_clip_length():
    # K uniform samples of N frames give N back; the raw path passes the true length.
    n, k = 64, 4
    indices = [int((i + 0.5) * n / k) for i in range(k)]
    assert video_metadata(indices, 30.0) == {"fps": 30.0, "frames_indices": indices, "total_num_frames": n}
    assert video_metadata([7], 25)["total_num_frames"] == 1
    assert video_metadata([3, 3, 3], 25)["total_num_frames"] == 3
    with pytest.raises(ValueError, match="fps"):
        video_metadata([1, 2], 0)


# -- untrusted cards -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec_id", ["pixel:avgpool8", "tae:taef2", "diffusers:madebyollin/taesd"])
def test_card_codec_ids_from_the_registry_pass(codec_id):
    assert check_codec_id(codec_id) == codec_id


@pytest.mark.parametrize(
    "codec_id",
    [None, "", 42, "builtins:eval", "os.system:rm -rf /", "madebyollin/taesd", "/tmp", "module.path:Class"],
)
def test_card_codec_ids_outside_the_registry_are_refused(codec_id):
    with pytest.raises(ValueError, match="codec"):
        check_codec_id(codec_id)


def test_card_without_compressa_entry_is_refused():
    card = {"configs": [], "compressa_hf": {"other": {"codec_id": "pixel:avgpool8"}}}
    with pytest.raises(ValueError, match="ratio_1"):
        card_config(card, "someone/set", "ratio_1")
    hostile = {"compressa_hf": {"ratio_1": {"codec_id": "pixel:avgpool8", "loader": "evil.module:run"}}}
    assert card_config(hostile, "someone/set", "ratio_1") == {"codec_id": "pixel:avgpool8"}


def test_load_chat_dataset_refuses_a_card_codec_outside_the_registry(tmp_path):
    folder = write_distilled(tmp_path / "set", codec_id="evil.module:Decoder")
    with pytest.raises(ValueError, match="registry"):
        load_chat_dataset(folder, "ratio_1")


@pytest.mark.parametrize(
    "yaml_header, error",
    [
        ("compressa_hf:\n  ratio_1:\n    codec_id: evil.module:Decoder\n", ValueError),
        ("compressa_hf:\n  ratio_1:\n    codec_id: !!python/object/apply:os.system ['touch {marker}']\n", Exception),
    ],
)
def test_hub_card_is_read_as_plain_data(tmp_path, monkeypatch, yaml_header, error):
    import huggingface_hub

    marker = tmp_path / "executed"
    card = tmp_path / "README.md"
    card.write_text("---\n" + yaml_header.format(marker=marker) + "---\n# card\n")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: str(card))
    with pytest.raises(error):
        load_chat_dataset("someone/distilled", "ratio_1")
    assert not marker.exists()


# -- samples -------------------------------------------------------------------------------------------------------


def test_decode_once_gives_the_same_samples_from_cached_frames(tmp_path, monkeypatch):
    folder = write_distilled(tmp_path / "set")
    cache = str(tmp_path / "hf")
    lazy = load_chat_dataset(folder, "ratio_1", cache_dir=cache)
    expected = [lazy[i] for i in range(len(lazy))]
    once = load_chat_dataset(folder, "ratio_1", cache_dir=cache, decode_once=True)
    columns = once.with_transform(None).column_names
    assert "frames" in columns and "latents" not in columns
    monkeypatch.setattr(PixelCodec, "_decode", lambda *a: (_ for _ in ()).throw(AssertionError("decoded again")))
    for i, want in enumerate(expected):  # reading the cached frames never calls the decoder
        got = once[i]
        np.testing.assert_array_equal(got["videos"][0], want["videos"][0])
        assert got["messages"][1] == want["messages"][1] and got["video_metadata"] == want["video_metadata"]


def test_distilled_rows_become_chat_samples(tmp_path):
    folder = write_distilled(tmp_path / "set")
    ds = load_chat_dataset(folder, "ratio_1")
    assert len(ds) == 4
    sample = ds[1]
    assert set(sample) == {"messages", "videos", "video_metadata", "label", "answer", "video_id"}
    frames = sample["videos"][0]
    assert frames.dtype == np.uint8 and frames.shape == (4, 112, 112, 3)

    # The frames are the codec's decoding of the stored latents.
    raw = ds.with_format(None)[1]["latents"]
    expected = PixelCodec().decode(uint8_to_latents(torch.tensor(raw, dtype=torch.uint8)))
    expected = expected.mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(frames, expected)

    user, assistant = sample["messages"]
    block, text = user["content"]
    assert block["type"] == "video" and block["video"] is frames
    assert (block["resized_height"], block["resized_width"]) == (112, 112)
    for words in ("apply eye makeup", "brush hair", "yo yo", "playing daf"):
        assert words in text["text"]
    assert sample["label"] == 1 and sample["answer"] == "brush hair"
    assert assistant == {"role": "assistant", "content": [{"type": "text", "text": "brush hair"}]}
    meta = sample["video_metadata"][0]
    assert meta["frames_indices"] == [3, 11, 19, 27] and meta["fps"] == 30.0
    assert meta["total_num_frames"] == 32

    batch = ds[:3]  # the transform is batched: one codec call for the three rows
    assert [s[0].shape for s in batch["videos"]] == [(4, 112, 112, 3)] * 3


def test_raw_samples_share_the_prompt_and_carry_true_metadata():
    prompt = PromptTemplate(question="What happens? {choices}")
    ds = raw_chat_samples(PROCEDURAL, "train", ClipConfig(num_frames=8, size=56), prompt=prompt, fps=25)
    assert len(ds) == 4
    sample = ds[3]
    assert sample["videos"][0].shape == (8, 56, 56, 3)
    assert sample["messages"][0]["content"][1]["text"] == "What happens? square event, disc event"
    assert sample["answer"] == "disc event" and sample["label"] == 1
    meta = sample["video_metadata"][0]
    assert meta == {"fps": 25.0, "frames_indices": [2, 6, 10, 14, 18, 22, 26, 30], "total_num_frames": 32}


# -- template and collator with the real processor -----------------------------------------------------------------


@pytest.fixture(scope="module")
def processor():
    need_shared(QWEN)
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(QWEN))


@pytest.fixture(scope="module")
def tiny_qwen():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 151936,  # covers the real tokenizer's 151,665 ids, special tokens included
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [4, 6, 6]},
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 4,
            "out_hidden_size": 128,
            "patch_size": 14,
            "temporal_patch_size": 2,
            "spatial_merge_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,  # as in the released Qwen2.5-VL configs
        },
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def _sample(frames: int, size: int, label: int = 0, fps: float = 30.0, answer_names=CLASS_NAMES) -> dict:
    from compressa_hf.qwen.samples import make_chat_sample

    rng = np.random.default_rng(label)
    video = rng.integers(0, 256, size=(frames, size, size, 3), dtype=np.uint8)
    prompt = PromptTemplate()
    meta = video_metadata([4 * i for i in range(frames)], fps, total_num_frames=4 * frames)
    return make_chat_sample(video, label, prompt.class_texts(answer_names), prompt, meta, f"v{label}")


CONVERSATIONS = [
    [
        {"role": "user", "content": [{"type": "video", "video": "x"}, {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "yo yo"}]},
    ],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "Both?"}]},
    ],
]


@pytest.mark.real_data
@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("kwargs", [{}, {"add_generation_prompt": True}, {"add_vision_id": True}])
def test_template_renders_like_the_shipped_one(processor, conversation, kwargs):
    shipped = json.loads((QWEN / "chat_template.json").read_text())["chat_template"]
    ours = processor.apply_chat_template(conversation, chat_template=load_chat_template(), **kwargs)
    assert ours == processor.apply_chat_template(conversation, chat_template=shipped, **kwargs)


@pytest.mark.real_data
@pytest.mark.parametrize(
    "frames, size, frame_size, grid, tokens",
    [
        (4, 112, None, (2, 8, 8), 32),  # K = 4 at 112: ceil(4/2) * (112/14)^2 / 4
        (16, 112, None, (8, 8, 8), 128),  # T = 16 at 112
        (3, 112, None, (2, 8, 8), 32),  # odd K: the last frame is repeated to fill the temporal patch
        (4, 64, None, (2, 4, 4), 8),  # 64 rounds to the 28-pixel grid: 56
        (4, 112, 224, (2, 16, 16), 128),  # an explicit frame size
    ],
)
def test_visual_token_count_follows_the_arithmetic(processor, frames, size, frame_size, grid, tokens):
    batch = QwenVideoCollator(processor, frame_size=frame_size)([_sample(frames, size)])
    assert batch["video_grid_thw"].tolist() == [list(grid)]
    assert int((batch["input_ids"] == processor.video_token_id).sum()) == tokens
    assert batch["pixel_values_videos"].shape[0] == int(np.prod(grid))


@pytest.mark.real_data
def test_frame_size_does_not_follow_the_processor_defaults(processor):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLVideoProcessor

    # The video processor's class defaults upscale 112x112 frames to 336x336 (9x the tokens) when nothing says otherwise.
    defaults = Qwen2_5_VLProcessor(processor.image_processor, processor.tokenizer, Qwen2VLVideoProcessor())
    video = _sample(4, 112)["videos"][0]
    assert defaults.video_processor(videos=[video], return_tensors="pt")["video_grid_thw"].tolist() == [[2, 24, 24]]
    batch = QwenVideoCollator(defaults)([_sample(4, 112)])
    assert batch["video_grid_thw"].tolist() == [[2, 8, 8]]
    assert int((batch["input_ids"] == processor.video_token_id).sum()) == 32


@pytest.mark.real_data
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_labels_cover_exactly_the_answer_and_im_end(processor, padding_side):
    names = ["ApplyEyeMakeup", "Run"]  # answers of different lengths, so one sample is padded
    samples = [_sample(4, 56, label=0, answer_names=names), _sample(4, 56, label=1, answer_names=names)]
    batch = QwenVideoCollator(processor, padding_side=padding_side)(samples)
    tok = processor.tokenizer
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert "mm_token_type_ids" in batch and "assistant_masks" not in batch
    assert (batch["attention_mask"] == 0).any()
    for row, sample in enumerate(samples):
        labels = batch["labels"][row]
        kept = labels[labels != IGNORE_INDEX].tolist()
        assert kept == tok(sample["answer"], add_special_tokens=False)["input_ids"] + [im_end]
        # The labelled tokens are one contiguous span that ends at the last <|im_end|>, right before its newline.
        positions = (labels != IGNORE_INDEX).nonzero().flatten()
        assert positions.tolist() == list(range(int(positions[0]), int(positions[-1]) + 1))
        ids = batch["input_ids"][row]
        assert int(ids[positions[-1]]) == im_end and tok.decode(ids[positions[-1] + 1 : positions[-1] + 2]) == "\n"
    padded = batch["attention_mask"][1] == 0
    assert bool(padded[0] if padding_side == "left" else padded[-1])


def _temporal_groups(model, batch, row: int = 0) -> list[int]:
    """The temporal position id of each temporal group of the first video in `row`."""
    position_ids, _ = model.model.get_rope_index(
        batch["input_ids"],
        mm_token_type_ids=batch["mm_token_type_ids"],
        video_grid_thw=batch["video_grid_thw"],
        second_per_grid_ts=batch.get("second_per_grid_ts"),
        attention_mask=batch["attention_mask"],
    )
    t, h, w = batch["video_grid_thw"][0].tolist()
    video = batch["input_ids"][row] == model.config.video_token_id
    temporal = position_ids[0, row][video].view(t, (h // 2) * (w // 2))
    assert (temporal == temporal[:, :1]).all()  # one temporal position per group
    return temporal[:, 0].tolist()


def _strictly_increasing(values: list[int]) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


@pytest.mark.real_data
def test_temporal_positions_strictly_increase_only_with_metadata(processor, tiny_qwen):
    # 16 frames of a 64-frame, 30 fps clip: a raw T = 16 sample, dense (7.5 fps).
    sample = _sample(16, 56)
    collated = QwenVideoCollator(processor)([sample])
    groups = _temporal_groups(tiny_qwen, collated)
    assert len(groups) == 8 and _strictly_increasing(groups), groups

    # The metadata trap: the same video without metadata gets 24 fps and consecutive pairs collapse.
    text = processor.apply_chat_template(sample["messages"], chat_template=load_chat_template())
    bare = processor(
        text=[text],
        videos=sample["videos"],
        do_sample_frames=False,
        videos_kwargs={"size": {"shortest_edge": 56 * 56, "longest_edge": 56 * 56}},
        return_tensors="pt",
    )
    assert not _strictly_increasing(_temporal_groups(tiny_qwen, bare))

    # The true 7.5 fps is too dense for Qwen2.5-VL's temporal resolution (0.5 s per position): without the cap
    # consecutive pairs share positions too.
    assert not _strictly_increasing(_temporal_groups(tiny_qwen, QwenVideoCollator(processor, max_fps=None)([sample])))


@pytest.mark.real_data
def test_collator_refuses_samples_without_fps(processor):
    sample = _sample(4, 56)
    sample["video_metadata"] = [{"frames_indices": [0, 1, 2, 3], "total_num_frames": 4}]
    with pytest.raises(ValueError, match="fps"):
        QwenVideoCollator(processor)([sample])
    with pytest.raises(ValueError, match="max_length"):
        QwenVideoCollator(processor, max_length=16)([_sample(4, 56)])


@pytest.mark.real_data
def test_round_trip_folder_to_model_loss_and_gradients(tmp_path, processor, tiny_qwen):
    folder = write_distilled(tmp_path / "set", n=4, k=4)
    ds = load_chat_dataset(folder, "ratio_1")
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=QwenVideoCollator(processor))
    batch = next(iter(loader))
    assert int((batch["input_ids"] == processor.video_token_id).sum()) == 2 * 32
    assert _strictly_increasing(_temporal_groups(tiny_qwen, batch))

    raw = raw_chat_samples(PROCEDURAL, "train", ClipConfig(num_frames=16, size=56))
    raw_batch = QwenVideoCollator(processor)([raw[0], None, raw[3]])  # None: a clip that could not be decoded
    assert raw_batch["input_ids"].shape[0] == 2

    tiny_qwen.train()
    for b in (batch, raw_batch):
        tiny_qwen.zero_grad()
        out = tiny_qwen(**b)
        assert torch.isfinite(out.loss)
        out.loss.backward()
        grads = {n: p.grad for n, p in tiny_qwen.named_parameters() if p.grad is not None}
        assert all(torch.isfinite(g).all() for g in grads.values())
        # The loss reaches the vision tower through the video tokens, and the text model.
        assert any(n.startswith("model.visual") and g.abs().sum() > 0 for n, g in grads.items())
        assert any("language_model" in n and g.abs().sum() > 0 for n, g in grads.items())
