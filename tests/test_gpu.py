"""The CUDA paths against the CPU ones, on tiny cases: the cache pass, VideoCompressa, the train-from-scratch protocol,
and a tiny Qwen2.5-VL on the collator's batch (forward + backward in bf16, log-likelihood scoring).

Marked `gpu` and skipped without CUDA; `bench/gpu/run.sh` runs them on the GPU machine (`pytest -m gpu`).

Tolerances. The comparisons in fp32 switch TF32 off (`fp32_exact`), so both devices compute the same fp32 arithmetic
and differ only in the order of floating-point sums (cuDNN's and the CPU's convolution algorithms): about 1e-6
relative per operation. Through a trained network that does not stay at 1e-6: Adam divides each gradient by its own
running magnitude, so a weight whose gradient is near zero moves by up to one learning rate per step in a direction
that rounding can flip. The first H200 run (2026-11-29) measured frame scores 3.1e-4 apart after two passes (scorer
lr 1e-3), against the 1e-4 this file first allowed. The bounds used: 1e-3 absolute on latents (a tenth of one Adam
step at lr 1e-2) and losses, 2e-3 on frame scores (two scorer Adam steps; the scores of one video lie within ~1e-2
of each other after two passes, so a looser bound would say nothing). VideoCompressa is compared with a float32
frame cache: the default float16 cache would round values that differ in the last fp32 bit to different float16
numbers. A top-K choice can differ only where two frames' scores are closer than twice the largest measured score
difference, so kept frames are compared on the videos whose K-th and (K+1)-th scores are further apart than that.
bf16 keeps 8 bits of mantissa (0.4 % relative per rounding): a loss within 2 % of the fp32 one.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from compressa_hf.distillation.videocompressa import distill
from tests.conftest import QWEN, REPO, need_shared
from tests.test_videocompressa import CLASSES, TinyCodec, make_set, small_config

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

TINY_QWEN = REPO / "tests" / "fixtures" / "tiny_qwen2_5_vl.json"
ATOL = 1e-3
SCORE_ATOL = 2e-3


@pytest.fixture
def fp32_exact():
    """TF32 off for convolutions and matrix products while the test runs (it is on by default for cuDNN)."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def _clear_margin(scores: torch.Tensor, k: int, diff: float) -> torch.Tensor:
    """Videos whose K-th best score beats the (K+1)-th by more than twice `diff`: their top-K is not a near-tie."""
    top = scores.sort(dim=1, descending=True).values
    return (top[:, k - 1] - top[:, k]) > 2 * diff


def test_videocompressa_on_cuda_matches_cpu(fp32_exact):
    latents, labels, _ = make_set()
    cfg = small_config(passes=2, frame_cache_dtype="float32")
    cpu = distill(latents, labels, TinyCodec(), cfg, CLASSES, progress=False)
    gpu = distill(latents, labels, TinyCodec().to("cuda"), cfg, CLASSES, progress=False)

    assert gpu.latents.device.type == gpu.scores.device.type == "cpu"  # results come back to the host
    torch.testing.assert_close(gpu.scores, cpu.scores, atol=SCORE_ATOL, rtol=0)
    diff = (gpu.scores - cpu.scores).abs().max().item()
    clear = _clear_margin(cpu.scores, cfg.frames_per_video, diff)
    # The comparisons below must cover most videos. On the H200 (2026-11-29) 0.8 failed: the measured difference
    # sets the near-tie margin, and with one video's scores within ~1e-2 about 30 % of videos fell inside it.
    assert clear.float().mean() > 0.5
    assert torch.equal(gpu.frame_indices[clear], cpu.frame_indices[clear])
    # Kept latents of those videos: nearly all values within ATOL; a value whose Adam step flipped sign on a near-zero
    # gradient (see the module docstring) may be off by at most the steps it took (2 per pass at lr_latents).
    moved = (gpu.latents[clear] - cpu.latents[clear]).abs()
    assert (moved <= ATOL).float().mean() > 0.99
    assert moved.max() <= 2 * cfg.passes * cfg.lr_latents + ATOL
    for a, b in zip(gpu.history, cpu.history):
        assert a["loss"] == pytest.approx(b["loss"], abs=ATOL)
    assert gpu.timings["decoded_frames"] == cpu.timings["decoded_frames"]  # the same bookkeeping on both devices


def test_videocompressa_bf16_decoder_on_cuda_scores_like_fp32():
    """The benchmark's setting (decoder in bf16, TF32 on): frame scores within bf16's error of the fp32 run's.

    bf16 frames are ~0.4 % off, which moves a frame score by ~2e-3 here (measured on CPU); 1e-2 leaves a margin and
    still fails on a broken bf16 path (scores of one video spread over ~1e-2, random ones over far more).
    """
    latents, labels, _ = make_set()
    cfg = small_config(passes=2)
    fp32 = distill(latents, labels, TinyCodec().to("cuda"), cfg, CLASSES, progress=False)
    bf16 = distill(latents, labels, TinyCodec().to("cuda", torch.bfloat16), cfg, CLASSES, progress=False)
    assert torch.isfinite(bf16.latents).all()
    torch.testing.assert_close(bf16.scores, fp32.scores, atol=1e-2, rtol=0)
    # Where both keep the same frames, the refined latents differ by at most the two runs' Adam moves (2 x 2e-2).
    same = (bf16.frame_indices == fp32.frame_indices).all(1)
    assert same.any()
    moved = (bf16.latents[same] - fp32.latents[same]).abs().max()
    assert moved <= 0.05, f"bf16 latents are {moved:.3f} from the fp32 ones after 2 passes of Adam at lr 1e-2"


