"""The interface every video source implements: a list of labelled clip references per split, and frames."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np


class SourceError(ValueError):
    """Raised for malformed dataset layouts: the message names the file or key and the way out."""


class ClipReadError(RuntimeError):
    """Raised when one clip cannot be decoded; the caller skips the clip and reports it, the run goes on."""


@dataclass(frozen=True)
class ClipRef:
    """One labelled clip of a split.

    Args:
        clip_id: Stable identifier, unique within (source, split); used as cache key and as `video_id` downstream.
        label: Class index into the source's `class_names`.
        path: File to decode, or a description of where the clip comes from for in-memory sources.
        start_sec / end_sec: Optional time window inside the file (Kinetics annotations over untrimmed videos).
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

    Frames come out as uint8 RGB arrays of shape (H, W, 3). `count_frames` and `read_frames` take a `ClipRef` so
    that a source can be shared across DataLoader workers without per-clip state.
    """

    #: registry name, e.g. "videofolder"
    name: str = ""

    @property
    @abc.abstractmethod
    def class_names(self) -> list[str]:
        """Class names in label order."""

    @abc.abstractmethod
    def list_clips(self, split: str) -> list[ClipRef]:
        """All clips of `split`, in a deterministic order."""

    @property
    def splits(self) -> list[str]:
        return ["train", "test"]

    def describe(self) -> dict:
        """What a dataset card or summary needs to say where the data came from."""
        return {"source": self.name, "num_classes": len(self.class_names)}

    # File-backed sources decode with PyAV; in-memory sources override both methods.
    def count_frames(self, ref: ClipRef) -> int:
        from compressa_hf.decode import count_frames

        return count_frames(ref.path, ref.start_sec, ref.end_sec)

    def read_frames(self, ref: ClipRef, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Yield `(index, frame)` for the sorted unique `indices` that exist in the clip."""
        from compressa_hf.decode import read_frames

        yield from read_frames(ref.path, indices, ref.start_sec, ref.end_sec)
