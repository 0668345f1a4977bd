"""A distilled set <-> a Hugging Face dataset repository on disk (parquet per config + dataset card).

Layout (one repo holds every ratio of a source, e.g. `compressa_hf/hmdb51_distilled`)::

    README.md                                 card: YAML `configs` (one per ratio) + a section per config
    data/<config>/train-<digest>-00000-of-00001.parquet  video_id, label (ClassLabel), latents (K x C x h x w),
                                              frame_indices, timestamps, fps, source (+ start: variable-rate clips)
    meta/<config>.json                        what the card says about the config, machine-readable

Rows of different K (PRISM's key frames) are written with a dynamic first dimension, `Array4D(shape=(None, C, h,
w))`, and, for key-frame rows of a T-frame clip, a `keyframe_positions` column (each key frame's position among
the T frames a network interpolates the row to); a set with one K keeps `Array4D(shape=(K, C, h, w))` and no such
column, byte for byte as before.

`datasets.load_dataset(DIR, "ratio_0.41")` loads a config. A config is written into a temp folder and renamed into
place, and the card is rebuilt from every `meta/*.json`, so adding a config never touches the others' data. This
module knows nothing of how a set was distilled: callers hand it columns and a metadata dict.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np

from compressa_hf.io import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

_CONFIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: What a card's `compressa_hf:` YAML entry records per config: all a reader needs to decode the rows.
CARD_DECODE_KEYS = ("codec_id", "codec_revision", "latents_dtype", "latents_shape", "latent_scaling", "latent_ranges")


def config_name_for_ratio(ratio: float | str, split: str = "train") -> str:
    """`0.41` -> `ratio_0.41`, `"k1"` -> `ratio_k1`; another split than train is named first: `test_ratio_k1`.

    This is the name users pass to `load_dataset`.
    """
    from fractions import Fraction

    if isinstance(ratio, str) and ratio.startswith("k"):
        name = f"ratio_{ratio}"
    else:  # a percent, or an exact fraction of one ("25/12")
        name = f"ratio_{float(Fraction(str(ratio))):g}"
    return name if split == "train" else f"{split}_{name}"


@dataclass
class DistilledConfig:
    """One config of a distilled set: its rows and what the card must say about them.

    Args:
        name: Config name, e.g. `ratio_0.41`.
        video_ids / labels / sources: One entry per kept video.
        latents: (N, K, C, h, w), `uint8` (TAESD scaling, see `codecs.base`) or `float16` raw latents; or, for rows
            of different K, a list of N arrays (K_i, C, h, w) of one dtype and frame shape.
        frame_indices: (N, K) source-frame index of each kept latent frame, ascending (N lists for rows of
            different K).
        timestamps: (N, K) seconds of each kept frame on its source file's timeline (from the container's start;
            shaped as `frame_indices`).
        fps: (N,) the real frame rate of each video's source clip (`clips.SampledClip.fps`).
            Rows a method synthesised without a source clip carry nominal indices, timestamps and fps instead (the
            caller says how in `meta["rows"]`, which the card prints), so they still read as Qwen-VL videos.
        starts: (N,) for a video from a variable-rate clip, the second (on the same timeline) at which the clip's
            first frame is shown, else None; None for the whole set when no video is variable-rate, so that a set
            of constant-rate clips has no `start` column and the bytes it always had.
        class_names: Label names in label order.
        meta: Card facts: source, split, method (+ `method_kind`, `method_options`), codec_id, latent scaling,
            ratio numbers (`stored_bytes`, `budget_bytes`; `published_note` when the rows' latents are not the
            bytes the method stores), what the rows are (`rows`), seed, command, ...
        previews: Optional PNG bytes per video (the decoded K keyframes as one strip) for the Hub's dataset viewer;
            stored in a `preview` Image column, their bytes reported apart and never counted in the ratio.
        keyframe_positions: For key-frame rows (PRISM), each key frame's position among the T frames the row is
            interpolated to (the caller states T and the rule in `meta`); None for every other set.
        latent_ranges: For a set stored as 4-bit codes (`compressa_hf.codecs.storage`, "uint4"): the `(C, 2)` per-channel
            [lo, hi] of its codes; `latents` then holds the codes unpacked, one uint8 (0..15) per value, and the card
            says `latents_dtype: uint4` with the ranges. None for uint8 / float16 latents.
        soft_labels: `(N, C)` stored soft labels (float16 probabilities, or uint8 ones x 255), written as a
            `soft_label` column in their stored dtype (the caller says in `meta["soft_labels"]` how they were made);
            None: hard labels only, and no such column.
    """

    name: str
    video_ids: list[str]
    labels: list[int]
    latents: np.ndarray
    frame_indices: np.ndarray
    timestamps: np.ndarray
    fps: list[float]
    sources: list[str]
    class_names: list[str]
    meta: dict
    previews: list[bytes] | None = None
    starts: list[float | None] | None = None
    keyframe_positions: list[list[int]] | None = None
    latent_ranges: list[list[float]] | None = None
    soft_labels: np.ndarray | None = None

    def __post_init__(self):
        if not _CONFIG_NAME.match(self.name):
            raise ValueError(f"config name {self.name!r} must be letters, digits, '_', '.', '-'")
        n = len(self.video_ids)
        columns = ("labels", "latents", "frame_indices", "timestamps", "fps", "sources")
        lengths = {c: len(getattr(self, c)) for c in columns}
        if any(v != n for v in lengths.values()):
            raise ValueError(f"config {self.name}: column lengths differ (video_ids {n}, {lengths})")
        if self.variable_frames:
            self._check_rows()
        else:
            self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
            if self.timestamps.shape != np.shape(self.frame_indices):
                raise ValueError(
                    f"config {self.name}: timestamps {self.timestamps.shape} must match frame_indices "
                    f"{np.shape(self.frame_indices)}"
                )
        bad = [v for v, f in zip(self.video_ids, self.fps) if not f > 0]
        if bad:
            raise ValueError(f"config {self.name}: fps must be > 0 for every video; not for {bad[:3]}")
        if self.starts is not None and len(self.starts) != n:
            raise ValueError(f"config {self.name}: {len(self.starts)} starts for {n} videos")
        if self.previews is not None and len(self.previews) != n:
            raise ValueError(f"config {self.name}: {len(self.previews)} previews for {n} videos")
        if self.latent_ranges is not None:
            self._check_codes()
        if self.soft_labels is not None:
            soft = np.asarray(self.soft_labels)
            if soft.shape != (n, len(self.class_names)) or soft.dtype not in (np.float16, np.uint8, np.float32):
                raise ValueError(
                    f"config {self.name}: soft_labels must be ({n}, {len(self.class_names)}) float16 / uint8 / "
                    f"float32, got {soft.dtype} {soft.shape}"
                )
        if self.variable_frames:
            return
        if self.latents.ndim != 5:
            raise ValueError(f"config {self.name}: latents must be (N, K, C, h, w), got shape {self.latents.shape}")
        if self.latents.dtype not in (np.uint8, np.float16):
            raise ValueError(f"config {self.name}: latents must be uint8 or float16, got {self.latents.dtype}")
        if self.keyframe_positions is not None:
            raise ValueError(f"config {self.name}: keyframe_positions are for rows of different K (a list of latents)")

    def _check_codes(self) -> None:
        """4-bit codes: uint8 values 0..15 and one [lo < hi] range per latent channel."""
        rows = self.latents if self.variable_frames else [self.latents]
        channels = (rows[0].shape[1] if self.variable_frames else self.latents.shape[2]) if len(rows[0]) else None
        ranges = np.asarray(self.latent_ranges, dtype=np.float64)
        if any(np.asarray(x).dtype != np.uint8 for x in rows) or any(
            np.asarray(x).size and np.max(x) > 15 for x in rows
        ):
            raise ValueError(f"config {self.name}: uint4 latents must be uint8 codes 0..15")
        if ranges.ndim != 2 or ranges.shape[1] != 2 or (channels is not None and len(ranges) != channels):
            raise ValueError(f"config {self.name}: latent_ranges must be ({channels}, 2), got {ranges.shape}")
        if not (ranges[:, 1] > ranges[:, 0]).all():
            raise ValueError(f"config {self.name}: every latent range needs lo < hi")

    @property
    def variable_frames(self) -> bool:
        """Whether rows hold different numbers of frames (`latents` is a list of per-row arrays)."""
        return isinstance(self.latents, (list, tuple))

    @property
    def row_frames(self) -> list[int]:
        """Frames (K) of each row."""
        return [len(x) for x in self.latents] if self.variable_frames else [self.latents.shape[1]] * len(self.latents)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """`(C, h, w)` of one latent frame."""
        return tuple(self.latents[0].shape[1:]) if self.variable_frames else tuple(self.latents.shape[2:])

    @property
    def latents_dtype(self) -> np.dtype:
        """The rows' array dtype (uint8 for uint4 codes too; `latents_format` names the stored format)."""
        return self.latents[0].dtype if self.variable_frames else self.latents.dtype

    @property
    def latents_format(self) -> str:
        """What the card calls the latents: `uint8`, `float16` or `uint4` (codes, with `latent_ranges`)."""
        return "uint4" if self.latent_ranges is not None else str(self.latents_dtype)

    def _check_rows(self) -> None:
        """Rows of different K: one dtype and frame shape, and per row as many indices, times (and positions)."""
        self.latents = [np.asarray(x) for x in self.latents]
        if not self.latents:
            raise ValueError(f"config {self.name}: no rows")
        shape, dtype = self.latents[0].shape[1:], self.latents[0].dtype
        bad = [i for i, x in enumerate(self.latents) if x.ndim != 4 or x.shape[1:] != shape or x.dtype != dtype]
        if bad or len(shape) != 3:
            raise ValueError(
                f"config {self.name}: every row's latents must be (K, C, h, w) of one frame shape and dtype; rows "
                f"{bad[:5]} differ from row 0's {shape} {dtype}"
            )
        if dtype not in (np.uint8, np.float16):
            raise ValueError(f"config {self.name}: latents must be uint8 or float16, got {dtype}")
        self.frame_indices = [[int(i) for i in f] for f in self.frame_indices]
        self.timestamps = [[float(t) for t in ts] for ts in self.timestamps]
        per_row = {"frame_indices": self.frame_indices, "timestamps": self.timestamps}
        if self.keyframe_positions is not None:
            self.keyframe_positions = [[int(p) for p in ps] for ps in self.keyframe_positions]
            per_row["keyframe_positions"] = self.keyframe_positions
        for column, values in per_row.items():
            if len(values) != len(self.latents):
                raise ValueError(f"config {self.name}: {len(values)} {column} rows for {len(self.latents)} videos")
            wrong = [i for i, (v, x) in enumerate(zip(values, self.latents)) if len(v) != len(x)]
            if wrong:
                i = wrong[0]
                raise ValueError(
                    f"config {self.name}: row {i} has {len(self.latents[i])} frames but {len(values[i])} {column}"
                )


