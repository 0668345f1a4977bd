"""Any labelled video dataset that `datasets` can load: a Hub id, a local folder, or a `save_to_disk` folder.

`build_source("hf", path="org/some-video-set")`, `build_source("hf", path="/data/clips")` (a `videofolder`
tree), or `HFDatasetSource(path=DatasetDict(...))` for a dataset already in memory.

`datasets.Video` decodes through torchcodec, which needs system FFmpeg libraries that a fresh machine lacks, so
the video column is cast to `Video(decode=False)` and decoded here with PyAV (it ships FFmpeg in its wheel):
files by path, embedded bytes (Hub parquet, `save_to_disk` output) from memory through `io.BytesIO`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping

import numpy as np

from compressa_hf.decode import VideoInfo, probe, read_frames
from compressa_hf.sources.base import ClipReadError, ClipRef, SourceError, VideoSource

logger = logging.getLogger(__name__)

#: splits a dataset often has under another name -> what we read for them when the dataset lacks ours
DEFAULT_ALIASES = {"test": ("validation", "valid", "val"), "validation": ("valid", "val")}
#: folder names `datasets` treats as splits; a ClassLabel made only of these is the split-folder trap
SPLIT_WORDS = {"train", "test", "validation", "valid", "val", "dev", "eval", "training", "testing"}
_LIST_BATCH = 1024


def parse_split_mapping(splits: Mapping[str, str] | str | None) -> dict[str, str] | None:
    """`{"train": "train", "test": "validation"}`, or the CLI form "train:train;test:validation"."""
    if splits is None or isinstance(splits, Mapping):
        return dict(splits) if splits is not None else None
    mapping = {}
    for item in filter(None, (s.strip() for s in str(splits).split(";"))):
        ours, sep, theirs = item.replace("=", ":").partition(":")
        if not sep or not ours.strip() or not theirs.strip():
            raise SourceError(f"bad split mapping {item!r} in {splits!r}: expected 'ours:theirs;...'")
        mapping[ours.strip()] = theirs.strip()
    return mapping


def _is_saved_dataset(path: str) -> bool:
    """True for a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    return os.path.isfile(os.path.join(path, "dataset_dict.json")) or os.path.isfile(os.path.join(path, "state.json"))


def _media(cell) -> tuple[str | None, bytes | None]:
    """(path, bytes) of one video cell: a `Video(decode=False)` dict, a path string or raw bytes."""
    if isinstance(cell, Mapping):
        return cell.get("path"), cell.get("bytes")
    if isinstance(cell, str):
        return cell, None
    if isinstance(cell, bytes | bytearray):
        return None, bytes(cell)
    raise SourceError(
        f"video cell of type {type(cell).__name__} is not a file: the video column must hold paths, bytes or "
        "Video features; pick another column with video_column=..."
    )


