"""Progress bars that read well in a log file as well as on a terminal.

On a terminal, tqdm's bars are left as they are. When stderr is not a terminal (`compressa ... 2> run.log`, a batch
job, CI), tqdm would still redraw every bar ten times a second, move the cursor up for nested bars (`ESC[A` in the
file) and put a log line on the same line as a bar. `bars_for_log_files` sets tqdm's own defaults through its
`TQDM_*` environment variables (tqdm >= 4.66 reads them when it is imported, so this runs first: `compressa_hf.cli`):
one redraw per `interval_s`, every bar at position 0 (no cursor movement). `log_lines_between_bars` routes log
records through `tqdm.write`, which clears the bars before a record, so each record is a line of its own after the
cleared bar (`tr '\\r' '\\n' < run.log` puts every redraw on its own line too). A user's own `TQDM_*` settings win.
"""

from __future__ import annotations

import contextlib
import os
import sys


def bars_for_log_files(stream=None, interval_s: float = 30.0) -> bool:
    """Make tqdm's bars log-friendly when `stream` (default stderr) is not a terminal; True when it did."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return False
    os.environ.setdefault("TQDM_MININTERVAL", str(interval_s))
    os.environ.setdefault("TQDM_POSITION", "0")
    return True


def log_lines_between_bars():
    """A context in which log records are written between bars, not on a bar's line (`logging_redirect_tqdm`)."""
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm
    except ImportError:  # an old tqdm: records go out as they always did
        return contextlib.nullcontext()
    return logging_redirect_tqdm()