def _features(cfg: DistilledConfig):
    from datasets import Array4D, ClassLabel, Features, Image, Sequence, Value

    features = {
        "video_id": Value("string"),
        "label": ClassLabel(names=cfg.class_names),
        # A dynamic first dimension only for rows of different K, so sets of one K keep their exact schema.
        "latents": Array4D(
            shape=(None, *cfg.frame_shape) if cfg.variable_frames else tuple(cfg.latents.shape[1:]),
            dtype=str(cfg.latents_dtype),
        ),
        "frame_indices": Sequence(Value("int32")),
        "timestamps": Sequence(Value("float64")),
        "fps": Value("float64"),
        "source": Value("string"),
    }
    if cfg.starts is not None:
        features["start"] = Value("float64")
    if cfg.previews is not None:
        features["preview"] = Image()
    if cfg.keyframe_positions is not None:
        features["keyframe_positions"] = Sequence(Value("int32"))
    if cfg.soft_labels is not None:
        features["soft_label"] = Sequence(Value(str(np.asarray(cfg.soft_labels).dtype)))
    return Features(features)


def preview_png(frames: np.ndarray) -> bytes:
    """(K, H, W, 3) uint8 frames -> PNG bytes of one horizontal strip (what the `preview` column holds)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.concatenate(list(frames), axis=1)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def write_config(repo_dir: str | os.PathLike, cfg: DistilledConfig) -> str:
    """Write (or replace) one config of the repo at `repo_dir` atomically; returns the config's data folder."""
    from datasets import Dataset

    repo_dir = os.fspath(repo_dir)
    os.makedirs(os.path.join(repo_dir, "data"), exist_ok=True)
    tmp = tempfile.mkdtemp(dir=os.path.join(repo_dir, "data"), prefix=f".{cfg.name}.tmp-")
    try:
        columns = {
            "video_id": list(cfg.video_ids),
            "label": [int(x) for x in cfg.labels],
            "latents": list(cfg.latents),
            "frame_indices": [list(map(int, f)) for f in cfg.frame_indices],
            "timestamps": [list(map(float, t)) for t in cfg.timestamps],
            "fps": [float(f) for f in cfg.fps],
            "source": list(cfg.sources),
        }
        if cfg.starts is not None:
            columns["start"] = [None if x is None else float(x) for x in cfg.starts]
        if cfg.previews is not None:
            columns["preview"] = [{"bytes": png, "path": None} for png in cfg.previews]
        if cfg.keyframe_positions is not None:
            columns["keyframe_positions"] = cfg.keyframe_positions
        if cfg.soft_labels is not None:
            columns["soft_label"] = list(np.asarray(cfg.soft_labels))
        ds = Dataset.from_dict(columns, features=_features(cfg))
        # The file name carries a digest of its bytes and the card names that exact file: `datasets` keys its cache
        # on the card's data-file patterns, so a rewritten config behind an unchanged pattern would load the stale
        # cached copy.
        part = os.path.join(tmp, "part.parquet")
        ds.to_parquet(part)
        with open(part, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
        data_file = f"train-{digest}-00000-of-00001.parquet"
        os.replace(part, os.path.join(tmp, data_file))
        final = os.path.join(repo_dir, "data", cfg.name)
        old = None
        if os.path.exists(final):
            logger.info("replacing config %s of %s (the other configs are untouched)", cfg.name, repo_dir)
            old = f"{final}.old-{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    meta = cfg.meta | {
        "config_name": cfg.name,
        "data_files": [f"data/{cfg.name}/{data_file}"],
        "num_videos": len(cfg.video_ids),
        # rows of different K: the first dimension is None (null in the card), as in the parquet's Array4D
        "latents_shape": [None, *cfg.frame_shape] if cfg.variable_frames else list(cfg.latents.shape[1:]),
        "latents_dtype": cfg.latents_format,
        **({"latent_ranges": [[float(v) for v in r] for r in cfg.latent_ranges]} if cfg.latent_ranges else {}),
        "latent_bytes": int(sum(x.nbytes for x in cfg.latents)) if cfg.variable_frames else int(cfg.latents.nbytes),
        "preview_bytes": sum(map(len, cfg.previews)) if cfg.previews is not None else 0,
        "class_names": cfg.class_names,
        "source_fps": sorted({round(float(f), 3) for f in cfg.fps}),
    }
    atomic_write_json(os.path.join(repo_dir, "meta", f"{cfg.name}.json"), meta)
    write_card(repo_dir)
    return final


