"""UCF101 in its official layout: the `UCF-101/` video tree plus the `ucfTrainTestlist/` split files.

    <root>/UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi
    <root>/ucfTrainTestlist/classInd.txt        "1 ApplyEyeMakeup"                               (1-based)
    <root>/ucfTrainTestlist/trainlist0{1,2,3}.txt "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    <root>/ucfTrainTestlist/testlist0{1,2,3}.txt  "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"   (no label)

`build_source("ucf101", root="/data/ucf101", fold=2)`. Labels follow classInd.txt (index - 1), so they match
published results. The split files spell one class differently from the folder on disk (`HandstandPushups` vs
`HandStandPushups`), so classes and files are matched case-insensitively.
"""

from __future__ import annotations

import os

from compressa_hf.sources.base import ClipRef, SourceError, VideoSource

FOLDS = (1, 2, 3)
VIDEO_DIR_NAMES = ("UCF-101", "UCF101", "videos")
SPLITS_DIR_NAMES = ("ucfTrainTestlist", os.path.join("UCF101TrainTestSplits-RecognitionTask", "ucfTrainTestlist"))


def _read_lines(path: str) -> list[tuple[int, str]]:
    """Non-blank, stripped lines with their 1-based numbers (the official files have CRLF endings)."""
    with open(path, encoding="utf-8") as f:
        return [(n, line.strip()) for n, line in enumerate(f, start=1) if line.strip()]


def read_class_index(path: str) -> list[str]:
    """Class names in label order from `classInd.txt` ("1 ApplyEyeMakeup" per line, indices 1..N)."""
    names: dict[int, str] = {}
    for n, line in _read_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise SourceError(f"{path}:{n}: expected '<index> <ClassName>', got {line!r}")
        names[int(parts[0])] = parts[1]
    if sorted(names) != list(range(1, len(names) + 1)):
        raise SourceError(f"{path}: class indices must run 1..{len(names)} without gaps, got {sorted(names)}")
    return [names[i] for i in range(1, len(names) + 1)]


