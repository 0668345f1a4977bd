"""Frame decoding for file-backed sources: PyAV (it ships FFmpeg in its wheels), torchcodec when it works.

Two calls per clip: `count_frames` demuxes packets without decoding (cheap) so that a sampling policy can pick
indices first, then `read_frames` decodes once, front to back, and keeps only the wanted frames. Peak memory is
the kept frames, never the whole clip.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import numpy as np

from compressa_hf.sources.base import ClipReadError

logger = logging.getLogger(__name__)


# A video is a file path, or the bytes of an embedded video (a `datasets` cell) opened from memory.
Video = str | bytes


def _name(video: Video, name: str | None) -> str:
    return name or (video if isinstance(video, str) else f"<{len(video)} bytes in memory>")


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise ClipReadError(f"file not found: {path}")
    if os.path.getsize(path) == 0:
        raise ClipReadError(f"empty file (0 bytes): {path}")


def _open(video: Video, path: str):
    import io

    import av

    if isinstance(video, str):
        _check_file(video)
    elif not video:
        raise ClipReadError(f"empty video (0 bytes): {path}")
    try:
        container = av.open(video if isinstance(video, str) else io.BytesIO(video))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise ClipReadError(f"cannot open {path}: {err}") from err
    if not container.streams.video:
        container.close()
        raise ClipReadError(f"no video stream in {path}")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _in_window(seconds: float | None, start: float | None, end: float | None) -> bool:
    if seconds is None or (start is None and end is None):
        return True
    return (start is None or seconds >= start) and (end is None or seconds < end)


def count_frames(
    video: Video, start_sec: float | None = None, end_sec: float | None = None, name: str | None = None
) -> int:
    """Number of video frames in the file (inside the optional time window), counted from packets.

    `name` is how errors refer to an in-memory video (e.g. its dataset row).
    """
    import av

    path = _name(video, name)
    container, stream = _open(video, path)
    try:
        n = 0
        for packet in container.demux(stream):
            if packet.size == 0:  # flush packet
                continue
            t = float(packet.pts * packet.time_base) if packet.pts is not None else None
            n += _in_window(t, start_sec, end_sec)
    except av.error.FFmpegError as err:
        raise ClipReadError(f"corrupt stream in {path}: {err}") from err
    finally:
        container.close()
    if n == 0:
        raise ClipReadError(f"no frames in {path}" + (f" between {start_sec}s and {end_sec}s" if start_sec else ""))
    return n


def read_frames(
    video: Video,
    indices: list[int],
    start_sec: float | None = None,
    end_sec: float | None = None,
    name: str | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield `(index, HxWx3 uint8 RGB)` for each wanted index, decoding the file once front to back.

    Frames are numbered in presentation order inside the window. Indices past the last decodable frame are
    simply not yielded; the caller decides how to fill them.
    """
    import av

    wanted = sorted(set(indices))
    if not wanted:
        return
    path = _name(video, name)
    container, stream = _open(video, path)
    try:
        i, w = 0, 0
        for frame in container.decode(stream):
            t = float(frame.pts * frame.time_base) if frame.pts is not None else None
            if not _in_window(t, start_sec, end_sec):
                if end_sec is not None and t is not None and t >= end_sec:
                    break
                continue
            if i == wanted[w]:
                yield i, frame.to_ndarray(format="rgb24")
                w += 1
                if w == len(wanted):
                    break
            i += 1
    except av.error.FFmpegError as err:
        raise ClipReadError(f"corrupt stream in {path} after frame {i}: {err}") from err
    finally:
        container.close()
