"""Write a compressed set (`compressa_hf.distillation.methods.CompressedSet`) as one config of a Hub dataset repo: its
rows (latents as stored, source clip ids, frame indices, timestamps, fps), preview strips, and the card's account of
what was kept and how its bytes are counted (`compressa_hf.store.write_config`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

#: What the card says of each latent format (`compressa_hf.codecs.storage`).
LATENT_SCALING = {
    "uint8": "uint8 = round(255 * clamp(z / 6 + 0.5, 0, 1)) (TAESD's 8-bit convention, for every codec); "
    "z = (q / 255 - 0.5) * 6",
    "float16": "raw latents",
    "uint4": "4-bit codes q in 0..15 (one per uint8 in the rows), per latent channel c: "
    "q = round(15 * (z - lo_c) / (hi_c - lo_c)), z = lo_c + q / 15 * (hi_c - lo_c), [lo_c, hi_c] = latent_ranges[c]",
}


def _previews(stored, dtype: str, codec, batch: int = 64, ranges=None) -> list[bytes]:
    """PNG strips of what each stored row decodes to (after storage rounding), for the `preview` column; `ranges`:
    a uint4 set's per-channel ranges."""
    import torch

    from compressa_hf.codecs.storage import dequantise
    from compressa_hf.store import preview_png

    if isinstance(stored, list):  # rows of different K: decode all their frames, then split them back per row
        import numpy as np

        counts = [len(x) for x in stored]
        z = dequantise(np.concatenate(stored), dtype, ranges)
        with torch.no_grad():
            frames = torch.cat(
                [codec.decode(chunk.to(codec.device)).cpu() for chunk in torch.split(z, batch * max(counts))]
            )
        frames = frames.mul(255).round().byte().permute(0, 2, 3, 1).numpy()
        return [preview_png(row) for row in np.split(frames, np.cumsum(counts)[:-1])]
    z = dequantise(stored, dtype, ranges)
    n, k = z.shape[:2]
    out = []
    from tqdm.auto import tqdm

    chunks = torch.split(z.flatten(0, 1), batch * k)
    with torch.no_grad():
        for chunk in tqdm(chunks, desc="preview strips", unit="batch", leave=False):
            frames = codec.decode(chunk.to(codec.device)).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            out += [preview_png(f) for f in frames.reshape(-1, k, *frames.shape[1:])]
    return out


def _without(stored: dict, key: str) -> dict:
    return {k: v for k, v in stored.items() if k != key}


def _soft_label_meta(cset, soft) -> dict:
    """What the card says of a set's `soft_label` column: its dtype, bytes, and how the labels were made."""
    import torch

    info = cset.info.get("soft_labels")
    made = (
        {k: info[k] for k in ("temperature", "teacher", "agreement", "mean_max_probability") if k in info}
        if info
        else {"made_by": f"{cset.method} learned them with its set (DATM's learnable soft labels)"}
    )
    return {
        "dtype": str(soft.dtype).removeprefix("torch."),
        "bytes": int(soft.numel() * soft.element_size()),
        "reading": "float16: class probabilities"
        if soft.dtype == torch.float16
        else "uint8: class probabilities x 255 (each row sums to 255)"
        if soft.dtype == torch.uint8
        else "class scores",
        **made,
    }


