"""The prompt's cost: tokens of the prompt, the answer and the video in one training sample, per prompt style and family.

Usage:
    python bench/prompt_cost.py --output bench/results/prompt_cost.json

Each sample is what `QwenVideoCollator` builds for training (the family's chat template, its processor, its
tokenizer): a distilled sample of K = 4 frames at 112 x 112, a raw one of T = 16 at 112 x 112, and a raw one as
qwen-vl-utils' defaults present a 320 x 240 clip of 8 s (2 frames per second, at most 16 here as the recipes cap it,
frames resized into 128-768 tokens' worth). Prompt tokens are every token that is neither a visual placeholder nor a
label (system turn, question with the class list, template tokens, the answer cue); answer tokens are the labels (the
class name and `<|im_end|>`, averaged over the classes). Class lists: arid6 and ucf101_19 from ../shared/data, HMDB51's
51 official action names (below). Prints a markdown table and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

#: HMDB51's 51 action classes (the names of its official split files).
HMDB51 = (
    "brush_hair cartwheel catch chew clap climb climb_stairs dive draw_sword dribble drink eat fall_floor fencing "
    "flic_flac golf handstand hit hug jump kick kick_ball kiss laugh pick pour pullup punch push pushup ride_bike "
    "ride_horse run shake_hands shoot_ball shoot_bow shoot_gun sit situp smile smoke somersault stand swing_baseball "
    "sword sword_exercise talk throw turn walk wave"
).split()
FAMILIES_MEASURED = ("qwen2_5_vl", "qwen3_vl", "qwen3_5")


def class_lists(shared: str) -> dict[str, list[str]]:
    from compressa_hf.sources import parse_source_spec

    out = {}
    for name in ("arid6", "ucf101_19"):
        path = os.path.join(shared, "data", name)
        if os.path.isdir(path):
            out[name] = list(parse_source_spec(path).class_names)
    out["hmdb51"] = HMDB51
    return out


def sample_kinds(family) -> dict[str, tuple[int, int, int]]:
    """(frames, height, width) of each sample kind as the processor sees it."""
    from qwen_vl_utils import vision_process as qv

    from compressa_hf.qwen.video import QwenVideoConfig, qwen_frame_size

    config = QwenVideoConfig(max_frames=16, image_patch_size=family.patch_size)
    frames = qv.smart_nframes(config.element(None), total_frames=8 * 25, video_fps=25.0)
    height, width = qwen_frame_size(frames, 240, 320, config.element(None), family.patch_size)
    return {
        "distilled K=4, 112 px": (4, 112, 112),
        "raw T=16, 112 px": (16, 112, 112),
        "raw, qwen-vl-utils": (frames, height, width),
    }


def measure(processor, family, classes: list[str], style: str, frames: int, height: int, width: int) -> dict:
    import numpy as np

    from compressa_hf.qwen.collator import QwenVideoCollator
    from compressa_hf.qwen.prompts import PROMPT_STYLES
    from compressa_hf.qwen.samples import make_chat_sample, video_metadata

    prompt = PROMPT_STYLES[style]
    texts = prompt.class_texts(classes)
    video = np.zeros((frames, height, width, 3), dtype=np.uint8)
    meta = video_metadata(list(range(0, 2 * frames, 2)), 25.0, total_num_frames=2 * frames)
    collator = QwenVideoCollator(processor, family=family, max_fps=None)
    answers = []
    for label in range(len(texts)):
        batch = collator([make_chat_sample(video, label, texts, prompt, meta)])
        answers.append(int((batch["labels"] != -100).sum()))
        if label == 0:
            total = int(batch["attention_mask"].sum())
            visual = int((batch["input_ids"] == processor.video_token_id).sum())
    answer = sum(answers) / len(answers)
    prompt_tokens = total - visual - answers[0]
    return {
        "tokens": total - answers[0] + answer,
        "visual_tokens": visual,
        "prompt_tokens": prompt_tokens,
        "answer_tokens": answer,
        "prompt_share": prompt_tokens / (total - answers[0] + answer),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
    parser.add_argument("--output", default="bench/results/prompt_cost.json")
    args = parser.parse_args()

    from transformers import AutoProcessor

    from compressa_hf.qwen import FAMILIES, build_processor
    from compressa_hf.qwen.prompts import PROMPT_STYLES
    from compressa_hf.qwen.tokenizer import write_qwen3_5_tokenizer

    qwen2 = os.path.join(args.shared, "qwen2_5_vl")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        qwen3_5 = write_qwen3_5_tokenizer(os.path.join(tmp, "qwen3_5"))
        for name in FAMILIES_MEASURED:
            family = FAMILIES[name]
            if name == "qwen2_5_vl":
                processor = AutoProcessor.from_pretrained(qwen2)
            else:
                processor = build_processor(name, qwen3_5 if family.vocabulary == "qwen3_5" else qwen2)
            for data, classes in class_lists(args.shared).items():
                for kind, (frames, height, width) in sample_kinds(family).items():
                    for style in PROMPT_STYLES:
                        row = measure(processor, family, classes, style, frames, height, width)
                        rows.append(
                            {
                                "family": name,
                                "data": data,
                                "classes": len(classes),
                                "sample": kind,
                                "style": style,
                                **row,
                            }
                        )
    print("| family | data (classes) | sample | prompt style | tokens | visual | prompt | answer | prompt share |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['family']} | {r['data']} ({r['classes']}) | {r['sample']} | {r['style']} | {r['tokens']:.0f} | "
            f"{r['visual_tokens']} | {r['prompt_tokens']} | {r['answer_tokens']:.1f} | {100 * r['prompt_share']:.0f} % |"
        )
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
