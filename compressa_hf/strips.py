"""Draw what a distilled set kept: per video, the T sampled source frames with the kept ones framed in red, and
below them the K distilled frames decoded from the stored latents. Rows of different K are drawn each with its own
K; key-frame rows (PRISM, a `keyframe_positions` column) get a third strip: the T frames a network trains on, the
key frames interpolated in latent space to T and decoded, the key frames framed.

`compressa show` parses a `ShowConfig` and calls `show`; from Python:

    from compressa_hf.strips import ShowConfig, show
    paths = show(ShowConfig(repo="outputs/demo/distilled", config_name="ratio_1", num_videos=6))
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
    """Arguments of `compressa show` (and `show`).

    Args:
        repo: Distilled set folder (as written by `compressa distill`).
        config_name: Config name (e.g. `ratio_0.41`); default: the first one.
        num_videos: How many videos to draw (spread over the classes).
        output_dir: Where the PNGs go (default `<repo>/show/<config>`).
        codec: Codec spec to decode with; default: the one the card names (a registry codec, e.g. the packaged
            `tae:taef2`, so a set opens on any machine).
        source: Source spec for the top row (the source frames); default: the spec the set was made with on this
            machine, else the card's. Without a readable source only the decoded frames are drawn.
    """

    repo: str = field(default=None, metadata={"help": "Distilled set folder."})
    config_name: str | None = field(default=None, metadata={"help": "Config name; default: the first."})
    num_videos: int = field(default=6, metadata={"help": "Videos to draw."})
    output_dir: str | None = field(default=None, metadata={"help": "PNG folder (default <repo>/show/<config>)."})
    codec: str | None = field(default=None, metadata={"help": "Codec spec; default: the card's."})
    source: str | None = field(default=None, metadata={"help": "Source spec; default: the one the set was made from."})


def _border(img: np.ndarray, color=(230, 30, 30), width: int = 3) -> np.ndarray:
    out = img.copy()
    out[:width], out[-width:], out[:, :width], out[:, -width:] = color, color, color, color
    return out


def _title_lines(title: str, width_px: int, draw, font) -> list[str]:
    """`title` broken into lines no wider than `width_px` (at spaces where it can, else mid-word), nothing cut."""
    lines: list[str] = []
    for word in title.split(" "):
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and draw.textlength(candidate, font=font) <= width_px:
            lines[-1] = candidate
            continue
        while draw.textlength(word, font=font) > width_px and len(word) > 1:  # a name longer than the picture
            cut = max(1, max(i for i in range(1, len(word) + 1) if draw.textlength(word[:i], font=font) <= width_px))
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines


def render_strip(
    source_frames: np.ndarray | None,
    kept: list[bool],
    decoded: np.ndarray,
    title: str,
    interpolated: tuple[np.ndarray, list[bool]] | None = None,
) -> np.ndarray:
    """Top row: T source frames, kept ones framed (left out when the source cannot be read here); then the K decoded
    distilled frames; then, for key-frame rows, `interpolated` (T frames, which of them are key frames, framed);
    above them the title, wrapped to the picture's width. uint8 HxWx3."""
    from PIL import Image, ImageDraw, ImageFont

    gap = 4

    def row(frames, framed):
        return np.concatenate(
            [
                np.pad(_border(f) if k else f, ((gap, gap), (gap, gap), (0, 0)), constant_values=255)
                for f, k in zip(frames, framed)
            ],
            axis=1,
        )

    rows = [row(decoded, [False] * len(decoded))]
    if source_frames is not None:
        rows.insert(0, row(source_frames, kept))
    if interpolated is not None:
        rows.append(row(*interpolated))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = _title_lines(title, width - 8, measure, font)
    line_h = int(sum(font.getbbox("Ag")[1::2])) + 4
    header = Image.new("RGB", (width, line_h * len(lines) + 6), (255, 255, 255))
    draw = ImageDraw.Draw(header)
    for i, line in enumerate(lines):
        draw.text((4, 3 + i * line_h), line, fill=(0, 0, 0), font=font)
    return np.concatenate([np.asarray(header), *rows])


def framed_positions(sampled: list[int], kept: list[int]) -> list[bool]:
    """Which of the T sampled frames to frame: the first occurrence of each kept source frame (as often as it was
    kept), not the copies a short clip repeats (`short_clips` loop / pad) of it, which are fillers, not frames kept.
    `sampled` are the T source indices in order, `kept` the row's `frame_indices`."""
    from collections import Counter

    left = Counter(kept)
    framed = []
    for idx in sampled:
        framed.append(left[idx] > 0)
        left[idx] -= 1
    return framed


