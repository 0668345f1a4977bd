"""Distilled rows and raw clips -> Qwen2.5-VL chat samples, with the same prompt and frame handling for both.

A chat sample is a plain dict (what `QwenVideoCollator` takes)::

    {
        "messages": [                                   # processor content-block format
            {"role": "user", "content": [
                {"type": "video", "video": frames, "resized_height": H, "resized_width": W},
                {"type": "text", "text": "Which action happens in this video? Choose one of: ..."},
            ]},
            {"role": "assistant", "content": [{"type": "text", "text": "apply eye makeup"}]},
        ],
        "videos": [frames],                             # the same uint8 ndarray (F, H, W, 3), F = K or T
        "video_metadata": [{"fps": 30.0, "frames_indices": [...], "total_num_frames": N}],
        "label": 3,                                     # class index
        "answer": "apply eye makeup",                   # the assistant text
        "video_id": "train/03_00012",
    }

Frames are RGB uint8 at the size they were stored or sampled at (`resized_height` / `resized_width` say it, so
qwen-vl-utils readers keep it too). Distilled rows give K frames decoded from their latents with the codec the
dataset card names; raw clips give T frames through `clips.sample_clip` (a `ClipConfig`: T uniform frames, resized and
centre-cropped), or the frames Qwen's own examples take through qwen-vl-utils (a `compressa_hf.qwen.video.
QwenVideoConfig`: 2 per second, at least 4, aspect kept, Qwen's pixel bounds; `sample_qwen_clip`).

Video metadata says where the frames sit in time in the source video, because every family's notion of time comes
from it: Qwen2.5-VL spaces its temporal positions by `second_per_grid_ts = temporal_patch_size / sampled_fps` with
`sampled_fps = len(frames_indices) / total_num_frames * fps` (one spacing per video), Qwen3-VL writes `<t seconds>`
before each pair of frames with `t` the pair's mean of `frames_indices / fps`, Qwen2-VL uses neither. So the metadata
holds the frames' real times in the form `frames_indices / fps` and the real duration as `total_num_frames / fps`:

- Evenly spaced frames (nearly all dataset video): `fps` is the clip's frame rate as the cache read it from the file
  (12 for SSv2, 25 for UCF101, 29.97 for much of Kinetics): a distilled row's `fps` column, the sampled clip's rate
  for raw clips (for qwen-vl-utils' frames too: the metadata `fetch_video` returns). `fps=` overrides it. Sets written
  before rows carried their rate fall back to the set's metadata `fps` / `source_info.fps`, else `DEFAULT_FPS` (30),
  with a warning. `frames_indices` is the source frame of each frame (frame i is shown `i / fps` after the clip's
  first): the distilled row's `frame_indices` column, the sampled clip's indices for raw clips.
  `total_num_frames` is the source frames the video stands for: the clip's frame count for raw clips; for distilled
  rows, which do not store it, the span of the kept frames' `timestamps` (else of their indices) extended by one
  mean gap, in frames (`span * fps * K / (K - 1)`, which gives back N for K uniform samples of N frames).
- A variable-rate clip (one whose row or sampled clip has a `start`): no frame rate turns its indices into times, so
  it is described as the constant-rate stream a player's display is at millisecond resolution: `fps` is
  `TIME_GRID_FPS` (1000), `frames_indices` each frame's real time after the clip's first frame in milliseconds
  (`timestamps - start`), `total_num_frames` its real duration in milliseconds (raw clips; distilled rows: the span
  rule above, in milliseconds). Qwen3-VL then writes each pair's real time, and Qwen2.5-VL spaces its groups by
  the real duration over the frame count, which is the real spacing when the frames are evenly spaced in time (the
  `uniform` policy and the qwen-vl-utils reader space them so).

These are the facts; the collator decides how Qwen sees them (it caps the presented frame rate so consecutive frame
pairs always get distinct temporal positions, see `collator.QwenVideoCollator`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch

from compressa_hf.clips import ClipConfig, SampledClip, sample_clip
from compressa_hf.codecs import CODECS, LatentCodec, load_codec, parse_codec_spec, pinned_spec
from compressa_hf.codecs.storage import BITS, dequantise
from compressa_hf.qwen.prompts import PromptTemplate
from compressa_hf.qwen.video import QwenVideoConfig, sample_qwen_clip
from compressa_hf.sources import ClipReadError, VideoSource, parse_source_spec
from compressa_hf.store import CARD_DECODE_KEYS

logger = logging.getLogger(__name__)

#: Source frame rate assumed for sets written before rows recorded their rate (see the module docstring).
DEFAULT_FPS = 30.0

#: Keys of a distilled set's card / meta that decoding reads (what `store` writes into the card's YAML).
CARD_KEYS = CARD_DECODE_KEYS

#: Columns of a distilled row that `DistilledChatTransform` reads.
TRANSFORM_COLUMNS = ("video_id", "label", "latents", "frames", "frame_indices", "timestamps", "fps", "start")

#: The rate at which a variable-rate clip is described to Qwen: its frames on a millisecond grid.
TIME_GRID_FPS = 1000.0


def video_metadata(
    frame_indices: Sequence[int],
    fps: float,
    total_num_frames: int | None = None,
    timestamps: Sequence[float] | None = None,
    start: float | None = None,
    duration: float | None = None,
) -> dict:
    """The `video_metadata` entry of one video (see the module docstring).

    `total_num_frames=None` estimates it from the span of `timestamps` (seconds) when given, else of the indices.
    A `start` (seconds on the timestamps' timeline at which a variable-rate clip's first frame is shown) describes the
    frames by their `timestamps` on a millisecond grid instead; `duration` (seconds) is then the clip's real length,
    None for the span estimate.
    """
    if start is not None:
        if timestamps is None or len(timestamps) != len(frame_indices):
            raise ValueError(f"a variable-rate clip needs one timestamp per frame, got {timestamps}")
        grid = [round((t - start) * TIME_GRID_FPS) for t in timestamps]
        total = None if duration is None else max(round(duration * TIME_GRID_FPS), max(grid) + 1)
        return video_metadata(grid, TIME_GRID_FPS, total)
    indices = [int(i) for i in frame_indices]
    if not indices:
        raise ValueError("a video needs at least one frame index")
    if not fps > 0:
        raise ValueError(f"`fps` must be > 0, got {fps}")
    k = len(indices)
    if total_num_frames is None:
        if timestamps is not None and len(timestamps) != k:
            raise ValueError(f"{len(timestamps)} timestamps for {k} frame indices")
        spread = (max(timestamps) - min(timestamps)) * fps if timestamps is not None else max(indices) - min(indices)
        total_num_frames = max(k, round(spread * k / (k - 1))) if k > 1 else 1
    return {"fps": float(fps), "frames_indices": indices, "total_num_frames": int(total_num_frames)}


def make_chat_sample(
    frames: np.ndarray,
    label: int,
    class_texts: list[str],
    prompt: PromptTemplate,
    metadata: dict,
    video_id: str = "",
) -> dict:
    """One chat sample (format in the module docstring) from uint8 (F, H, W, 3) frames and a label."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (F, H, W, 3), got {frames.dtype} {frames.shape}")
    if len(metadata["frames_indices"]) != len(frames):
        raise ValueError(
            f"video {video_id!r}: {len(frames)} frames but {len(metadata['frames_indices'])} frame indices"
        )
    answer = prompt.format_answer(class_texts[label])
    block = {"type": "video", "video": frames, "resized_height": frames.shape[1], "resized_width": frames.shape[2]}
    return {
        "messages": prompt.messages(
            block, prompt.format_question(class_texts), answer, system=prompt.format_system(class_texts)
        ),
        "videos": [frames],
        "video_metadata": [metadata],
        "label": int(label),
        "answer": answer,
        "video_id": video_id,
    }


