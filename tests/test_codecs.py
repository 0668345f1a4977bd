"""Codecs: TAE variants and their weight files, the diffusers wrapper, the pixel fallback, specs and fallbacks."""

from __future__ import annotations

import logging
import math
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import compressa_hf.codecs as codecs
from compressa_hf.codecs import (
    DiffusersTinyCodec,
    PixelCodec,
    TinyAutoencoder,
    load_codec,
    load_default_codec,
    load_tae,
    parse_codec_spec,
)
from compressa_hf.codecs.autoencoder_tiny import hub_unreachable
from compressa_hf.codecs.base import latents_to_uint8, uint8_to_latents
from compressa_hf.codecs.tae import VARIANTS, detect_variant, read_state_dict

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TAEF2_DIR = SHARED / "weights" / "taef2"
ARID6_TRAIN = SHARED / "data" / "arid6" / "train"

needs_taef2 = pytest.mark.skipif(not TAEF2_DIR.is_dir(), reason=f"no TAEF2 weights at {TAEF2_DIR}")
needs_arid6 = pytest.mark.skipif(not ARID6_TRAIN.is_dir(), reason=f"no arid6 clips at {ARID6_TRAIN}")

# A 2-level AutoencoderTiny: downscale 2, a few thousand parameters.
TINY_DIFFUSERS_CONFIG = {
    "encoder_block_out_channels": (8, 8),
    "decoder_block_out_channels": (8, 8),
    "num_encoder_blocks": (1, 1),
    "num_decoder_blocks": (1, 1),
    "latent_channels": 4,
}
NO_SUCH_HUB_ID = "compressa-hf-tests/no-such-vae"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / (a.float() - b.float()).pow(2).mean().item())


def save_tae(codec: TinyAutoencoder, directory: Path, name: str, suffix: str = ".pth") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for part in ("encoder", "decoder"):
        sd = {k: v.contiguous() for k, v in getattr(codec, part).state_dict().items()}
        path = directory / f"{name}_{part}{suffix}"
        save_file(sd, str(path)) if suffix == ".safetensors" else torch.save(sd, path)
    return directory


def random_tae(variant: str, seed: int = 0) -> TinyAutoencoder:
    torch.manual_seed(seed)
    return TinyAutoencoder(variant)


