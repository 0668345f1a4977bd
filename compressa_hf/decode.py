"""Frame decoding for file-backed sources with PyAV (its wheels carry FFmpeg; torchcodec needs a system FFmpeg).

Two calls per clip: `probe` demuxes packets without decoding (cheap) and returns the frame count, the real frame
rate and, for a clip whose frames are not evenly spaced in time, every frame's presentation time, so that a sampling
policy can pick indices first; then `read_frames` decodes once and keeps only the wanted frames. Both count the same
frames: the ones a player shows. Peak memory is the kept frames, never the whole clip. What a player would do, this
module does too:

- **Orientation.** A phone clip stores landscape pixels and a display matrix saying how to show them. Frames come
  out as displayed: the matrix's rotation (multiples of 90 degrees) and mirroring are applied (`orient`).
- **Time.** One timeline: the container's, in seconds from its start (FFmpeg's `AVFormatContext.start_time`, the
  earliest stream's first timestamp), which is what `ffmpeg -ss 3 -t 2` cuts by and what a player's clock shows. A
  file whose video starts at 2 s (a remuxed download) has its 3-5 s window at the same frames as one that starts at
  0; a file whose audio starts 1 s before its video has its 3-5 s window at video 3-5 s, not 4-6 s. Every frame
  comes with its timestamp on that timeline.
- **Variable frame rate.** Frames are not always evenly spaced (phone recordings, screen captures, re-muxed web
  video). `probe` measures the spacing: for evenly spaced frames (within a quarter of a frame interval of an even
  grid) the rate is the stream's declared rate and frame i is at `start + i / fps`; otherwise `VideoInfo.times` holds
  every frame's time and the rate is the clip's real average (`num_frames / duration`).
- **Edit lists.** Pictures an mp4 stores before its edit list's start (`ffmpeg -ss X -c copy` output, flagged
  discard) are not shown by a player and not counted or returned here.
- **Frame size changes mid-stream** (browser / WebRTC recordings): every frame comes out at the size of the clip's
  first frame, scaled with FFmpeg's own scaler (bicubic) as `ffmpeg` does when it meets a new size.
- **Long files.** A window deep into an untrimmed file is reached by seeking to the keyframe before it, so its
  cost does not grow with its position (`bench/seek.py`).
- **Metadata is not data.** Container tags that are not valid UTF-8 (many HMDB51 .avi files carry Latin-1 ones)
  are read with replacement characters instead of failing the clip.
- **Any file name.** A path that is not valid UTF-8 (surrogate-escaped by Python, as old archives unpack on Linux)
  is opened through a Python file object, since FFmpeg's path API takes UTF-8 only.

Frames inside a window are numbered 0, 1, ... in presentation order; errors are `ClipReadError` naming the file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from compressa_hf.errors import ClipReadError

logger = logging.getLogger(__name__)


# A video is a file path, or the bytes of an embedded video (a `datasets` cell) opened from memory.
Video = str | bytes


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` learns about a clip without decoding it.

    Args:
        num_frames: Frames a player shows in the window (the whole stream when no window is given).
        fps: Frames per second. For evenly spaced frames, the stream's declared rate (FFmpeg's `avg_frame_rate`, else
            its guess; the measured spacing where the declaration is more than 5 % off); for a variable-rate clip,
            its real average `num_frames / duration`. Either way `num_frames / fps` is the clip's duration.
        start: Seconds on the container's timeline at which the clip's first frame is shown (None: not known, as for
            sources that do not decode files).
        times: For a variable-rate clip only, every frame's presentation time in seconds on that timeline, in
            presentation order; None when frame i is shown at `start + i / fps`.
    """

    num_frames: int
    fps: float
    start: float | None = None
    times: tuple[float, ...] | None = None

    @property
    def duration(self) -> float:
        """Seconds the clip's frames are shown, from its first frame to the end of its last one."""
        return self.num_frames / self.fps

    @property
    def variable_rate(self) -> bool:
        """Whether the clip's frames are unevenly spaced in time (`times` says where each one is)."""
        return self.times is not None


def _name(video: Video, name: str | None) -> str:
    return name or (video if isinstance(video, str) else f"<{len(video)} bytes in memory>")


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise ClipReadError(f"file not found: {path}")
    if os.path.getsize(path) == 0:
        raise ClipReadError(f"empty file (0 bytes): {path}")


