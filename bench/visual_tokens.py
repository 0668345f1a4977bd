"""Visual tokens per training sample for each Qwen-VL family: K distilled keyframes vs T raw frames, at two sizes.

Usage:
    python bench/visual_tokens.py                                   # K = 4, T = 16, 112 and 224 px
    python bench/visual_tokens.py --k 4 8 --t 16 32 --sizes 112 224 --output bench/results/visual_tokens.json

Each cell is counted, not estimated: a sample of F random uint8 frames of S x S pixels goes through the training
collator (`QwenVideoCollator`) with the family's processor, and the `<|video_pad|>` tokens of the batch are counted
(checked against `QwenFamily.visual_tokens`). Qwen2.5-VL uses the real processor files of ../shared/qwen2_5_vl;
Qwen2-VL and Qwen3-VL the processor `compressa_hf.qwen.build_processor` assembles (their own image / video processor
classes at their patch size; the collator sets the pixel bounds, so no checkpoint setting enters the count).

Rows:
- distilled: K decoded keyframes at S x S (what a distilled row is).
- raw, clips: T uniform frames resized and centre-cropped to S x S (`--video_reader clips --num_frames T --clip_size S`).
- raw, qwen-vl-utils defaults: T frames of an S x S clip through qwen-vl-utils with its own pixel bounds (at least
  128 tokens' worth per frame, so small frames are upscaled): what Qwen's examples feed.

Also counted: the tokens of the whole video span (Qwen3-VL adds a `<t.t seconds>` text and a start / end token per
temporal group). Prints a markdown table and writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_PROCESSOR_DIR = os.path.join(os.path.dirname(REPO), "shared", "qwen2_5_vl")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[4], help="Keyframes per distilled row.")
    parser.add_argument("--t", type=int, nargs="+", default=[16], help="Frames per raw clip.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 224], help="Frame sides in pixels.")
    parser.add_argument("--families", nargs="+", default=None, help="Families (default: all registered).")
    parser.add_argument(
        "--processor_dir", default=DEFAULT_PROCESSOR_DIR, help="Qwen2.5-VL processor files (tokenizer for all)."
    )
    parser.add_argument("--output", default=os.path.join(HERE, "results", "visual_tokens.json"))
    return parser


def count(collator, frames: np.ndarray, fps: float = 30.0) -> dict:
    """Visual tokens, grid and video-span tokens of one sample of `frames` (uint8 (F, H, W, 3))."""
    from compressa_hf.qwen.prompts import PromptTemplate
    from compressa_hf.qwen.samples import make_chat_sample, video_metadata

    prompt = PromptTemplate()
    meta = video_metadata([4 * i for i in range(len(frames))], fps, total_num_frames=4 * len(frames))
    sample = make_chat_sample(frames, 0, prompt.class_texts(["a", "b"]), prompt, meta)
    batch = collator([sample])
    processor = collator.processor
    ids = batch["input_ids"][0]
    tok = processor.tokenizer
    start, end = tok.convert_tokens_to_ids("<|vision_start|>"), tok.convert_tokens_to_ids("<|vision_end|>")
    positions = ((ids == start) | (ids == end)).nonzero().flatten()
    return {
        "visual_tokens": int((ids == processor.video_token_id).sum()),
        "video_span_tokens": int(positions[-1] - positions[0] + 1),
        "grid_thw": batch["video_grid_thw"][0].tolist(),
        "frame_side": int(sample["videos"][0].shape[1]),
    }


def main(args) -> list[dict]:
    import transformers

    from compressa_hf.qwen import FAMILIES, build_processor
    from compressa_hf.qwen.collator import QwenVideoCollator
    from compressa_hf.qwen.video import QwenVideoConfig, qwen_frame_size, resize_bicubic

    transformers.logging.set_verbosity_error()
    names = args.families or list(FAMILIES)
    rng = np.random.default_rng(0)
    rows = []
    for name in names:
        family = FAMILIES[name]
        if name == "qwen2_5_vl":
            processor = transformers.AutoProcessor.from_pretrained(args.processor_dir)
        else:
            processor = build_processor(name, args.processor_dir)
        collator = QwenVideoCollator(processor)
        for size in args.sizes:
            cells = [("distilled", k) for k in args.k] + [("raw, clips", t) for t in args.t]
            cells += [("raw, qwen-vl-utils defaults", t) for t in args.t]
            for kind, frames in cells:
                video = rng.integers(0, 256, size=(frames, size, size, 3), dtype=np.uint8)
                if kind.startswith("raw, qwen"):
                    reader = QwenVideoConfig(nframes=frames, image_patch_size=family.patch_size)
                    h, w = qwen_frame_size(frames, size, size, reader.element(None), family.patch_size)
                    video = resize_bicubic(video, h, w)
                row = {"family": name, "kind": kind, "frames": frames, "size": size} | count(collator, video)
                side = row["grid_thw"][1] * family.patch_size
                if row["visual_tokens"] != family.visual_tokens(frames, side, side):
                    raise RuntimeError(f"{name} {kind} {frames}x{size}: counted {row['visual_tokens']} tokens")
                rows.append(row)
    return rows


def markdown(rows: list[dict], sizes: list[int]) -> str:
    """One line per (family, kind, frames): visual tokens (video-span tokens) at each size."""
    header = "| family | sample | frames | " + " | ".join(f"{s} px: visual (span)" for s in sizes) + " |"
    lines = [header, "|---|---|---|" + "---|" * len(sizes)]
    keys = list(dict.fromkeys((r["family"], r["kind"], r["frames"]) for r in rows))
    for family, kind, frames in keys:
        cells = []
        for size in sizes:
            r = next(
                r for r in rows if (r["family"], r["kind"], r["frames"], r["size"]) == (family, kind, frames, size)
            )
            side = f" at {r['frame_side']} px" if r["frame_side"] != size else ""
            cells.append(f"{r['visual_tokens']} ({r['video_span_tokens']}){side}")
        lines.append(f"| {family} | {kind} | {frames} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    args = make_parser().parse_args()
    rows = main(args)
    table = markdown(rows, args.sizes)
    print(table)
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(
            {"args": vars(args) | {"processor_dir": os.path.relpath(args.processor_dir, REPO)}, "rows": rows},
            f,
            indent=2,
        )