@pytest.fixture
def offline_hub(monkeypatch):
    """No Hub in the default test run: the Hub client is offline and the default codec is a Hub id nobody caches."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(codecs, "DEFAULT_CODEC", f"diffusers:{NO_SUCH_HUB_ID}")


# ---------------------------------------------------------------- TAE


@pytest.mark.parametrize(("variant", "suffix"), [("taesd", ".pth"), ("taef1", ".safetensors"), ("taef2", ".pth")])
def test_tae_state_dict_round_trip_detects_variant(tmp_path, variant, suffix):
    original = random_tae(variant)
    loaded = load_tae(save_tae(original, tmp_path, f"my{variant}", suffix))

    assert loaded.variant == variant
    assert loaded.latent_channels == VARIANTS[variant].latent_channels
    assert loaded.codec_id == f"tae:my{variant}"  # the file name, which tells e.g. taesdxl from taesd
    assert str(tmp_path) in loaded.weights_source
    assert detect_variant(original.decoder.state_dict(), "decoder") == VARIANTS[variant]
    assert any(".pool." in k for k in loaded.encoder.state_dict()) == (variant == "taef2")
    x = torch.rand(2, 3, 32, 48)
    z = loaded.encode(x)
    assert z.shape == (2, *loaded.latent_shape(32, 48)) == (2, VARIANTS[variant].latent_channels, 4, 6)
    torch.testing.assert_close(z, original.encode(x))
    torch.testing.assert_close(loaded.decode(z), original.decode(z))
    assert not any(p.requires_grad for p in loaded.parameters())


def test_tae_prefers_safetensors_and_accepts_explicit_files(tmp_path):
    save_tae(random_tae("taesd", seed=0), tmp_path, "taesd", ".pth")
    save_tae(random_tae("taesd", seed=1), tmp_path, "taesd", ".safetensors")
    x = torch.rand(1, 3, 16, 16)
    from_dir = load_tae(tmp_path)
    assert "taesd_encoder.safetensors" in from_dir.weights_source
    torch.testing.assert_close(from_dir.encode(x), random_tae("taesd", seed=1).encode(x))

    from_file = load_tae(tmp_path / "taesd_encoder.pth")  # the decoder is found beside it
    torch.testing.assert_close(from_file.encode(x), random_tae("taesd", seed=0).encode(x))
    explicit = load_tae(tmp_path / "taesd_encoder.pth", decoder=tmp_path / "taesd_decoder.safetensors")
    assert explicit.weights_source.endswith("taesd_decoder.safetensors")


def test_tae_refuses_mismatched_or_foreign_weights(tmp_path):
    save_tae(random_tae("taesd"), tmp_path / "a", "x")
    save_tae(random_tae("taef2"), tmp_path / "b", "y")
    with pytest.raises(ValueError, match="pass a matching pair"):
        load_tae(tmp_path / "a" / "x_encoder.pth", decoder=tmp_path / "b" / "y_decoder.pth")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "z_encoder.pth")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "z_decoder.pth")
    with pytest.raises(ValueError, match="not a TAE encoder state dict"):
        load_tae(tmp_path / "z_encoder.pth")
    with pytest.raises(FileNotFoundError):
        load_tae(tmp_path / "missing")


class _OpensAFileWhenUnpickled:
    """A stand-in for a malicious checkpoint: unpickling it calls `open(marker, "w")`."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pth_loading_never_runs_pickled_code(tmp_path):
    marker = tmp_path / "code_ran"
    torch.save(_OpensAFileWhenUnpickled(str(marker)), tmp_path / "evil_encoder.pth")
    torch.save(random_tae("taesd").decoder.state_dict(), tmp_path / "evil_decoder.pth")

    with pytest.raises(pickle.UnpicklingError):
        load_tae(tmp_path)
    assert not marker.exists()
    # The payload is live: a plain unpickler does run it, so the refusal above is what kept it from running.
    torch.load(tmp_path / "evil_encoder.pth", weights_only=False)
    assert marker.exists()

    torch.save([torch.zeros(1)], tmp_path / "list.pth")  # allowed by weights_only, but not a state dict
    with pytest.raises(TypeError, match="state dict of tensors"):
        read_state_dict(tmp_path / "list.pth")


def test_tae_gradients_reach_latents_through_midblock_groupnorm():
    codec = random_tae("taef2")
    z = torch.randn(2, 32, 4, 4, requires_grad=True)
    codec.decode(z).mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0 and torch.isfinite(z.grad).all()
    assert all(p.grad is None for p in codec.parameters())


# ---------------------------------------------------------------- TAEF2 on real arid6 frames


@pytest.fixture(scope="module")
def arid6_frames() -> torch.Tensor:
    """8 real frames (2 classes x 4), resized and centre-cropped to 112x112, in [0, 1]."""
    if not ARID6_TRAIN.is_dir():
        pytest.skip(f"no arid6 clips at {ARID6_TRAIN}")
    from compressa_hf.clips import resize_crop
    from compressa_hf.decode import read_frames

    clips = [sorted((ARID6_TRAIN / cls).glob("*.mp4"))[0] for cls in ("Walk", "Jump")]
    frames = np.concatenate([np.stack([f for _, f, _ in read_frames(str(p), [0, 8, 16, 24])]) for p in clips])
    return torch.from_numpy(resize_crop(frames, 112)).permute(0, 3, 1, 2).float().div(255)


