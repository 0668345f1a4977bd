"""Something-Something v2 from the official label package and the `.webm` video folder.

    <root>/labels.json        {"Approaching something with your camera": "0", ...}    (class name -> index)
    <root>/train.json         [{"id": "78687", "label": "holding potato next to vicks vaporub bottle",
                                "template": "Holding [something] next to [something]", "placeholders": [...]}, ...]
    <root>/validation.json
    <root>/20bn-something-something-v2/78687.webm   (or <root>/videos/78687.webm)

The JSON files may also sit in `<root>/labels/`, as the label package unpacks. A clip's class is its template
with the brackets removed ("Holding something next to something"), looked up in labels.json; `label` is the
free-text caption and is not used. The test set has no public labels, so "test" reads validation.
"""

from __future__ import annotations

import json
import logging
import os

from compressa_hf.sources.base import ClipRef, SourceError, VideoSource

logger = logging.getLogger(__name__)

ANNOTATION_FILES = {"train": "train.json", "validation": "validation.json"}
SPLIT_ALIASES = {"test": "validation", "val": "validation"}
VIDEO_DIR_NAMES = ("20bn-something-something-v2", "videos")


def template_to_class(template: str) -> str:
    """The class name of a template: `Holding [something] next to [something]` -> `Holding something next to something`."""
    return template.replace("[", "").replace("]", "")


def _normalise(name: str) -> str:
    return " ".join(name.lower().split())


def _load_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise SourceError(f"{path} is not valid JSON ({err}); re-extract the SSv2 label package") from err


class SomethingSomethingV2Source(VideoSource):
    """Something-Something v2 (174 template classes; 168,913 train and 24,777 validation clips).

    Args:
        root: Dataset folder holding the label JSONs (or `labels/` with them) and the video folder.
        annotation_dir: Folder of labels.json / train.json / validation.json when not under `root`.
        video_dir: Folder of `<id>.webm` files when it is neither `20bn-something-something-v2` nor `videos`.

    Listed videos missing on disk are left out of `list_clips` and kept in `missing_clips`; one warning gives their
    count.
    """

    name = "ssv2"
    LICENSE = {
        "license": "other",
        "license_name": "something-something-v2",
        "license_link": "https://www.qualcomm.com/developer/software/something-something-v-2-dataset",
        "note": "Something-Something v2 (20BN, now Qualcomm) is free of charge for academic research; commercial "
        "licences are available on request",
    }

    def __init__(self, root: str, annotation_dir: str | None = None, video_dir: str | None = None):
        self.root = os.fspath(root)
        self.annotation_dir = self._find_annotation_dir(annotation_dir)
        self.labels_file = os.path.join(self.annotation_dir, "labels.json")
        self._class_names = self._read_labels(self.labels_file)
        self._label = {c: i for i, c in enumerate(self._class_names)}
        # Exact match first (the official files agree exactly); the normalised form forgives case and spacing.
        self._label_loose = {_normalise(c): i for i, c in enumerate(self._class_names)}
        self.video_dir = self._find_video_dir(video_dir)

    def _find_annotation_dir(self, given: str | None) -> str:
        candidates = [os.fspath(given)] if given is not None else [self.root, os.path.join(self.root, "labels")]
        for d in candidates:
            if os.path.isfile(os.path.join(d, "labels.json")):
                return d
        raise SourceError(
            f"no SSv2 labels.json found in {candidates}; unpack the label package under root or pass "
            "annotation_dir=<folder with labels.json, train.json, validation.json>"
        )

    def _find_video_dir(self, given: str | None) -> str:
        candidates = [os.fspath(given)] if given is not None else [os.path.join(self.root, d) for d in VIDEO_DIR_NAMES]
        for d in candidates:
            if os.path.isdir(d):
                return d
        raise SourceError(
            f"no SSv2 video folder found; looked for {candidates}. Unpack the 20bn-something-something-v2 "
            "archive under root or pass video_dir=<folder of <id>.webm files>"
        )

    @staticmethod
    def _read_labels(path: str) -> list[str]:
        data = _load_json(path)
        if not isinstance(data, dict):
            raise SourceError(f"{path} must map class name -> index string, got {type(data).__name__}")
        try:
            by_index = {int(v): k for k, v in data.items()}
        except (TypeError, ValueError) as err:
            raise SourceError(f"{path}: every value must be an integer index string ({err})") from err
        if sorted(by_index) != list(range(len(data))):
            raise SourceError(f"{path}: indices must run 0..{len(data) - 1} without gaps or repeats")
        return [by_index[i] for i in range(len(data))]

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    @property
    def splits(self) -> list[str]:
        return ["train", "validation"]

    def _class_of(self, template: str, path: str, clip_id: str) -> int:
        name = template_to_class(template)
        label = self._label.get(name, self._label_loose.get(_normalise(name)))
        if label is None:
            raise SourceError(
                f"{path}: clip id {clip_id} has template {template!r}, whose class {name!r} is not in "
                f"{self.labels_file}; the annotation files must come from the same SSv2 release"
            )
        return label

    def list_clips(self, split: str) -> list[ClipRef]:
        if split in SPLIT_ALIASES:
            logger.info("SSv2 has no labelled %r split; reading 'validation' instead", split)
            split = SPLIT_ALIASES[split]
        if split not in ANNOTATION_FILES:
            raise SourceError(f"SSv2 has splits {self.splits} ('test' reads validation), got {split!r}")
        path = os.path.join(self.annotation_dir, ANNOTATION_FILES[split])
        if not os.path.isfile(path):
            raise SourceError(f"missing SSv2 annotation file {path}")
        entries = _load_json(path)
        if not isinstance(entries, list):
            raise SourceError(f"{path} must hold a list of clip records, got {type(entries).__name__}")
        refs, missing = [], []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "id" not in entry or "template" not in entry:
                raise SourceError(f"{path}: record {i} lacks 'id' or 'template': {entry!r}")
            clip_id = str(entry["id"])
            video = os.path.join(self.video_dir, f"{clip_id}.webm")
            ref = ClipRef(clip_id=clip_id, label=self._class_of(entry["template"], path, clip_id), path=video)
            (refs if os.path.isfile(video) else missing).append(ref)

        def numeric(r):  # numeric order for the numeric ids, which string order would scramble (10 < 9)
            return (len(r.clip_id), r.clip_id)

        self._note_missing(split, sorted(missing, key=numeric), len(refs) + len(missing), self.video_dir)
        return sorted(refs, key=numeric)

    def describe(self) -> dict:
        return super().describe() | {"root": self.root, "video_dir": self.video_dir}
