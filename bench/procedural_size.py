"""How big the procedural set must be for a network trained on full data to learn it, and which frames methods keep.

Usage:
    # grid mode (default): full data only, trained on generated pixels, 3 seeds per setting
    python bench/procedural_size.py --grid num_frames=8 frame_size=16 train_per_class=50,75,100 epochs=60,80
    python bench/procedural_size.py --grid num_frames=8 frame_size=32 train_per_class=100 epochs=60 --codec_check
    python bench/procedural_size.py --grid frame_size=32,48 epochs=10 --seeds 1                # a quick look
    # on a GPU: the recommended setting and its neighbours, 5 seeds, with the codec's ceiling
    python bench/procedural_size.py --device cuda --seeds 5 --codec_check --grid num_frames=8 frame_size=16,32 \
        train_per_class=50,100 epochs=40,60,120 --output bench/results/procedural_size_gpu.json
    # methods mode: `compressa evaluate` at RECOMMENDED, accuracy beside each method's event hit rate
    python bench/procedural_size.py --methods --device cuda --ratios k1,k2 --seeds 3
    COMPRESSA_CACHE=/tmp/ps_cache python bench/procedural_size.py --methods --grid num_classes=2 train_per_class=4 \
        test_per_class=2 epochs=1 --seeds 1 --ratios k1,k2 --work_dir /tmp/ps_toy --output /tmp/ps_toy.json  # toy

Grid mode trains the full-data reference exactly as `compressa evaluate` does (`compressa_hf.evaluation.train.
train_and_test`, the bench protocol: SGD lr 0.01, momentum 0.9, wd 5e-4, lr / 10 at half the epochs, last-epoch
accuracy; each training clip's T uniformly sampled frames, each test clip's T uniform frames), but straight on
generated pixels: procedural clips need no decoding and full data needs no latent codec, so nothing here imports
`av` or `diffusers`. `--grid KEY=V1,V2 ...` runs the product of its axes over `--base` (default Table 1's procedural
set, `TABLE1`; methods mode: `RECOMMENDED`); a key is a `ProceduralSource` argument, `num_frames` (T), `arch`, or a
`TrainConfig` field (`epochs`, `batch_size`, `width`, ...). Each row prints the event share (the share of the T
cached frames inside the clip's event, which is also a random frame's chance of being an event frame), accuracy
mean +- std over seeds and its minimum, train accuracy, and seconds per run; a row passes when every seed reaches
`--target`. Results go to `--output` after every row (atomic); a setting already there with the same seeds and
device is read back, not rerun, so a stopped grid resumes and several grids collect in one file.

Methods mode runs `compressa_hf.evaluation.runner.run` at one setting for `--methods` (names the registry lacks are
skipped with a warning), then reads each saved set (`sets/<method>/r<ratio>_s<seed>.safetensors`: `source_videos`,
and `frame_indices` among the T cached frames) and maps kept frames back to source frames through the cache's
sampling (`ClipConfig` of the run's `EncodeConfig`: the same `choose_indices` the cache pass used), in the cache's
clip order (`work/pixels_train_T<T>.safetensors.ids.json`). Event hit rates, pooled over seeds:
- frame hit rate: the share of all kept real frames that lie inside their clip's event;
- video hit rate: the share of kept rows (videos) that keep at least one event frame (equal to the frame rate at K=1).
Whole-clip coresets keep every cached frame of a clip, so their rates are full data's; VideoCompressa and DM
optimise their latents, so theirs say where each row started; synthetic rows (`source_videos` -1) are left out.
Full data's row is the reference: every cached frame of every clip.

`--codec_check` also trains on the training clips round-tripped through `--codec` (encoded, stored as uint8
latents, decoded, as a latent method's set holds them) and tested on real clips: the ceiling of every latent method.

Findings (2-core CPU shared with others, `--threads 1`, 6 classes, 10 test clips per class, event 8 of 32 frames
unless said; `bench/results/procedural_size.json`; accuracy mean +- std over 3 seeds (min), s per run):
- Table 1's setting (48 px, T = 16, 20 train clips per class, width 32, 40 epochs) does not learn: 27 % in Table 1,
  and after 10 epochs train accuracy is 28 %, the loss barely below ln 6. Under-fitted, not over-fitted.
- The event's share of the T frames sets how slowly the network learns. `ConvNet` averages per-frame features over
  time before its linear classifier, so an event in a quarter of the frames reaches the classifier, and the
  gradient reaches the shape filters, at a quarter of its strength among the scene, the drifting distractor and the
  noise. Single seeds at 32 px, T = 16, 20 clips per class, 20 epochs: event in every frame 60 % test / 88 %
  train, in half 40 % / 58 %, in a quarter 17 % / 31 %.
- At a quarter (a random kept frame misses the event 3 times in 4), what decides is how long the network trains,
  counted in clip presentations (clips x epochs), with enough clips to generalise: at 16 px and T = 8, 50 clips per
  class x 60 epochs 74.4 +- 5.4 (68.3); 75 x 60 81.7 +- 3.3 (78.3); 75 x 80 93.3 +- 0.0; 100 x 60 97.2 +- 1.0 (96.7);
  50 x 120 95.6 +- 2.5 (93.3); but 20 x 300 fits the training set (100 %) and tests at 78.9 +- 5.1 (73.3). Accuracy
  jumps once the shape filters form: 32 px, 100 clips per class: 20 epochs 57.2 +- 9.2, 40 epochs 88.3 +- 10.1 (81.7),
  60 epochs 99.4 +- 1.0 (98.3); 50 clips per class x 120 epochs 99.4 +- 1.0 (98.3) too. A smaller batch (8 for 32,
  four times the steps) did not help at 20 clips per class and 20 epochs (13 % vs 17 %, one seed).
- At half (event 16 of 32, T = 8, 32 px, 40 epochs): 50 clips per class 96.7 +- 4.4 (91.7), round trip 93.3 +- 7.6;
  25 clips 65.6 +- 6.7. Half the training of a quarter's, but uniform K = 1 (source frame 18) then keeps the event
  in 16 clips of 17 and uniform K = 2 in every clip: such a set cannot rank selectors.
- T = 8 cached frames of 32 keep the event's share at a quarter (2 of 8) for half the frames per epoch of T = 16.
- Frame size: full data learns at 16 px (shapes of radius 2 px) nearly as well as at 32 px in a fifth of the time
  (48 vs 260 s per run here, 60 epochs), but the TAEF2 latents of a 16 px frame are 2 x 2 and lose the shape:
  trained on round-tripped clips, 60.0 +- 5.0 (55.0) where real pixels give 97.2. At 32 px (4 x 4 latents) the
  round trip costs 7 points at 40 epochs (88.3 -> 81.1 +- 8.6) and nothing at 60 (99.4 +- 1.0 both). So the
  smallest setting where full data passes is 16 px (`SMALLEST_FULL`, ~50 s per run here), and the smallest where
  the latent methods can pass too is 32 px (`RECOMMENDED`, methods mode's default: 100 clips per class x 60
  epochs rather than the equally costly 50 x 120, whose round trip gives 96.1 +- 3.5 (93.3), for the margin and for
  twice the rows in every method's set).
- Not varied: noise, number of scenes, width and the network (width 32 ConvNet throughout), so the set stays Table 1's
  set in all but its size and the protocol stays Table 1's but for its epochs.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import itertools
import json
import logging
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")

#: Table 1's procedural set and its training protocol (bench/table1.py): the grid's base.
TABLE1 = {
    "num_classes": 6,
    "train_per_class": 20,
    "test_per_class": 10,
    "length": 32,
    "event_length": 8,
    "frame_size": 48,
    "num_frames": 16,
    "arch": "convnet",
    "width": 32,
    "epochs": 40,
    "batch_size": 32,
}
PROTOCOL = (
    "compressa_hf.evaluation.train.train_and_test on generated pixels: full data, each clip's T uniform frames; "
    "SGD lr 0.01, momentum 0.9, wd 5e-4, lr / 10 at half, last-epoch test accuracy on T uniform frames"
)
#: The smallest setting measured where full data reaches 80 % on every seed (97.2 +- 1.0 %, 3 seeds, ~50 s per run on
#: one CPU thread), but whose 2 x 2 TAEF2 latents lose the event's shape (60 % trained on round-tripped clips).
SMALLEST_FULL = TABLE1 | {"num_frames": 8, "frame_size": 16, "train_per_class": 100, "epochs": 60}
#: The smallest setting measured where full data AND its TAEF2 round trip reach 80 % on every seed (both 99.4 +- 1.0 %,
#: 3 seeds): methods mode's base. 2 of the 8 cached frames show the event: a random frame is an event frame 1 time
#: in 4, uniform K = 1 (source frame 18) in 8 clips of 25 on average.
RECOMMENDED = TABLE1 | {"num_frames": 8, "frame_size": 32, "train_per_class": 100, "epochs": 60}

BASES = {"table1": TABLE1, "smallest_full": SMALLEST_FULL, "recommended": RECOMMENDED}

logger = logging.getLogger("procedural_size")


def setting_keys() -> dict[str, str]:
    """Every key a setting may hold -> where it goes: `source`, `clips` (T), `arch` or `train`."""
    from compressa_hf.evaluation.train import TrainConfig
    from compressa_hf.sources.procedural import ProceduralSource

    keys = {k: "source" for k in inspect.signature(ProceduralSource.__init__).parameters if k != "self"}
    keys |= {f.name: "train" for f in dataclasses.fields(TrainConfig)}
    keys |= {"num_frames": "clips", "arch": "arch"}
    return keys


def parse_grid(items: list[str]) -> list[tuple[str, list]]:
    """`["frame_size=32,48", "epochs=40"]` -> `[("frame_size", [32, 48]), ("epochs", [40])]`; unknown keys raise."""
    from compressa_hf.sources import _coerce  # the source specs' own value parsing (ints, floats, true/false)

    known = setting_keys()
    axes = []
    for item in items:
        key, eq, values = item.partition("=")
        key = key.strip()
        if not eq or not values.strip():
            raise SystemExit(f"--grid item {item!r}: expected KEY=V1,V2,...")
        if key not in known:
            raise SystemExit(f"--grid key {key!r} is not a setting; known: {sorted(known)}")
        axes.append((key, [_coerce(v.strip()) for v in values.split(",") if v.strip()]))
    return axes


def expand(base: dict, axes: list[tuple[str, list]]) -> list[dict]:
    """The product of the grid's axes, each applied over `base`, in the order the axes were given."""
    keys = [k for k, _ in axes]
    return [base | dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in axes))]