def _source_for(cfg: ShowConfig, meta: dict):
    """The source the set was made from, as this machine reaches it, or None (then only decoded frames are drawn).

    `--source`, else the spec `compressa distill` kept beside the set (`local/<config>.json`, never uploaded), else
    the card's public spec (a Hub id or a name, which may resolve here too).
    """
    from compressa_hf.sources import SourceError, parse_source_spec

    local = os.path.join(cfg.repo, "local", f"{meta['config_name']}.json")
    spec = cfg.source
    if spec is None and os.path.isfile(local):
        with open(local) as f:
            spec = json.load(f)["source"]
    spec = spec or meta.get("source")
    try:
        return parse_source_spec(spec) if spec else None
    except (SourceError, OSError, ValueError) as err:
        logger.warning("cannot open the source %r here (%s); drawing the decoded frames only", spec, err)
        return None


def show(cfg: ShowConfig) -> list[str]:
    """Draw `cfg.num_videos` rows of the set (spread over the classes) as PNGs; returns their paths.

    Each picture is uint8 RGB: the T sampled source frames (kept ones framed in red; left out when the source cannot
    be read here), the K decoded kept frames at the set's frame size, and for key-frame rows the T frames a network
    trains on; a title names the clip, class and kept source frame indices.

    Raises:
        ValueError: `cfg.config_name` is not a config of the set, or the card names a codec outside the registry.
        FileNotFoundError: `cfg.repo` is not a distilled set.
    """
    import torch
    from PIL import Image

    from compressa_hf.clips import ClipConfig, sample_clip
    from compressa_hf.codecs import load_codec, pinned_spec
    from compressa_hf.codecs.storage import dequantise
    from compressa_hf.distillation.keyframes import expand_rows
    from compressa_hf.qwen.samples import check_codec_id
    from compressa_hf.sources import ClipReadError
    from compressa_hf.store import load_config, read_meta

    metas = read_meta(cfg.repo)
    name = cfg.config_name or next(iter(metas))
    if name not in metas:
        raise ValueError(f"config {name!r} not in {cfg.repo}; it has {sorted(metas)}")
    meta = metas[name]
    ds = load_config(cfg.repo, name).with_format("numpy")
    codec = load_codec(cfg.codec or pinned_spec(check_codec_id(meta["codec_id"]), meta.get("codec_revision")))
    codec = codec.freeze()
    source = _source_for(cfg, meta)
    refs = {r.clip_id: r for r in source.list_clips(meta["split"])} if source is not None else {}
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
        kept_idx = sorted(int(x) for x in row["frame_indices"])
        source_frames, kept, note = None, [], ""
        ref = refs.get(str(row["video_id"]))
        try:
            if ref is not None:
                clip = sample_clip(source, ref, clip_cfg)
                source_frames, kept = clip.frames, framed_positions(clip.frame_indices, kept_idx)
                note = f" of {clip.frame_indices}"
        except ClipReadError as err:
            logger.warning("cannot read the source of %s (%s); drawing the decoded frames only", row["video_id"], err)
        z = dequantise(row["latents"], meta["latents_dtype"], meta.get("latent_ranges"))
        with torch.no_grad():
            decoded = codec.decode(z.to(codec.device)).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        cls = meta["class_names"][int(row["label"])]
        title = f"{row['video_id']}  class={cls}  kept frames {kept_idx}{note}"
        interpolated = None
        if "keyframe_positions" in row:  # key frames of a T-frame clip: draw the clip as a network trains on it
            t = int(meta["clip"]["num_frames"])
            positions = torch.as_tensor(np.asarray(row["keyframe_positions"], dtype=np.int64))
            clip = expand_rows(z[None], positions[None], torch.tensor([len(z)]), t)[0]
            with torch.no_grad():
                frames = codec.decode(clip.to(codec.device)).mul(255).round().byte().permute(0, 2, 3, 1).cpu()
            interpolated = (frames.numpy(), [p in set(positions.tolist()) for p in range(t)])
            title += f"  {len(z)} key frames; bottom: interpolated to T={t} as trained"
        path = os.path.join(out_dir, f"{int(i):05d}.png")
        Image.fromarray(render_strip(source_frames, kept, decoded, title, interpolated)).save(path)
        written.append(path)
    logger.info("wrote %d pictures to %s", len(written), out_dir)
    return written