def _published_latents(cset, dtype: str) -> tuple[np.ndarray | list[np.ndarray], str | None, list | None]:
    """The `(M, K, C, h, w)` latents the rows hold, a note when they are not exactly what the method stores, and a
    uint4 set's per-channel ranges (None for every other set).

    A uint4 set (`compressa_hf.codecs.storage`) is published as its codes unpacked, one uint8 (0..15) per value,
    with its ranges for the card; the note gives the packed bytes the budget counts.
    A set storing `latents` (every method but LVDD and the VDSD memories) is published byte for byte (soft labels,
    `--soft_labels`' or DATM's, are taken out by the caller: they get a column of their own). Otherwise the latents
    as read back (what a network trains on) are rounded to `dtype` ("uint8" or "float16"), and the note says how
    their bytes compare to the method's stored ones. Rows of different K (PRISM) store every row's key frames one after
    another `(sum K, C, h, w)` beside their index; they are published byte for byte as a list of `(K_i, C, h, w)`.
    """
    import numpy as np
    import torch

    from compressa_hf.codecs.storage import RANGES_KEY, stored_codes
    from compressa_hf.distillation.methods.base import store_latents

    if RANGES_KEY in cset.stored and not cset.variable_frames:
        codes = stored_codes(cset.stored, "uint4", tuple(cset.latents.shape[2:])).numpy()
        ranges = cset.stored[RANGES_KEY]
        others = {k: v for k, v in cset.stored.items() if k not in ("latents", RANGES_KEY)}
        note = (
            f"{codes.nbytes:,}: the stored 4-bit codes ({cset.stored['latents'].nbytes:,} bytes packed two a byte, "
            f"plus {ranges.nbytes} bytes of per-channel ranges, in the stored bytes above) unpacked to one uint8 per "
            "code, so every reader indexes them like uint8 latents (the parquet's dictionary encoding keeps them near "
            "4 bits a value)"
            + (
                f"; the ranges cost {paid} of the split's videos rather than a frame of every video (the budget "
                "planner's rule 6)"
                if (paid := (cset.info.get("plan") or {}).get("set_bytes_videos"))
                else ""
            )
            + "".join(
                f"; the set also stores {k} {tuple(v.shape)} ({v.nbytes:,} bytes, counted), which the rows do not carry"
                for k, v in others.items()
            )
        )
        return codes, note, ranges.float().tolist()
    if cset.variable_frames:
        flat, counts = cset.stored.get("latents"), cset.row_frames
        if flat is None or flat.dtype not in (torch.uint8, torch.float16) or len(flat) != int(counts.sum()):
            raise ValueError(
                f"method {cset.method!r} holds rows of different K but does not store their frames one after "
                "another as `latents`; it cannot be written as a latent set"
            )
        return np.split(flat.numpy(), np.cumsum(counts.numpy())[:-1]), None, None

    if set(cset.stored) == {"latents"} and cset.stored["latents"].dtype in (torch.uint8, torch.float16):
        return cset.stored["latents"].numpy(), None, None
    if cset.latents is None:
        raise ValueError(f"method {cset.method!r} stores pixels, not latents; it cannot be written as a latent set")
    published = store_latents(cset.latents, dtype)[0]["latents"].numpy()
    tensors = ", ".join(f"{k} {tuple(v.shape)} {str(v.dtype).removeprefix('torch.')}" for k, v in cset.stored.items())
    note = (
        f"{published.nbytes:,}: `{cset.method}` stores {tensors} ({cset.stored_bytes:,} bytes, the stored bytes "
        f"above); the rows hold the latents read back from them (what a network trains on) rounded to {dtype}, "
        f"{published.nbytes / cset.stored_bytes:.2f}x the stored bytes"
        + (
            f" and {published.nbytes / cset.budget_bytes:.2f}x the budget"
            if cset.budget_bytes and published.nbytes > cset.budget_bytes
            else ""
        )
        + ". The ratio counts the method's stored bytes, as `compressa evaluate` does"
    )
    return published, note, None


def _stats(values: list[int]) -> dict:
    """`{"mean", "min", "max"}` of per-row numbers (frames, visual tokens) for rows of different K."""
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}


def _keyframes_note(cset) -> str:
    """What the card says about rows of different K: what each row holds and how its bytes are counted."""
    index = next((k.removeprefix("keyframe_") for k in cset.stored if k.startswith("keyframe_")), None)
    text = "rows hold different numbers of latent frames (K varies by video)"
    if cset.interpolate_to:
        text = (
            f"each row holds its video's key frames, K varying by video; the clip a network trains on is their linear "
            f"interpolation in latent space to T = {cset.interpolate_to} frames, key frame i at position "
            f"`keyframe_positions[i]` among them (PRISM)"
        )
    if index:
        text += (
            f". The stored bytes count the key frames and a {index} index of where they sit "
            f"({cset.stored[f'keyframe_{index}'].numel():,} bytes), which the rows hold as `keyframe_positions`"
        )
    return text