@pytest.fixture(scope="module")
def taef2() -> TinyAutoencoder:
    if not TAEF2_DIR.is_dir():
        pytest.skip(f"no TAEF2 weights at {TAEF2_DIR}")
    return load_tae(TAEF2_DIR)


@pytest.mark.real_data
@needs_taef2
@needs_arid6
def test_taef2_reconstructs_real_frames(taef2, arid6_frames):
    assert (taef2.codec_id, taef2.variant, taef2.latent_channels) == ("tae:taef2", "taef2", 32)
    assert str(TAEF2_DIR.resolve()) in taef2.weights_source
    z = taef2.encode(arid6_frames, batch_size=3)
    assert z.shape == (8, 32, 14, 14) and z.dtype == torch.float32

    direct = psnr(taef2.decode(z), arid6_frames)
    stored = psnr(taef2.decode(uint8_to_latents(latents_to_uint8(z))), arid6_frames)
    assert direct >= 25 and stored >= 25, (direct, stored)
    assert stored > direct - 1.0  # TAESD's 8-bit storage costs ~0.1 dB
    # TAESD takes [0, 1] directly; the [-1, 1] convention (diffusers' outside view) reconstructs far worse.
    shifted = psnr(taef2.decode(taef2.encode(arid6_frames * 2 - 1)) * 2 - 1, arid6_frames * 2 - 1)
    assert direct > shifted + 10, (direct, shifted)


