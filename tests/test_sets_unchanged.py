"""Moving the distillation pipeline out of `compressa distill` and running VideoCompressa through the method registry
changed no byte of any set: every method (and soft labels, uint4, a fixed K) writes the files the code before the move
wrote, compared by sha256 with `fixtures/sets_before_refactor.json` (made by that code on this test's variants).

Float results can differ in their last bits between CPUs whose kernels differ, so the comparison first checks a
canary: a small seeded network's forward and backward pass must give the bits recorded beside the sets. On a machine
where it does not, the test skips, saying so, rather than blaming the code for the CPU.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from compressa_hf.cli import main as cli
from compressa_hf.distillation.methods import METHODS, get_method
from tests.test_distill_method import COMMON, OPTIONS, VIDEOCOMPRESSA_FLAGS

FIXTURE = Path(__file__).parent / "fixtures" / "sets_before_refactor.json"
#: Besides every method at the test source's 1 %: the options that change how a set is paid for.
EXTRA = {
    "videocompressa_uint4": ("videocompressa", ["--dtype", "uint4"]),
    "videocompressa_soft": ("videocompressa", ["--soft_labels", "true", "--teacher_epochs", "1"]),
    "uniform_soft": ("uniform", ["--soft_labels", "true", "--teacher_epochs", "1"]),
    "dm_k1": ("dm", ["--frames_per_video", "1"]),
    "videocompressa_k1": ("videocompressa", ["--frames_per_video", "1"]),
}
VARIANTS = {m: (m, []) for m in METHODS if m != "full"} | EXTRA


def canary() -> str:
    """sha256 of a seeded conv net's output and gradients (the kernels every method's networks use)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 16, 16, generator=gen)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.GroupNorm(4, 8), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 5),
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.1)
    out = net(x)
    out.square().sum().backward()
    h = hashlib.sha256(out.detach().numpy().tobytes())
    for p in net.parameters():
        h.update(p.grad.numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def reference():
    data = json.loads(FIXTURE.read_text())
    if canary() != data["canary"]:
        pytest.skip(
            "this CPU's float kernels give other bits than the machine the reference sets were made on (the canary "
            "differs), so byte-identity cannot be checked here"
        )
    return data["sets"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("sets") / "cache")


def _argv(method: str, extra: list[str], out: Path, cache_dir: str, tmp: Path) -> list[str]:
    """The command the reference was made with, down to the folder names the card records (their last component)."""
    argv = ["distill", *COMMON, "--cache_dir", cache_dir, "--method", method, "--work_dir", str(tmp / "w")]
    if get_method(method).Options.__name__ == "VideoCompressaConfig":
        argv += VIDEOCOMPRESSA_FLAGS
    if method in OPTIONS:
        path = tmp / f"methods_{method}.json"
        path.write_text(json.dumps({method: OPTIONS[method]}))
        argv += ["--method_options", str(path)]
    return argv + extra + ["--output", str(out)]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_set_is_byte_identical_to_the_one_written_before_the_move(variant, reference, cache_dir, tmp_path):
    method, extra = VARIANTS[variant]
    out = tmp_path / variant
    assert cli(_argv(method, extra, out, cache_dir, tmp_path)) == 0
    files = {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }
    assert files == reference[variant]