def _utf8_path(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextlib.contextmanager
def _open(video: Video, name: str):
    """(container, first video stream) of a path or in-memory video; closes both afterwards."""
    import av

    if isinstance(video, str):
        _check_file(video)
    elif not video:
        raise ClipReadError(f"empty video (0 bytes): {name}")
    with contextlib.ExitStack() as stack:
        if isinstance(video, bytes):
            handle = io.BytesIO(video)
        elif _utf8_path(video):
            handle = video
        else:
            handle = stack.enter_context(open(video, "rb"))  # noqa: SIM115 (closed by the stack)
        try:
            # Tags are decoded as UTF-8 with replacement: a Latin-1 title must not cost the clip.
            container = av.open(handle, metadata_errors="replace")
        except (av.error.FFmpegError, OSError, UnicodeError) as err:
            raise ClipReadError(f"cannot open {name}: {err}") from err
        stack.callback(container.close)
        if not container.streams.video:
            raise ClipReadError(f"no video stream in {name}")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield container, stream


def _frame_rate(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and float(rate) > 0:
            return float(rate)
    return None


def _origin(container, stream) -> int:
    """Time 0 of every window and timestamp, as a pts in `stream.time_base`: the container's start.

    That is the earliest stream's first timestamp (FFmpeg's `AVFormatContext.start_time`), by which `ffmpeg -ss`
    measures and a player's clock counts: a download whose audio starts before its video has its annotated window on
    that timeline, not on the video's own (fflewddur/archivo#16, microsoft/FFmpegInterop#262). A container that
    states no start falls back to the video stream's.
    """
    if container.start_time is not None:  # microseconds
        return int(Fraction(container.start_time, 1_000_000) / stream.time_base)
    if stream.start_time is not None:
        return int(stream.start_time)
    return 0


#: Frames within this fraction of a frame interval of an even grid count as evenly spaced (timestamps rounded to a
#: millisecond, as Matroska / WebM store them, move a 30 fps frame by up to 1/66 of an interval).
EVEN_TOLERANCE = 0.25
#: A declared rate further than this (relative) from the measured spacing of evenly spaced frames is not believed.
RATE_TOLERANCE = 0.05


def _timeline(pts: list[int], time_base: Fraction, origin: int, declared: float | None) -> tuple:
    """(fps, start, times or None) of a clip from its frames' pts (any order; all known).

    Evenly spaced frames keep the declared rate (the same values as before variable rates were measured) unless it
    is more than `RATE_TOLERANCE` off the spacing. Unevenly spaced ones get their real average rate over their span:
    from the first frame to the end of the last, which is shown for as long as the gap before it (container frame
    durations are often missing or wrong, e.g. 1920 s per frame in some WebRTC recordings).
    """
    ticks = sorted(pts)
    n, tick = len(ticks), float(time_base)
    start = round((ticks[0] - origin) * tick, 6) if ticks else None  # to the microsecond, as frame timestamps
    if n < 2 or ticks[-1] == ticks[0]:
        return declared, start, None
    step = (ticks[-1] - ticks[0]) / (n - 1)  # mean gap in pts ticks
    worst = max(abs(p - ticks[0] - j * step) for j, p in enumerate(ticks))
    if worst <= EVEN_TOLERANCE * step + 1:  # + 1: the pts themselves are rounded to a tick
        measured = 1 / (step * tick)
        if declared is None or abs(declared / measured - 1) > RATE_TOLERANCE:
            return measured, start, None
        return declared, start, None
    duration = (ticks[-1] - ticks[0] + ticks[-1] - ticks[-2]) * tick
    return n / duration, start, tuple(round((p - origin) * tick, 6) for p in ticks)


def _seconds_to_pts(seconds: float, stream, origin: int) -> int:
    return origin + int(Fraction(seconds).limit_denominator(1_000_000) / stream.time_base)


def _seek_before(container, stream, pts: int) -> None:
    """Seek to the keyframe at or before `pts`; a container that cannot seek is read from its start."""
    import av

    try:
        container.seek(pts, stream=stream, backward=True, any_frame=False)
    except (av.error.FFmpegError, OSError) as err:
        logger.debug("seek failed (%s); reading from the start", err)
        container.seek(0, stream=stream, backward=True, any_frame=False)


@dataclass(frozen=True)
class _Window:
    """A time window in stream pts: frames with `lo <= pts < hi` belong to it (None: unbounded)."""

    lo: int | None
    hi: int | None

    def contains(self, pts: int | None) -> bool:
        if pts is None:
            return True
        return (self.lo is None or pts >= self.lo) and (self.hi is None or pts < self.hi)

    def past(self, pts: int | None) -> bool:
        return pts is not None and self.hi is not None and pts >= self.hi


def _window(stream, origin: int, start_sec: float | None, end_sec: float | None) -> _Window:
    lo = _seconds_to_pts(start_sec, stream, origin) if start_sec is not None else None
    hi = _seconds_to_pts(end_sec, stream, origin) if end_sec is not None else None
    return _Window(lo, hi)


def _describe_window(start_sec: float | None, end_sec: float | None) -> str:
    if start_sec is None and end_sec is None:
        return ""
    return f" between {start_sec or 0}s and {end_sec if end_sec is not None else 'the end'}s of the stream"


def probe(
    video: Video, start_sec: float | None = None, end_sec: float | None = None, name: str | None = None
) -> VideoInfo:
    """Frames a player shows (inside the optional window, seconds on the container's timeline), rate and times.

    Counts packets, decoding nothing: the packets an edit list marks as discarded are not counted, as the decoder
    drops them. A window seeks to the keyframe before its start first. `name` is how errors refer to an in-memory
    video (e.g. its dataset row). Raises `ClipReadError` when there is no frame.
    """
    path = _name(video, name)
    try:
        return _probe(video, path, start_sec, end_sec, seek=True)
    except _SeekOvershoot:
        logger.debug("seek in %s landed past the window; counting from the start", path)
        return _probe(video, path, start_sec, end_sec, seek=False)


class _SeekOvershoot(Exception):
    """A seek landed after the window's start (an imprecise container index); the caller reads from the start."""


def _probe(video: Video, path: str, start_sec: float | None, end_sec: float | None, seek: bool) -> VideoInfo:
    import av

    with _open(video, path) as (container, stream):
        origin = _origin(container, stream)
        window = _window(stream, origin, start_sec, end_sec)
        seek = seek and window.lo is not None and window.lo > origin
        n, first, timed = 0, True, []
        try:
            if seek:
                _seek_before(container, stream, window.lo)
            for packet in container.demux(stream):
                if packet.size == 0:  # flush packet
                    continue
                if getattr(packet, "is_discard", False):  # before an edit list's start: decoded, never shown
                    continue
                pts = packet.pts if packet.pts is not None else packet.dts
                if first and seek and pts is not None and pts > window.lo:
                    raise _SeekOvershoot
                first = False
                if window.contains(pts):
                    n += 1
                    if pts is not None:
                        timed.append(pts)
                elif window.past(packet.dts):  # dts never decreases and pts >= dts: nothing later is inside
                    break
        except av.error.FFmpegError as err:
            raise ClipReadError(f"corrupt stream in {path}: {err}") from err
        time_base, declared = stream.time_base, _frame_rate(stream)
    if n == 0:
        raise ClipReadError(f"no frames in {path}{_describe_window(start_sec, end_sec)}")
    if len(timed) == n:
        fps, start, times = _timeline(timed, time_base, origin, declared)
    else:  # frames without timestamps: no spacing to measure, frame i is where the declared rate puts it
        fps, start, times = declared, None, None
    if fps is None:
        logger.warning("%s declares no frame rate and has too few timed frames to measure one; assuming 30", path)
        fps = 30.0
    return VideoInfo(num_frames=n, fps=float(fps), start=start, times=times)


def _display_matrix(frame) -> np.ndarray | None:
    """The frame's 3x3 display matrix (FFmpeg's int32 layout, 16.16 fixed point), or None."""
    # PyAV >= 18 makes `frame.side_data` a Mapping (iterating gives the types); before, iterating gave the entries.
    entries = frame.side_data.values() if isinstance(frame.side_data, Mapping) else frame.side_data
    for side_data in entries:
        if getattr(side_data.type, "name", str(side_data.type)).endswith("DISPLAYMATRIX"):
            return np.frombuffer(bytes(side_data), dtype="<i4").reshape(3, 3)
    return None


def orient(image: np.ndarray, matrix: np.ndarray | None) -> np.ndarray:
    """(H, W, C) stored pixels -> as a player displays them, given FFmpeg's display matrix.

    FFmpeg maps a stored pixel (x, y) to the displayed `(a x + c y, b x + d y)` (plus a translation) with
    `[a b u; c d v; tx ty w]` (libavutil/display.h). For the eight axis-aligned orientations (rotations by 90
    degrees, with or without mirroring) `a, b, c, d` are 0 or +-1 and the result is exact. Other angles are rare in
    the wild (FFmpeg itself falls back to a lossy rotate filter); they are snapped to the nearest 90 degrees with a
    warning.
    """
    if matrix is None:
        return image
    m = matrix[:2, :2].astype(np.float64) / 65536.0
    a, b, c, d = m[0, 0], m[0, 1], m[1, 0], m[1, 1]
    if abs(a) + abs(d) >= abs(b) + abs(c):  # no transpose: x' ~ a x, y' ~ d y
        if abs(b) > 1e-3 or abs(c) > 1e-3:
            logger.warning("display matrix %s is not a multiple of 90 degrees; snapped to the nearest", m.tolist())
        out = image
        if a < 0:
            out = out[:, ::-1]
        if d < 0:
            out = out[::-1, :]
        return out
    if abs(a) > 1e-3 or abs(d) > 1e-3:
        logger.warning("display matrix %s is not a multiple of 90 degrees; snapped to the nearest", m.tolist())
    # x' ~ c y, y' ~ b x: displayed row = stored column, displayed column = stored row.
    out = image.swapaxes(0, 1)
    if b < 0:
        out = out[::-1, :]
    if c < 0:
        out = out[:, ::-1]
    return out


def _rgb(frame, size: tuple[int, int], reformatter) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a frame, scaled to `size` (width, height) when it has another size.

    FFmpeg's own scaler, bicubic, is what `ffmpeg` inserts when a stream changes size mid-way (its filter graph keeps
    the first frame's size); a player shows such a clip at one size too (FFMediaToolkit#105, OGVKit#132).
    """
    kwargs = {"format": "rgb24", "threads": 1}
    if (frame.width, frame.height) != size:
        kwargs.update(width=size[0], height=size[1], interpolation="BICUBIC")
    return reformatter.reformat(frame, **kwargs).to_ndarray()


def read_frames(
    video: Video,
    indices: list[int],
    start_sec: float | None = None,
    end_sec: float | None = None,
    name: str | None = None,
) -> Iterator[tuple[int, np.ndarray, float]]:
    """Yield `(index, HxWx3 uint8 RGB as displayed, seconds on the container's timeline)` per wanted index.

    Frames are numbered in presentation order inside the window, exactly as `probe` counts them. A window seeks to
    the keyframe before its start. Every frame has the size of the window's first frame (a stream whose size changes
    is scaled back to it, as `ffmpeg` does). Indices past the last decodable frame are not yielded; the caller
    decides how to fill them.
    """

    wanted = sorted(set(indices))
    if not wanted:
        return
    path = _name(video, name)
    try:
        yield from _decode(video, path, wanted, start_sec, end_sec, seek=True)
    except _SeekOvershoot:  # raised before the first frame is yielded
        logger.debug("seek in %s landed past the window; decoding from the start", path)
        yield from _decode(video, path, wanted, start_sec, end_sec, seek=False)


def _decode(video: Video, path: str, wanted: list[int], start_sec, end_sec, seek: bool):
    import av
    from av.video.reformatter import VideoReformatter

    with _open(video, path) as (container, stream):
        origin = _origin(container, stream)
        window = _window(stream, origin, start_sec, end_sec)
        time_base = float(stream.time_base)
        fps = _frame_rate(stream) or 30.0
        seek = seek and window.lo is not None and window.lo > origin
        i, w, first, size = 0, 0, True, None
        # Our own single-threaded scaler, not `frame.to_ndarray()`'s: PyAV (>= 17) caches a thread-local one whose
        # swscale context starts a pool of slice threads, and a DataLoader worker forked after the parent scaled a
        # frame inherits that context without its threads and waits on them forever (seen with PyAV 18.1.1). One
        # thread also keeps a decode worker on the one core it is counted for.
        reformatter = VideoReformatter()
        try:
            if seek:
                _seek_before(container, stream, window.lo)
            for frame in container.decode(stream):
                pts = frame.pts
                if first and seek and pts is not None and pts > window.lo:
                    raise _SeekOvershoot
                first = False
                if not window.contains(pts):
                    if window.past(pts):
                        break
                    continue
                size = size or (frame.width, frame.height)
                if i == wanted[w]:
                    seconds = (pts - origin) * time_base if pts is not None else (start_sec or 0) + i / fps
                    yield i, orient(_rgb(frame, size, reformatter), _display_matrix(frame)), round(seconds, 6)
                    w += 1
                    if w == len(wanted):
                        break
                i += 1
        except av.error.FFmpegError as err:
            raise ClipReadError(f"corrupt stream in {path} after frame {i}: {err}") from err