def test_cache_pass_on_cuda_matches_cpu(tmp_path, fp32_exact):
    from compressa_hf.cache import EncodeConfig, LatentCache, encode_split
    from compressa_hf.codecs import resolve_tae

    try:
        resolve_tae("taef2")
    except FileNotFoundError as err:
        pytest.skip(f"no TAEF2 weights: {err}")
    source = "procedural:num_classes=2,train_per_class=2,test_per_class=1,length=16,frame_size=64"
    got = []
    for device, dtype in (("cpu", "float32"), ("cuda", "float32"), ("cuda", "bfloat16")):
        out = tmp_path / f"{device}_{dtype}"
        cfg = EncodeConfig(
            source=source,
            output_dir=str(out),
            codec="tae:taef2",
            num_frames=4,
            size=64,
            num_workers=0,
            dtype=dtype,
            device=device,
        )
        encode_split(cfg, progress=False)
        got.append(LatentCache(str(out)).load_latents())
    (ref, labels), (fp32, fp32_labels), (bf16, _) = got
    assert torch.equal(fp32_labels, labels)
    # Latents are stored as float16 (~1e-3 relative), so the fp32 comparison is at float16 resolution.
    torch.testing.assert_close(fp32.float(), ref.float(), atol=ATOL, rtol=2e-3)
    rel = (bf16.float() - ref.float()).norm() / ref.float().norm()
    assert rel < 2e-2, f"bf16 cache pass on cuda is {rel:.4f} (relative L2) from the fp32 one"


def test_train_protocol_on_cuda_matches_cpu(fp32_exact):
    from compressa_hf.evaluation.train import TrainConfig, train_and_test

    gen = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (24, 2, 3, 16, 16), generator=gen, dtype=torch.uint8)
    test = torch.randint(0, 256, (8, 4, 3, 16, 16), generator=gen, dtype=torch.uint8)
    train_labels, test_labels = torch.arange(24) % 3, torch.arange(8) % 3
    cfg = TrainConfig(epochs=3, batch_size=8, width=16, flip=True)
    cpu = train_and_test(train, train_labels, test, test_labels, 3, "convnet", cfg, seed=0, device="cpu")
    gpu = train_and_test(train, train_labels, test, test_labels, 3, "convnet", cfg, seed=0, device="cuda")
    assert gpu.final_loss == pytest.approx(cpu.final_loss, abs=ATOL)
    assert len(gpu.epoch_seconds) == 3 and all(s > 0 for s in gpu.epoch_seconds)
    assert len(gpu.predictions) == 8 and all(0 <= p < 3 for p in gpu.predictions)


# -- Qwen2.5-VL on the collator's batch ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def processor():
    need_shared(QWEN)
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(QWEN))


def _samples(n: int, class_texts: list[str], prompt, frames: int = 4, side: int = 56) -> list[dict]:
    from compressa_hf.qwen.samples import make_chat_sample, video_metadata

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        video = rng.integers(0, 256, size=(frames, side, side, 3), dtype=np.uint8)
        meta = video_metadata([8 * j for j in range(frames)], 30.0, total_num_frames=8 * frames)
        out.append(make_chat_sample(video, i % len(class_texts), class_texts, prompt, meta, f"v{i}"))
    return out


@pytest.mark.real_data
def test_collator_batch_trains_tiny_qwen_in_bf16_on_cuda(processor):
    from compressa_hf.qwen.collator import QwenVideoCollator
    from compressa_hf.qwen.models import random_qwen
    from compressa_hf.qwen.prompts import PromptTemplate

    prompt = PromptTemplate()
    batch = QwenVideoCollator(processor)(_samples(3, prompt.class_texts(["Jump", "Run", "Wave"]), prompt))
    model = random_qwen(TINY_QWEN)
    with torch.no_grad():
        reference = float(model(**batch).loss)
    model = model.to("cuda", torch.bfloat16).train()
    cuda_batch = {k: v.to("cuda") if torch.is_tensor(v) else v for k, v in batch.items()}
    assert cuda_batch["pixel_values_videos"].is_floating_point()
    loss = model(**cuda_batch).loss
    assert loss.dtype in (torch.bfloat16, torch.float32) and torch.isfinite(loss)
    assert float(loss.detach()) == pytest.approx(reference, rel=2e-2)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert any("language_model" in n for n in grads) and any("visual" in n for n in grads)
    assert all(torch.isfinite(g).all() for g in grads.values())


