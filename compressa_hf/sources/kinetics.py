"""Kinetics-400 from its annotation CSVs and the clip layouts the common downloaders produce.

    <root>/annotations/train.csv, val.csv     label,youtube_id,time_start,time_end,split[,is_cc]
    <root>/train/<label>/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4    (trimmed, per-label folders)
    <root>/train/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4            (trimmed, flat)
    <root>/train/<youtube_id>.mp4                                            (untrimmed: the CSV window is decoded)

`build_source("kinetics400", root="/data/k400")`. The test CSV of most releases has no labels, so the labelled
splits are train and validation and "test" reads validation, as the literature reports. Classes are the labels
in alphabetical order, the standard 400-class order. YouTube videos disappear, so every copy misses some clips:
missing clips are left out with one summary warning rather than reported one by one.
"""

from __future__ import annotations

import csv
import logging
import os

from compressa_hf.sources.base import ClipRef, SourceError, VideoSource

logger = logging.getLogger(__name__)

#: our split -> annotation file names used by the official releases (newest first)
CSV_NAMES = {
    "train": ("train.csv", "kinetics_train.csv", "kinetics-400_train.csv"),
    "validation": ("val.csv", "validate.csv", "validation.csv", "kinetics_val.csv", "kinetics-400_val.csv"),
}
#: our split -> video folder names under root; when none exists the whole root is searched
VIDEO_DIR_NAMES = {
    "train": ("train", "train_256"),
    "validation": ("val", "validation", "valid", "val_256"),
}
SPLIT_ALIASES = {"test": "validation", "val": "validation"}
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
REQUIRED_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def read_annotations(path: str) -> list[dict]:
    """Rows of a Kinetics CSV as dicts with `label`, `youtube_id` and integer-second `time_start`/`time_end`."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        lacking = [c for c in REQUIRED_COLUMNS if c not in columns]
        if lacking:
            raise SourceError(
                f"{path} lacks column(s) {lacking} (header: {columns}); a labelled Kinetics CSV has the header "
                "label,youtube_id,time_start,time_end,split. Test CSVs without labels cannot be used: "
                "ask for the validation split"
            )
        rows = []
        for n, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            except ValueError as err:
                raise SourceError(f"{path}:{n}: time_start/time_end must be seconds, got {row}") from err
            if not row["label"] or not row["youtube_id"]:
                raise SourceError(f"{path}:{n}: empty label or youtube_id in {row}")
            rows.append({"label": row["label"], "youtube_id": row["youtube_id"], "time_start": start, "time_end": end})
    return rows


def index_videos(folder: str) -> dict[str, str]:
    """File stem -> path for every video below `folder`, whatever the label folders are called."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()  # deterministic choice when a stem occurs twice
        for fname in sorted(filenames):
            stem, ext = os.path.splitext(fname)
            if ext.lower() in VIDEO_EXTENSIONS:
                found.setdefault(stem, os.path.join(dirpath, fname))
    return found


class Kinetics400Source(VideoSource):
    """Kinetics-400 (400 classes; ~240k train and ~20k validation clips of 10 s, fewer in any real copy).

    Args:
        root: Dataset folder; videos under `<root>/train/` and `<root>/val/` (or the whole root when those do
            not exist), trimmed `<id>_<start:06d>_<end:06d>.*` or untrimmed `<id>.*` files.
        annotation_dir: Folder of the CSVs; default `<root>/annotations`, else `root` itself.
    """

    name = "kinetics400"
    LICENSE = {
        "license": "cc-by-4.0",
        "note": "the Kinetics dataset is licensed by Google Inc. under CC BY 4.0 (its DeepMind page, "
        "https://deepmind.com/research/open-source/kinetics): that covers the annotations; the videos are "
        "YouTube's, and their rights stay with their uploaders",
    }

    def __init__(self, root: str, annotation_dir: str | None = None):
        self.root = os.fspath(root)
        self.annotation_dir = self._find_annotation_dir(annotation_dir)
        self._csv = {}
        for split, names in CSV_NAMES.items():
            path = next((p for p in (os.path.join(self.annotation_dir, n) for n in names) if os.path.isfile(p)), None)
            if path is not None:
                self._csv[split] = path
        if not self._csv:
            raise SourceError(
                f"no Kinetics annotation CSV in {self.annotation_dir}; expected one of "
                f"{CSV_NAMES['train'] + CSV_NAMES['validation']}"
            )
        self._rows = {split: read_annotations(path) for split, path in self._csv.items()}
        self._class_names = sorted({r["label"] for rows in self._rows.values() for r in rows})
        self._label = {c: i for i, c in enumerate(self._class_names)}

    def _find_annotation_dir(self, given: str | None) -> str:
        if given is not None:
            if not os.path.isdir(given):
                raise SourceError(f"Kinetics annotation_dir {given!r} is not a folder")
            return os.fspath(given)
        default = os.path.join(self.root, "annotations")
        return default if os.path.isdir(default) else self.root

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    @property
    def splits(self) -> list[str]:
        return ["train", "validation"]

    def _resolve_split(self, split: str) -> str:
        if split == "test" and "validation" in self._csv:
            # "val" is only another name of the validation split (annotations/val.csv): nothing to say about it.
            logger.info(
                "Kinetics-400: split 'test' reads the validation split (%s), the labelled split results are reported on",
                self._csv["validation"],
            )
        split = SPLIT_ALIASES.get(split, split)
        if split not in self.splits:
            raise SourceError(f"Kinetics-400 has splits {self.splits} ('test' reads validation), got {split!r}")
        if split not in self._rows:
            raise SourceError(
                f"no annotation CSV for Kinetics-400 {split} in {self.annotation_dir}; expected one of "
                f"{CSV_NAMES[split]}"
            )
        return split

    def _video_dir(self, split: str) -> str:
        for name in VIDEO_DIR_NAMES[split]:
            d = os.path.join(self.root, name)
            if os.path.isdir(d):
                return d
        return self.root

    def list_clips(self, split: str) -> list[ClipRef]:
        split = self._resolve_split(split)
        video_dir = self._video_dir(split)
        videos = index_videos(video_dir)
        refs, missing = [], []
        for row in self._rows[split]:
            clip_id = f"{row['youtube_id']}_{row['time_start']:06d}_{row['time_end']:06d}"
            label = self._label[row["label"]]
            if clip_id in videos:
                refs.append(ClipRef(clip_id=clip_id, label=label, path=videos[clip_id]))
            elif row["youtube_id"] in videos:
                # An untrimmed download: decode only the annotated 10 s window.
                path = videos[row["youtube_id"]]
                refs.append(ClipRef(clip_id, label, path, float(row["time_start"]), float(row["time_end"])))
            else:
                missing.append(ClipRef(clip_id, label, os.path.join(video_dir, f"{clip_id}.mp4")))
        if not refs and missing:
            raise SourceError(
                f"none of the {len(missing)} Kinetics-400 {split} clips in {self._csv[split]} was found under "
                f"{video_dir} (e.g. {missing[0].clip_id}.mp4); check root, or the file naming "
                "<youtube_id>_<start:06d>_<end:06d>.mp4 / <youtube_id>.mp4"
            )
        self._note_missing(split, sorted(missing, key=lambda r: r.clip_id), len(self._rows[split]), video_dir)
        return sorted(refs, key=lambda r: r.clip_id)

    def describe(self) -> dict:
        return super().describe() | {"root": self.root, "annotation_dir": self.annotation_dir}