def read_meta(repo_dir: str | os.PathLike) -> dict[str, dict]:
    """Config name -> metadata, for every config of the repo on disk."""
    meta_dir = os.path.join(os.fspath(repo_dir), "meta")
    if not os.path.isdir(meta_dir):
        raise FileNotFoundError(f"{meta_dir} not found: {repo_dir} is not a distilled set written by compressa")
    out = {}
    for fname in sorted(os.listdir(meta_dir)):
        if fname.endswith(".json"):
            with open(os.path.join(meta_dir, fname)) as f:
                out[fname[: -len(".json")]] = json.load(f)
    return out


def _yaml_header(metas: dict[str, dict]) -> str:
    import yaml

    header = _license_header(metas)
    header |= {
        "configs": [
            {"config_name": name, "data_files": [{"split": "train", "path": m["data_files"]}]}
            for name, m in metas.items()
        ],
        "tags": ["video", "dataset-distillation", "compressa_hf"],
        "task_categories": ["video-classification"],
        # Read by compressa_hf to decode rows without guessing; codec ids name a registry entry, never code.
        "compressa_hf": {
            name: {k: m[k] for k in CARD_DECODE_KEYS if m.get(k) is not None} for name, m in metas.items()
        },
    }
    return "---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n"


def _license_header(metas: dict[str, dict]) -> dict:
    """The card's `license` (and `license_name` / `license_link` for `other`): the configs' common licence, `other`
    named `several` when they differ (each config's section says its own), nothing for configs written before."""
    found = {}
    for m in metas.values():
        if m.get("license"):
            terms = {k: m["license"][k] for k in ("license", "license_name", "license_link") if m["license"].get(k)}
            found[json.dumps(terms, sort_keys=True)] = terms
    if len(found) == 1:
        return next(iter(found.values()))
    if len(found) > 1:
        return {"license": "other", "license_name": "several", "license_link": "README.md"}
    return {}