@pytest.mark.real_data
@needs_taef2
@needs_arid6
def test_taef2_gradients_and_bf16(taef2, arid6_frames):
    z = taef2.encode(arid6_frames[:2]).requires_grad_(True)
    loss = (taef2.decode(z) - arid6_frames[:2]).pow(2).mean()
    loss.backward()
    assert z.grad.abs().sum() > 0 and torch.isfinite(z.grad).all()

    bf16 = load_tae(TAEF2_DIR, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    z16, z32 = bf16.encode(arid6_frames[:4]), taef2.encode(arid6_frames[:4])
    assert z16.dtype == torch.float32  # the interface hands back float32 whatever the compute dtype
    assert (z16 - z32).abs().max() < 0.5 and (z16 - z32).abs().mean() < 0.05
    assert psnr(bf16.decode(z16), taef2.decode(z16)) > 35
    assert psnr(bf16.decode(z16), arid6_frames[:4]) >= 25


# ---------------------------------------------------------------- diffusers AutoencoderTiny


def test_diffusers_tiny_codec_shapes_and_convention():
    codec = DiffusersTinyCodec.from_config(TINY_DIFFUSERS_CONFIG)
    assert (codec.downscale, codec.latent_channels) == (2, 4)
    x = torch.rand(3, 3, 16, 24)
    z = codec.encode(x)
    assert z.shape == (3, *codec.latent_shape(16, 24)) == (3, 4, 8, 12)
    y = codec.decode(z)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    # The wrapper feeds TAESD's own layers [0, 1] images and hands back their [0, 1] output, undoing diffusers' shift.
    with torch.no_grad():
        torch.testing.assert_close(z, codec.vae.encoder.layers(x))
        raw = codec.vae.decoder.layers(torch.tanh(z / 3) * 3)
    torch.testing.assert_close(y, raw.clamp(0, 1))

    three_level = DiffusersTinyCodec.from_config({**TINY_DIFFUSERS_CONFIG, "encoder_block_out_channels": (8, 8, 8),
                                                  "decoder_block_out_channels": (8, 8, 8),
                                                  "num_encoder_blocks": (1, 1, 1), "num_decoder_blocks": (1, 1, 1)})  # fmt: skip
    assert three_level.downscale == 4 and three_level.encode(x).shape == (3, 4, 4, 6)
    with pytest.raises(ValueError, match="same number of levels"):
        DiffusersTinyCodec.from_config({**TINY_DIFFUSERS_CONFIG, "num_decoder_blocks": (1, 1, 1),
                                        "decoder_block_out_channels": (8, 8, 8)})  # fmt: skip


def test_diffusers_codec_from_saved_folder(tmp_path):
    codec = DiffusersTinyCodec.from_config(TINY_DIFFUSERS_CONFIG)
    codec.vae.save_pretrained(tmp_path / "vae")
    loaded = load_codec(str(tmp_path / "vae"))
    assert isinstance(loaded, DiffusersTinyCodec) and loaded.codec_id == f"diffusers:{tmp_path / 'vae'}"
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(loaded.encode(x), codec.encode(x))


def test_hub_probe_fails_fast_without_network(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    start = time.monotonic()
    with pytest.raises(OSError, match="unreachable"):
        DiffusersTinyCodec.from_pretrained(NO_SUCH_HUB_ID)
    assert time.monotonic() - start < 10  # the Hub client's own retry loop takes ~25 s

    # A lookup that hangs past the HTTP timeout (as a stuck DNS resolver does) is cut off all the same.
    class HangingSession:
        def head(self, *args, **kwargs):
            time.sleep(5)

    monkeypatch.setattr("huggingface_hub.utils.get_session", HangingSession)
    start = time.monotonic()
    assert "did not answer" in hub_unreachable(timeout=0.2)
    assert time.monotonic() - start < 2


# ---------------------------------------------------------------- pixel fallback


def test_pixel_codec_shapes_and_smooth_reconstruction():
    codec = PixelCodec()
    assert (codec.codec_id, codec.latent_channels, codec.downscale) == ("pixel:avgpool8", 3, 8)
    assert "no learned weights" in codec.weights_source and "not a learned VAE" in PixelCodec.__doc__
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 96), indexing="ij")
    smooth = torch.stack([0.5 + 0.3 * torch.sin(3 * xx), 0.5 + 0.3 * torch.cos(2 * yy), (xx + yy) / 2])[None]
    z = codec.encode(smooth)
    assert z.shape == (1, 3, 8, 12) and -3 <= z.min() and z.max() <= 3  # the raw-latent range of scale_latents
    assert psnr(codec.decode(z), smooth) > 30
    assert psnr(codec.decode(uint8_to_latents(latents_to_uint8(z))), smooth) > 30
    noise = torch.rand(1, 3, 64, 96)
    assert psnr(codec.decode(codec.encode(noise)), noise) < 15  # and it is honest about detail: it has none

    z = z.clone().requires_grad_(True)
    codec.decode(z).sum().backward()
    assert z.grad.abs().sum() > 0
    bf16 = PixelCodec().to(dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16 and psnr(bf16.decode(bf16.encode(smooth)), smooth) > 30


# ---------------------------------------------------------------- specs and the default codec


@pytest.fixture
def spec_dirs(tmp_path):
    tae_dir = save_tae(random_tae("taesd"), tmp_path / "tae", "taesd")
    diffusers_dir = tmp_path / "vae"
    diffusers_dir.mkdir()
    (diffusers_dir / "config.json").write_text("{}")
    return tae_dir, diffusers_dir


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("pixel", ("pixel", "")),
        ("pixel:avgpool8", ("pixel", "avgpool8")),
        ("tae:taef2", ("tae", "taef2")),
        ("tae:/weights/taef2", ("tae", "/weights/taef2")),
        ("diffusers:madebyollin/taesd", ("diffusers", "madebyollin/taesd")),
        ("madebyollin/taesd", ("diffusers", "madebyollin/taesd")),
        ("{tae}", ("tae", "{tae}")),
        ("{tae}/taesd_encoder.pth", ("tae", "{tae}/taesd_encoder.pth")),
        ("{vae}", ("diffusers", "{vae}")),
    ],
)
def test_parse_codec_spec(spec_dirs, spec, expected):
    tae_dir, diffusers_dir = spec_dirs
    fill = {"tae": tae_dir, "vae": diffusers_dir}
    assert parse_codec_spec(spec.format(**fill)) == tuple(e.format(**fill) for e in expected)


