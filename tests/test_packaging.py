"""What a wheel install (no checkout, no ../shared, no Hub) finds: the packaged TAEF2 weights and the chat template."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO

PROBE = """
import json, warnings, compressa_hf
from compressa_hf.qwen.chat_templates import load_chat_template
from compressa_hf.codecs import load_codec, load_default_codec
with warnings.catch_warnings(record=True):  # the path this release still ships for older code
    warnings.simplefilter("always")
    from compressa_hf.chat.collator import load_chat_template as old_path
codec = load_default_codec()
print(json.dumps({"package": compressa_hf.__file__, "codec": codec.codec_id, "weights": codec.weights_source,
                  "template": load_chat_template(), "old_path": old_path is load_chat_template}))
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
    # every chat template and its README, as files (the checkout reaches them through the qwen/templates link)
    listed = set(zipfile.ZipFile(wheel).namelist())
    templates = sorted(p.name for p in (REPO / "chat_templates").iterdir() if p.suffix in (".jinja", ".md"))
    assert templates and all(f"compressa_hf/qwen/templates/{name}" in listed for name in templates), templates
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)

    env = {k: v for k, v in os.environ.items() if k not in ("COMPRESSA_TAE_DIR", "PYTHONPATH")}
    env |= {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}  # the installed copy first; no Hub
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["package"].startswith(str(site))
    assert found["codec"] == "tae:taef2" and str(site) in found["weights"]
    assert "<|im_start|>" in found["template"] and found["old_path"]
    assert "packaged with compressa_hf" in out.stderr  # the log says which codec stood in for the paper's