def split_setting(setting: dict) -> tuple[dict, int, str, dict]:
    """A setting -> (ProceduralSource kwargs, T, arch, TrainConfig kwargs)."""
    where = setting_keys()
    source = {k: v for k, v in setting.items() if where[k] == "source"}
    train = {k: v for k, v in setting.items() if where[k] == "train"}
    return source, int(setting["num_frames"]), str(setting["arch"]), train


def source_spec(source_kwargs: dict) -> str:
    """The `--source` spec of a procedural setting, e.g. `procedural:num_classes=6,frame_size=32`."""
    return "procedural:" + ",".join(f"{k}={v}" for k, v in source_kwargs.items())


def generate(source, split: str, num_frames: int):
    """T uniformly sampled frames of every clip of a split, as the cache pass and `compressa evaluate` take them.

    Returns `(pixels (N, T, 3, S, S) uint8, labels (N,) int64, refs, cached)` with `cached[i]` the source frame index
    of each of clip i's T frames. Frames come straight from the generator: no decoder, no codec.
    """
    import numpy as np
    import torch

    from compressa_hf.clips import ClipConfig, sample_clip

    cfg = ClipConfig(num_frames=num_frames, size=source.frame_size, policy="uniform")
    refs = source.list_clips(split)
    frames, cached = [], []
    for ref in refs:
        clip = sample_clip(source, ref, cfg)
        frames.append(torch.from_numpy(np.ascontiguousarray(clip.frames)).permute(0, 3, 1, 2))
        cached.append(list(clip.frame_indices))
    labels = torch.tensor([r.label for r in refs], dtype=torch.long)
    return torch.stack(frames).contiguous(), labels, refs, cached