def _license_text(terms: dict | None) -> str | None:
    """One line of a config's licence for its card section."""
    if not terms:
        return None
    name = terms["license"] + (
        f" ({terms['license_name']}, {terms['license_link']})" if terms.get("license_name") else ""
    )
    return f"{name}: {terms['note']}" if terms.get("note") else name


def _options_text(options: dict) -> str:
    """`key=value, ...` of a method's options, or a plain "none" when it has none."""
    return ", ".join(f"{k}={v}" for k, v in options.items()) if options else "none (the method has no options)"


def _diagnostics_text(d: dict | None) -> str | None:
    """One line of `compressa_hf.distillation.diagnostics.set_diagnostics` for the card, or None without them."""
    if not d:
        return None
    parts = []
    if d.get("drift_mean_steps") is not None:
        parts.append(
            f"latents moved {d['drift_mean_steps']:.2f} uint8 storage steps on average from the encoded ones "
            f"(p99 {d['drift_p99_steps']:g}, {100 * d['drift_share_changed']:.0f} % of values changed)"
        )
    if d.get("decoded_psnr_db") is not None:
        parts.append(f"decoded PSNR {d['decoded_psnr_db']:.1f} dB against the encoded frames")
    if d.get("uniform_overlap") is not None:
        parts.append(f"{100 * d['uniform_overlap']:.0f} % of kept frames are ones uniform sampling keeps")
    if d.get("scorer_entropy") is not None:
        parts.append(f"final scorer entropy {d['scorer_entropy']:.3f} of the maximum (1: indifferent)")
    if d.get("guide_acc") is not None:
        parts.append(f"guide accuracy in the last pass {d['guide_acc']:.2f}")
    return "; ".join(parts) or None