@pytest.mark.parametrize("spec", ["nonsense", "tae/x/y", "{empty}"])
def test_parse_codec_spec_rejects(tmp_path, spec):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="codec"):
        parse_codec_spec(spec.format(empty=tmp_path / "empty"))


def test_load_codec_round_trips_codec_id(spec_dirs, monkeypatch, tmp_path):
    tae_dir, _ = spec_dirs
    monkeypatch.setenv(codecs.TAE_DIR_ENV, str(tae_dir))
    by_path = load_codec(f"tae:{tae_dir}")
    by_name = load_codec(by_path.codec_id)  # "tae:taesd", found through $COMPRESSA_TAE_DIR
    assert by_path.codec_id == by_name.codec_id == "tae:taesd"
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(by_name.encode(x), by_path.encode(x))
    assert isinstance(load_codec(PixelCodec.codec_id), PixelCodec)
    assert load_codec("pixel", dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(FileNotFoundError, match=codecs.TAE_DIR_ENV):
        load_codec("tae:taef9")
    with pytest.raises(ValueError, match="pixel:avgpool8"):
        load_codec("pixel:avgpool4")


def test_default_codec_falls_back_to_local_tae(offline_hub, monkeypatch, tmp_path, caplog):
    tae_dir = save_tae(random_tae("taef2"), tmp_path / "taef2", "taef2")
    monkeypatch.setenv(codecs.TAE_DIR_ENV, str(tae_dir))
    caplog.set_level(logging.WARNING, logger="compressa_hf.codecs")
    start = time.monotonic()
    codec = load_default_codec()
    elapsed = time.monotonic() - start

    assert isinstance(codec, TinyAutoencoder) and codec.codec_id == "tae:taef2"
    assert str(tae_dir) in codec.weights_source
    (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"could not load the default codec diffusers:{NO_SUCH_HUB_ID} (OSError" in message
    assert f"using tae:taef2 (32 latent channels) from {tae_dir}" in message
    assert elapsed < 15, f"offline fallback took {elapsed:.1f} s"


def test_default_codec_is_never_the_pixel_stand_in(offline_hub, monkeypatch, tmp_path):
    monkeypatch.setenv(codecs.TAE_DIR_ENV, str(tmp_path / "nowhere"))
    monkeypatch.setattr(codecs, "PACKAGED_TAE_DIR", tmp_path / "broken-install")
    with pytest.raises(FileNotFoundError, match=r"no usable taef2 weights.*--codec pixel"):
        load_default_codec()


def test_packaged_taef2_is_the_offline_default_and_tae_taef2_finds_it(offline_hub, monkeypatch, caplog):
    """A fresh install with no Hub and no ../shared: the packaged MIT weights, and the log says so."""
    monkeypatch.delenv(codecs.TAE_DIR_ENV, raising=False)
    caplog.set_level(logging.WARNING, logger="compressa_hf.codecs")
    codec = load_default_codec(dtype=torch.bfloat16)
    assert isinstance(codec, TinyAutoencoder) and codec.codec_id == "tae:taef2" and codec.dtype == torch.bfloat16
    assert str(codecs.PACKAGED_TAE_DIR / "taef2") in codec.weights_source
    (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"could not load the default codec diffusers:{NO_SUCH_HUB_ID}" in message
    assert "using tae:taef2 (32 latent channels) from the weights packaged with compressa_hf" in message
    assert (codecs.PACKAGED_TAE_DIR / "taef2" / "LICENSE").read_text().startswith("MIT License")
    assert load_codec("tae:taef2").weights_source == codec.weights_source


@pytest.mark.real_data
@needs_taef2
def test_packaged_taef2_is_the_shared_one():
    packaged = load_codec("tae:taef2")
    shared = load_tae(TAEF2_DIR)
    for a, b in zip(packaged.state_dict().values(), shared.state_dict().values()):
        assert torch.equal(a, b)
