"""The exceptions users catch, at the bottom of the import graph so that every stage can raise them."""

from __future__ import annotations


class SourceError(ValueError):
    """Raised for malformed dataset layouts: the message names the file or key and the way out."""


class ClipReadError(RuntimeError):
    """Raised when one clip cannot be decoded; the caller skips the clip and reports it, the run goes on."""