def event_hits(kept: list[list[int]], cached: list[list[int]], events: list, videos: list[int]) -> dict:
    """Event hit rates of a set of kept frames.

    Args:
        kept: Per row, the kept frames as positions among its clip's T cached frames.
        cached: Per clip of the split, the source frame index of each cached frame.
        events: Per clip of the split, its event's source frame indices (any container supporting `in`).
        videos: Per row, the clip (position in the split) it comes from; rows with a negative clip are synthetic and
            left out.

    Returns:
        `{"frame_hit_rate": share of kept frames inside their clip's event, "video_hit_rate": share of rows keeping
        at least one event frame, "frames": kept frames counted, "videos": rows counted}`; rates are None when
        nothing was counted.
    """
    if len(kept) != len(videos):
        raise ValueError(f"{len(kept)} rows of kept frames but {len(videos)} source videos")
    frame_hits = frames = video_hits = rows = 0
    for row, v in zip(kept, videos):
        if v < 0:
            continue
        hits = [cached[v][i] in events[v] for i in row]
        frame_hits += sum(hits)
        frames += len(hits)
        video_hits += any(hits)
        rows += 1
    return {
        "frame_hit_rate": frame_hits / frames if frames else None,
        "video_hit_rate": video_hits / rows if rows else None,
        "frames": frames,
        "videos": rows,
    }


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _describe(setting: dict, base: dict) -> str:
    """The keys where a setting differs from the base (or `base` when none does)."""
    diff = [f"{k}={v}" for k, v in setting.items() if base.get(k) != v]
    return ",".join(diff) or "base"


