"""Draw what a distilled set kept: per video, the T sampled source frames with the kept ones framed in red, and
below them the K distilled frames decoded from the stored latents.

Usage:
    compressa show outputs/demo/distilled --config_name ratio_1 --num_videos 6 --output_dir outputs/demo/show
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class ShowConfig:
    """Arguments of `compressa show`.

    Args:
        repo: Distilled set folder (as written by `compressa distill`).
        config_name: Config name (e.g. `ratio_0.41`); default: the first one.
        num_videos: How many videos to draw (spread over the classes).
        output_dir: Where the PNGs go (default `<repo>/show/<config>`).
        codec: Codec spec to decode with; default: the one the card names.
    """

    repo: str = field(default=None, metadata={"help": "Distilled set folder."})
    config_name: str | None = field(default=None, metadata={"help": "Config name; default: the first."})
    num_videos: int = field(default=6, metadata={"help": "Videos to draw."})
    output_dir: str | None = field(default=None, metadata={"help": "PNG folder (default <repo>/show/<config>)."})
    codec: str | None = field(default=None, metadata={"help": "Codec spec; default: the card's."})


def make_parser():
    from trl import TrlParser

    return TrlParser((ShowConfig,), prog="compressa show")


def _border(img: np.ndarray, color=(230, 30, 30), width: int = 3) -> np.ndarray:
    out = img.copy()
    out[:width], out[-width:], out[:, :width], out[:, -width:] = color, color, color, color
    return out


def render_strip(source_frames: np.ndarray, kept: list[bool], decoded: np.ndarray, title: str) -> np.ndarray:
    """Top row: T source frames, kept ones framed; bottom row: the K decoded distilled frames. uint8 HxWx3."""
    from PIL import Image, ImageDraw

    t, h, w, _ = source_frames.shape
    gap = 4
    top = np.concatenate(
        [
            np.pad(_border(f) if k else f, ((gap, gap), (gap, gap), (0, 0)), constant_values=255)
            for f, k in zip(source_frames, kept)
        ],
        axis=1,
    )
    bottom = np.concatenate(
        [np.pad(f, ((gap, gap), (gap, gap), (0, 0)), constant_values=255) for f in decoded], axis=1
    )
    bottom = np.pad(bottom, ((0, 0), (0, top.shape[1] - bottom.shape[1]), (0, 0)), constant_values=255)
    canvas = np.concatenate([np.full((18, top.shape[1], 3), 255, np.uint8), top, bottom])
    image = Image.fromarray(canvas)
    ImageDraw.Draw(image).text((4, 3), title, fill=(0, 0, 0))
    return np.asarray(image)


def show(cfg: ShowConfig) -> list[str]:
    import torch
    from PIL import Image

    from compressa_hf.clips import ClipConfig, sample_clip
    from compressa_hf.codecs import load_codec
    from compressa_hf.codecs.base import uint8_to_latents
    from compressa_hf.sources import parse_source_spec
    from compressa_hf.store import load_config, read_meta

    metas = read_meta(cfg.repo)
    name = cfg.config_name or next(iter(metas))
    if name not in metas:
        raise ValueError(f"config {name!r} not in {cfg.repo}; it has {sorted(metas)}")
    meta = metas[name]
    ds = load_config(cfg.repo, name).with_format("numpy")
    codec = load_codec(cfg.codec or meta["codec_id"]).freeze()
    source = parse_source_spec(meta["source"])
    refs = {r.clip_id: r for r in source.list_clips(meta["split"])}
    clip_cfg = ClipConfig(**meta["clip"])
    out_dir = cfg.output_dir or os.path.join(cfg.repo, "show", name)
    os.makedirs(out_dir, exist_ok=True)

    labels = np.asarray(ds["label"])
    # Round-robin over classes so a handful of pictures shows every class.
    order = [
        i for rank in range(len(ds)) for c in np.unique(labels) for i in np.flatnonzero(labels == c)[rank : rank + 1]
    ]
    written = []
    for i in order[: cfg.num_videos]:
        row = ds[int(i)]
        clip = sample_clip(source, refs[str(row["video_id"])], clip_cfg)
        kept_idx = set(int(x) for x in row["frame_indices"])
        kept = [idx in kept_idx for idx in clip.frame_indices]
        z = torch.from_numpy(np.asarray(row["latents"], dtype=meta["latents_dtype"]))
        z = uint8_to_latents(z) if meta["latents_dtype"] == "uint8" else z.float()
        with torch.no_grad():
            decoded = codec.decode(z.to(codec.device)).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        cls = meta["class_names"][int(row["label"])]
        title = f"{row['video_id']}  class={cls}  kept frames {sorted(kept_idx)} of {clip.frame_indices}"
        path = os.path.join(out_dir, f"{int(i):05d}.png")
        Image.fromarray(render_strip(clip.frames, kept, decoded, title)).save(path)
        written.append(path)
    logger.info("wrote %d pictures to %s", len(written), out_dir)
    return written


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if argv and not argv[0].startswith("-"):  # `compressa show DIR ...`
        argv = ["--repo", argv[0], *argv[1:]]
    (cfg,) = make_parser().parse_args_and_config(argv)
    if not cfg.repo:
        raise SystemExit("compressa show: --repo DIR is required (a folder written by `compressa distill`)")
    print(json.dumps({"pictures": show(cfg)}, indent=2))
    return 0
