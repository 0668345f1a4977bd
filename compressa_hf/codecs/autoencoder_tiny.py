"""diffusers' `AutoencoderTiny` (TAESD and friends in diffusers format) as a `LatentCodec`.

`madebyollin/taesd` on the Hub is the paper's VAE. diffusers shifts images to [-1, 1] around TAESD, which works in
[0, 1]: `EncoderTiny.forward` maps its input with `(x + 1) / 2` and `DecoderTiny.forward` returns `2 * y - 1`
(diffusers/models/autoencoders/vae.py). This wrapper undoes both so that our interface stays [0, 1] in and out.
`AutoencoderTiny.encode` returns raw latents (its `scaling_factor` is 1.0 and is not applied), which is what we
store.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from compressa_hf.codecs.base import LatentCodec

if TYPE_CHECKING:
    from diffusers import AutoencoderTiny

logger = logging.getLogger(__name__)

DEFAULT_HUB_ID = "madebyollin/taesd"
HUB_PROBE_TIMEOUT_S = 3.0


class DiffusersTinyCodec(LatentCodec):
    """A frozen diffusers `AutoencoderTiny` used frame by frame: [0, 1] RGB <-> raw latents."""

    def __init__(self, vae: AutoencoderTiny, codec_id: str, weights_source: str, revision: str | None = None):
        super().__init__()
        cfg = vae.config
        self.vae = vae
        self.codec_id = codec_id
        self.weights_source = weights_source
        #: The Hub commit the weights came from (None for a local folder or a random init); cards record it.
        self.revision = revision
        self.latent_channels = int(cfg.latent_channels)
        self.downscale = downscale_of(cfg)
        # EncoderTiny skips its [-1, 1] -> [0, 1] shift when gradient checkpointing is on, which would silently
        # change the input convention; the codec is frozen, so checkpointing buys nothing here.
        vae.disable_gradient_checkpointing()
        self.freeze()

    @classmethod
    def from_config(cls, config: dict[str, Any], seed: int = 0) -> DiffusersTinyCodec:
        """A randomly initialised `AutoencoderTiny` from a config dict (tests use a 2-level one)."""
        from diffusers import AutoencoderTiny

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vae = AutoencoderTiny(**config)
        return cls(vae, codec_id="diffusers:config", weights_source="random-init")

    @classmethod
    def from_pretrained(
        cls,
        hub_id_or_folder: str | os.PathLike = DEFAULT_HUB_ID,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        probe_timeout: float = HUB_PROBE_TIMEOUT_S,
        revision: str | None = None,
    ) -> DiffusersTinyCodec:
        """Load from a local diffusers folder, the local Hub cache, or the Hub (probed first, so offline fails fast).

        Left alone, `from_pretrained` on a machine without network retries for ~25 s before failing. So a Hub id
        is tried from the cache first, then the Hub endpoint is probed once with `probe_timeout`, and only a
        reachable Hub gets the real download. `revision` (a branch, tag or commit) pins the Hub weights; the commit
        actually loaded is kept in `.revision` so that a card can pin it for its readers.
        """
        import warnings

        from diffusers import AutoencoderTiny

        # diffusers passes huggingface_hub an argument it deprecated; the warning says nothing to our users.
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*", category=UserWarning)
        folder = Path(hub_id_or_folder).expanduser()
        if folder.is_dir():
            vae = AutoencoderTiny.from_pretrained(str(folder), torch_dtype=dtype)
            codec = cls(vae, codec_id=f"diffusers:{hub_id_or_folder}", weights_source=str(folder.resolve()))
            return codec.to(device=device)

        hub_id = str(hub_id_or_folder)
        at = f"{hub_id}@{revision}" if revision else hub_id
        try:
            vae = AutoencoderTiny.from_pretrained(hub_id, torch_dtype=dtype, local_files_only=True, revision=revision)
        except OSError as cache_err:
            from huggingface_hub import constants

            if constants.HF_HUB_OFFLINE:
                raise OSError(f"{at} is not in the local Hub cache and HF_HUB_OFFLINE is set") from cache_err
            if (problem := hub_unreachable(probe_timeout)) is not None:
                raise OSError(f"cannot download {at}: {problem}") from cache_err
            vae = AutoencoderTiny.from_pretrained(hub_id, torch_dtype=dtype, revision=revision)
        commit = cached_commit(hub_id, revision)
        return cls(vae, f"diffusers:{hub_id}", f"hf://{hub_id}@{commit or revision or 'main'}", commit).to(
            device=device
        )

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(x.mul(2).sub(1)).latents

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z).sample.add(1).div(2)


def cached_commit(hub_id: str, revision: str | None = None) -> str | None:
    """The commit hash of the snapshot the local Hub cache holds for `hub_id` at `revision` (None if unknown)."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(hub_id, "config.json", revision=revision)
    if not isinstance(path, str):
        return None
    parts = Path(path).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None


def downscale_of(config: Any) -> int:
    """Pixels per latent from the config: one stride-2 conv per encoder level after the first."""
    down = 2 ** (len(config.num_encoder_blocks) - 1)
    up = int(config.upsampling_scaling_factor) ** (len(config.num_decoder_blocks) - 1)
    if down != up:
        raise ValueError(
            f"AutoencoderTiny config downsamples by {down} but upsamples by {up}: give num_encoder_blocks and "
            f"num_decoder_blocks the same number of levels (got {config.num_encoder_blocks}, {config.num_decoder_blocks})"
        )
    return down


def hub_unreachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """None when the Hub endpoint answers one HEAD request within `timeout` s, else why not (one line).

    One request through huggingface_hub's own session (its proxies and endpoint), without its retry loop; run in a
    daemon thread because a stuck DNS lookup is not bounded by the HTTP timeout.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    result: list[str | None] = []

    def probe() -> None:
        try:
            status = get_session().head(constants.ENDPOINT, timeout=timeout).status_code
            result.append(None if status < 500 else f"{constants.ENDPOINT} answered HTTP {status}")
        except Exception as err:  # any transport error means "not reachable"; the caller only needs the reason
            result.append(f"{constants.ENDPOINT} unreachable ({type(err).__name__}: {str(err).splitlines()[0]})")

    thread = threading.Thread(target=probe, daemon=True, name="hub-probe")
    thread.start()
    thread.join(timeout + 1.0)
    return result[0] if result else f"{constants.ENDPOINT} did not answer within {timeout:.0f} s"