def _nominal_position(cache_index: list[dict], num_frames: int) -> tuple[float, float]:
    """(median source-frame stride between the T cached frames, median fps) of the cached clips."""
    import numpy as np

    strides = [
        (row["frame_indices"][-1] - row["frame_indices"][0]) / (num_frames - 1) if num_frames > 1 else 1.0
        for row in cache_index
    ]
    return float(np.median(strides)) or 1.0, float(np.median([row["fps"] for row in cache_index]))


def row_columns(
    cset, published: np.ndarray | list, cached_latents, cache_index: list[dict], root, ranges=None
) -> dict:
    """The rows' columns (video ids, source frame indices, timestamps, fps, sources, starts) and what the rows are.

    A row with a source clip (`source_videos >= 0`) takes its id, the source indices and timestamps of its
    `frame_indices` (positions among the T cached frames) and its fps from the cache index; it is "real" when its
    published latents equal the cached ones at those frames after the same rounding, else "derived" from that clip.
    A row without one is `synthetic_<label>_<i>` with nominal positions (its `frame_indices`, else K uniform
    positions, spread by the cache's median stride) at the cache's median fps. Rows of different K (`published` a
    list) get per-row lists, and `keyframe_positions` (their positions among T) when the set's rows are key frames
    of T-frame clips (`cset.interpolate_to`); else that column is absent. `ranges`: a uint4 set's per-channel ranges
    (its rows hold codes, compared with the cached frames' codes under the same ranges).
    """
    import numpy as np
    import torch

    from compressa_hf.clips import uniform_indices
    from compressa_hf.codecs.storage import uint4_codes
    from compressa_hf.distillation.methods.base import store_latents
    from compressa_hf.publish import public_path
    from compressa_hf.sources import printable_name

    variable = isinstance(published, list)  # rows of different K (the frame_indices of each row are padded)
    m, k = (len(published), None) if variable else published.shape[:2]
    counts = [len(x) for x in published] if variable else [k] * m
    num_frames = int(cached_latents.shape[1])
    sources = cset.source_videos if cset.source_videos is not None else torch.full((m,), -1)
    if cset.frame_indices is not None:
        positions = cset.frame_indices
    else:
        positions = torch.tensor(uniform_indices(num_frames, k)).expand(m, k)
    stride, median_fps = _nominal_position(cache_index, num_frames)
    dtype = "uint8" if (published[0] if variable else published).dtype == np.uint8 else "float16"
    columns = {"video_ids": [], "frame_indices": [], "timestamps": [], "fps": [], "sources": [], "starts": []}
    kinds = {"real": 0, "derived": 0, "synthetic": 0}
    per_class: dict[int, int] = {}
    for i in range(m):
        src, pos = int(sources[i]), [int(p) for p in positions[i][: counts[i]]]
        if src < 0:
            label = int(cset.labels[i])
            per_class[label] = per_class.get(label, 0) + 1
            indices = [round(p * stride) for p in pos]
            columns["video_ids"].append(f"synthetic_{label}_{per_class[label] - 1}")
            columns["frame_indices"].append(indices)
            columns["timestamps"].append([j / median_fps for j in indices])
            columns["fps"].append(median_fps)
            columns["starts"].append(None)
            columns["sources"].append("synthetic (no source clip)")
            kinds["synthetic"] += 1
            continue
        row = cache_index[src]
        columns["video_ids"].append(row["clip_id"])
        columns["frame_indices"].append([row["frame_indices"][p] for p in pos])
        columns["timestamps"].append([row["timestamps"][p] for p in pos])
        columns["fps"].append(row["fps"])
        columns["starts"].append(row.get("start"))  # variable-rate clips only (`cache.py`)
        columns["sources"].append(printable_name(public_path(row["path"], root)))
        cached = (
            uint4_codes(cached_latents[src, pos].float(), torch.tensor(ranges)).numpy()
            if ranges is not None
            else store_latents(cached_latents[src, pos].float(), dtype)[0]["latents"].numpy()
        )
        kinds["real" if np.array_equal(cached, published[i]) else "derived"] += 1
    if variable:
        columns["keyframe_positions"] = (
            [[int(p) for p in positions[i][: counts[i]]] for i in range(m)] if cset.interpolate_to else None
        )
    else:
        columns["frame_indices"] = np.asarray(columns["frame_indices"], dtype=np.int64).reshape(m, k)
        columns["timestamps"] = np.asarray(columns["timestamps"], dtype=np.float64).reshape(m, k)
    if all(start is None for start in columns["starts"]):
        columns["starts"] = None  # no `start` column: constant-rate sets keep their bytes
    text = {
        "real": "real frames: the cached latents of the source clip `video_id` at `frame_indices`",
        "derived": (
            "derived from the source clip `video_id`: the method's latents (optimised from, or reconstructed from, "
            "its cached frames at `frame_indices`), not that clip's frames themselves"
        ),
        "synthetic": (
            "synthetic, with no source clip: `video_id` is synthetic_<label>_<i>; `frame_indices`, `timestamps` and "
            f"`fps` are nominal (positions among T spread like the source's median clip, {stride:g} source frames "
            f"apart, at its median {median_fps:g} fps)"
        ),
    }
    described = "; ".join(f"{n} rows {text[kind]}" for kind, n in kinds.items() if n)
    return columns | {"row_kinds": kinds, "rows": described}