def _train_seeds(args, frames, labels, test, num_classes: int, arch: str, cfg) -> dict:
    """`--seeds` networks trained on `frames` and tested on the real test clips: accuracies and their summary."""
    from compressa_hf.evaluation.train import train_and_test

    runs = [
        train_and_test(frames, labels, *test[:2], num_classes, arch, cfg, seed=s, device=args.device)
        for s in range(args.seeds)
    ]
    accs = [r.accuracy for r in runs]
    mean, std = _mean_std(accs)
    return {
        "accuracy": accs,
        "mean": mean,
        "std": std,
        "min": min(accs),
        "train_accuracy": [r.train_accuracy for r in runs],
        "final_loss": [r.final_loss for r in runs],
        "seconds_per_run": statistics.fmean(r.seconds for r in runs),
    }


def resolve_codec_dtype(codec_dtype: str, device: str) -> str:
    """`auto` -> bfloat16 where the codec runs on CUDA, float32 on CPU (bf16 convolutions are slow there)."""
    if codec_dtype != "auto":
        return codec_dtype
    import torch

    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return "bfloat16" if cuda else "float32"


def codec_roundtrip(codec, pixels):
    """`(N, T, 3, S, S)` uint8 clips through the codec as a method's set holds them: encoded, stored as uint8
    latents (`store_latents`, the planner's default dtype), read back and decoded to uint8 frames."""
    from compressa_hf.distillation.methods.base import decode_latents, store_latents

    n, t = pixels.shape[:2]
    latents = codec.encode(pixels.flatten(0, 1).float().div(255)).cpu()
    _, readback = store_latents(latents.view(n, t, *latents.shape[1:]), "uint8")
    return decode_latents(codec, readback)