class UCF101Source(VideoSource):
    """UCF101 (101 classes, 13,320 clips) with one of its three official train/test folds.

    Args:
        root: Folder holding `UCF-101/` and `ucfTrainTestlist/`. The `UCF-101` folder itself also works when the
            split files sit inside it or beside it.
        fold: Official split 1, 2 or 3 (`trainlist0N.txt` / `testlist0N.txt`).
        video_dir: Folder of class sub-folders, when it is not found under `root`.
        splits_dir: Folder with `classInd.txt` and the split lists, when it is not found under `root`.

    Listed files that are missing on disk are left out of `list_clips` and kept in `missing_clips`; one warning gives
    their count and the cache pass lists them in `skipped.jsonl`, so a partial download shows up instead of silently
    shrinking the split.
    """

    name = "ucf101"
    LICENSE = {
        "license": "unknown",
        "note": "UCF101 (Soomro, Zamir and Shah, arXiv:1212.0402) states no licence: its page "
        "(https://www.crcv.ucf.edu/data/UCF101.php) says only (c) 2011 CRCV, and its clips are YouTube uploads whose "
        "rights stay with their uploaders",
    }

    def __init__(self, root: str, fold: int = 1, video_dir: str | None = None, splits_dir: str | None = None):
        if fold not in FOLDS:
            raise SourceError(f"UCF101 `fold` must be one of {FOLDS}, got {fold!r}")
        self.root = os.fspath(root)
        self.fold = fold
        self.splits_dir = self._find_splits_dir(splits_dir)
        self.class_index_file = os.path.join(self.splits_dir, "classInd.txt")
        self._class_names = read_class_index(self.class_index_file)
        self._class_by_lower = {c.lower(): i for i, c in enumerate(self._class_names)}
        self.video_dir = self._find_video_dir(video_dir)
        self._files: dict[str, str] | None = None  # lower-case "Class/file.avi" -> real path, built on first use

    # -- layout discovery ------------------------------------------------------------------------------------
    def _find_splits_dir(self, given: str | None) -> str:
        if given is not None:
            candidates = [os.fspath(given)]
        else:
            parent = os.path.dirname(os.path.abspath(self.root))
            candidates = [os.path.join(self.root, d) for d in SPLITS_DIR_NAMES] + [self.root]
            candidates += [os.path.join(parent, d) for d in SPLITS_DIR_NAMES]
        for d in candidates:
            if os.path.isfile(os.path.join(d, "classInd.txt")):
                return d
        raise SourceError(
            f"no UCF101 split files (classInd.txt) found; looked in {candidates}. Unpack "
            "UCF101TrainTestSplits-RecognitionTask.zip next to UCF-101/ or pass splits_dir=<folder with classInd.txt>"
        )

    def _find_video_dir(self, given: str | None) -> str:
        if given is not None:
            if not os.path.isdir(given):
                raise SourceError(f"UCF101 video_dir {given!r} is not a folder")
            return os.fspath(given)
        candidates = [os.path.join(self.root, d) for d in VIDEO_DIR_NAMES] + [self.root]
        for d in candidates:
            if os.path.isdir(d) and any(e.lower() in self._class_by_lower for e in os.listdir(d)):
                return d
        raise SourceError(
            f"no UCF101 class folders (e.g. {self._class_names[0]}/) found; looked in {candidates}. "
            "Unpack UCF101.rar under root or pass video_dir=<folder of class folders>"
        )

    def _file_index(self) -> dict[str, str]:
        # One directory scan instead of an os.path.exists per listed clip, and it gives case-insensitive lookup.
        if self._files is None:
            files = {}
            for cls in sorted(os.listdir(self.video_dir)):
                cls_dir = os.path.join(self.video_dir, cls)
                if os.path.isdir(cls_dir):
                    for fname in os.listdir(cls_dir):
                        files[f"{cls}/{fname}".lower()] = os.path.join(cls_dir, fname)
            self._files = files
        return self._files

    # -- VideoSource -------------------------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    def split_file(self, split: str) -> str:
        """Path of the official list for `split` in this fold."""
        if split not in self.splits:
            raise SourceError(f"UCF101 has splits {self.splits}, got {split!r}")
        return os.path.join(self.splits_dir, f"{split}list0{self.fold}.txt")

    def list_clips(self, split: str) -> list[ClipRef]:
        path = self.split_file(split)
        if not os.path.isfile(path):
            raise SourceError(f"missing UCF101 split file {path}; the official ucfTrainTestlist has folds 1-3")
        files = self._file_index()
        refs, missing = [], []
        for n, line in _read_lines(path):
            parts = line.split()
            if len(parts) not in (1, 2) or "/" not in parts[0] or (len(parts) == 2 and not parts[1].isdigit()):
                raise SourceError(f"{path}:{n}: expected '<Class>/<clip>.avi [label]', got {line!r}")
            rel = parts[0]
            cls = rel.split("/", 1)[0]
            label = self._class_by_lower.get(cls.lower())
            if label is None:
                raise SourceError(
                    f"{path}:{n}: class {cls!r} is not in {self.class_index_file}; "
                    "the split files and classInd.txt must come from the same release"
                )
            if len(parts) == 2 and int(parts[1]) != label + 1:
                raise SourceError(
                    f"{path}:{n}: label {parts[1]} disagrees with classInd.txt, where {cls!r} is {label + 1}"
                )
            real = files.get(rel.lower())
            ref = ClipRef(os.path.splitext(rel)[0], label, real or os.path.join(self.video_dir, *rel.split("/")))
            (refs if real is not None else missing).append(ref)
        self._note_missing(split, sorted(missing, key=lambda r: r.clip_id), len(refs) + len(missing), self.video_dir)
        return sorted(refs, key=lambda r: r.clip_id)

    def describe(self) -> dict:
        return super().describe() | {"root": self.root, "fold": self.fold, "video_dir": self.video_dir}