def resolve_fps(meta: dict | None = None, fps: float | None = None) -> float:
    """`fps`, else the metadata's `fps` or `source_info.fps`, else `DEFAULT_FPS`."""
    if fps is not None:
        return float(fps)
    meta = meta or {}
    found = meta.get("fps") or (meta.get("source_info") or {}).get("fps")
    return float(found) if found else DEFAULT_FPS


# -- distilled rows ------------------------------------------------------------------------------------------------


def check_codec_id(codec_id: object) -> str:
    """The codec id a dataset card names, if it names a registry codec; raises otherwise.

    A card is untrusted input (anyone can push one): it may only choose among `CODECS` by an explicit
    `<type>:<location>` id, which every loader there turns into tensors only (safetensors, or `torch.load` with
    `weights_only=True`); it cannot name a module, a class, or a bare path to execute.
    """
    if not isinstance(codec_id, str) or not codec_id:
        raise ValueError(f"dataset card names no codec (got {codec_id!r}); pass codec= to choose one")
    kind, sep, _ = codec_id.partition(":")
    if not sep or kind not in CODECS:
        raise ValueError(
            f"dataset card names codec {codec_id!r}, which is not '<type>:<location>' with a type from the registry "
            f"{sorted(CODECS)}; pass codec= to choose one yourself"
        )
    parse_codec_spec(codec_id)  # raises ValueError naming the spec when it cannot be read
    return codec_id