def run_grid(args, base: dict, axes: list[tuple[str, list]]) -> int:
    """Train full data on every setting of the grid for `--seeds` seeds; print and write the table.

    Rows already in `--output` for the same setting, seeds and device are reused, not rerun, so several grids (or a
    stopped one) collect into one file.
    """
    import torch

    from compressa_hf.evaluation.train import TrainConfig
    from compressa_hf.io import atomic_write_json
    from compressa_hf.sources.procedural import ProceduralSource

    codec = None
    if args.codec_check:
        from compressa_hf.codecs import load_codec

        codec = load_codec(args.codec, args.device, getattr(torch, resolve_codec_dtype(args.codec_dtype, args.device)))
    saved = []
    if os.path.exists(args.output):
        with open(args.output) as f:
            saved = json.load(f).get("rows", [])
    settings = expand(base, axes)
    col = max(len("setting"), *(len(_describe(s, base)) for s in settings))
    print(
        f"{'setting':{col}s} {'event share':>11s} {'acc % (mean+-std)':>18s} {'min %':>6s} {'train %':>7s} "
        f"{'s/run':>7s} pass" + (f" {'decoded acc %':>18s} {'min %':>6s}" if codec is not None else ""),
        flush=True,
    )
    rows = []
    for setting in settings:
        key = {"setting": setting, "seeds": args.seeds, "device": args.device}
        row = next((r for r in saved if all(r.get(k) == v for k, v in key.items())), None)
        todo_full = row is None
        todo_codec = codec is not None and codec.codec_id not in (row or {}).get("decoded", {})
        if todo_full or todo_codec:
            source_kwargs, num_frames, arch, train_kwargs = split_setting(setting)
            start = time.perf_counter()
            source = ProceduralSource(**source_kwargs)
            train = generate(source, "train", num_frames)
            test = generate(source, "test", num_frames)
            generate_s = time.perf_counter() - start
            cfg = TrainConfig(**train_kwargs)

            if todo_full:
                events = [source.event_frames(r) for r in train[2]]
                share = event_hits([list(range(num_frames))] * len(events), train[3], events, list(range(len(events))))
                row = key | {
                    "source": source_spec(source_kwargs),
                    "train_clips": len(train[1]),
                    "test_clips": len(test[1]),
                    "event_share": share["frame_hit_rate"],
                    **_train_seeds(args, train[0], train[1], test, source.num_classes, arch, cfg),
                    "generate_s": generate_s,
                    "threads": torch.get_num_threads(),
                    "cpu_count": os.cpu_count(),
                    "decoded": {},
                }
            if todo_codec:  # the clips as the set of a latent method holds them
                start = time.perf_counter()
                decoded = codec_roundtrip(codec, train[0])
                roundtrip_s = time.perf_counter() - start
                row.setdefault("decoded", {})[codec.codec_id] = {
                    "roundtrip_s": roundtrip_s,
                    **_train_seeds(args, decoded, train[1], test, source.num_classes, arch, cfg),
                }
            saved = [r for r in saved if not all(r.get(k) == v for k, v in key.items())] + [row]
            atomic_write_json(args.output, {"base": base, "protocol": PROTOCOL, "rows": saved})
        row = row | {"passed": row["min"] >= args.target}
        rows.append(row)
        dec = row.get("decoded", {}).get(codec.codec_id) if codec is not None else None
        print(
            f"{_describe(setting, base):{col}s} {row['event_share']:>11.3f} {100 * row['mean']:>11.1f}+-"
            f"{100 * row['std']:<5.1f}{100 * row['min']:>6.1f} {100 * statistics.fmean(row['train_accuracy']):>7.1f} "
            f"{row['seconds_per_run']:>7.1f} {'yes' if row['passed'] else 'no ':3s}"
            + (f" {100 * dec['mean']:>11.1f}+-{100 * dec['std']:<5.1f}{100 * dec['min']:>6.1f}" if dec else "")
            + ("" if todo_full or todo_codec else " (read back)"),
            flush=True,
        )
    passed = [r for r in rows if r["passed"]]
    if passed:
        best = min(passed, key=lambda r: r["seconds_per_run"])
        print(f"\nsmallest passing (fewest seconds per run): {_describe(best['setting'], base)}")
    else:
        print(f"\nno setting reached {100 * args.target:.0f} % on every seed")
    print(json.dumps({"output": args.output, "rows": len(rows), "passed": len(passed)}))
    return 0


