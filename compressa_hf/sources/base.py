"""The interface every video source implements: a list of labelled clip references per split, and frames."""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from compressa_hf.decode import VideoInfo
from compressa_hf.errors import ClipReadError, SourceError

logger = logging.getLogger(__name__)

__all__ = ["ClipReadError", "ClipRef", "SourceError", "VideoInfo", "VideoSource", "printable_name"]


def printable_name(name: str) -> str:
    """`name` as valid Unicode text: bytes a file system gave that are not UTF-8 become `\\xNN` escapes.

    Python hands such bytes over as lone surrogates (PEP 383), which JSON, parquet and YAML cannot hold. Clip ids and
    class names go through this so they round-trip everywhere; the real path stays in `ClipRef.path` for opening.
    `caf\\udce9 clip` -> `caf\\\\xe9 clip`.
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class ClipRef:
    """One labelled clip of a split.

    Args:
        clip_id: Stable identifier, unique within (source, split); used as cache key and as `video_id` downstream.
            Valid Unicode text (see `printable_name`).
        label: Class index into the source's `class_names`.
        path: File to decode (as the file system names it), or a description of where an in-memory clip comes from.
        start_sec / end_sec: Optional time window inside the file in seconds on the container's timeline, from its
            start, as `ffmpeg -ss` counts (Kinetics annotations over untrimmed videos).
        extra: Source-specific payload (row index of a `datasets` dataset, seed of a procedural clip).
    """

    clip_id: str
    label: int
    path: str
    start_sec: float | None = None
    end_sec: float | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)


class VideoSource(abc.ABC):
    """A labelled video dataset. Subclasses list clips; file-backed ones inherit PyAV decoding.

    Frames come out as uint8 RGB arrays of shape (H, W, 3), upright as a player shows them. `probe` and
    `read_frames` take a `ClipRef` so that a source can be shared across DataLoader workers without per-clip state.
    """

    #: registry name, e.g. "videofolder"
    name: str = ""
    #: The terms the clips come under, as the dataset card states them (`license_info`); None: not known.
    LICENSE: dict | None = None

    @property
    @abc.abstractmethod
    def class_names(self) -> list[str]:
        """Class names in label order."""

    @abc.abstractmethod
    def list_clips(self, split: str) -> list[ClipRef]:
        """The clips of `split` whose files exist, in a deterministic order (see `missing_clips` for the rest)."""

    def split_name(self, split: str) -> str:
        """The name this source reads `split` under: the split itself, or, where a split name is an alias (a folder
        source's `test` read from `val/`), the name of what is read. Caches of aliases of one split are one cache."""
        return split

    def missing_clips(self, split: str) -> list[ClipRef]:
        """Clips the split's annotation lists name but whose files are not on disk (a partial download).

        `list_clips` leaves them out, so plans and passes count only clips that exist; the cache pass lists these in
        `skipped.jsonl`. Filled by `list_clips`; empty for sources that list files, not annotations.
        """
        return list(getattr(self, "_missing", {}).get(split, []))

    def _note_missing(self, split: str, missing: list[ClipRef], listed: int, where: str) -> None:
        """Keep a split's missing clips for `missing_clips` and say so in one warning line, once: a command lists a
        split several times (the plan, the cache pass, the pixels), and the same news is not repeated."""
        if not hasattr(self, "_missing"):
            self._missing = {}
        said = self._missing.get(split)
        self._missing[split] = missing
        if missing and missing != said:
            logger.warning(
                "%s %s: %d of %d listed clips are not under %s and are left out (first: %s); the cache pass lists them "
                "in skipped.jsonl",
                self.name,
                split,
                len(missing),
                listed,
                where,
                ", ".join(r.clip_id for r in missing[:3]),
            )

    @property
    def splits(self) -> list[str]:
        return ["train", "test"]

    def describe(self) -> dict:
        """What a dataset card or summary needs to say where the data came from."""
        return {"source": self.name, "num_classes": len(self.class_names)}

    def license_info(self) -> dict:
        """The terms the clips come under, for a distilled set's card: `license` (an identifier of the Hub's list,
        https://hf.co/docs/hub/repositories-licenses, or `other` / `unknown`), `license_name` and `license_link` with
        `other`, and a `note` saying where the terms are stated. A set distilled from the clips is derived from them,
        so their terms are the set's unless the user states others (`compressa distill --license`)."""
        if self.LICENSE is not None:
            return dict(self.LICENSE)
        return {
            "license": "unknown",
            "note": f"the terms of these {self.name} clips are not known to compressa_hf; state them with "
            "`compressa distill --license <Hub licence id>`",
        }

    # File-backed sources decode with PyAV (`compressa_hf.decode`); in-memory sources override both methods.
    def probe(self, ref: ClipRef) -> VideoInfo:
        """Frames a player shows in the clip (its window), their rate and, if uneven, their times; without decoding."""
        from compressa_hf.decode import probe

        return probe(ref.path, ref.start_sec, ref.end_sec)

    def count_frames(self, ref: ClipRef) -> int:
        return self.probe(ref).num_frames

    def read_frames(self, ref: ClipRef, indices: list[int]) -> Iterator[tuple[int, np.ndarray, float]]:
        """Yield `(index, frame, seconds on the container's timeline)` for the sorted unique `indices` that exist."""
        from compressa_hf.decode import read_frames

        yield from read_frames(ref.path, indices, ref.start_sec, ref.end_sec)
