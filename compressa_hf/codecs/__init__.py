"""Latent codecs by name: the frozen tiny VAEs that map frames to latent keyframes, and how to find their weights.

A codec spec is what `--codec` takes and what a dataset card records (`codec.codec_id`):

    pixel | pixel:avgpool8              8x8 average pooling, no weights (not a learned VAE)
    tae:<dir>                           madebyollin TAE from a directory with <name>_encoder/_decoder.{safetensors,pth}
    tae:<file>_encoder.pth              ... or from the encoder file (the decoder is the file beside it)
    tae:<name>                          e.g. tae:taef2, looked up in `offline_codec_dirs()` and their sibling <name>/
    diffusers:<hub id | folder>         diffusers AutoencoderTiny, e.g. diffusers:madebyollin/taesd
    <folder>                            a diffusers folder if it has config.json, a TAE folder if it has *_encoder.*
    <owner>/<name>                      a Hub id: diffusers AutoencoderTiny

`load_codec(codec.codec_id)` rebuilds a loaded codec. `load_default_codec` is what the scripts use when no codec is
given: the paper's VAE when it can be had, else local TAEF2 weights, else the pixel fallback, with a warning.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch

from compressa_hf.codecs.autoencoder_tiny import DEFAULT_HUB_ID, DiffusersTinyCodec
from compressa_hf.codecs.base import LatentCodec
from compressa_hf.codecs.pixel import PixelCodec
from compressa_hf.codecs.tae import TinyAutoencoder, load_tae

logger = logging.getLogger(__name__)

# The paper's VAE (TAESD for SD 1.x), where the Hub is reachable or the model is in the local Hub cache.
DEFAULT_CODEC = f"diffusers:{DEFAULT_HUB_ID}"

TAE_DIR_ENV = "COMPRESSA_TAE_DIR"
_REPO_ROOT = Path(__file__).resolve().parents[2]
# Where TAEF2 weights sit on machines without the Hub, after $COMPRESSA_TAE_DIR: `../shared` beside the current
# directory (relative, so it follows the working directory) and beside the checkout.
OFFLINE_CODEC_DIRS: tuple[Path, ...] = (
    Path("..") / "shared" / "weights" / "taef2",
    _REPO_ROOT.parent / "shared" / "weights" / "taef2",
)

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_TAE_NAME = re.compile(r"[\w.-]+")
_TAE_FILE = re.compile(r".+_encoder\.(safetensors|pth)")


def offline_codec_dirs() -> list[Path]:
    """$COMPRESSA_TAE_DIR (read now, not at import), then `OFFLINE_CODEC_DIRS`; duplicates dropped."""
    env = os.environ.get(TAE_DIR_ENV)
    dirs, seen = [], set()
    for d in ([Path(env).expanduser()] if env else []) + list(OFFLINE_CODEC_DIRS):
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            dirs.append(d)
    return dirs


def _has_tae_files(directory: Path, name: str = r".+") -> bool:
    return directory.is_dir() and any(
        re.fullmatch(rf"{name}_encoder\.(safetensors|pth)", p.name) for p in directory.iterdir()
    )


def resolve_tae(location: str) -> Path:
    """A TAE directory or encoder file for `tae:<location>`: an existing path, or a variant name to look up."""
    path = Path(location).expanduser()
    if path.exists():
        return path
    if not _TAE_NAME.fullmatch(location):
        raise FileNotFoundError(f"TAE weights not found at {location}")
    searched = []
    for d in offline_codec_dirs():
        for candidate in (d, d.parent / location):
            searched.append(str(candidate))
            if _has_tae_files(candidate, re.escape(location)):
                return candidate
    raise FileNotFoundError(
        f"no {location}_encoder.safetensors / .pth in {searched}; set {TAE_DIR_ENV} to the directory holding "
        f"it, or pass tae:/path/to/dir"
    )


def _load_tae(location: str, device, dtype) -> LatentCodec:
    if not location:
        raise ValueError(
            "the tae codec needs weights: tae:<dir>, tae:<name>_encoder.pth or tae:<name> (e.g. tae:taef2)"
        )
    return load_tae(resolve_tae(location), device=device, dtype=dtype)


def _load_diffusers(location: str, device, dtype) -> LatentCodec:
    return DiffusersTinyCodec.from_pretrained(location or DEFAULT_HUB_ID, device=device, dtype=dtype)


def _load_pixel(location: str, device, dtype) -> LatentCodec:
    if location not in ("", "avgpool8"):
        raise ValueError(f"unknown pixel codec {location!r}; the only one is pixel:avgpool8")
    return PixelCodec().to(device=device, dtype=dtype)


# Codec type -> loader(location, device, dtype); `location` is the part of the spec after "<type>:".
CODECS: dict[str, Callable[[str, str | torch.device, torch.dtype], LatentCodec]] = {
    "tae": _load_tae,
    "diffusers": _load_diffusers,
    "pixel": _load_pixel,
}


def parse_codec_spec(spec: str) -> tuple[str, str]:
    """`(codec type, location)` for a spec (grammar in the module docstring); touches only the local disk."""
    kind, sep, location = spec.partition(":")
    if kind in CODECS and (sep or not location):
        return kind, location
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return "diffusers", spec
        if _has_tae_files(path):
            return "tae", spec
        raise ValueError(
            f"codec folder {spec} has neither a diffusers config.json nor <name>_encoder.safetensors/.pth"
        )
    if path.is_file() and _TAE_FILE.fullmatch(path.name):
        return "tae", spec
    if _HUB_ID.fullmatch(spec):
        return "diffusers", spec
    raise ValueError(
        f"cannot read codec spec {spec!r}: expected one of {sorted(CODECS)} as '<type>:<location>' "
        f"(e.g. {DEFAULT_CODEC}, tae:taef2, pixel), an existing folder, or a Hub id owner/name"
    )


def load_codec(spec: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LatentCodec:
    """A frozen codec from a spec (a `codec_id`, optionally with its weights' location; see the module docstring)."""
    kind, location = parse_codec_spec(spec)
    return CODECS[kind](location, device, dtype)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def load_default_codec(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LatentCodec:
    """The paper's VAE (`DEFAULT_CODEC`), else TAEF2 from `offline_codec_dirs()`, else `PixelCodec`; warns on fallback.

    Offline this costs one failed cache lookup and one Hub probe of at most a few seconds, never the Hub client's
    retry loop.
    """
    try:
        return load_codec(DEFAULT_CODEC, device=device, dtype=dtype)
    except Exception as err:  # any failure here (no network, no diffusers, bad cache) has the same way out
        failure = f"could not load the default codec {DEFAULT_CODEC} ({_first_line(err)})"

    dirs = offline_codec_dirs()
    for d in dirs:
        if not _has_tae_files(d):
            continue
        try:
            codec = load_tae(d, device=device, dtype=dtype)
        except (OSError, ValueError, TypeError, RuntimeError) as err:
            failure += f"; could not load TAE weights from {d} ({_first_line(err)})"
            continue
        logger.warning("%s; using %s from %s instead", failure, codec.codec_id, d.resolve())
        return codec

    logger.warning(
        "%s; no TAE weights in %s (set %s); using %s instead, which is NOT a learned VAE (8x8 average pooling): "
        "results with it say nothing about the paper's codec",
        failure,
        [str(d) for d in dirs],
        TAE_DIR_ENV,
        PixelCodec.codec_id,
    )
    return PixelCodec().to(device=device, dtype=dtype)


__all__ = [
    "CODECS",
    "DEFAULT_CODEC",
    "OFFLINE_CODEC_DIRS",
    "TAE_DIR_ENV",
    "DiffusersTinyCodec",
    "LatentCodec",
    "PixelCodec",
    "TinyAutoencoder",
    "load_codec",
    "load_default_codec",
    "load_tae",
    "offline_codec_dirs",
    "parse_codec_spec",
    "resolve_tae",
]
