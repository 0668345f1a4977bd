"""The ratio planner: the paper's ratios, exact byte accounting, never over budget, the coreset step, errors."""

from fractions import Fraction

import pytest

from compressa_hf.distillation.budget import plan_budget, qwen_visual_tokens, ratio_for_frames

UCF = dict(num_frames=16, frame_size=112, latent_shape=(4, 14, 14))
CLIP_BYTES = 16 * 3 * 112 * 112
FRAME_BYTES = 4 * 14 * 14


def test_paper_ratios():
    # 4 x 14 x 14 uint8 latents of 16 x 112 x 112 clips: K = 4 -> 0.52 %, K = 1 -> 0.13 % (UCF101 in Table 1).
    assert ratio_for_frames(4, **UCF) == Fraction(3136 * 100, 602112)
    assert round(float(ratio_for_frames(4, **UCF)), 2) == 0.52
    assert round(float(ratio_for_frames(1, **UCF)), 2) == 0.13
    assert round(float(ratio_for_frames(2, **UCF)), 2) == 0.26
    exact = ratio_for_frames(4, **UCF)
    plan = plan_budget(exact, [10] * 5, **UCF)
    assert (plan.frames_per_video, plan.total_videos, plan.dtype) == (4, 50, "uint8")
    assert plan.achieved_ratio == pytest.approx(0.5208333333)
    assert plan.visual_tokens_per_sample == 32  # FACTS.md: 4 frames at 112 x 112 -> 32 tokens


def test_rounded_paper_ratio_gives_smaller_k_and_says_why():
    plan = plan_budget(0.52, [10] * 5, **UCF)
    assert plan.frames_per_video == 3 and not plan.coreset
    assert plan.next_frames_ratio == pytest.approx(0.5208333333)
    assert "K=4 for every video would need ratio >= 0.520833%" in plan.describe()


@pytest.mark.parametrize("ratio", [0.01, 0.05, 0.13, 0.2, 0.26, 0.39, 0.52, 0.6, 1.0, 2.0, 5.0, 50.0])
@pytest.mark.parametrize("counts", [[7, 3, 12], [100] * 4, [1, 1, 40]])
def test_exact_and_never_over_budget(ratio, counts):
    try:
        plan = plan_budget(ratio, counts, **UCF)
    except ValueError:
        # Only when one frame per class does not fit.
        assert FRAME_BYTES * len(counts) > Fraction(str(ratio)) / 100 * sum(counts) * CLIP_BYTES
        return
    bpf = FRAME_BYTES * (2 if plan.dtype == "float16" else 1)
    assert plan.full_bytes == sum(counts) * CLIP_BYTES
    assert plan.stored_bytes == plan.total_videos * plan.frames_per_video * bpf
    assert plan.stored_bytes <= plan.budget_bytes <= Fraction(str(ratio)) / 100 * plan.full_bytes
    assert plan.achieved_ratio <= ratio
    assert plan.achieved_ratio == float(Fraction(100 * plan.stored_bytes, plan.full_bytes))
    assert 1 <= plan.frames_per_video <= 16
    # Maximal: one more frame per video (or one more video per class) would not fit.
    if not plan.coreset:
        assert plan.frames_per_video == 16 or sum(counts) * (plan.frames_per_video + 1) * bpf > plan.budget_bytes
    else:
        cap = max(plan.videos_per_class)
        assert sum(min(cap + 1, n) for n in counts) * bpf > plan.budget_bytes


def test_coreset_step_when_one_frame_per_video_does_not_fit():
    counts = {"run": 50, "jump": 50, "sit": 8}
    # Budget for 60 frames: 26 per class, "sit" keeps its 8 -> 26 + 26 + 8 = 60.
    ratio = Fraction(100 * 60 * FRAME_BYTES, 108 * CLIP_BYTES)
    plan = plan_budget(ratio, counts, **UCF)
    assert plan.frames_per_video == 1 and plan.coreset
    assert plan.videos_per_class == {"run": 26, "jump": 26, "sit": 8}
    assert plan.stored_bytes == 60 * FRAME_BYTES == plan.budget_bytes
    assert "60 of 108 videos" in plan.describe()


def test_fixed_frames_per_video_chooses_videos():
    plan = plan_budget(0.26, [20, 20], frames_per_video=4, **UCF)
    # 0.26 % of 40 clips = 62619 bytes -> 79 frames of 784 bytes -> 19 videos of 4 frames -> 9 per class.
    assert plan.frames_per_video == 4 and plan.videos_per_class == [9, 9] and plan.coreset
    assert plan.stored_bytes == 18 * 4 * FRAME_BYTES
    assert plan.visual_tokens_per_sample == 32
    full = plan_budget(5.0, [20, 20], frames_per_video=4, **UCF)
    assert full.videos_per_class == [20, 20] and not full.coreset


def test_dtypes():
    f16 = plan_budget(ratio_for_frames(4, **UCF), [10], dtype="float16", **UCF)
    assert f16.frames_per_video == 2 and f16.dtype == "float16" and f16.bytes_per_frame == 2 * FRAME_BYTES
    auto = plan_budget(1.0, [10], dtype="auto", **UCF)
    assert auto.dtype == "uint8" and auto.frames_per_video == 7
    # All T frames fit twice over: float16 costs nothing, so auto takes it.
    huge = plan_budget(2 * ratio_for_frames(16, **UCF), [10], dtype="auto", **UCF)
    assert huge.dtype == "float16" and huge.frames_per_video == 16 and not huge.coreset


def test_visual_tokens():
    assert qwen_visual_tokens(4, 112) == 32
    assert qwen_visual_tokens(1, 112) == 16
    assert qwen_visual_tokens(8, 224) == 256  # FACTS.md
    assert qwen_visual_tokens(3, (112, 224)) == 2 * 8 * 16 // 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(ratio=0.001, num_videos_per_class=[10] * 50), "cannot hold 1 uint8 latent frame"),
        (dict(ratio=0.0, num_videos_per_class=[10]), "ratio must be > 0"),
        (dict(ratio="abc", num_videos_per_class=[10]), "ratio must be a number"),
        (dict(ratio=0.5, num_videos_per_class=[10, 0]), "at least one video"),
        (dict(ratio=0.5, num_videos_per_class=[10], dtype="int4"), "dtype must be one of"),
        (dict(ratio=0.5, num_videos_per_class=[10], frames_per_video=17), "frames_per_video must be in \\[1, T=16\\]"),
    ],
)
def test_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_budget(**kwargs, **UCF)


def test_error_names_the_ratio_that_works():
    with pytest.raises(ValueError) as err:
        plan_budget(0.001, [10] * 50, **UCF)
    smallest = 100 * 50 * FRAME_BYTES / (500 * CLIP_BYTES)
    assert f"{smallest:.6f}%" in str(err.value)
    plan_budget(Fraction(100 * 50 * FRAME_BYTES, 500 * CLIP_BYTES), [10] * 50, **UCF)  # and that it does