def card_diagnostics(cset) -> dict | None:
    """What the card says the method did to the kept frames: `set_diagnostics`' figures, then the method's own
    (`info["card_diagnostics"]`: VideoCompressa's final scorer entropy and guide accuracy), or None."""
    d = cset.info.get("diagnostics")
    own = cset.info.get("card_diagnostics")
    return {**d, **own} if d is not None and own else d


def write_set(
    args,
    cset,
    name: str,
    method: dict,
    budget: tuple[float, int, int],
    cache,
    cache_summary: dict,
    codec,
    source,
    classes: tuple[list[str], list[str]],
    selection: dict | None,
    command: str | None,
) -> dict:
    """Write `cset` as config `name` of the repo at `args.output` (`compressa_hf.store.write_config`: rows, previews,
    card) and `local/<name>.json` (the source spec on this machine, never pushed); returns what was written (repo,
    config, videos, rows, frames per video, stored, budget and published bytes).

    Args:
        args: The run's `DistillArguments`.
        cset: The compressed set; `cset.info` may hold `card` (keys a method adds to or settles on its card meta).
        method: `{"method", "method_kind", "method_options"}` as run.
        budget: `(requested ratio in percent, the split's full uint8 bytes, seed)`.
        cache / cache_summary: The split's `LatentCache` and its `encode_split` summary.
        codec / source: The loaded codec and the parsed source.
        classes: `(class names of the set, classes left out for having no clips)`.
        selection: `--method auto`'s choice (`compressa_hf.evaluation.auto.choose`), or None.
        command: The command line for the card, or None.
    """
    import dataclasses
    import os

    import numpy as np

    from compressa_hf.clips import describe_policy
    from compressa_hf.distillation.arguments import card_license
    from compressa_hf.distillation.budget import qwen_visual_tokens
    from compressa_hf.evaluation.auto import card_text as auto_card_text
    from compressa_hf.io import atomic_write_json
    from compressa_hf.publish import public_command, public_info, public_spec
    from compressa_hf.store import DistilledConfig, write_config

    ratio, full_bytes, seed = budget
    class_names, dropped = classes
    # Soft labels (`--soft_labels`, or DATM's learned ones) are published as their own column, as stored.
    soft = cset.stored.get("soft_labels")
    rows_set = cset if soft is None else dataclasses.replace(cset, stored=_without(cset.stored, "soft_labels"))
    published, published_note, ranges = _published_latents(rows_set, "float16" if args.dtype == "float16" else "uint8")
    info = cache.meta["source_info"]
    root = info.get("root") or (info.get("path") if isinstance(info.get("path"), str) else None)
    rows = row_columns(cset, published, cache.latents(), cache.index, root, ranges=ranges)
    variable = isinstance(published, list)  # rows of different K (PRISM's key frames)
    latents_dtype = "uint8" if (published[0] if variable else published).dtype == np.uint8 else "float16"
    latents_dtype = "uint4" if ranges is not None else latents_dtype
    previews = _previews(published, latents_dtype, codec, ranges=ranges) if args.preview else None
    # Published: nothing machine-local (compressa_hf.publish); the local spec is kept beside, unpublished.
    meta = {
        "source": public_spec(args.source),
        "source_info": public_info(info),
        "split": args.split,
        **method,
        "rows": rows["rows"],
        "row_kinds": rows["row_kinds"],
        "codec_id": codec.codec_id,
        "codec_revision": getattr(codec, "revision", None),
        "latent_scaling": LATENT_SCALING[latents_dtype],
        "frames_per_video": cset.frame_stats() if variable else cset.frames_per_row,
        "requested_ratio": ratio,
        "achieved_ratio": cset.stored_bytes / full_bytes * 100,
        "stored_bytes": cset.stored_bytes,
        "budget_bytes": cset.budget_bytes,
        "full_bytes": full_bytes,
        "published_note": published_note,
        "visual_tokens_per_sample": (
            _stats([qwen_visual_tokens(int(k), args.size) for k in cset.row_frames])
            if variable
            else qwen_visual_tokens(cset.frames_per_row, args.size)
        ),
        **({"keyframes": _keyframes_note(cset)} if variable else {}),
        "clip": cache.meta["clip"],
        "sampling": (
            describe_policy(cache.meta["clip"]["policy"], variable_rate=True)
            if rows["starts"] is not None  # the set holds a variable-rate clip: say how it was sampled
            else cache.meta["sampling"]
        ),
        "seed": seed,
        "command": public_command(command) if command else None,
        "clips_missing": cache_summary.get("clips_missing", 0),
        "clips_skipped": cache_summary.get("clips_skipped", 0),
        "dropped_classes": dropped,
        "diagnostics": card_diagnostics(cset),
        "license": card_license(args, source),
        **({"auto": selection, "auto_text": auto_card_text(selection)} if selection is not None else {}),
        **({"soft_labels": _soft_label_meta(cset, soft)} if soft is not None else {}),
    }
    for key, value in cset.info.get("card", {}).items():  # what a method adds to or settles on its card
        meta[key] = value
    write_config(
        args.output,
        DistilledConfig(
            name=name,
            video_ids=rows["video_ids"],
            labels=cset.labels.tolist(),
            latents=published,
            frame_indices=rows["frame_indices"],
            timestamps=rows["timestamps"],
            fps=rows["fps"],
            sources=rows["sources"],
            class_names=class_names,
            meta=meta,
            previews=previews,
            starts=rows["starts"],
            keyframe_positions=rows.get("keyframe_positions"),
            latent_ranges=ranges,
            soft_labels=None if soft is None else soft.numpy(),
        ),
    )
    # What `compressa show` needs to find the source frames on this machine; `push` never uploads local/.
    atomic_write_json(os.path.join(args.output, "local", f"{name}.json"), {"source": args.source})
    return {
        "repo": args.output,
        "config": name,
        "videos": cset.num_rows,
        "rows": rows["row_kinds"],
        "frames_per_video": meta["frames_per_video"],
        "stored_bytes": cset.stored_bytes,
        "budget_bytes": cset.budget_bytes,
        "published_latent_bytes": int(sum(x.nbytes for x in published) if variable else published.nbytes),
    }