class DistilledChatTransform:
    """Decodes a batch of distilled rows into chat samples; pass it to `Dataset.with_transform` / `set_transform`.

    Args:
        meta: The config's card facts: `class_names` (label order) and `latents_dtype` (`uint8`: TAESD-scaled
            bytes; `float16`: raw latents; `uint4`: 4-bit codes under the card's per-channel `latent_ranges`,
            `compressa_hf.codecs.storage`); `fps` / `source_info` are read for sets without an `fps` column.
        codec: The frozen codec the card names (decoding uses it on its own device).
        prompt: Question / answer templates; `PromptTemplate()` when None.
        fps: Overrides every row's source frame rate; None uses the rows' `fps` column.
        decode_batch_size: Frames decoded per codec call.
    """

    def __init__(
        self,
        meta: dict,
        codec: LatentCodec,
        prompt: PromptTemplate | None = None,
        fps: float | None = None,
        decode_batch_size: int = 64,
    ):
        if not meta.get("class_names"):
            raise ValueError("distilled-set metadata has no `class_names`; cannot write the question")
        self.latents_dtype = meta.get("latents_dtype", "uint8")
        if self.latents_dtype not in BITS:
            raise ValueError(f"`latents_dtype` must be one of {sorted(BITS)}, got {self.latents_dtype!r}")
        self.latent_ranges = meta.get("latent_ranges")
        if self.latents_dtype == "uint4" and self.latent_ranges is None:
            raise ValueError("a uint4 set's card must give `latent_ranges` (its per-channel ranges)")
        self.codec, self.prompt = codec, prompt or PromptTemplate()
        self.class_texts = self.prompt.class_texts(list(meta["class_names"]))
        self.fps = fps
        self.fallback_fps = resolve_fps(meta, fps)
        self.decode_batch_size = decode_batch_size
        self._warned = False
        # (K, H, W, 3) once `decode_once` has run; K is -1 for a set whose rows differ in K
        self.frames_shape: tuple[int, ...] | None = None

    def decode_rows(self, latents: list) -> list[np.ndarray]:
        """The stored latents of a batch of rows -> each row's uint8 (K, H, W, 3) frames.

        Rows of one K are decoded as one array (`decode`); rows of different K (PRISM's key frames) are decoded
        frame by frame together and split back per row, so a batch may mix K.
        """
        dtype = np.float16 if self.latents_dtype == "float16" else np.uint8
        rows = [np.asarray(x, dtype=dtype) for x in latents]
        if len({x.shape for x in rows}) <= 1:
            return list(self.decode(np.stack(rows))) if rows else []
        frames = self.decode(np.concatenate(rows)[None])[0]
        return np.split(frames, np.cumsum([len(x) for x in rows])[:-1])

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """(B, K, C, h, w) stored latents -> uint8 (B, K, H, W, 3) frames."""
        b, k, c = latents.shape[:3]
        if c != self.codec.latent_channels:
            raise ValueError(
                f"latents have {c} channels but codec {self.codec.codec_id} has {self.codec.latent_channels}; "
                f"decode with the codec the dataset card names"
            )
        z = dequantise(latents, self.latents_dtype, self.latent_ranges).flatten(0, 1)
        with torch.inference_mode():
            images = torch.cat(
                [self.codec.decode(chunk.to(self.codec.device)) for chunk in torch.split(z, self.decode_batch_size)]
            )
        frames = images.mul(255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        return frames.unflatten(0, (b, k)).cpu().numpy()

    def _metadata(self, batch: dict[str, list], i: int) -> dict:
        """Row i's video metadata from its own frame rate and timestamps (or the fallback for older sets)."""
        if self.fps is None and "fps" in batch:
            start = batch["start"][i] if "start" in batch else None  # variable-rate clips only
            return video_metadata(
                batch["frame_indices"][i], batch["fps"][i], timestamps=batch["timestamps"][i], start=start
            )
        if self.fps is None and not self._warned:
            logger.warning(
                "this distilled set has no per-row `fps` column (written before compressa_hf recorded real frame "
                "rates); assuming %g fps for Qwen's temporal positions: pass fps= if the source differs",
                self.fallback_fps,
            )
            self._warned = True
        return video_metadata(batch["frame_indices"][i], self.fallback_fps)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        if "frames" in batch:  # decoded once by `load_chat_dataset(..., decode_once=True)`: raw uint8 bytes
            frames = [np.frombuffer(b, dtype=np.uint8).reshape(self.frames_shape) for b in batch["frames"]]
        else:
            frames = self.decode_rows(batch["latents"])
        ids = batch.get("video_id") or [""] * len(frames)
        samples = [
            make_chat_sample(
                frames[i], int(batch["label"][i]), self.class_texts, self.prompt, self._metadata(batch, i), ids[i]
            )
            for i in range(len(frames))
        ]
        return {key: [s[key] for s in samples] for key in samples[0]} if samples else {}


def distilled_chat_transform(
    meta: dict, codec: LatentCodec, prompt: PromptTemplate | None = None, fps: float | None = None
) -> DistilledChatTransform:
    """The transform for `Dataset.with_transform`: distilled rows -> chat samples (see `DistilledChatTransform`)."""
    return DistilledChatTransform(meta, codec, prompt=prompt, fps=fps)


def read_card_config(repo: str, config: str, revision: str | None = None, token: str | bool | None = None) -> dict:
    """What a distilled set says about `config`: `meta/<config>.json` in a folder, the card YAML for a Hub repo."""
    if os.path.isdir(repo):
        from compressa_hf.store import read_meta

        metas = read_meta(repo)
        if config not in metas:
            raise ValueError(f"{repo} has no config {config!r}; its configs are {sorted(metas)}")
        return metas[config]
    from huggingface_hub import hf_hub_download
    from huggingface_hub.repocard import metadata_load

    # `metadata_load` parses the YAML header with yaml.safe_load: plain data, no tags that build objects.
    card = hf_hub_download(repo, "README.md", repo_type="dataset", revision=revision, token=token)
    return card_config(metadata_load(card) or {}, repo, config)


def card_config(card: dict, repo: str, config: str) -> dict:
    """The `compressa_hf:` entry of a card's YAML for `config`, reduced to the keys decoding reads."""
    entries = card.get("compressa_hf")
    if not isinstance(entries, dict) or not isinstance(entries.get(config), dict):
        known = sorted(entries) if isinstance(entries, dict) else []
        raise ValueError(
            f"the dataset card of {repo} has no `compressa_hf: {config}:` entry (entries: {known}); it was not written "
            f"by compressa_hf, so pass codec= and read it with distilled_chat_transform yourself"
        )
    return {k: entries[config][k] for k in CARD_KEYS if k in entries[config]}


def load_chat_dataset(
    repo_or_folder: str,
    config: str,
    split: str = "train",
    prompt: PromptTemplate | None = None,
    codec: LatentCodec | str | None = None,
    fps: float | None = None,
    decode_once: bool = False,
    streaming: bool = False,
    **load_kwargs,
):
    """A distilled set config as a `datasets.Dataset` whose rows read as chat samples (decoded on access), or with
    `streaming=True` a `datasets.IterableDataset` of the same samples in the same order, read and decoded as they
    are iterated (nothing is downloaded or materialised first).

    Args:
        repo_or_folder: A folder written by `compressa distill` or a Hub dataset id.
        config: Config name, e.g. `ratio_0.52`.
        split: Split to load (distilled sets have `train`).
        prompt: Question / answer templates; `PromptTemplate()` when None.
        codec: A loaded codec or a codec spec (your choice, trusted); None decodes with the codec the card names,
            after `check_codec_id`.
        fps: Overrides the rows' source frame rate; None uses each row's own (see the module docstring).
        decode_once: Decode every row's latents to uint8 frames once, into a `frames` column cached by `datasets`
            on disk, instead of on every access. On a CPU a tiny VAE decodes 4 frames in ~0.1-0.3 s, which makes
            multi-epoch SFT decoder-bound; the cached frames read as fast as any uint8 column. Costs K x H x W x 3
            bytes per row of disk (not part of the distilled set or its ratio).
        streaming: Return an `IterableDataset` (for sets larger than memory or disk; with TRL set `max_steps`, since
            an iterable has no length). Rows are decoded in batches of 64 (the transform's `decode_batch_size`)
            as they stream.
        **load_kwargs: Passed to `datasets.load_dataset` (e.g. `revision`, `cache_dir`).

    Raises:
        ValueError: `decode_once` with `streaming` (the decoded column is a cache on disk; a stream has none), a
            config the set lacks, or card class names that disagree with the data's labels.
    """
    if streaming and decode_once:
        raise ValueError(
            "decode_once=True caches decoded frames as a column on disk, which a streamed dataset cannot hold; "
            "use one of decode_once or streaming"
        )
    from compressa_hf.store import load_config

    meta = read_card_config(
        repo_or_folder, config, revision=load_kwargs.get("revision"), token=load_kwargs.get("token")
    )
    card_codec = meta.get("codec_id")
    if codec is None:
        codec = load_codec(pinned_spec(check_codec_id(card_codec), meta.get("codec_revision")))
    elif isinstance(codec, str):
        codec = load_codec(codec)
    if card_codec and codec.codec_id != card_codec:
        logger.warning(
            "decoding %s/%s with codec %s, but its card names %s: frames will be wrong unless they are the same model",
            repo_or_folder,
            config,
            codec.codec_id,
            card_codec,
        )
    if split == "train" and not streaming:
        ds = load_config(repo_or_folder, config, **load_kwargs)
    else:
        from datasets import load_dataset

        ds = load_dataset(repo_or_folder, config, split=split, streaming=streaming, **load_kwargs)
    # The parquet's ClassLabel is the authority on label order; the card's list must agree where it has one.
    names = ds.features["label"].names
    if meta.get("class_names") and list(meta["class_names"]) != list(names):
        raise ValueError(f"{repo_or_folder}/{config}: card class_names {meta['class_names']} != data labels {names}")
    transform = distilled_chat_transform(meta | {"class_names": names}, codec, prompt=prompt, fps=fps)
    if streaming:
        columns = [c for c in TRANSFORM_COLUMNS if c in ds.column_names]
        batch = transform.decode_batch_size
        return ds.select_columns(columns).map(transform, batched=True, batch_size=batch, remove_columns=columns)
    if decode_once:
        ds = _decoded(ds, transform)
    # Only the columns the transform reads: others (a `preview` image column) would be decoded for nothing.
    return ds.with_transform(transform, columns=[c for c in TRANSFORM_COLUMNS if c in ds.column_names])


def _decoded(ds, transform: DistilledChatTransform):
    """`ds` with a cached `frames` column (the uint8 (K, H, W, 3) frames as raw bytes) in place of `latents`.

    Raw bytes, not an `Array4D`: `datasets` turns an array cell into nested Python lists on access, which for 150 k
    values per row costs more than decoding; `np.frombuffer` costs nothing.
    """
    from datasets import Value
    from datasets.fingerprint import Hasher

    k, _, h, w = ds.features["latents"].shape  # k is None for rows of different K: the bytes then say it
    transform.frames_shape = (k or -1, h * transform.codec.downscale, w * transform.codec.downscale, 3)
    features = ds.features.copy()
    del features["latents"]
    features["frames"] = Value("binary")
    return ds.map(
        lambda batch: {"frames": [f.tobytes() for f in transform.decode_rows(batch["latents"])]},
        batched=True,
        batch_size=64,
        remove_columns=["latents"],
        features=features,
        # the codec is a torch module: name the result by what determines it instead of hashing the function
        new_fingerprint=Hasher.hash((ds._fingerprint, transform.codec.codec_id, "decode_once", 2)),
        desc="decoding latents once",
    )


# -- raw clips -----------------------------------------------------------------------------------------------------


def read_raw_clip(
    source: VideoSource, ref, reader: ClipConfig | QwenVideoConfig, fps: float | None = None
) -> SampledClip:
    """One raw clip's frames: `clips.sample_clip` for a `ClipConfig`, `qwen.video.sample_qwen_clip` for a
    `QwenVideoConfig` (whose sampling also uses the `fps` override). Raises `ClipReadError` naming the file."""
    if isinstance(reader, QwenVideoConfig):
        return sample_qwen_clip(source, ref, reader, fps=fps)
    if isinstance(reader, ClipConfig):
        return sample_clip(source, ref, reader)
    raise TypeError(f"raw clips are read with a ClipConfig or a QwenVideoConfig, got {type(reader).__name__}")


class RawChatDataset(torch.utils.data.Dataset):
    """Chat samples of raw clips straight from a video source: the zero-shot and full-data baseline input.

    Same prompt, class-name handling, sample format and metadata rule as the distilled path. A clip that cannot be
    decoded, for whatever reason, comes back as None with a warning naming it and the reason (`QwenVideoCollator`
    drops None items), so one bad file never stops a run.

    Args:
        source: A `VideoSource` or a source spec (`procedural:num_classes=4`, `ucf101:root=...`, a folder).
        split: Split to read.
        clip_config: How frames are taken: a `ClipConfig` (T uniform frames, `ClipConfig()` when None) or a
            `QwenVideoConfig` (qwen-vl-utils' rules, as Qwen's examples read video).
        prompt: Question / answer templates; `PromptTemplate()` when None.
        fps: Overrides each clip's real frame rate in the metadata; None uses the rate read from the file.
    """

    def __init__(
        self,
        source: VideoSource | str,
        split: str = "train",
        clip_config: ClipConfig | QwenVideoConfig | None = None,
        prompt: PromptTemplate | None = None,
        fps: float | None = None,
    ):
        if clip_config is not None and not isinstance(clip_config, (ClipConfig, QwenVideoConfig)):
            raise TypeError(
                f"`clip_config` must be a ClipConfig or a QwenVideoConfig, got {type(clip_config).__name__}"
            )
        self.source = parse_source_spec(source) if isinstance(source, str) else source
        self.refs = self.source.list_clips(split)
        self.clip_config = clip_config or ClipConfig()
        self.prompt = prompt or PromptTemplate()
        self.class_texts = self.prompt.class_texts(list(self.source.class_names))
        self.fps = fps

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> dict | None:
        ref = self.refs[i]
        try:
            clip = read_raw_clip(self.source, ref, self.clip_config, self.fps)
        except ClipReadError as err:
            logger.warning("skipped %s: %s", ref.path, err)
            return None
        except Exception as err:  # noqa: BLE001 - a clip that breaks a decoder in an unforeseen way is one clip
            logger.debug("unexpected error on %s", ref.path, exc_info=True)
            logger.warning("skipped %s: %s while reading it: %s", ref.path, type(err).__name__, err)
            return None
        if self.fps is None and clip.start is not None:  # a variable-rate clip: its real times and duration
            metadata = video_metadata(
                clip.frame_indices, clip.fps, timestamps=clip.timestamps, start=clip.start, duration=clip.duration
            )
        else:
            fps = self.fps if self.fps is not None else clip.fps
            metadata = video_metadata(clip.frame_indices, fps, total_num_frames=max(clip.num_source_frames, 1))
        return make_chat_sample(clip.frames, ref.label, self.class_texts, self.prompt, metadata, ref.clip_id)


def raw_chat_samples(
    source: VideoSource | str,
    split: str = "train",
    clip_config: ClipConfig | QwenVideoConfig | None = None,
    prompt: PromptTemplate | None = None,
    fps: float | None = None,
) -> RawChatDataset:
    """Chat samples of the clips of a raw source (a map-style `torch` Dataset; see `RawChatDataset`).

    `clip_config=QwenVideoConfig(...)` takes frames as Qwen's examples do (qwen-vl-utils); a `ClipConfig` (default)
    takes T uniform frames. The recipes default to the first (`VideoDataArguments.video_reader`).
    """
    return RawChatDataset(source, split, clip_config=clip_config, prompt=prompt, fps=fps)