def _frames_text(frames) -> str | int | None:
    """K, or for rows of different K (`{"mean", "min", "max"}`) a line saying so."""
    if isinstance(frames, dict):
        return f"varies by video: mean {frames['mean']:.2f}, min {frames['min']}, max {frames['max']}"
    return frames


def _config_section(name: str, m: dict) -> str:
    lines = [f"## `{name}`", ""]
    facts = [
        ("source dataset", m.get("source")),
        ("split", m.get("split")),
        ("method", m.get("method")),
        ("method kind", m.get("method_kind")),
        ("method options", _options_text(m["method_options"]) if "method_options" in m else None),
        ("rows", m.get("rows")),
        ("frames kept per video (K)", _frames_text(m.get("frames_per_video"))),
        ("key frames", m.get("keyframes")),
        ("frame sampling of the source clips (T per clip)", m.get("sampling")),
        ("source frame rates (fps)", ", ".join(f"{f:g}" for f in m.get("source_fps", [])) or None),
        ("videos", m.get("num_videos")),
        (
            "codec",
            m.get("codec_id") + (f" (Hub revision {m['codec_revision']})" if m.get("codec_revision") else "")
            if m.get("codec_id")
            else None,
        ),
        ("latent shape per frame", " x ".join(map(str, m.get("latents_shape", [])[1:]))),
        ("latent dtype and scaling", f"{m.get('latents_dtype')}; {m.get('latent_scaling')}"),
        (
            "achieved ratio",
            f"{m['achieved_ratio']:.4f} % of the {m.get('split', 'training')} split's uint8 clips"
            if "achieved_ratio" in m
            else None,
        ),
        (
            "stored bytes (what the ratio counts)",
            f"{m['stored_bytes']:,}" + (f" of a {m['budget_bytes']:,}-byte budget" if m.get("budget_bytes") else "")
            if m.get("stored_bytes") is not None
            else None,
        ),
        ("published latent bytes", m.get("published_note")),
        ("soft labels (`soft_label` column)", _soft_text(m.get("soft_labels"))),
        ("what the method did to the kept frames", _diagnostics_text(m.get("diagnostics"))),
        (
            "preview column",
            f"{m['preview_bytes']:,} bytes of PNG strips for the dataset viewer, not counted in the ratio"
            if m.get("preview_bytes")
            else None,
        ),
        ("seed", m.get("seed")),
        ("licence", _license_text(m.get("license"))),
        ("classes", ", ".join(m.get("class_names", []))),
        ("classes left out (no readable clip in the split)", ", ".join(m.get("dropped_classes") or []) or None),
        (
            "source clips not in the set",
            f"{m['clips_skipped']} skipped ({m.get('clips_missing', 0)} files missing, the rest unreadable)"
            if m.get("clips_skipped")
            else None,
        ),
    ]
    lines += [f"- **{k}**: {v}" for k, v in facts if v not in (None, "")]
    if m.get("auto_text"):  # how `--method auto` chose (`compressa_hf.evaluation.auto.card_text`)
        lines += ["", m["auto_text"]]
    if m.get("command"):
        lines += ["", "Made with:", "", "```bash", m["command"], "```"]
    return "\n".join(lines) + "\n"


