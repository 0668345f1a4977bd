"""The README's picture of what a distilled set keeps: real UCF101 clips (`../shared/data/ucf101_19`) distilled with
VideoCompressa at two latent frames per video, drawn by `compressa show` (each video's T sampled frames with the kept
ones framed in red, and below them the kept frames decoded from the stored latents), three videos of different
classes stacked into one PNG.

Usage:
    python bench/readme_picture.py                       # writes bench/results/kept_frames_ucf101_19.png (+ .json)
    python bench/readme_picture.py --method uniform --videos 4 --output /tmp/kept.png
    python bench/readme_picture.py --size 64 --options passes=1,guide_warmup_epochs=2   # a shorter schedule on CPU

Runs the library API (`compressa_hf.distill`, `compressa_hf.strips.show`), on CPU in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared"))
sys.path.insert(0, os.path.dirname(HERE))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=os.path.join(SHARED, "data", "ucf101_19"))
    parser.add_argument("--method", default="videocompressa")
    parser.add_argument("--ratio", default="k2")
    parser.add_argument("--num_frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument(
        "--options",
        default="",
        help="More `compressa_hf.distill` keywords, key=value,... (as --method_options reads them).",
    )
    parser.add_argument("--width", type=int, default=960, help="Width of the written picture in pixels.")
    parser.add_argument("--work", default=os.path.join(HERE, "results", "readme_picture_run"))
    parser.add_argument("--output", default=os.path.join(HERE, "results", "kept_frames_ucf101_19.png"))
    args = parser.parse_args(argv)

    import logging

    import numpy as np
    from PIL import Image

    import compressa_hf
    from compressa_hf.distillation.arguments import read_method_options
    from compressa_hf.strips import ShowConfig, show

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%X")
    extra = read_method_options(args.options, args.method)  # `key=value,...`, numbers and true/false read as such
    start = time.perf_counter()
    out = compressa_hf.distill(
        source=args.source,
        method=args.method,
        ratio=args.ratio,
        num_frames=args.num_frames,
        size=args.size,
        codec=f"tae:{os.path.join(SHARED, 'weights', 'taef2')}",
        output=os.path.join(args.work, "set"),
        num_workers=0,
        **extra,
    )
    paths = show(ShowConfig(repo=out.repo, config_name=out.config_name, num_videos=args.videos))
    strips = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    width = max(s.shape[1] for s in strips)
    strips = [np.pad(s, ((0, 8), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in strips]
    picture = Image.fromarray(np.concatenate(strips))
    picture = picture.resize((args.width, round(picture.height * args.width / picture.width)), Image.LANCZOS)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    # 256 colours: a third of the bytes of full RGB for photos this small, no visible loss at README size
    picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.output, optimize=True)
    record = {
        "command": "python bench/readme_picture.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": out.config_name,
        "method": out.method,
        "plan": out.plan,
        "stored_bytes": out.summary["output"]["stored_bytes"],
        "videos_drawn": [os.path.basename(p) for p in paths],
        "seconds": round(time.perf_counter() - start, 1),
    }
    with open(os.path.splitext(args.output)[0] + ".json", "w") as f:
        json.dump(record, f, indent=2)
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