def set_hit_rates(run_dir: str, source, num_frames: int, size: int, report: dict) -> dict[str, dict[str, dict]]:
    """Event hit rates of every saved set of a `compressa evaluate` run, per method and ratio, pooled over seeds,
    plus full data's (`{"full": {"full": ...}}`): see the module docstring for the definitions."""
    import glob

    from compressa_hf.cache import EncodeConfig
    from compressa_hf.clips import choose_indices
    from compressa_hf.distillation.methods.base import CompressedSet
    from compressa_hf.evaluation.report import ratio_key

    with open(os.path.join(run_dir, "work", f"pixels_train_T{num_frames}.safetensors.ids.json")) as f:
        ids = json.load(f)  # the latent cache's clip order, which `source_videos` index
    refs = {r.clip_id: r for r in source.list_clips("train")}
    clip_cfg = EncodeConfig(source="procedural", num_frames=num_frames, size=size).clip_config()
    cached = [choose_indices(source.probe(refs[c]).num_frames, clip_cfg, c)[0] for c in ids]
    events = [source.event_frames(refs[c]) for c in ids]
    rates: dict[str, dict[str, dict]] = {
        "full": {"full": event_hits([list(range(num_frames))] * len(ids), cached, events, list(range(len(ids))))}
    }
    for method in report["methods"]:
        for ratio in report["ratios"]:
            rk = ratio_key(ratio)
            kept, videos = [], []
            for path in sorted(glob.glob(os.path.join(run_dir, "sets", method, f"r{rk}_s*.safetensors"))):
                cset = CompressedSet.load(path)
                if cset.source_videos is None:
                    continue
                rows = cset.source_videos.tolist()
                if cset.frame_indices is None:  # real rows with every cached frame
                    kept += [list(range(num_frames))] * len(rows)
                else:
                    kept += cset.frame_indices.tolist()
                videos += rows
            if videos:
                rates.setdefault(method, {})[rk] = event_hits(kept, cached, events, videos)
    return rates


