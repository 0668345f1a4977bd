"""Stage 1: every sampled frame of a split encoded once by the frozen codec, into sharded safetensors + an index.

Layout of a cache folder::

    meta.json                      codec, clip sampling, source, class names, latent shape (written first)
    shards/shard-00000.safetensors `latents` (n, T, C, h, w) float16 raw latents; the shard's index rows and
                                   skipped clips as JSON in the safetensors metadata
    index.jsonl                    one row per cached clip: clip_id, label, path, frame_indices, timestamps (s on
                                   the container's timeline), fps (the clip's real rate), num_source_frames, shard,
                                   offset, ...; and `start` for a variable-rate clip (see `clips.SampledClip`)
    skipped.jsonl                  clips that could not be decoded: clip_id, path, reason
    summary.json                   counts, bytes and timings of the last pass

Caches are shared: by default a cache lives in one folder under `cache_home()` (`$COMPRESSA_CACHE`, else the user's
cache dir, as `datasets` and `huggingface_hub` keep theirs), named by a digest of what determines its bytes (the
source's identity, split, its clips (ids and labels), clip sampling, codec, its dtype, shard size, clip limit,
format). So `compressa encode`, `distill` and `evaluate` with the same settings encode a split once and then reuse
it; a run with other settings gets its own folder. `--output_dir` puts a cache where you say instead.

Shard k always holds the clips at positions [k * shard_size, (k + 1) * shard_size) of the source's deterministic
clip list, whatever the number of processes: rank r encodes the shards k with k % world_size == r. A shard is
written atomically (temp file, then rename), so after a kill the finished shards stay and the partial one is redone
from its first clip with the same batches, giving the same bytes. The index is derived from the shards' own
metadata, so merging ranks is reading files, and every clip lands exactly once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from compressa_hf.clips import ClipConfig, ClipDataset, describe_policy
from compressa_hf.io import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

# 2: index rows carry the real frame rate and kept frames' timestamps; frames are upright (display matrix applied).
CACHE_FORMAT_VERSION = 2
#: Unreadable clips logged one by one before the rest go to skipped.jsonl only.
MAX_SKIP_WARNINGS = 5


@dataclass
class EncodeConfig:
    """Arguments of `compressa encode`: which clips, how they are sampled, and how they are encoded.

    Args:
        source: Source spec: a `videofolder` path, or `name:key=value,...` (see `compressa_hf.sources`).
        output_dir: Cache folder; an existing one with the same settings is resumed. None (the default): the shared
            cache folder for these settings under `cache_home()`.
        split: Split of the source to encode.
        codec: Codec spec for `compressa_hf.codecs.load_codec`, or `default` (the paper's TAESD from the Hub,
            else the TAEF2 weights packaged with compressa_hf; a warning names what is used).
        num_frames / size / policy / short_clips / seed: Clip sampling, see `compressa_hf.clips.ClipConfig`.
        shard_size: Clips per shard; bounds memory (a shard's latents are held until it is written).
        clips_per_batch: Clips decoded per DataLoader item and encoded together.
        num_workers: DataLoader decode workers (0 decodes in the main process).
        dtype: Codec compute dtype, `float32` or `bfloat16`.
        device: `auto` (CUDA when present), `cpu` or `cuda`.
        max_clips: Encode only the first N clips of the split (for quick looks and tests).
        overwrite: Delete an existing cache with different settings instead of refusing.
    """

    source: str = field(default="procedural", metadata={"help": "Source spec (videofolder path or name:k=v,...)."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Cache folder (resumed when it exists); default: the shared cache."}
    )
    split: str = field(default="train", metadata={"help": "Split to encode."})
    codec: str = field(default="default", metadata={"help": "Codec spec, or `default`."})
    num_frames: int = field(default=16, metadata={"help": "T, frames sampled per clip."})
    size: int = field(default=112, metadata={"help": "Frame side after short-side resize + centre crop."})
    policy: str = field(default="uniform", metadata={"help": "Frame sampling policy: uniform or gap4."})
    short_clips: str = field(default="loop", metadata={"help": "Clips shorter than T: loop or pad."})
    seed: int = field(default=0, metadata={"help": "Seed of random sampling policies."})
    shard_size: int = field(default=256, metadata={"help": "Clips per shard (bounds memory)."})
    clips_per_batch: int = field(default=4, metadata={"help": "Clips per decode/encode batch."})
    num_workers: int = field(default=1, metadata={"help": "DataLoader decode workers (0 = main process)."})
    dtype: str = field(default="float32", metadata={"help": "Codec compute dtype: float32 or bfloat16."})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda."})
    max_clips: int | None = field(default=None, metadata={"help": "Only the first N clips (quick runs)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a cache made with other settings."})

    def __post_init__(self):
        if self.shard_size < 1:
            raise ValueError(f"`shard_size` must be >= 1, got {self.shard_size}")
        if self.clips_per_batch < 1:
            raise ValueError(f"`clips_per_batch` must be >= 1, got {self.clips_per_batch}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"`dtype` must be float32 or bfloat16, got {self.dtype!r}")
        self.clip_config()  # validates the sampling fields

    def clip_config(self) -> ClipConfig:
        return ClipConfig(self.num_frames, self.size, self.policy, self.short_clips, self.seed)


CACHE_ENV = "COMPRESSA_CACHE"


def cache_home() -> str:
    """Where shared caches live: `$COMPRESSA_CACHE`, else `$XDG_CACHE_HOME/compressa_hf`, else `~/.cache/compressa_hf`."""
    if os.environ.get(CACHE_ENV):
        return os.path.expanduser(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "compressa_hf")


def shared_cache_dir(meta: dict) -> str:
    """The shared cache folder for a cache's metadata: `<cache_home>/latents/<source>-<split>-<digest of identity>`."""
    import re

    identity = json.dumps({k: meta.get(k) for k in _IDENTITY_KEYS}, sort_keys=True, default=str)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    name = meta["source_info"].get("source", "source")
    root = meta["source_info"].get("root") or meta["source_info"].get("path")
    if isinstance(root, str):
        name = f"{name}_{os.path.basename(os.path.normpath(root))}"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{name}-{meta['split']}")[:80]
    return os.path.join(cache_home(), "latents", f"{slug}-{digest}")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.safetensors"


# Settings that change the bytes of a cache; a resume with any of them different would mix two caches.
_IDENTITY_KEYS = (
    "format_version",
    "source_info",
    "split",
    "codec_id",
    "clip",
    "shard_size",
    "max_clips",
    "dtype",
    "num_clips",
    "clips_digest",
)


class LatentCache:
    """Read side of a cache folder written by `encode_split`."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        meta_path = os.path.join(self.path, "meta.json")
        if not os.path.exists(meta_path):
            raise FileNotFoundError(
                f"{meta_path} not found: {self.path} is not a latent cache (run `compressa encode`)"
            )
        with open(meta_path) as f:
            self.meta = json.load(f)
        index_path = os.path.join(self.path, "index.jsonl")
        if not os.path.exists(index_path):
            raise FileNotFoundError(
                f"{index_path} not found: the encode pass into {self.path} did not finish; rerun it"
            )
        with open(index_path) as f:
            self.index = [json.loads(line) for line in f if line.strip()]

    def __len__(self) -> int:
        return len(self.index)

    @property
    def class_names(self) -> list[str]:
        return self.meta["class_names"]

    @property
    def labels(self) -> torch.Tensor:
        """`(N,)` int64 labels in index order."""
        return torch.tensor([row["label"] for row in self.index], dtype=torch.long)

    def latents(self):
        """All cached latents in index order as a lazy `(N, T, C, h, w)` float16 array (`compressa_hf.rows.RowConcat`)
        whose rows are read from the shards when indexed: memory holds what is read, not the split."""
        from compressa_hf.rows import RowConcat, safetensors_rows

        if not self.index:
            raise ValueError(f"{self.path} caches no clips")
        names = sorted({row["shard"] for row in self.index})
        parts = [safetensors_rows(os.path.join(self.path, "shards", name), "latents") for name in names]
        starts = dict(zip(names, np.cumsum([0] + [len(p) for p in parts[:-1]]).tolist()))
        return RowConcat(parts, torch.tensor([starts[row["shard"]] + row["offset"] for row in self.index]))

    def load_latents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All cached latents in index order: float16 (N, T, C, h, w) raw latents and int64 labels (N,)."""
        if not self.index:
            c, h, w = self.meta["latent_shape"]
            return torch.zeros(0, self.meta["clip"]["num_frames"], c, h, w, dtype=torch.float16), torch.zeros(0).long()
        return self.latents().read_all(), self.labels


def _write_shard(path: str, latents: torch.Tensor, rows: list[dict], skipped: list[dict]) -> None:
    from safetensors.torch import save_file

    tmp = f"{path}.tmp.{os.getpid()}"
    save_file(
        {"latents": latents.contiguous()},
        tmp,
        # One metadata key: safetensors writes its metadata map in no fixed order, and resumed shards must be
        # byte-identical to uninterrupted ones.
        metadata={"compressa": json.dumps({"rows": rows, "skipped": skipped})},
    )
    os.replace(tmp, path)


def _read_shard_metadata(path: str) -> tuple[list[dict], list[dict]]:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    payload = json.loads(meta["compressa"])
    return payload["rows"], payload["skipped"]


def cache_meta(cfg: EncodeConfig, source, codec, refs) -> dict:
    """The `meta.json` a cache of `refs` made with `cfg` and `codec` has (its identity keys name its folder)."""
    clip = cfg.clip_config()
    return {
        "format_version": CACHE_FORMAT_VERSION,
        "source": cfg.source,
        "source_info": source.describe(),
        "split": source.split_name(cfg.split),  # an alias of a split (test for val/) shares its cache
        "class_names": source.class_names,
        "codec_id": codec.codec_id,
        "codec_weights": getattr(codec, "weights_source", None),
        "latent_shape": list(codec.latent_shape(clip.size, clip.size)),
        "latent_dtype": "float16",
        "latent_scaling": "raw (TAESD scaling x/6+0.5 maps to [0,1] for uint8 storage)",
        "clip": asdict(clip),
        "sampling": describe_policy(clip.policy),
        "shard_size": cfg.shard_size,
        "max_clips": cfg.max_clips,
        "dtype": cfg.dtype,
        "num_clips": len(refs),
        # Which clips, not only how many: a clip swapped for another (or relabelled) is another cache.
        "clips_digest": hashlib.sha256(json.dumps([[r.clip_id, r.label] for r in refs]).encode()).hexdigest()[:16],
    }


def known_unreadable(cache_dir: str) -> list[dict]:
    """Clips an earlier pass into `cache_dir` could not decode (`clip_id`, `path`, `reason`): from `skipped.jsonl`
    after a finished pass, else from the metadata of the shards written so far; empty when there is no cache there.
    Listed files that are not on disk are not among them (`missing_clips` reports those)."""
    path = os.path.join(cache_dir, "skipped.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    else:
        shard_dir = os.path.join(cache_dir, "shards")
        names = (
            sorted(n for n in os.listdir(shard_dir) if n.endswith(".safetensors")) if os.path.isdir(shard_dir) else []
        )
        rows = [row for name in names for row in _read_shard_metadata(os.path.join(shard_dir, name))[1]]
    return [row for row in rows if not row.get("reason", "").startswith("file not found")]


def settings_diff(old: dict, new: dict) -> list[str]:
    """`key: old vs new` for every setting (leaf of the identity keys) in which two cache metas differ."""

    def leaves(d, prefix=""):
        if isinstance(d, dict):
            return {k: v for key, sub in d.items() for k, v in leaves(sub, f"{prefix}{key}.").items()}
        return {prefix[:-1]: d}

    a = leaves({k: old.get(k) for k in _IDENTITY_KEYS})
    b = leaves({k: new.get(k) for k in _IDENTITY_KEYS})
    return [f"{k}: {a.get(k)!r} there vs {b.get(k)!r} now" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def refuse_other_settings(output_dir: str, meta: dict) -> None:
    """Raise `ValueError` naming each differing setting when `output_dir` holds a cache made with other settings."""
    meta_path = os.path.join(output_dir, "meta.json")
    if not os.path.exists(meta_path):
        return
    with open(meta_path) as f:
        diff = settings_diff(json.load(f), meta)
    if diff:
        raise ValueError(
            f"{output_dir} holds a cache made with other settings ({'; '.join(diff)}). Use another folder, or none "
            "(the shared cache keeps one folder per setting), or replace it with `compressa encode --overwrite "
            f"--output_dir {output_dir}` and the settings of now"
        )


def _check_or_write_meta(cfg: EncodeConfig, meta: dict, state) -> None:
    import shutil

    meta_path = os.path.join(cfg.output_dir, "meta.json")
    if state.is_main_process:
        if not cfg.overwrite:
            refuse_other_settings(cfg.output_dir, meta)
        elif os.path.exists(meta_path):
            with open(meta_path) as f:
                diff = settings_diff(json.load(f), meta)
            if diff:
                logger.warning(
                    "--overwrite: removing the cache in %s made with other settings (%s)", cfg.output_dir, diff
                )
                shutil.rmtree(cfg.output_dir)
        os.makedirs(os.path.join(cfg.output_dir, "shards"), exist_ok=True)
        atomic_write_json(meta_path, meta)
    state.wait_for_everyone()


def encode_split(cfg: EncodeConfig, codec=None, source=None, progress: bool = True) -> dict:
    """Run the cache pass for `cfg` (resuming finished shards) and return the JSON summary.

    Works alone or under `accelerate launch`: each process encodes its shards, the main one merges the index.
    """
    from tqdm.auto import tqdm

    from compressa_hf.codecs import load_codec, load_default_codec
    from compressa_hf.distributed import get_state
    from compressa_hf.sources import parse_source_spec
    from compressa_hf.threads import beside_workers

    state = get_state()
    device = resolve_device(cfg.device) if state.num_processes == 1 else state.device
    dtype = torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32
    source = source or parse_source_spec(cfg.source)
    if codec is None:
        codec = load_default_codec(device, dtype) if cfg.codec == "default" else load_codec(cfg.codec, device, dtype)
    codec = codec.freeze()
    refs = source.list_clips(cfg.split)
    missing = [
        {"clip_id": r.clip_id, "path": r.path, "reason": f"file not found: {r.path} (listed, not downloaded)"}
        for r in source.missing_clips(cfg.split)
    ]
    if cfg.max_clips is not None:
        refs = refs[: cfg.max_clips]
    meta = cache_meta(cfg, source, codec, refs)
    if cfg.output_dir is None:
        cfg = dataclasses.replace(cfg, output_dir=shared_cache_dir(meta))
    _check_or_write_meta(cfg, meta, state)

    shard_dir = os.path.join(cfg.output_dir, "shards")
    num_shards = -(-len(refs) // cfg.shard_size)
    mine = [k for k in range(num_shards) if k % state.num_processes == state.process_index]
    todo = [k for k in mine if not os.path.exists(os.path.join(shard_dir, shard_name(k)))]
    if not todo and os.path.exists(os.path.join(cfg.output_dir, "index.jsonl")):
        logger.info(
            "cache hit: %s %s is already encoded with these settings in %s", cfg.source, cfg.split, cfg.output_dir
        )
    elif len(todo) < len(mine):
        logger.info("resuming: %d of %d shards of this process already done", len(mine) - len(todo), len(mine))

    clip_cfg = cfg.clip_config()
    stats = {"clips": 0, "frames": 0, "skipped": 0, "short_clips": 0, "filled_frames": 0}
    start = time.perf_counter()
    todo_clips = sum(min(cfg.shard_size, len(refs) - k * cfg.shard_size) for k in todo)
    bar = tqdm(
        total=todo_clips,
        unit="clip",
        desc=f"encode[{state.process_index}]",
        disable=not progress or not todo_clips,
        smoothing=0.1,
    )
    with beside_workers(cfg.num_workers if todo else 0):
        for k in todo:
            shard_refs = refs[k * cfg.shard_size : (k + 1) * cfg.shard_size]
            latents, rows, skipped = _encode_shard(k, shard_refs, source, codec, clip_cfg, cfg, stats, bar)
            _write_shard(os.path.join(shard_dir, shard_name(k)), latents, rows, skipped)
    bar.close()
    elapsed = time.perf_counter() - start

    state.wait_for_everyone()
    summary = {"output_dir": cfg.output_dir, "process_index": state.process_index, "elapsed_s": elapsed, **stats}
    if state.is_main_process:
        summary = _merge_index(cfg.output_dir, num_shards, meta, elapsed, stats, state.num_processes, missing)
    state.wait_for_everyone()
    return summary | {"cache_hit": not todo}


def clip_loader(source, refs, clip_cfg: ClipConfig, clips_per_batch: int, num_workers: int):
    """The DataLoader of the cache pass: batches are lists of `ClipDataset` items, decoded in worker processes."""
    return torch.utils.data.DataLoader(
        ClipDataset(source, refs, clip_cfg),
        batch_size=clips_per_batch,
        num_workers=num_workers,
        collate_fn=list,
        # Decode workers inherit torch's thread pool; one thread each keeps them from fighting the encoder.
        worker_init_fn=_single_thread_worker,
        prefetch_factor=4 if num_workers > 0 else None,
        persistent_workers=False,
    )


def _encode_shard(k, shard_refs, source, codec, clip_cfg, cfg, stats, bar):
    """Decode + encode one shard's clips; returns (latents fp16, index rows, skipped rows)."""
    loader = clip_loader(source, shard_refs, clip_cfg, cfg.clips_per_batch, cfg.num_workers)
    chunks, rows, skipped = [], [], []
    for batch in loader:
        good = [item for item in batch if "error" not in item]
        for item in batch:
            if "error" in item:
                skipped.append({"clip_id": item["clip_id"], "path": item["path"], "reason": item["error"]})
                stats["skipped"] += 1
                # A partial download can miss thousands of files: a few lines here, all of them in skipped.jsonl.
                if stats["skipped"] <= MAX_SKIP_WARNINGS:
                    logger.warning("skipped %s: %s", item["path"], item["error"])
                    if stats["skipped"] == MAX_SKIP_WARNINGS:
                        logger.warning("further unreadable clips are listed in skipped.jsonl only")
        if good:
            frames = torch.from_numpy(np.stack([item["frames"] for item in good]))
            n, t = frames.shape[:2]
            images = frames.flatten(0, 1).permute(0, 3, 1, 2).float().div_(255)
            z = codec.encode(images, batch_size=len(images)).to(torch.float16).cpu()
            chunks.append(z.unflatten(0, (n, t)))
            for item in good:
                rows.append(
                    {
                        "clip_id": item["clip_id"],
                        "label": item["label"],
                        "path": item["path"],
                        "frame_indices": item["frame_indices"],
                        "timestamps": item["timestamps"],
                        "fps": item["fps"],
                        "num_source_frames": item["num_source_frames"],
                        "filled": item["filled"],
                        "shard": shard_name(k),
                        "offset": len(rows),
                    }
                    # Only variable-rate clips carry their start: every other row keeps the bytes it had before.
                    | ({"start": item["start"]} if item["start"] is not None else {})
                )
                stats["short_clips"] += item["filled"] > 0
                stats["filled_frames"] += item["filled"]
            stats["clips"] += n
            stats["frames"] += n * t
        bar.update(len(batch))
    c, h, w = codec.latent_shape(clip_cfg.size, clip_cfg.size)
    latents = torch.cat(chunks) if chunks else torch.zeros(0, clip_cfg.num_frames, c, h, w, dtype=torch.float16)
    return latents, rows, skipped


def _single_thread_worker(_worker_id: int) -> None:
    torch.set_num_threads(1)


def _merge_index(
    output_dir: str, num_shards: int, meta: dict, elapsed: float, stats: dict, world: int, missing: list[dict]
) -> dict:
    """Build index.jsonl, skipped.jsonl and summary.json from the shards' own metadata and the missing files."""
    rows, skipped = [], list(missing)
    for k in range(num_shards):
        path = os.path.join(output_dir, "shards", shard_name(k))
        if not os.path.exists(path):
            raise RuntimeError(f"shard {path} is missing after the encode pass; rerun `compressa encode` to resume")
        r, s = _read_shard_metadata(path)
        rows += r
        skipped += s
    atomic_write_text(os.path.join(output_dir, "index.jsonl"), "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write_text(os.path.join(output_dir, "skipped.jsonl"), "".join(json.dumps(s) + "\n" for s in skipped))
    shard_bytes = sum(os.path.getsize(os.path.join(output_dir, "shards", shard_name(k))) for k in range(num_shards))
    summary = {
        "output_dir": output_dir,
        "codec_id": meta["codec_id"],
        "split": meta["split"],
        "clips_total": meta["num_clips"] + len(missing),
        "clips_cached": len(rows),
        "clips_skipped": len(skipped),  # unreadable + missing
        "clips_missing": len(missing),
        "short_clips": sum(r["filled"] > 0 for r in rows),
        # sampled by time, not by index (`clips.uniform_indices`), and described to Qwen by their real times
        "variable_rate_clips": sum("start" in r for r in rows),
        "shards": num_shards,
        "shard_bytes": shard_bytes,
        "latent_shape": meta["latent_shape"],
        "num_frames": meta["clip"]["num_frames"],
        "processes": world,
        "this_pass": {
            "elapsed_s": round(elapsed, 3),
            "clips_per_s": round(stats["clips"] / elapsed, 3) if elapsed > 0 else None,
            "frames_per_s": round(stats["frames"] / elapsed, 3) if elapsed > 0 else None,
            "main_process": stats,
        },
        "skipped_report": os.path.join(output_dir, "skipped.jsonl"),
    }
    if skipped:
        logger.warning(
            "%d of %d listed clips were skipped (%d missing files, %d unreadable); see %s",
            len(skipped),
            summary["clips_total"],
            len(missing),
            len(skipped) - len(missing),
            summary["skipped_report"],
        )
    if summary["short_clips"]:
        logger.info(
            "%d clips were shorter than T=%d and were filled", summary["short_clips"], meta["clip"]["num_frames"]
        )
    atomic_write_json(os.path.join(output_dir, "summary.json"), summary)
    return summary