class HFDatasetSource(VideoSource):
    """A `datasets` video dataset with a video column and a class column.

    Args:
        path: Hub id or local path for `datasets.load_dataset` (a `videofolder` tree, data files), a folder
            written by `save_to_disk` (read with `load_from_disk`), or a loaded `Dataset` / `DatasetDict`.
        video_column: Column with the videos: a `Video` feature, a file path string, or `{"path", "bytes"}`.
        label_column: Column with the class: a `ClassLabel` (its names are the classes), strings (the sorted
            unique values are the classes) or integers (classes "0".."max").
        name: Dataset configuration, `load_dataset`'s `name`.
        splits: Our split name -> the dataset's, e.g. `{"train": "train", "test": "validation"}` or, on the
            command line, "train:train;test:validation". Default: the dataset's own splits, with "test" reading
            "validation" when there is no test split.
        streaming: Load with `streaming=True` and read each split once, front to back, when it is first listed.
            The source then holds clip references, not frames: rows with a file path are decoded from that file,
            rows with embedded bytes are written once to `cache_dir` and decoded from there. Without a
            `ClassLabel`, the classes need every label, so the first use of `class_names` reads every split.
        data_dir: `load_dataset`'s `data_dir`; relative video paths are also looked up under it.
        cache_dir: Where streamed embedded videos are written (default: a folder per dataset path under the
            system temp folder, a fresh temp folder for an in-memory dataset). Unused without streaming.

    Clip ids are "<split>/<row:06d>": the row is the one stable key every dataset has. Rows whose label is
    missing or -1 (unlabelled test sets) are left out with a warning.
    """

    name = "hf"

    def __init__(
        self,
        path,
        video_column: str = "video",
        label_column: str = "label",
        name: str | None = None,
        splits: Mapping[str, str] | str | None = None,
        streaming: bool = False,
        data_dir: str | None = None,
        cache_dir: str | None = None,
    ):
        self.path = path
        self.video_column, self.label_column = video_column, label_column
        self.config_name = name  # not `self.name`: that is the registry name
        self.streaming = streaming
        self.data_dir = data_dir
        self._data = self._load()
        self._mapping = self._split_mapping(parse_split_mapping(splits))
        self._label_feature = self._check_columns()
        if cache_dir is None and isinstance(path, str | os.PathLike):
            # Keyed by what was loaded, so that a second run over the same stream reuses the written files.
            key = hashlib.sha1(repr((os.fspath(path), name, data_dir)).encode()).hexdigest()[:16]
            cache_dir = os.path.join(tempfile.gettempdir(), "compressa_hf_stream", key)
        self.cache_dir = cache_dir  # None for an in-memory dataset: a fresh folder on the first write
        self._listing: dict[str, list[tuple[int, object, str | None, bool]]] = {}
        self._class_names: list[str] | None = None

    # -- loading -----------------------------------------------------------------------------------------------
    def _describe_path(self) -> str:
        return self.path if isinstance(self.path, str | os.PathLike) else type(self.path).__name__

    def _load(self) -> dict:
        """split -> Dataset, or IterableDataset when streaming."""
        import datasets

        obj = self.path
        if isinstance(obj, str | os.PathLike):
            path = os.fspath(obj)
            try:
                if os.path.isdir(path) and _is_saved_dataset(path):
                    obj = datasets.load_from_disk(path)
                else:
                    obj = datasets.load_dataset(
                        path, self.config_name, data_dir=self.data_dir, streaming=self.streaming
                    )
            except (OSError, ValueError) as err:
                raise SourceError(
                    f"cannot load dataset {path!r} (name={self.config_name!r}, data_dir={self.data_dir!r}): {err}. "
                    "Pass a Hub id, a local video folder or data files, or a folder written by save_to_disk"
                ) from err
        if isinstance(obj, datasets.Dataset | datasets.IterableDataset):
            obj = {str(obj.split or "train"): obj}
        if not isinstance(obj, Mapping):
            raise SourceError(f"`path` must be a dataset path or a loaded Dataset/DatasetDict, got {type(obj)}")
        data = {}
        for split, ds in obj.items():
            if self.streaming and isinstance(ds, datasets.Dataset):
                ds = ds.to_iterable_dataset()  # same code path as a Hub stream, also for local data
            data[str(split)] = ds
        if not data:
            raise SourceError(f"dataset {self._describe_path()!r} has no splits")
        return data

    def _split_mapping(self, given: dict[str, str] | None) -> dict[str, str]:
        available = list(self._data)
        if given is None:
            return {s: s for s in available}
        unknown = {ours: theirs for ours, theirs in given.items() if theirs not in self._data}
        if unknown:
            raise SourceError(
                f"split mapping {given} names split(s) {sorted(unknown.values())} that dataset "
                f"{self._describe_path()!r} does not have; its splits are {available}"
            )
        return dict(given)

    def _check_columns(self):
        """Keep only the video and label columns, cast a `Video` column to paths/bytes; return the label feature."""
        import datasets

        label_features = []
        for split, ds in self._data.items():
            columns = ds.column_names
            if columns is not None:  # unknown for some streams; then checked row by row
                for arg, column in (("video_column", self.video_column), ("label_column", self.label_column)):
                    if column not in columns:
                        others = [c for c in columns if c != self.video_column]
                        hint = f"pass {arg}={others[0]}" if arg == "label_column" and len(others) == 1 else ""
                        raise SourceError(
                            f"dataset {self._describe_path()!r} split {split!r} has no column {column!r}; its "
                            f"columns are {columns}: {hint or f'pass {arg}=<one of them>'}"
                        )
                ds = ds.select_columns([self.video_column, self.label_column])
            features = ds.features or {}
            if isinstance(features.get(self.video_column), datasets.Video):
                ds = ds.cast_column(self.video_column, datasets.Video(decode=False))
            label_features.append(features.get(self.label_column))
            self._data[split] = ds
        if all(isinstance(f, datasets.ClassLabel) for f in label_features):
            if any(f.names != label_features[0].names for f in label_features):
                raise SourceError(
                    f"the splits of {self._describe_path()!r} have different ClassLabel names in "
                    f"{self.label_column!r}; labels would not mean the same class across splits"
                )
            self._refuse_split_labels(label_features[0].names)
            return label_features[0]
        return None

    def _refuse_split_labels(self, names: list[str]) -> None:
        """Refuse a ClassLabel whose names are split names: `datasets` made it from split folders, not classes."""
        if not names or not set(names) <= SPLIT_WORDS | set(self._data):
            return
        raise SourceError(
            f"column {self.label_column!r} of {self._describe_path()!r} is a ClassLabel whose names {list(names)} are "
            "the split names, not classes. This is the `datasets` folder-layout trap (huggingface/datasets#7880): "
            "a folder laid out as <split>/<file> without class sub-folders gets a `label` column made from the "
            "split folders. Lay the videos out as <split>/<class>/<file>, or add a metadata.csv per split with a "
            "class column and pass label_column=<that column>"
        )

    # -- listing -------------------------------------------------------------------------------------------------
    def _resolve_path(self, path: str) -> str:
        """A relative path as given, under `data_dir`, or under the dataset folder: the first that exists."""
        if os.path.isabs(path) or "://" in path:
            return path
        bases = [None, self.data_dir, self.path if isinstance(self.path, str) else None]
        for base in bases:
            candidate = os.path.join(base, path) if base else path
            if os.path.isfile(candidate):
                return candidate
        return path

    def _list_rows(self, hf_split: str) -> list[tuple[int, object, str | None, bool]]:
        """(row, raw label, path, video is embedded bytes) per row of a split; read once and kept."""
        if hf_split not in self._listing:
            ds = self._data[hf_split]
            self._listing[hf_split] = self._scan_stream(hf_split, ds) if self.streaming else self._scan_table(ds)
        return self._listing[hf_split]

    def _scan_table(self, ds) -> list[tuple[int, object, str | None, bool]]:
        import pyarrow as pa
        import pyarrow.compute as pc

        rows, row = [], 0
        # Arrow batches read the path field and the bytes validity only: listing never loads the videos.
        for batch in ds.with_format("arrow").iter(batch_size=_LIST_BATCH):
            video, labels = batch[self.video_column], batch[self.label_column].to_pylist()
            if pa.types.is_struct(video.type):
                fields = {video.type.field(i).name for i in range(video.type.num_fields)}
                paths = pc.struct_field(video, "path").to_pylist() if "path" in fields else [None] * len(labels)
                embedded = (
                    pc.is_valid(pc.struct_field(video, "bytes")).to_pylist()
                    if "bytes" in fields
                    else [False] * len(labels)
                )
            elif pa.types.is_string(video.type) or pa.types.is_large_string(video.type):
                paths, embedded = video.to_pylist(), [False] * len(labels)
            elif pa.types.is_binary(video.type) or pa.types.is_large_binary(video.type):
                paths, embedded = [None] * len(labels), pc.is_valid(video).to_pylist()
            else:
                raise SourceError(
                    f"column {self.video_column!r} of {self._describe_path()!r} has type {video.type}, not video "
                    "files: it must hold a Video feature, path strings or bytes; pass video_column=<that column>"
                )
            for p, e, lab in zip(paths, embedded, labels):
                rows.append((row, lab, p if e else (self._resolve_path(p) if p else None), bool(e)))
                row += 1
        return rows

    def _scan_stream(self, hf_split: str, ds) -> list[tuple[int, object, str | None, bool]]:
        rows = []
        for row, example in enumerate(ds):
            if self.video_column not in example or self.label_column not in example:
                raise SourceError(
                    f"row {row} of {self._describe_path()!r} split {hf_split!r} lacks {self.video_column!r} or "
                    f"{self.label_column!r}; its keys are {sorted(example)}"
                )
            path, data = _media(example[self.video_column])
            if data:
                path = self._spill(hf_split, row, path, data)
            elif path:
                path = self._resolve_path(path)
            rows.append((row, example[self.label_column], path, False))
        return rows

    def _spill(self, hf_split: str, row: int, orig_path: str | None, data: bytes) -> str:
        """Write a streamed embedded video once to the cache folder and return its path."""
        if self.cache_dir is None:
            # An in-memory dataset has no stable name to key a shared folder by.
            self.cache_dir = tempfile.mkdtemp(prefix="compressa_hf_stream_")
        ext = os.path.splitext(orig_path or "")[1] or ".mp4"
        target = os.path.join(self.cache_dir, hf_split, f"{row:06d}{ext}")
        if not (os.path.isfile(target) and os.path.getsize(target) == len(data)):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = f"{target}.{os.getpid()}.tmp"  # rename is atomic: parallel ranks never read a half-written file
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        return target

    # -- VideoSource ---------------------------------------------------------------------------------------------
    @property
    def splits(self) -> list[str]:
        return list(self._mapping)

    def _hf_split(self, split: str) -> str:
        if split in self._mapping:
            return self._mapping[split]
        for alias in DEFAULT_ALIASES.get(split, ()):
            if alias in self._mapping:
                logger.info("dataset %r has no %r split; reading %r instead", self._describe_path(), split, alias)
                return self._mapping[alias]
        raise SourceError(
            f"dataset {self._describe_path()!r} has splits {self.splits}, got {split!r}; map it with "
            "splits={'<ours>': '<theirs>'}"
        )

    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            if self._label_feature is not None:
                self._class_names = list(self._label_feature.names)
            else:
                # Classes must not depend on which split is listed first, so every split's labels count.
                raw = {lab for split in self._data for _, lab, _, _ in self._list_rows(split) if lab is not None}
                if all(isinstance(v, str) for v in raw):
                    self._class_names = sorted(raw)
                elif all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
                    self._class_names = [str(i) for i in range(max((v for v in raw), default=-1) + 1)]
                else:
                    raise SourceError(
                        f"column {self.label_column!r} of {self._describe_path()!r} mixes label types "
                        f"{sorted({type(v).__name__ for v in raw})}; cast it to a ClassLabel"
                    )
        return list(self._class_names)

    def list_clips(self, split: str) -> list[ClipRef]:
        hf_split = self._hf_split(split)
        lookup = {c: i for i, c in enumerate(self.class_names)}  # for string labels; ints are indices already
        refs, unlabelled, missing = [], 0, []
        for row, raw, path, embedded in self._list_rows(hf_split):
            if raw is None or raw == -1:
                unlabelled += 1
                continue
            label = lookup[raw] if isinstance(raw, str) else int(raw)
            if not embedded and (path is None or not os.path.isfile(path)):
                missing.append(path)
            where = path if path else f"{self._describe_path()}[{hf_split}][{row}]"
            extra = {"split": hf_split, "row": row, "embedded": embedded}
            refs.append(ClipRef(clip_id=f"{hf_split}/{row:06d}", label=label, path=where, extra=extra))
        if not refs:
            raise SourceError(
                f"split {hf_split!r} of {self._describe_path()!r} has no labelled rows: "
                + (
                    f"all {unlabelled} rows have no class (None or -1) in column {self.label_column!r}"
                    if unlabelled
                    else "it is empty"
                )
                + "; a test split without public labels cannot be distilled or scored: choose a labelled split "
                "(splits={'test': 'validation'}) or another label_column"
            )
        if unlabelled:
            logger.warning(
                "%s split %r: %d rows without a label are left out", self._describe_path(), hf_split, unlabelled
            )
        if missing:
            logger.warning(
                "%s split %r: %d of %d videos are not files here (e.g. %s); they will be reported as skipped clips",
                self._describe_path(),
                hf_split,
                len(missing),
                len(refs),
                missing[0],
            )
        return refs  # already in row order, which is deterministic

    def _embedded_bytes(self, ref: ClipRef) -> bytes:
        cell = self._data[ref.extra["split"]][ref.extra["row"]][self.video_column]
        _, data = _media(cell)
        if not data:
            raise ClipReadError(f"row {ref.extra['row']} ({ref.path}) has no embedded video bytes")
        return data

    def probe(self, ref: ClipRef) -> VideoInfo:
        if ref.extra.get("embedded"):
            return probe(self._embedded_bytes(ref), name=f"the embedded video {ref.path}")
        return super().probe(ref)

    def read_frames(self, ref: ClipRef, indices: list[int]) -> Iterator[tuple[int, np.ndarray, float]]:
        if ref.extra.get("embedded"):
            yield from read_frames(self._embedded_bytes(ref), indices, name=f"the embedded video {ref.path}")
        else:
            yield from super().read_frames(ref, indices)

    def license_info(self) -> dict:
        """The source dataset's own licence: its `DatasetInfo.license` (a `save_to_disk` folder, a loaded dataset),
        else the `license` of its card (`README.md` of a local folder, or of the Hub repo, read through the Hub
        cache), else `unknown` with what was looked at."""
        for ds in self._data.values():
            text = (getattr(getattr(ds, "info", None), "license", None) or "").strip()
            if text:
                return {"license": text, "note": f"the source dataset's own info ({self._describe_path()})"}
        if isinstance(self.path, str | os.PathLike):
            path = os.fspath(self.path)
            card = os.path.join(path, "README.md") if os.path.isdir(path) else path
            try:
                from huggingface_hub import DatasetCard

                data = DatasetCard.load(card if os.path.isfile(card) else path).data
            except Exception as err:  # no card, offline, or not a Hub id: the licence stays unknown, said why
                return {"license": "unknown", "note": f"no licence found for {os.path.basename(path)} ({err})"}
            if data.get("license"):
                found = data.get("license")
                found = found[0] if isinstance(found, list) and len(found) == 1 else found
                info = {"license": found if isinstance(found, str) else "other"}
                if not isinstance(found, str):
                    info["license_name"] = "+".join(map(str, found))
                for key in ("license_name", "license_link"):
                    if data.get(key):
                        info[key] = data.get(key)
                where = os.path.basename(os.path.normpath(path)) if os.path.exists(path) else path
                return info | {"note": f"the card of the source dataset ({where})"}
        return super().license_info()

    def describe(self) -> dict:
        return super().describe() | {
            "path": self._describe_path(),
            "config": self.config_name,
            "splits": dict(self._mapping),
            "video_column": self.video_column,
            "label_column": self.label_column,
            "streaming": self.streaming,
        }