def _load_table1_method_config() -> dict:
    """bench/table1.py's per-method settings for sets of ~150 clips (VideoCompressa's passes, DM's steps)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_table1", os.path.join(HERE, "table1.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.METHOD_CONFIG


def run_methods(args, setting: dict) -> int:
    """`compressa evaluate` at one setting, then each method's accuracy beside its event hit rates."""
    from compressa_hf.distillation.methods import METHODS, get_method
    from compressa_hf.evaluation.report import ratio_key
    from compressa_hf.evaluation.runner import EvaluateArguments, run
    from compressa_hf.evaluation.train import TrainConfig
    from compressa_hf.io import atomic_write_json
    from compressa_hf.sources.procedural import ProceduralSource

    wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
    for name in wanted:
        if name not in METHODS or name == "full":
            logger.warning("method %r is not in the registry (%s); skipped", name, ", ".join(sorted(METHODS)))
    methods = [m for m in wanted if m in METHODS and m != "full"]
    if not methods:
        raise SystemExit(f"none of --methods {args.methods!r} is a registered method")
    source_kwargs, num_frames, arch, train_kwargs = split_setting(setting)
    source = ProceduralSource(**source_kwargs)
    spec = source_spec(source_kwargs)
    name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", _describe(setting, TABLE1))  # one run folder per setting
    work_dir = args.work_dir or os.path.join(RESULTS, "procedural_size_runs", name)
    os.makedirs(work_dir, exist_ok=True)
    config = {m: v for m, v in _load_table1_method_config().items() if m in METHODS}
    method_config = os.path.join(work_dir, "methods.json")  # JSON is YAML
    atomic_write_json(method_config, config)
    device = args.device
    codec_dtype = resolve_codec_dtype(args.codec_dtype, device)
    start = time.perf_counter()
    report = run(
        EvaluateArguments(
            source=spec,
            output=work_dir,
            methods=",".join(methods),
            ratios=args.ratios,
            seeds=args.seeds,
            archs=arch,
            codec=args.codec,
            codec_dtype=codec_dtype,
            num_frames=num_frames,
            size=source.frame_size,
            method_config=method_config,
            device=device,
            progress=False,
        ),
        TrainConfig(**train_kwargs),
    )
    wall = time.perf_counter() - start
    rates = set_hit_rates(work_dir, source, num_frames, source.frame_size, report)
    table = report["tables"][arch]
    rows = []
    for method in [*report["methods"], "full"]:
        for ratio in [None] if method == "full" else report["ratios"]:
            rk = ratio_key(ratio)
            cell = table.get(method, {}).get(rk) or {}
            hit = rates.get(method, {}).get(rk, {})
            rows.append(
                {
                    "method": method,
                    "kind": get_method(method).KIND,
                    "ratio": rk,
                    "status": cell.get("status"),
                    "mean": cell.get("mean"),
                    "std": cell.get("std"),
                    "frame_hit_rate": hit.get("frame_hit_rate"),
                    "video_hit_rate": hit.get("video_hit_rate"),
                }
            )
    print(f"\n{spec}, T={num_frames}, {arch} width {setting['width']}, {setting['epochs']} epochs (wall {wall:.0f} s)")
    print(f"{'method':16s} {'kind':10s} {'ratio %':>9s} {'acc %':>14s} {'frame hit':>10s} {'video hit':>10s}")
    for r in rows:
        acc = f"{100 * r['mean']:>7.1f}+-{100 * r['std']:<4.1f}" if r["status"] == "ok" else f"{r['status']!s:>14s}"
        hits = "".join(
            f"{r[k]:>11.3f}" if r[k] is not None else f"{'-':>11s}" for k in ("frame_hit_rate", "video_hit_rate")
        )
        print(f"{r['method']:16s} {r['kind']:10s} {r['ratio']:>9s} {acc:>14s}{hits}")
    atomic_write_json(
        args.output,
        {"args": vars(args), "setting": setting, "source": spec, "wall_s": wall, "rows": rows, "hit_rates": rates},
    )
    print(json.dumps({"output": args.output, "work_dir": work_dir, "wall_s": round(wall, 1)}))
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--grid",
        nargs="*",
        default=[],
        metavar="KEY=V1,V2",
        help="axes of the grid over --base: ProceduralSource arguments, num_frames, arch, TrainConfig fields",
    )
    parser.add_argument(
        "--base",
        choices=sorted(BASES),
        default=None,
        help="setting the grid varies (default: table1 in grid mode, recommended in methods mode)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting (network init and shuffling)")
    parser.add_argument("--target", type=float, default=0.8, help="a setting passes when every seed reaches this")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the CPU here is shared)")
    parser.add_argument(
        "--methods",
        nargs="?",
        const="uniform,random_frame,scorer_only,videocompressa,avs,pixel_diff,dm",
        default=None,
        help="methods mode: run `compressa evaluate` for these methods at one setting (flag alone: the default list)",
    )
    parser.add_argument("--ratios", default="k1", help="methods mode: ratios, e.g. k1 or k1,k2")
    parser.add_argument(
        "--codec_check",
        action="store_true",
        help="grid mode: also train on the training clips round-tripped through --codec (uint8 latents, decoded), "
        "the ceiling of every latent method at that setting",
    )
    parser.add_argument("--codec", default="tae:taef2", help="codec spec (default the packaged TAEF2)")
    parser.add_argument("--codec_dtype", default="auto", help="codec compute dtype: auto (bf16 on CUDA), float32, ...")
    parser.add_argument("--work_dir", default=None, help="methods mode: the evaluate run folder (resumable)")
    parser.add_argument("--output", default=None, help="JSON results (default bench/results/procedural_size*.json)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    import torch

    torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    axes = parse_grid(args.grid)
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be >= 1, got {args.seeds}")
    if args.methods is None:
        args.output = args.output or os.path.join(RESULTS, "procedural_size.json")
        return run_grid(args, dict(BASES[args.base or "table1"]), axes)
    many = [k for k, values in axes if len(values) != 1]
    if many:
        raise SystemExit(f"--methods runs one setting: give one value for {many}")
    args.output = args.output or os.path.join(RESULTS, "procedural_size_methods.json")
    return run_methods(args, expand(dict(BASES[args.base or "recommended"]), axes)[0])


if __name__ == "__main__":
    sys.exit(main())
