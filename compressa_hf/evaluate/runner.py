"""`compressa evaluate`'s engine: every method at every ratio and seed, a network trained from scratch on each
result, one report.

Layout of `output/` (every file written atomically, so a killed run resumes where it stopped; the train split's
latent cache is the shared one of `compressa_hf.cache`, which `compressa encode` and `distill` reuse):
    work/pixels_<split>_T<T>.safetensors   real uint8 clips: the train split (for pixel-space methods and the
                                   full-data reference) and the test split (T uniform frames)
    work/methods/<method>/r<ratio>_s<seed>/   a method's own checkpoints (VideoCompressa resumes mid-run)
    sets/<method>/r<ratio>_s<seed>.safetensors   the compressed set of a cell (stored tensors + what trains)
    cells/<arch>/<method>/r<ratio>_s<seed>.json   one trained network's result
    report.json, report.md, report.png
A finished cell is never recomputed; delete its files to redo it. The cache and settings are checked against
`work/settings.json`, and each saved set against the method options it was made with, so a resumed run with other
settings is refused rather than mixed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import torch

from compressa_hf.evaluate.report import plot, ratio_key, summarise, to_markdown
from compressa_hf.evaluate.stats import chance_levels
from compressa_hf.evaluate.train import TrainConfig, train_and_test
from compressa_hf.io import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

DEFAULT_METHODS = "videocompressa,scorer_only,uniform,pixel_diff,avs,random,herding,forgetting,grand,dm,lvdd"


@dataclass
class EvaluateArguments:
    """Arguments of `compressa evaluate` (the training protocol's are `TrainConfig`'s).

    Args:
        source: Source spec (a `videofolder` path or `name:key=value,...`).
        output: Folder of the run (resumable; see the module docstring).
        methods: Comma-separated method names (`compressa_hf.distill.methods.METHODS`).
        ratios: Comma-separated storage ratios in percent, or `k<K>` for exactly the ratio of K uint8 latent frames
            per video (e.g. `k1,k2`).
        seeds: Seeds 0..N-1; each seeds both the method and the network trained on its output.
        archs: Comma-separated evaluation networks (`compressa_hf.nets.NETS`): convnet, convnet3d, mlp, rnn, gru.
        full_data: Also train on the whole real training split (the reference column).
        train_split / test_split: Split names of the source.
        codec / codec_dtype / num_frames / size / policy / num_workers: The latent cache (see `compressa encode`).
        test_frames: Uniform frames per test clip (default: num_frames).
        dtype: Latent storage dtype for the planner: auto, uint8 or float16.
        method_config: YAML file of per-method options, `{method: {option: value}}`.
        device: `auto`, `cpu` or `cuda`.
        progress: Progress bars.
    """

    source: str = field(default="procedural", metadata={"help": "Source spec."})
    output: str = field(default="outputs/evaluate", metadata={"help": "Run folder (resumable)."})
    methods: str = field(default=DEFAULT_METHODS, metadata={"help": "Comma-separated methods."})
    ratios: str = field(default="k1", metadata={"help": "Comma-separated ratios (percent) or k<K>."})
    seeds: int = field(default=3, metadata={"help": "Number of seeds."})
    archs: str = field(default="convnet", metadata={"help": "Comma-separated evaluation networks."})
    full_data: bool = field(default=True, metadata={"help": "Train on the full split too (reference)."})
    train_split: str = field(default="train", metadata={"help": "Training split."})
    test_split: str = field(default="test", metadata={"help": "Test split."})
    codec: str = field(default="default", metadata={"help": "Codec spec, or `default`."})
    codec_dtype: str = field(default="float32", metadata={"help": "Codec compute dtype."})
    num_frames: int = field(default=16, metadata={"help": "T, frames per cached training clip."})
    size: int = field(default=112, metadata={"help": "Frame side."})
    policy: str = field(default="uniform", metadata={"help": "Frame sampling policy of the cache."})
    num_workers: int = field(default=1, metadata={"help": "Decode workers."})
    test_frames: int | None = field(default=None, metadata={"help": "Frames per test clip (default T)."})
    dtype: str = field(default="auto", metadata={"help": "Latent storage dtype: auto, uint8, float16."})
    method_config: str | None = field(default=None, metadata={"help": "YAML of per-method options."})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda."})
    progress: bool = field(default=True, metadata={"help": "Progress bars."})

    def __post_init__(self):
        from compressa_hf.distill.methods import METHODS
        from compressa_hf.nets import NETS

        unknown = [m for m in self.method_list if m not in METHODS or m == "full"]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown} in --methods; known: {sorted(set(METHODS) - {'full'})}")
        bad = [a for a in self.arch_list if a not in NETS]
        if bad:
            raise ValueError(f"unknown network(s) {bad} in --archs; known: {sorted(NETS)}")
        if self.seeds < 1:
            raise ValueError(f"`seeds` must be >= 1, got {self.seeds}")
        if not self.ratios.strip():
            raise ValueError("--ratios is empty; give percents (e.g. 0.5,1) or k<K> (e.g. k1,k2)")
        from compressa_hf.distill.budget import check_ratio_token

        for token in self.ratio_tokens:
            check_ratio_token(token)

    @property
    def method_list(self) -> list[str]:
        return [m.strip() for m in self.methods.split(",") if m.strip()]

    @property
    def arch_list(self) -> list[str]:
        return [a.strip() for a in self.archs.split(",") if a.strip()]

    @property
    def ratio_tokens(self) -> list[str]:
        return [r.strip() for r in self.ratios.split(",") if r.strip()]


def resolve_ratios(tokens: list[str], num_frames: int, size: int, latent_shape) -> list[Fraction]:
    """Percent strings stay exact decimals; `k<K>` becomes the exact ratio of K uint8 latent frames per video."""
    from compressa_hf.distill.budget import resolve_ratio

    return [resolve_ratio(token, num_frames, size, latent_shape) for token in tokens]


def load_pixels(source, split: str, clip_cfg, num_workers: int, path: str, order: list[str] | None = None):
    """Real uint8 clips `(N, T, 3, H, W)`, labels and clip ids of a split, decoded once and kept at `path`.

    `order` (clip ids) fixes the rows' order, e.g. that of the latent cache; clips that cannot be decoded are
    skipped with a warning naming the file.
    """
    from safetensors.torch import load_file, save_file

    if os.path.exists(path):
        data = load_file(path)
        with open(path + ".ids.json") as f:
            ids = json.load(f)
        return data["pixels"], data["labels"], ids
    from compressa_hf.cache import clip_loader

    refs = source.list_clips(split)
    if order is not None:
        by_id = {r.clip_id: r for r in refs}
        missing = [c for c in order if c not in by_id]
        if missing:
            raise ValueError(f"{len(missing)} cached clips are not in split {split!r} any more, e.g. {missing[:3]}")
        refs = [by_id[c] for c in order]
    frames, labels, ids = [], [], []
    for batch in clip_loader(source, refs, clip_cfg, clips_per_batch=8, num_workers=num_workers):
        for item in batch:
            if "error" in item:
                logger.warning("skipped %s: %s", item["path"], item["error"])
                continue
            frames.append(torch.from_numpy(item["frames"]).permute(0, 3, 1, 2))
            labels.append(item["label"])
            ids.append(item["clip_id"])
    if not frames:
        raise ValueError(f"no decodable clip in split {split!r} of the source")
    pixels, labels = torch.stack(frames).contiguous(), torch.tensor(labels, dtype=torch.long)
    atomic_write_json(path + ".ids.json", ids)
    tmp = f"{path}.tmp.{os.getpid()}"
    save_file({"pixels": pixels, "labels": labels}, tmp)
    os.replace(tmp, path)
    return pixels, labels, ids


def _method_options(path: str | None) -> dict[str, dict]:
    if not path:
        return {}
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected a mapping {{method: {{option: value}}}}")
    from compressa_hf.distill.methods import METHODS

    unknown = sorted(set(data) - set(METHODS))
    if unknown:
        raise ValueError(f"{path}: unknown method(s) {unknown}; known: {sorted(METHODS)}")
    return data


def _check_settings(path: str, settings: dict) -> None:
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        differ = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        if differ:
            raise ValueError(
                f"{path} was written with other settings ({', '.join(differ)}); use another --output or delete it"
            )
    else:
        atomic_write_json(path, settings)


def run(args: EvaluateArguments, train_cfg: TrainConfig) -> dict:
    """Run (or resume) every cell and write the report; returns the report dict."""
    from compressa_hf.cache import EncodeConfig, LatentCache, encode_split, resolve_device
    from compressa_hf.clips import ClipConfig
    from compressa_hf.codecs import load_codec, load_default_codec
    from compressa_hf.distill.methods import MethodContext, compress, get_method
    from compressa_hf.distill.methods.base import CompressedSet, parse_options
    from compressa_hf.sources import parse_source_spec

    device = resolve_device(args.device)
    dtype = getattr(torch, args.codec_dtype)
    codec = load_default_codec(device, dtype) if args.codec == "default" else load_codec(args.codec, device, dtype)
    source = parse_source_spec(args.source)
    out = args.output
    work = os.path.join(out, "work")
    os.makedirs(work, exist_ok=True)
    test_frames = args.test_frames or args.num_frames
    _check_settings(
        os.path.join(work, "settings.json"),
        {
            "source": args.source,
            "codec": codec.codec_id,
            "num_frames": args.num_frames,
            "size": args.size,
            "policy": args.policy,
            "test_frames": test_frames,
            "dtype": args.dtype,
            "train_config": asdict(train_cfg),
        },
    )
    options = _method_options(args.method_config)
    for method in args.method_list:  # option errors now, not as "n/a" cells later
        parse_options(get_method(method).Options, options.get(method), method)

    # Stage 1: the latent cache of the training split, shared with `compressa encode` / `distill` (seed 0: the clips,
    # not the methods, are being cached).
    enc = EncodeConfig(
        source=args.source,
        split=args.train_split,
        codec=codec.codec_id,
        num_frames=args.num_frames,
        size=args.size,
        policy=args.policy,
        num_workers=args.num_workers,
        dtype=args.codec_dtype,
    )
    cache = LatentCache(encode_split(enc, codec=codec, source=source, progress=args.progress)["output_dir"])
    latents, labels = cache.load_latents()
    class_names = cache.class_names
    num_classes = len(class_names)
    clip_cfg = enc.clip_config()
    train_pixels, train_pixel_labels, _ = load_pixels(
        source,
        args.train_split,
        clip_cfg,
        args.num_workers,
        os.path.join(work, f"pixels_{args.train_split}_T{args.num_frames}.safetensors"),
        order=[row["clip_id"] for row in cache.index],
    )
    if not torch.equal(train_pixel_labels, labels):
        raise AssertionError("the decoded training clips do not match the latent cache's rows")
    test_cfg = ClipConfig(num_frames=test_frames, size=args.size, policy="uniform")
    test_pixels, test_labels, _ = load_pixels(
        source,
        args.test_split,
        test_cfg,
        args.num_workers,
        os.path.join(work, f"pixels_{args.test_split}_T{test_frames}.safetensors"),
    )
    ratios = resolve_ratios(args.ratio_tokens, args.num_frames, args.size, cache.meta["latent_shape"])
    logger.info(
        "evaluate: %d train clips, %d test clips, %d classes; ratios %s; methods %s; archs %s; %d seeds",
        len(labels),
        len(test_labels),
        num_classes,
        [f"{float(r):.4f}" for r in ratios],
        args.method_list,
        args.arch_list,
        args.seeds,
    )

    def context(ratio, seed, method) -> MethodContext:
        return MethodContext(
            latents=latents,
            labels=labels,
            num_classes=num_classes,
            codec=codec,
            ratio=ratio,
            seed=seed,
            frame_size=(args.size, args.size),
            pixels_fn=lambda: train_pixels,
            dtype=args.dtype,
            options=options.get(method, {}),
            work_dir=os.path.join(work, "methods", method, f"r{ratio_key(float(ratio))}_s{seed}"),
            device=device,
            progress=args.progress,
            class_names=class_names,
        )

    budgets = {ratio_key(float(r)): context(r, 0, "uniform").budget_bytes for r in ratios}
    full_bytes = context(ratios[0], 0, "uniform").full_bytes
    cells: list[dict] = []
    jobs = [(m, r) for m in args.method_list for r in ratios]
    if args.full_data:
        jobs.append(("full", None))
    total = len(jobs) * args.seeds
    bar = None
    if args.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="evaluate", unit="cell")
    for seed in range(args.seeds):
        for method, ratio in jobs:
            rk = ratio_key(None if ratio is None else float(ratio))
            name = f"r{rk}_s{seed}"
            kind = get_method(method).KIND
            cell_paths = {a: os.path.join(out, "cells", a, method, name + ".json") for a in args.arch_list}
            todo = [a for a, p in cell_paths.items() if not os.path.exists(p)]
            if todo:
                set_path = os.path.join(out, "sets", method, name + ".safetensors")
                na_path = os.path.join(out, "sets", method, name + ".na.json")
                base = {"method": method, "kind": kind, "ratio": None if ratio is None else float(ratio), "seed": seed}
                cset, compress_s, reason = None, 0.0, None
                if os.path.exists(na_path):
                    with open(na_path) as f:
                        reason = json.load(f)["reason"]
                elif method == "full":
                    start = time.perf_counter()
                    cset = compress("full", context(ratios[0], seed, "full"))
                    compress_s = time.perf_counter() - start
                elif os.path.exists(set_path):
                    cset = CompressedSet.load(set_path)
                    compress_s = cset.info.get("compress_s", 0.0)
                    saved = cset.info.get("options")
                    if saved is not None and saved != options.get(method, {}):
                        raise ValueError(
                            f"{set_path} was made with {method} options {saved}, not {options.get(method, {})}; "
                            "use another --output or delete that method's sets and cells"
                        )
                else:
                    start = time.perf_counter()
                    try:
                        cset = compress(method, context(ratio, seed, method))
                    except ValueError as err:  # the budget cannot be met by this method at this ratio
                        reason = str(err)
                        atomic_write_json(na_path, {"reason": reason})
                        logger.warning("%s at %s %%: not applicable: %s", method, rk, reason)
                    else:
                        compress_s = time.perf_counter() - start
                        cset.info["compress_s"] = compress_s
                        cset.info["options"] = options.get(method, {})
                        os.makedirs(os.path.dirname(set_path), exist_ok=True)
                        cset.save(set_path)
                frames = cset.frames(codec, device=device) if cset is not None else None
                for arch in todo:
                    if cset is None:
                        record = {**base, "arch": arch, "status": "n/a", "reason": reason}
                    else:
                        res = train_and_test(
                            frames,
                            cset.labels,
                            test_pixels,
                            test_labels,
                            num_classes,
                            arch=arch,
                            cfg=train_cfg,
                            seed=seed,
                            device=device,
                        )
                        record = {
                            **base,
                            "arch": arch,
                            "status": "ok",
                            "accuracy": res.accuracy,
                            "correct": [int(c) for c in res.correct],
                            "train_accuracy": res.train_accuracy,
                            "final_loss": res.final_loss,
                            "rows": cset.num_rows,
                            "frames_per_row": cset.frames_per_row,
                            "stored_bytes": cset.stored_bytes,
                            "budget_bytes": cset.budget_bytes,
                            "compress_s": compress_s,
                            "train_s": res.seconds,
                        }
                        logger.info(
                            "%s %s%% seed %d %s: %.1f %% (train %.1f %%, %d rows x %d frames, %s bytes)",
                            method,
                            rk,
                            seed,
                            arch,
                            100 * res.accuracy,
                            100 * res.train_accuracy,
                            cset.num_rows,
                            cset.frames_per_row,
                            f"{cset.stored_bytes:,}",
                        )
                    atomic_write_json(cell_paths[arch], record)
            for arch in args.arch_list:
                with open(cell_paths[arch]) as f:
                    cells.append(json.load(f))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()

    meta = {
        "source": args.source,
        "codec": codec.codec_id,
        "num_classes": num_classes,
        "train_clips": len(labels),
        "test_clips": len(test_labels),
        "test_frames": test_frames,
        "num_frames": args.num_frames,
        "size": args.size,
        "chance": chance_levels(test_labels.tolist(), num_classes),
        "budget_bytes": budgets,
        "full_bytes": full_bytes,
        "train_config": asdict(train_cfg),
        "seeds": args.seeds,
    }
    report = summarise(cells, args.method_list, [float(r) for r in ratios], args.arch_list, meta)
    atomic_write_json(os.path.join(out, "report.json"), report)
    atomic_write_text(os.path.join(out, "report.md"), to_markdown(report) + "\n")
    png = os.path.join(out, "report.png")
    tmp = os.path.join(out, f".report.{os.getpid()}.png")
    plot(report, tmp)
    os.replace(tmp, png)
    return report