def _soft_text(soft: dict | None) -> str | None:
    """One line on a config's `soft_label` column, or None without one."""
    if not soft:
        return None
    made = (
        f"a {soft['teacher'].get('arch', 'network')} teacher trained on every real frame of the split (train accuracy "
        f"{100 * soft['teacher'].get('train_accuracy', float('nan')):.1f} %) at temperature {soft['temperature']:g}; "
        f"it agrees with the hard label on {100 * soft['agreement']:.1f} % of the rows, mean top probability "
        f"{soft['mean_max_probability']:.2f}"
        if "teacher" in soft
        else soft.get("made_by", "")
    )
    return f"{soft['reading']}, {soft['bytes']:,} bytes counted in the stored bytes; {made}"


def write_card(repo_dir: str | os.PathLike) -> None:
    """Rebuild README.md from every config's metadata."""
    metas = read_meta(repo_dir)
    body = [
        "# Distilled video dataset",
        "",
        "Latent keyframes written by [compressa_hf](https://github.com/compressa-hf/compressa_hf). Each row is one "
        "video: `latents` holds K frames of a frozen tiny VAE's latent code; decode them with the codec named below "
        "(`compressa_hf.codecs.load_codec`) to get RGB frames.",
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("<this repo>", "{next(iter(metas), "ratio_X")}", split="train")',
        "```",
        "",
    ]
    body += [_config_section(name, m) for name, m in metas.items()]
    atomic_write_text(os.path.join(os.fspath(repo_dir), "README.md"), _yaml_header(metas) + "\n" + "\n".join(body))


def load_config(repo: str, config: str, **kwargs):
    """`datasets.load_dataset(repo, config, split="train")`, for a Hub repo or a folder on disk."""
    from datasets import load_dataset

    return load_dataset(repo, config, split="train", **kwargs)