@pytest.mark.real_data
def test_loglik_scoring_on_cuda_matches_cpu(processor, fp32_exact):
    from compressa_hf.qwen.collator import QwenVideoCollator
    from compressa_hf.qwen.evaluation import choice_token_ids, prompt_inputs, score_choices
    from compressa_hf.qwen.models import random_qwen
    from compressa_hf.qwen.prompts import PromptTemplate

    prompt = PromptTemplate()
    texts = prompt.class_texts(["ApplyEyeMakeup", "Run", "brush_hair", "PlayingDaf"])  # answers of 1 to 4 tokens
    inputs = prompt_inputs(QwenVideoCollator(processor, padding_side="left"), _samples(2, texts, prompt), texts[0])
    choices = choice_token_ids(processor.tokenizer, texts, prompt)
    model = random_qwen(TINY_QWEN).eval()
    cpu = score_choices(model, inputs, choices, choice_batch_size=3)
    gpu = score_choices(copy.deepcopy(model).to("cuda"), inputs, choices, choice_batch_size=3)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=ATOL, rtol=0)


# -- the SFT recipe's kernel switches (`attn_implementation`, `use_liger_kernel`) ----------------------------------


@pytest.fixture(scope="module")
def tiny_qwen_dir(tmp_path_factory):
    """The tiny model saved with the processor files, as `load_model` reads a checkpoint."""
    need_shared(QWEN)
    from compressa_hf.qwen.models import save_tiny_model

    return save_tiny_model(TINY_QWEN, tmp_path_factory.mktemp("tiny_qwen"), QWEN)


@pytest.mark.real_data
@pytest.mark.parametrize("attn", ["sdpa", "flash_attention_2"])
def test_attention_kernel_from_the_recipe_trains_like_eager_on_cuda(processor, tiny_qwen_dir, attn):
    """`attn_implementation` as `sft_qwen.py` loads it (bf16): both towers use it, the loss is within bf16's error of
    eager attention's and every gradient is finite."""
    import importlib.util
    from types import SimpleNamespace

    from trl import ModelConfig

    from compressa_hf.qwen.collator import QwenVideoCollator
    from compressa_hf.qwen.models import load_model
    from compressa_hf.qwen.prompts import PromptTemplate
    from compressa_hf.qwen.sft import check_kernels

    if attn == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        pytest.skip("flash-attn is not installed on this machine (bench/gpu/prepare.sh does not carry it)")
    prompt = PromptTemplate()
    batch = QwenVideoCollator(processor)(_samples(3, prompt.class_texts(["Jump", "Run", "Wave"]), prompt))
    batch = {k: v.to("cuda") if torch.is_tensor(v) else v for k, v in batch.items()}
    losses = {}
    for impl in ("eager", attn):
        model_args = ModelConfig(model_name_or_path=tiny_qwen_dir, dtype="bfloat16", attn_implementation=impl)
        check_kernels(model_args, SimpleNamespace(use_liger_kernel=False))  # the recipe's refusal lets it through
        model = load_model(model_args).to("cuda").train()
        config = model.config
        assert config.text_config._attn_implementation == config.vision_config._attn_implementation == impl
        loss = model(**batch).loss
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        losses[impl] = float(loss.detach())
    assert losses[attn] == pytest.approx(losses["eager"], rel=2e-2)


@pytest.mark.real_data
def test_liger_kernel_through_the_sft_trainer_on_cuda(processor, tiny_qwen_dir, tmp_path):
    """`use_liger_kernel` through `VideoSFTTrainer` (2 bf16 steps of full SFT): the first step's loss within bf16's
    error of the same run without Liger, and the weights move."""
    pytest.importorskip("liger_kernel", reason="liger-kernel is not installed on this machine (carry its wheel)")
    from trl import ModelConfig

    from compressa_hf.qwen.collator import QwenVideoCollator
    from compressa_hf.qwen.models import load_model
    from compressa_hf.qwen.prompts import PromptTemplate
    from compressa_hf.qwen.sft import SkipUnreadable, as_hf_dataset
    from compressa_hf.qwen.sft_config import VideoSFTConfig
    from compressa_hf.qwen.sft_trainer import VideoSFTTrainer

    prompt = PromptTemplate()
    dataset = as_hf_dataset(_samples(4, prompt.class_texts(["Jump", "Run"]), prompt))
    first_loss = {}
    for liger in (False, True):
        model = load_model(ModelConfig(model_name_or_path=tiny_qwen_dir, dtype="bfloat16", attn_implementation="sdpa"))
        before = model.lm_head.weight.detach().clone()
        args = VideoSFTConfig(
            output_dir=str(tmp_path / str(liger)), bf16=True, max_steps=2, per_device_train_batch_size=2,
            learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to="none", use_liger_kernel=liger,
        )  # fmt: skip
        trainer = VideoSFTTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=processor,
            data_collator=SkipUnreadable(QwenVideoCollator(processor)),
        )  # fmt: skip
        trainer.train()
        assert trainer.steps_this_run == 2
        assert not torch.equal(trainer.model.lm_head.weight.detach().cpu(), before.cpu())
        first_loss[liger] = next(e["loss"] for e in trainer.state.log_history if "loss" in e)
    assert first_loss[True] == pytest.approx(first_loss[False], rel=2e-2)
