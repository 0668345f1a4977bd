"""VideoCompressa's levers on real data, chosen on a validation split and then tested once (issue 13).

Usage:
    python bench/vc_sweep.py prepare --output .gpu/arid6_iid.safetensors     # here: cache + pixels, ~2 min on 2 cores
    python bench/vc_sweep.py run --bundle .gpu/arid6_iid.safetensors --device cuda --output $OUT/vc_sweep.json
    python bench/vc_sweep.py run --bundle ... --dry-run --output /tmp/vc_sweep.json   # tiny sizes, CPU, ~1 min

`prepare` builds one file with everything the run needs, so the run needs neither the videos nor PyAV: arid6_iid
(`../shared/data/arid6_iid`, 155 train / 103 test real clips, 6 classes) cached as Table 1 caches it (T = 8 uniform
frames at 48 x 48, TAEF2 in bf16 through the shared latent cache), the real uint8 train clips, and the real uint8
test clips (T uniform frames).

`run` has two stages, and the second uses nothing the first did not choose on training clips:
1. Sweep (validation only). The 155 training clips are split into `--val_folds` stratified folds
   (`compressa_hf.evaluation.splits`); each configuration is distilled from the other folds and a network trained on
   its set is tested on the held-out fold, so each seed tests every training clip once. The test clips are not
   read in this stage. Configurations (`CONFIGS`) are levers of `VideoCompressaConfig` on top of Table 1's
   schedule (6 passes of 16 videos), beside uniform, random frames and DM; cells run breadth-first (every
   configuration at seed 0 before seed 1) until `--sweep_budget_s`, so a cut-off sweep is still balanced.
2. Test. The configuration with the highest mean validation accuracy over k1 and k2 is run on the full training
   split with `--test_seeds` seeds and tested on the 103 test clips, with uniform, random frames, DM, the same
   configuration without latent updates (scorer only) and full data; paired bootstrap intervals (test clips x
   seeds) against uniform, DM and scorer-only, and the drift of the stored latents.
The protocol is Table 1's: width-32 ConvNet, SGD lr 0.01 / momentum 0.9 / wd 5e-4, 40 epochs, batch 32, lr / 10 at
half, last-epoch accuracy. Results are written after every cell (atomically), so a run cut off by its time limit
keeps what finished.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared"))

logger = logging.getLogger("vc_sweep")

BASE = {"passes": 6, "batch_size": 16}  # Table 1's schedule for ~150 clips
SEG = {"sampling": "segments", "scorer_init": "uniform"}
WARM = {**SEG, "guide_warmup_epochs": 10}
# name -> VideoCompressaConfig overrides on top of BASE. Each row changes one lever against a reference.
CONFIGS = {
    "paper": {},  # free Gumbel sampling, random scorer, lazy Adam 1e-2, cross-entropy: Table 1's VideoCompressa
    "seg": SEG,
    "seg_warm": WARM,
    "seg_warm_lr0.1": {**WARM, "lr_latents": 0.1},
    "seg_warm_dense_adam": {**WARM, "latent_optimizer": "adam"},
    "seg_warm_dm": {**WARM, "objective": "dm"},
    "seg_warm_ce+dm": {**WARM, "objective": "ce+dm"},
    "seg_warm_anneal": {**WARM, "tau_final": 0.1},
    "seg_warm_passes12": {**WARM, "passes": 12},
    "free_warm": {"guide_warmup_epochs": 10},
}
BASELINES = {
    "uniform": ("uniform", {}),
    "random_frame": ("random_frame", {}),
    "dm": ("dm", {"iterations": 100, "batch_real": 16, "width": 64}),  # Table 1's DM
}


def prepare(args) -> None:
    from safetensors.torch import save_file

    from compressa_hf.cache import EncodeConfig, LatentCache, cache_home, encode_split
    from compressa_hf.clips import ClipConfig
    from compressa_hf.codecs import load_codec
    from compressa_hf.evaluation.runner import load_pixels
    from compressa_hf.sources import parse_source_spec

    codec = load_codec("tae:taef2", "cpu", torch.bfloat16)
    source = parse_source_spec(args.source)
    tensors, names = {}, None
    for split in ("train", "test"):
        enc = EncodeConfig(
            source=args.source, split=split, codec=codec.codec_id, num_frames=args.num_frames, size=args.size,
            dtype="bfloat16",
        )  # fmt: skip
        cache = LatentCache(encode_split(enc, codec=codec, source=source, progress=True)["output_dir"])
        latents, labels = cache.load_latents()
        if names is not None and cache.class_names != names:
            raise ValueError(f"{args.source}: train and test splits name different classes")
        names = cache.class_names
        work = os.path.join(cache_home(), "vc_sweep_pixels")  # not next to the bundle: .gpu/ travels
        os.makedirs(work, exist_ok=True)
        pixels, pixel_labels, _ = load_pixels(
            source, split, ClipConfig(num_frames=args.num_frames, size=args.size, policy="uniform"), 1,
            os.path.join(work, f"{split}.safetensors"), order=[row["clip_id"] for row in cache.index],
        )  # fmt: skip
        if not torch.equal(pixel_labels, labels):
            raise AssertionError(f"{split}: decoded clips do not match the cache rows")
        tensors[f"{split}_latents"] = latents.to(torch.float16).contiguous()
        tensors[f"{split}_labels"] = labels.contiguous()
        tensors[f"{split}_pixels"] = pixels.contiguous()
    meta = {"source": args.source, "class_names": json.dumps(names), "codec": codec.codec_id}
    tmp = args.output + ".tmp"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, args.output)
    print(json.dumps({k: list(v.shape) for k, v in tensors.items()}))


class Runner:
    """Cells of (method, options, ratio, seed) on one train/held-out pair; results appended to a JSON file."""

    def __init__(self, args, bundle: dict, codec, device):
        from compressa_hf.evaluation.train import TrainConfig

        self.args, self.bundle, self.codec, self.device = args, bundle, codec, device
        self.num_classes = len(bundle["class_names"])
        self.train_cfg = TrainConfig(epochs=args.epochs, batch_size=32, width=args.width, test_batch_size=128)

    def cell(self, method: str, options: dict, ratio_token: str, seed: int, train_idx, held_latents_idx=None,
             held_pixels=None, held_labels=None) -> dict:  # fmt: skip
        from compressa_hf.distillation.budget import resolve_ratio
        from compressa_hf.distillation.methods import MethodContext, compress
        from compressa_hf.evaluation.train import train_and_test

        b = self.bundle
        latents, labels, pixels = b["latents"][train_idx], b["labels"][train_idx], b["pixels"][train_idx]
        t = latents.shape[1]
        size = pixels.shape[-1]
        ratio = resolve_ratio(ratio_token, t, size, latents.shape[2:])
        start = time.perf_counter()
        if method == "full":
            frames, set_labels, info = pixels, labels, {}
        else:
            ctx = MethodContext(
                latents=latents, labels=labels, num_classes=self.num_classes, codec=self.codec, ratio=ratio,
                seed=seed, frame_size=(size, size), pixels_fn=lambda: pixels, dtype="uint8",
                options=dict(options), device=self.device,
            )  # fmt: skip
            cset = compress(method, ctx)
            frames, set_labels, info = cset.frames(self.codec, device=self.device), cset.labels, cset.info
        compress_s = time.perf_counter() - start
        res = train_and_test(
            frames, set_labels, held_pixels, held_labels, self.num_classes, cfg=self.train_cfg, seed=seed,
            device=self.device,
        )  # fmt: skip
        distill = info.get("distill", {})
        return {
            "method": method,
            "ratio": ratio_token,
            "seed": seed,
            "accuracy": res.accuracy,
            "correct": [int(c) for c in res.correct],
            "train_accuracy": res.train_accuracy,
            "compress_s": compress_s,
            "train_s": res.seconds,
            "diagnostics": info.get("diagnostics", {}),
            "history": [
                {k: h.get(k) for k in ("pass", "loss", "acc", "scorer_entropy", "tau")}
                for h in distill.get("history", [])
            ],
            "guide_warmup": distill.get("guide_warmup", {}),
        }


def _save(path: str, data: dict) -> None:
    from compressa_hf.io import atomic_write_json

    atomic_write_json(path, data)


def _mean_acc(cells: list[dict], name: str, ratio: str | None = None) -> float:
    accs = [c["accuracy"] for c in cells if c["name"] == name and (ratio is None or c["ratio"] == ratio)]
    return float(np.mean(accs)) if accs else float("nan")


def _paired(cells: list[dict], a: str, b: str, ratio: str) -> dict | None:
    """Paired bootstrap of a - b over (seeds, held-out clips); folds are concatenated per seed."""
    from compressa_hf.evaluation.stats import paired_bootstrap

    def matrix(name):
        by_seed: dict[int, list] = {}
        for c in sorted(
            (c for c in cells if c["name"] == name and c["ratio"] == ratio), key=lambda c: (c["seed"], c["fold"])
        ):
            by_seed.setdefault(c["seed"], []).append(c["correct"])
        return {s: sum(v, []) for s, v in by_seed.items()}

    ma, mb = matrix(a), matrix(b)
    seeds = sorted(s for s in set(ma) & set(mb) if len(ma[s]) == len(mb[s]))
    if not seeds:
        return None
    width = min(len(ma[s]) for s in seeds)
    seeds = [s for s in seeds if len(ma[s]) == width]
    d = paired_bootstrap(np.array([ma[s] for s in seeds]), np.array([mb[s] for s in seeds]))
    return {**d.to_dict(), "seeds": len(seeds), "clips": width}


def run(args) -> int:
    from safetensors import safe_open

    from compressa_hf.codecs import load_codec
    from compressa_hf.evaluation.splits import fold_split, stratified_folds

    device = torch.device(args.device)
    torch.manual_seed(0)
    with safe_open(args.bundle, "pt") as f:
        meta = f.metadata()
        raw = {k: f.get_tensor(k) for k in f.keys()}
    tae = "tae:taef2"
    codec = load_codec(tae, device, getattr(torch, args.codec_dtype))
    configs = dict(CONFIGS)
    ratios = args.ratios.split(",")
    if args.configs:
        configs = {k: CONFIGS[k] for k in args.configs.split(",")}
    if args.dry_run:  # tiny: 2 classes' worth of clips, 16 px is below TAEF2's 8x; keep 48 px, few epochs
        keep = torch.cat([torch.nonzero(raw["train_labels"] == c).flatten()[:6] for c in range(3)])
        keep_t = torch.cat([torch.nonzero(raw["test_labels"] == c).flatten()[:3] for c in range(3)])
        for split, idx in (("train", keep), ("test", keep_t)):
            for k in ("latents", "labels", "pixels"):
                raw[f"{split}_{k}"] = raw[f"{split}_{k}"][idx]
        configs = {k: {**v, "passes": 1, "guide_warmup_epochs": min(v.get("guide_warmup_epochs", 0), 1)}
                   for k, v in list(configs.items())}  # fmt: skip
    names = json.loads(meta["class_names"])
    if args.dry_run:
        names = names[:3]
    train = {"latents": raw["train_latents"], "labels": raw["train_labels"], "pixels": raw["train_pixels"],
             "class_names": names}  # fmt: skip
    runner = Runner(args, train, codec, device)
    out = {
        "args": vars(args),
        "bundle": {k: list(v.shape) for k, v in raw.items()},
        "source": meta.get("source"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "configs": {k: {**BASE, **v} for k, v in configs.items()},
        "baselines": {k: v[1] for k, v in BASELINES.items()},
        "sweep": [],
        "test": [],
    }
    t0 = time.perf_counter()

    # Stage 1: validation folds inside the training split.
    labels = train["labels"]
    fold_of = stratified_folds(labels.numpy(), args.val_folds, seed=0, num_classes=len(names))
    # Baselines first: a sweep cut off by its budget still has uniform to compare with.
    entries = [(n, m, o) for n, (m, o) in BASELINES.items()]
    entries += [(n, "videocompressa", {**BASE, **o}) for n, o in configs.items()]
    stop = False
    for seed in range(args.sweep_seeds):
        for name, method, options in entries:
            for ratio in ratios:
                for fold in range(args.val_folds):
                    if time.perf_counter() - t0 > args.sweep_budget_s:
                        stop = True
                        break
                    tr, ho = (torch.from_numpy(x) for x in fold_split(fold_of, fold))
                    cell = runner.cell(method, options, ratio, seed, tr, held_pixels=train["pixels"][ho],
                                       held_labels=labels[ho])  # fmt: skip
                    cell.update(name=name, fold=fold)
                    out["sweep"].append(cell)
                    logger.info("sweep %s %s seed %d fold %d: %.3f (%.1f s)", name, ratio, seed, fold,
                                cell["accuracy"], cell["compress_s"] + cell["train_s"])  # fmt: skip
                    _save(args.output, out)
                if stop:
                    break
            if stop:
                break
        if stop:
            break
    sweep = out["sweep"]
    complete = [n for n in configs if all(
        sum(1 for c in sweep if c["name"] == n and c["ratio"] == r) == sum(
            1 for c in sweep if c["name"] == "uniform" and c["ratio"] == r) for r in ratios)]  # fmt: skip
    summary = {}
    for name in [*configs, *BASELINES]:
        summary[name] = {r: _mean_acc(sweep, name, r) for r in ratios}
        summary[name]["mean"] = _mean_acc(sweep, name)
        summary[name]["vs_uniform"] = (
            {r: _paired(sweep, name, "uniform", r) for r in ratios} if name != "uniform" else {}
        )
    candidates = [n for n in complete if not np.isnan(summary[n]["mean"])] or list(configs)
    best = max(candidates, key=lambda n: summary[n]["mean"])
    out["sweep_summary"] = summary
    out["chosen"] = {"name": best, "options": {**BASE, **configs[best]}, "rule": "highest mean validation accuracy "
                     "over the ratios, among configurations with as many cells as uniform"}  # fmt: skip
    out["sweep_s"] = time.perf_counter() - t0
    _save(args.output, out)
    logger.info("chosen on validation: %s (%.3f)", best, summary[best]["mean"])

    # Stage 2: the chosen configuration once on the test split.
    test_pixels, test_labels = raw["test_pixels"], raw["test_labels"]
    all_train = torch.arange(len(labels))
    chosen = {**BASE, **configs[best]}
    final = [("videocompressa", "videocompressa", chosen), ("scorer_only", "scorer_only", chosen)]
    final += [(n, m, o) for n, (m, o) in BASELINES.items()]
    t1 = time.perf_counter()
    for seed in range(args.test_seeds):
        for name, method, options in [("full", "full", {}), *final]:
            for ratio in ratios if method != "full" else ratios[:1]:
                if time.perf_counter() - t1 > args.test_budget_s:
                    break
                cell = runner.cell(method, options, ratio, seed, all_train, held_pixels=test_pixels,
                                   held_labels=test_labels)  # fmt: skip
                cell.update(name=name, fold=0)
                out["test"].append(cell)
                logger.info("test %s %s seed %d: %.3f", name, ratio, seed, cell["accuracy"])
                _save(args.output, out)
    test = out["test"]

    def cells_of(name, r):
        return [c["accuracy"] for c in test if c["name"] == name and (name == "full" or c["ratio"] == r)]

    out["test_summary"] = {
        name: {
            r: {"mean": float(np.mean(a)), "std": float(np.std(a)), "seeds": len(a)}
            for r in (ratios[:1] if name == "full" else ratios)
            if (a := cells_of(name, r))
        }
        for name in ["full"] + [n for n, _, _ in final]
    }
    out["test_paired"] = {
        f"videocompressa - {b}": {r: _paired(test, "videocompressa", b, r) for r in ratios}
        for b in ("uniform", "dm", "scorer_only", "random_frame")
    }
    out["test_s"] = time.perf_counter() - t1
    _save(args.output, out)
    print(json.dumps({"chosen": out["chosen"], "test_summary": out["test_summary"]}, indent=1))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--source", default=os.path.join(SHARED, "data", "arid6_iid"))
    p.add_argument("--num_frames", type=int, default=8)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--output", required=True)
    r = sub.add_parser("run")
    r.add_argument("--bundle", required=True)
    r.add_argument("--output", required=True)
    r.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    r.add_argument("--codec_dtype", default="bfloat16")
    r.add_argument("--ratios", default="k1,k2")
    r.add_argument("--configs", default=None, help="comma-separated names of CONFIGS (default: all)")
    r.add_argument("--val_folds", type=int, default=3)
    r.add_argument("--sweep_seeds", type=int, default=2)
    r.add_argument("--sweep_budget_s", type=float, default=240)
    r.add_argument("--test_seeds", type=int, default=10)
    r.add_argument("--test_budget_s", type=float, default=200)
    r.add_argument("--epochs", type=int, default=40)
    r.add_argument("--width", type=int, default=32)
    r.add_argument("--dry-run", dest="dry_run", action="store_true", help="tiny sizes, to check the script on CPU")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.command == "prepare":
        prepare(args)
        return 0
    if args.dry_run:
        args.epochs, args.val_folds, args.sweep_seeds, args.test_seeds = 1, 2, 1, 1
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
