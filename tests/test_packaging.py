"""What a wheel install (no checkout, no ../shared, no Hub) finds: the packaged TAEF2 weights and the chat template."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

PROBE = """
import json, compressa_hf
from compressa_hf.qwen.chat_templates import load_chat_template
from compressa_hf.codecs import load_codec, load_default_codec
codec = load_default_codec()
print(json.dumps({"package": compressa_hf.__file__, "codec": codec.codec_id, "weights": codec.weights_source,
                  "template": load_chat_template()}))
"""


@pytest.mark.slow
def test_a_wheel_install_finds_its_weights_and_chat_template(tmp_path):
    wheels, site, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Built from a copy: setuptools builds in the source tree, and a stale build/ there would leak into later wheels.
    checkout = tmp_path / "checkout"
    shutil.copytree(
        REPO,
        checkout,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "outputs", "*.egg-info", "results", "__pycache__", ".*cache"
        ),
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(checkout)], check=True)
    (wheel,) = wheels.glob("compressa_hf-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)

    env = {k: v for k, v in os.environ.items() if k not in ("COMPRESSA_TAE_DIR", "PYTHONPATH")}
    env |= {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}  # the installed copy first; no Hub
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["package"].startswith(str(site))
    assert found["codec"] == "tae:taef2" and str(site) in found["weights"]
    assert "<|im_start|>" in found["template"]
    assert "packaged with compressa_hf" in out.stderr  # the log says which codec stood in for the paper's
