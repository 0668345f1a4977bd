"""Latent codecs by name: the frozen tiny VAEs that map frames to latent keyframes, and how to find their weights.

A codec spec is what `--codec` takes and what a dataset card records (`codec.codec_id`):

    pixel | pixel:avgpool8              8x8 average pooling, no weights (not a learned VAE)
    tae:<dir>                           madebyollin TAE from a directory with <name>_encoder/_decoder.{safetensors,pth}
    tae:<file>_encoder.pth              ... or from the encoder file (the decoder is the file beside it)
    tae:<name>                          e.g. tae:taef2: $COMPRESSA_TAE_DIR (or its sibling <name>/), then the weights
                                        packaged with compressa_hf (`PACKAGED_TAE_DIR`: taef2, MIT)
    diffusers:<hub id | folder>         diffusers AutoencoderTiny, e.g. diffusers:madebyollin/taesd
    diffusers:<hub id>@<revision>       ... pinned to a Hub branch, tag or commit (what cards record)
    <folder>                            a diffusers folder if it has config.json, a TAE folder if it has *_encoder.*
    <owner>/<name>                      a Hub id: diffusers AutoencoderTiny
    resize:<stored>/<size>:<spec>       any of the above applied at <stored> px to <size> px frames: smaller latent
                                        frames, the frame side as a lever of the budget (`codecs.resized`)

`load_codec(codec.codec_id)` rebuilds a loaded codec. `load_default_codec` is what the scripts use when no codec is
given: the paper's VAE (`madebyollin/taesd`) where the Hub or its cache has it, else the packaged TAEF2, with a
warning that says which. The pixel codec (8x8 average pooling, not a learned VAE) is used only when asked for.
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
#: TAE weights shipped inside the package (one folder per variant, each with its LICENSE): the offline default.
PACKAGED_TAE_DIR = Path(__file__).resolve().parent / "weights"
#: The packaged variant `load_default_codec` falls back to.
OFFLINE_DEFAULT_TAE = "taef2"

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_TAE_NAME = re.compile(r"[\w.-]+")
_TAE_FILE = re.compile(r".+_encoder\.(safetensors|pth)")


def offline_codec_dirs() -> list[Path]:
    """Where `tae:<name>` is looked up: $COMPRESSA_TAE_DIR (read now, not at import), then `PACKAGED_TAE_DIR`."""
    env = os.environ.get(TAE_DIR_ENV)
    return ([Path(env).expanduser()] if env else []) + [PACKAGED_TAE_DIR]


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
        for candidate in (d, d.parent / location, d / location):
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
    hub_id, _, revision = (location or DEFAULT_HUB_ID).partition("@")  # `org/name@<commit>` pins the Hub weights
    return DiffusersTinyCodec.from_pretrained(hub_id, device=device, dtype=dtype, revision=revision or None)


def _load_resized(location: str, device, dtype) -> LatentCodec:
    from compressa_hf.codecs.resized import load_resized

    return load_resized(location, device, dtype)


def _load_pixel(location: str, device, dtype) -> LatentCodec:
    if location not in ("", "avgpool8"):
        raise ValueError(f"unknown pixel codec {location!r}; the only one is pixel:avgpool8")
    return PixelCodec().to(device=device, dtype=dtype)


# Codec type -> loader(location, device, dtype); `location` is the part of the spec after "<type>:".
CODECS: dict[str, Callable[[str, str | torch.device, torch.dtype], LatentCodec]] = {
    "tae": _load_tae,
    "diffusers": _load_diffusers,
    "pixel": _load_pixel,
    "resize": _load_resized,
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


def pinned_spec(codec_id: str, revision: str | None) -> str:
    """The spec that reloads exactly the weights a card names: `codec_id`, with `@revision` for Hub weights."""
    return (
        f"{codec_id}@{revision}"
        if revision and codec_id.startswith("diffusers:") and "@" not in codec_id
        else codec_id
    )


def load_codec(spec: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LatentCodec:
    """A frozen codec from a spec (a `codec_id`, optionally with its weights' location; see the module docstring)."""
    kind, location = parse_codec_spec(spec)
    return CODECS[kind](location, device, dtype)


def portability_problem(codec_id: str) -> str | None:
    """Why a reader on another machine could not load `codec_id` from a card, or None when any install can.

    Portable: `pixel`, a TAE variant packaged with compressa_hf (`tae:taef2`), a diffusers Hub id. Not portable: a
    TAE name with no packaged weights (readers need them under $COMPRESSA_TAE_DIR) or a diffusers model folder.
    """
    kind, _, location = codec_id.partition(":")
    if kind == "pixel":
        return None
    if kind == "resize":  # as portable as the codec it wraps
        return portability_problem(location.partition(":")[2])
    if kind == "tae":
        if _TAE_NAME.fullmatch(location) and _has_tae_files(PACKAGED_TAE_DIR / location, re.escape(location)):
            return None
        return (
            f"codec {codec_id} is not packaged with compressa_hf (only {sorted(packaged_tae_names())} are): readers "
            f"must get its weights themselves and point {TAE_DIR_ENV} at them"
        )
    if kind == "diffusers":
        hub_id = location.split("@")[0]
        if _HUB_ID.fullmatch(hub_id) and not Path(hub_id).exists():
            return None
        return f"codec {codec_id} is a local model folder, not a Hub id: upload the model and distil with its Hub id"
    return f"codec {codec_id!r} is not a registry codec ({sorted(CODECS)})"


def packaged_tae_names() -> list[str]:
    """TAE variants whose weights ship with compressa_hf."""
    if not PACKAGED_TAE_DIR.is_dir():
        return []
    return sorted(d.name for d in PACKAGED_TAE_DIR.iterdir() if _has_tae_files(d, re.escape(d.name)))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def load_default_codec(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LatentCodec:
    """The paper's VAE (`DEFAULT_CODEC`), else the packaged TAEF2 (`tae:taef2`); warns, naming both, on fallback.

    Offline this costs one failed cache lookup and one Hub probe of at most a few seconds, never the Hub client's
    retry loop. The packaged TAEF2 (the FLUX.2 latent space, 32 channels) is a different latent space from TAESD's
    4 channels, so the same `--ratio` buys fewer frames with it; the warning says so. Raises `FileNotFoundError`
    when neither can be loaded (a broken install), rather than silently using a codec that is not a learned VAE.
    """
    try:
        return load_codec(DEFAULT_CODEC, device=device, dtype=dtype)
    except Exception as err:  # any failure here (no network, no diffusers, bad cache) has the same way out
        failure = f"could not load the default codec {DEFAULT_CODEC} ({_first_line(err)})"
    try:
        codec = load_codec(f"tae:{OFFLINE_DEFAULT_TAE}", device=device, dtype=dtype)
    except (OSError, ValueError, TypeError, RuntimeError) as err:
        raise FileNotFoundError(
            f"{failure}; and no usable {OFFLINE_DEFAULT_TAE} weights ({_first_line(err)}). Reinstall compressa_hf "
            f"(it ships them under {PACKAGED_TAE_DIR}), set {TAE_DIR_ENV}, or pass --codec explicitly "
            "(--codec pixel for a weightless 8x8 average-pooling stand-in)"
        ) from err
    packaged = str(PACKAGED_TAE_DIR) in codec.weights_source
    logger.warning(
        "%s; using %s (%s latent channels) from %s instead",
        failure,
        codec.codec_id,
        codec.latent_channels,
        "the weights packaged with compressa_hf (MIT, madebyollin)" if packaged else codec.weights_source,
    )
    return codec


__all__ = [
    "CODECS",
    "DEFAULT_CODEC",
    "OFFLINE_DEFAULT_TAE",
    "PACKAGED_TAE_DIR",
    "TAE_DIR_ENV",
    "DiffusersTinyCodec",
    "LatentCodec",
    "PixelCodec",
    "TinyAutoencoder",
    "load_codec",
    "load_default_codec",
    "load_tae",
    "offline_codec_dirs",
    "packaged_tae_names",
    "pinned_spec",
    "portability_problem",
    "parse_codec_spec",
    "resolve_tae",
]
