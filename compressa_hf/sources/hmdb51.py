"""HMDB51 in its official layout: one folder per class and the `testTrainMulti_7030_splits` files.

    <root>/brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi
    <root>/testTrainMulti_7030_splits/brush_hair_test_split1.txt   "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1"

In a split file 1 marks a training clip, 2 a test clip and 0 a clip the split does not use (70/30 of 100 clips
per class, 30 unused). `build_source("hmdb51", root="/data/hmdb51", split_id=1)`. Classes are the 51 names of
the split files in alphabetical order, the order every published HMDB51 label map uses.
"""

from __future__ import annotations

import os
import re

from compressa_hf.sources.base import ClipRef, SourceError, VideoSource

SPLIT_IDS = (1, 2, 3)
SPLITS_DIR_NAME = "testTrainMulti_7030_splits"
#: the number a split file gives each of our split names
SPLIT_CODES = {"train": 1, "test": 2}
# Class names contain underscores ("brush_hair"), so the class is everything before "_test_split<N>".
_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<n>\d+)\.txt$")


class HMDB51Source(VideoSource):
    """HMDB51 (51 classes, 6,766 clips) with one of its three official 70/30 splits.

    Args:
        root: Folder of class folders (`<root>/<class>/<clip>.avi`), as the per-class .rar files unpack.
        split_id: Official split 1, 2 or 3 (`<class>_test_split<N>.txt`).
        splits_dir: Folder of the split files; default `<root>/testTrainMulti_7030_splits`, else the same name
            beside `root`.

    Listed files missing on disk stay in the list (the clip sampler reports each as skipped) and one warning
    gives their count.
    """

    name = "hmdb51"
    LICENSE = {
        "license": "cc-by-4.0",
        "note": "HMDB by H. Kuehne, H. Jhuang, E. Garrote, T. Poggio and T. Serre is licensed under CC BY 4.0 "
        "(https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/); its clips come mostly from "
        "movies, and from the Prelinger archive, YouTube and Google videos",
    }

    def __init__(self, root: str, split_id: int = 1, splits_dir: str | None = None):
        if split_id not in SPLIT_IDS:
            raise SourceError(f"HMDB51 `split_id` must be one of {SPLIT_IDS}, got {split_id!r}")
        self.root = os.fspath(root)
        self.split_id = split_id
        self.splits_dir = self._find_splits_dir(splits_dir)
        self._split_files = self._find_split_files()
        self._class_names = sorted(self._split_files)

    def _find_splits_dir(self, given: str | None) -> str:
        if given is not None:
            candidates = [os.fspath(given)]
        else:
            parent = os.path.dirname(os.path.abspath(self.root))
            candidates = [os.path.join(self.root, SPLITS_DIR_NAME), os.path.join(parent, SPLITS_DIR_NAME)]
        for d in candidates:
            if os.path.isdir(d):
                return d
        raise SourceError(
            f"no HMDB51 split folder found; looked in {candidates}. Unpack test_train_splits.rar there or pass "
            "splits_dir=<folder with <class>_test_split<N>.txt files>"
        )

    def _find_split_files(self) -> dict[str, str]:
        """class -> its split file for `split_id`, checking that every class has a video folder."""
        files = {}
        for fname in sorted(os.listdir(self.splits_dir)):
            m = _SPLIT_FILE.match(fname)
            if m is None or int(m["n"]) != self.split_id:
                continue
            path = os.path.join(self.splits_dir, fname)
            if not os.path.isdir(os.path.join(self.root, m["cls"])):
                raise SourceError(
                    f"split file {path} names class {m['cls']!r}, but there is no folder {self.root}/{m['cls']}; "
                    "unpack that class's .rar under root, or point root at the folder of class folders"
                )
            files[m["cls"]] = path
        if not files:
            raise SourceError(
                f"no *_test_split{self.split_id}.txt files in {self.splits_dir}; expected the official "
                "testTrainMulti_7030_splits files"
            )
        return files

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    def list_clips(self, split: str) -> list[ClipRef]:
        if split not in SPLIT_CODES:
            raise SourceError(f"HMDB51 has splits {self.splits}, got {split!r}")
        want = SPLIT_CODES[split]
        refs, missing = [], []
        for label, cls in enumerate(self._class_names):
            path = self._split_files[cls]
            with open(path, encoding="utf-8") as f:
                lines = [(n, line.strip()) for n, line in enumerate(f, start=1) if line.strip()]
            for n, line in lines:
                parts = line.split()
                if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                    raise SourceError(f"{path}:{n}: expected '<clip>.avi <0|1|2>', got {line!r}")
                if int(parts[1]) != want:
                    continue
                video = os.path.join(self.root, cls, parts[0])
                ref = ClipRef(clip_id=f"{cls}/{os.path.splitext(parts[0])[0]}", label=label, path=video)
                (refs if os.path.isfile(video) else missing).append(ref)
        self._note_missing(split, sorted(missing, key=lambda r: r.clip_id), len(refs) + len(missing), self.root)
        return sorted(refs, key=lambda r: r.clip_id)

    def describe(self) -> dict:
        return super().describe() | {"root": self.root, "split_id": self.split_id}
