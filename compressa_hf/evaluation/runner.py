"""`compressa evaluate`'s engine: every method at every ratio and seed, a network trained from scratch on each
result, one report.

Layout of `output/` (every file written atomically, so a killed run resumes where it stopped; the train split's
latent cache is the shared one of `compressa_hf.cache`, which `compressa encode` and `distill` reuse):
    work/pixels_<split>_T<T>.safetensors   real uint8 clips: the train split (for pixel-space methods and the
                                   full-data reference) and the test split (T uniform frames)
    work/methods/<method>/r<ratio>_s<seed>/   a method's own checkpoints (VideoCompressa resumes mid-run)
    work/shared/                   what methods reuse across cells (`MethodContext.shared_dir`): the expert
                                   trajectories of MTT / DATM / MTT+VDSD, keyed by the training clips and settings
    sets/<method>/r<ratio>_s<seed>.safetensors   the compressed set of a cell (stored tensors + what trains)
    cells/<arch>/<method>/r<ratio>_s<seed>.json   one trained network's result
    work/teachers/<arch>_s<seed>.safetensors   `--soft_labels`: the teacher of a seed (rows `<method>+soft`, whose
                                   sets store its soft labels in the budget; `compressa_hf.distillation.soft_labels`);
                                   one per fold too under `--folds`, prefixed like the cells
    report.json, report.md, report.png
Other protocols (see `compressa_hf.evaluation.splits`) prefix sets, cells and method folders with the part held out:
`--folds K` pools the train and test splits (both splits' latent caches and pixels) into K stratified folds and
names fold f's cells `f<f>_r<ratio>_s<seed>`; `--validation_fraction F` holds out a stratified F of the train split
(`val_r<ratio>_s<seed>`) and never lists the test split. The report pools the held-out parts: per seed, one
correctness vector over every held-out clip, each tested once.
Memory: in the default protocol the latents and pixels are read from their files a batch at a time (lazy row arrays
of `compressa_hf.rows`; the full-data reference trains through a DataLoader over them), so host memory is bounded
by the batch and the networks; methods hold what they select (a set), and the ones that need every latent at once
(DM, LVDD) read them whole. `--folds` and `--validation_fraction` hold their (small) pools in memory.
Several processes (`accelerate launch --num_processes N [--num_machines M] -m compressa_hf.cli evaluate ...`, one
work folder on a file system every machine sees): the caches are encoded rank-sharded, the main process decodes the
pixel files while the others wait, rank r runs cells r, r + N, ... (cell order: part, seed, method, ratio), and the
main process writes the report from every rank's cells, the same report a single process writes.
A set whose rows hold different numbers of key frames (PRISM) trains on each row interpolated back to T latent frames
and decoded (`CompressedSet.frames`), and its cells record the key frames per row (`frames_per_row_stats`).
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

import numpy as np
import torch

from compressa_hf.evaluation.report import plot, ratio_key, summarise, to_markdown
from compressa_hf.evaluation.stats import chance_levels
from compressa_hf.evaluation.train import TrainConfig, train_and_test
from compressa_hf.io import atomic_write_json, atomic_write_text
from compressa_hf.rows import in_memory

logger = logging.getLogger(__name__)

#: Every row of the paper's Table 1 this project has, plus the random-frame floor and PRISM (the registry minus `full`,
#: which `full_data` controls).
DEFAULT_METHODS = (
    "videocompressa,scorer_only,uniform,random_frame,pixel_diff,avs,random,herding,forgetting,grand,dm,lvdd,prism,mtt,"
    "datm,dm_vdsd,mtt_vdsd"
)


@dataclass
class EvaluateArguments:
    """Arguments of `compressa evaluate` (the training protocol's are `TrainConfig`'s).

    Args:
        source: Source spec (a `videofolder` path or `name:key=value,...`).
        output: Folder of the run (resumable; see the module docstring).
        methods: Comma-separated method names (`compressa_hf.distillation.methods.METHODS`); `full` in the list means
            `full_data` (`--methods full` trains the full-data reference alone).
        ratios: Comma-separated storage ratios in percent, or `k<K>` for exactly the ratio of K uint8 latent frames
            per video (e.g. `k1,k2`).
        seeds: Seeds 0..N-1; each seeds both the method and the network trained on its output.
        archs: Comma-separated evaluation networks (`compressa_hf.nets.NETS`): convnet, convnet3d, mlp, rnn, gru.
        full_data: Also train on the whole real training split (the reference column).
        train_split / test_split: Split names of the source.
        codec / codec_dtype / num_frames / size / policy / num_workers: The latent cache (see `compressa encode`).
        test_frames: Uniform frames per test clip (default: num_frames).
        frames_per_video: K fixed for the methods that store the planner's K frames per video (frame selection,
            VideoCompressa, DM, MTT, DATM; `FIXED_K_METHODS`), which then keep fewer videos per class when K frames
            of every video do not fit; the other methods give n/a cells. None: the planner's largest K.
        dtype: Latent storage dtype for the planner: auto, uint8, float16 or uint4 (`compressa_hf.codecs.storage`;
            a method that cannot store it, PRISM, LVDD or the VDSD memories, gives an n/a cell).
        method_config: YAML file of per-method options, `{method: {option: value}}`.
        device: `auto`, `cpu` or `cuda`.
        progress: Progress bars.
        soft_labels: Also evaluate every method with teacher soft labels, as separate rows `<method>+soft` (same
            kind): the method runs with C x itemsize bytes per kept video reserved (it keeps fewer videos), the
            teacher's probabilities fill them, and the network trains on them (`compressa_hf.distillation.soft_labels`).
        soft_label_dtype / soft_label_temperature / soft_label_teacher: Their storage (float16 or uint8), the
            teacher's softmax temperature, and the teacher network (trained on the full training clips per seed).
        folds: K > 0: pool the train and test splits and run K-fold stratified cross-validation (every clip is tested
            once per seed; budgets are per fold's training set). Right for a random split (arid6_iid, scenes
            shared), wrong for one made scene- or subject-disjoint on purpose (keep that split's test set). 0: off.
        validation_fraction: F > 0: train on the train split minus a stratified F of it and test on that F; the test
            split is never read. For choosing settings (a sweep) without touching the test clips. 0: off.
        validation_groups: Which clips of the carve go together (`compressa_hf.evaluation.splits.clip_groups`):
            `auto` (UCF101's groups `v_<Class>_gGG_cCC` when every clip is so named: a validation clip never shares
            its actor and scene with a training clip, as in UCF101's test splits), `none` (clip by clip), or a
            regular expression whose first capture group names a clip's group within its class.
        fold_seed: Seeds the folds and the validation carve (not the methods or networks).
        augment: A DSA-style augmentation strategy (`dsa`, or transform names joined by `_`:
            `compressa_hf.evaluation.augment.TRANSFORMS`): also evaluate every row (each method, its `+soft` row, the
            full-data reference) trained on the same set with that augmentation, one draw per clip for all its
            frames, as separate rows `<row>+aug`. "" (default): off, the paper's protocol (flips only).
        augment_mode: `single` (one transform per batch, DSA's default) or `all`.
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
    dtype: str = field(default="auto", metadata={"help": "Latent storage dtype: auto, uint8, float16, uint4."})
    frames_per_video: int | None = field(
        default=None, metadata={"help": "Fix K for the planner's methods (fewer videos when K for all does not fit)."}
    )
    method_config: str | None = field(default=None, metadata={"help": "YAML of per-method options."})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda."})
    progress: bool = field(default=True, metadata={"help": "Progress bars."})
    soft_labels: bool = field(default=False, metadata={"help": "Add <method>+soft rows (teacher soft labels)."})
    soft_label_dtype: str = field(default="float16", metadata={"help": "Soft-label storage: float16 or uint8."})
    soft_label_temperature: float = field(default=1.0, metadata={"help": "Teacher softmax temperature."})
    soft_label_teacher: str = field(default="convnet", metadata={"help": "Teacher network (nets.NETS)."})
    folds: int = field(default=0, metadata={"help": "K-fold cross-validation over train + test pooled (0: off)."})
    validation_fraction: float = field(
        default=0.0, metadata={"help": "Hold out this stratified share of the train split; never read test (0: off)."}
    )
    validation_groups: str = field(
        default="auto", metadata={"help": "Hold out whole groups: auto (UCF101's gGG), none, or a regex."}
    )
    fold_seed: int = field(default=0, metadata={"help": "Seed of the folds / validation carve."})
    augment: str = field(
        default="",
        metadata={"help": "Add <row>+aug rows trained with this augmentation (`dsa` or names joined by _)."},
    )
    augment_mode: str = field(default="single", metadata={"help": "single (one transform per batch) or all."})
    cell_errors: str = field(
        default="raise",
        metadata={
            "help": "A method or training that fails in a cell: raise (stop the run) or record (an `error` cell with "
            "the exception, logged with its traceback; the run goes on, and a resumed run keeps it: delete its cell file "
            "to run it again)."
        },
    )

    def __post_init__(self):
        from compressa_hf.distillation.methods import METHODS
        from compressa_hf.nets import NETS

        if "full" in self.method_list:  # `--methods full`: the full-data reference, which `full_data` controls
            if not self.full_data:
                raise ValueError("--methods names full but --full_data is false; drop one of them")
            self.methods = ",".join(m for m in self.method_list if m != "full")
        if not self.method_list and not self.full_data:
            raise ValueError("nothing to evaluate: --methods is empty and --full_data false")
        if self.cell_errors not in ("raise", "record"):
            raise ValueError(f"--cell_errors must be raise or record, got {self.cell_errors!r}")
        unknown = [m for m in self.method_list if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown} in --methods; known: {sorted(METHODS)}")
        bad = [a for a in self.arch_list if a not in NETS]
        if bad:
            raise ValueError(f"unknown network(s) {bad} in --archs; known: {sorted(NETS)}")
        if self.seeds < 1:
            raise ValueError(f"`seeds` must be >= 1, got {self.seeds}")
        if self.frames_per_video is not None and not 1 <= self.frames_per_video <= self.num_frames:
            raise ValueError(
                f"`frames_per_video` must be in [1, num_frames={self.num_frames}], got {self.frames_per_video}"
            )
        if self.dtype not in ("auto", "uint8", "float16", "uint4"):
            raise ValueError(f"`dtype` must be auto, uint8, float16 or uint4, got {self.dtype!r}")
        if self.soft_label_teacher not in NETS:
            raise ValueError(f"unknown --soft_label_teacher {self.soft_label_teacher!r}; known: {sorted(NETS)}")
        from compressa_hf.distillation.soft_labels import check_options

        check_options(self.soft_label_dtype, self.soft_label_temperature)
        if self.folds < 0 or self.folds == 1:
            raise ValueError(f"`folds` must be 0 (off) or >= 2, got {self.folds}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"`validation_fraction` must be in [0, 1) (0: off), got {self.validation_fraction}")
        if self.validation_groups not in ("auto", "none"):
            import re

            try:
                re.compile(self.validation_groups)
            except re.error as e:
                raise ValueError(
                    f"--validation_groups {self.validation_groups!r} is not a regular expression ({e})"
                ) from None
        if self.folds and self.validation_fraction:
            raise ValueError(
                f"--folds {self.folds} and --validation_fraction {self.validation_fraction} exclude each other: folds "
                "test on every clip, validation on part of the train split only; pass one"
            )
        if not self.ratios.strip():
            raise ValueError("--ratios is empty; give percents (e.g. 0.5,1) or k<K> (e.g. k1,k2)")
        from compressa_hf.distillation.budget import check_ratio_token

        for token in self.ratio_tokens:
            check_ratio_token(token)
        self.augmentation  # noqa: B018 - an unknown transform or mode is an error now

    @property
    def augmentation(self):
        """The `Augmentation` of the `+aug` rows, or None when `augment` is off."""
        from compressa_hf.evaluation.augment import Augmentation

        return Augmentation(self.augment.strip(), self.augment_mode) if self.augment.strip() else None

    @property
    def protocol(self) -> str:
        """`split` (train on the train split, test on the test split), `folds` or `validation`."""
        return "folds" if self.folds else "validation" if self.validation_fraction else "split"

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
    from compressa_hf.distillation.budget import resolve_ratio

    return [resolve_ratio(token, num_frames, size, latent_shape) for token in tokens]


def load_pixels(source, split: str, clip_cfg, num_workers: int, path: str, order: list[str] | None = None):
    """Real uint8 clips of a split, decoded once into `path` (safetensors: `pixels` `(N, T, 3, H, W)` and `labels`),
    their labels and clip ids.

    The pixels come back as a lazy `compressa_hf.rows.RowFile` over the file: rows are read when indexed, so memory
    holds the batch a caller reads, not the split; they are written the same way, a few clips at a time. `order`
    (clip ids) fixes the rows' order, e.g. that of the latent cache; clips that cannot be decoded are skipped with a
    warning naming the file.
    """
    from safetensors import safe_open

    from compressa_hf.distributed import get_state
    from compressa_hf.rows import SafetensorsRowWriter, safetensors_rows

    state = get_state()  # with several processes the main one decodes, the others wait and read the file
    if not os.path.exists(path) and state.is_main_process:
        from compressa_hf.cache import clip_loader
        from compressa_hf.threads import beside_workers

        refs = source.list_clips(split)
        if order is not None:
            by_id = {r.clip_id: r for r in refs}
            missing = [c for c in order if c not in by_id]
            if missing:
                raise ValueError(
                    f"{len(missing)} cached clips are not in split {split!r} any more, e.g. {missing[:3]}"
                )
            refs = [by_id[c] for c in order]
        row_shape = (clip_cfg.num_frames, 3, clip_cfg.size, clip_cfg.size)
        writer = SafetensorsRowWriter(path, "pixels", row_shape, torch.uint8)
        labels, ids = [], []
        try:
            with beside_workers(num_workers):
                for batch in clip_loader(source, refs, clip_cfg, clips_per_batch=8, num_workers=num_workers):
                    for item in batch:
                        if "error" in item:
                            logger.warning("skipped %s: %s", item["path"], item["error"])
                            continue
                        writer.append(torch.from_numpy(item["frames"]).permute(0, 3, 1, 2)[None])
                        labels.append(item["label"])
                        ids.append(item["clip_id"])
            if not ids:
                raise ValueError(f"no decodable clip in split {split!r} of the source")
            atomic_write_json(path + ".ids.json", ids)
            writer.finish({"labels": torch.tensor(labels, dtype=torch.long)})
        except BaseException:
            writer.abort()
            raise
    state.wait_for_everyone()
    with safe_open(path, "pt") as f:
        labels = f.get_tensor("labels")
    with open(path + ".ids.json") as f:
        ids = json.load(f)
    return safetensors_rows(path, "pixels"), labels, ids


def _method_options(path: str | None) -> dict[str, dict]:
    if not path:
        return {}
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected a mapping {{method: {{option: value}}}}")
    from compressa_hf.distillation.methods import METHODS

    unknown = sorted(set(data) - set(METHODS))
    if unknown:
        raise ValueError(f"{path}: unknown method(s) {unknown}; known: {sorted(METHODS)}")
    return data


def _split_text(source, split: str) -> str:
    """`'test'`, or `'test' (folder val/)` where the source reads the split under another name."""
    name = source.split_name(split)
    return repr(split) if name == split else f"{split!r} (folder {name}/)"


def _protocol_settings(args: EvaluateArguments) -> dict:
    """What makes a non-default protocol's cells (which clips each part trains and tests on)."""
    if args.protocol == "folds":
        return {"folds": args.folds, "fold_seed": args.fold_seed, "splits": [args.train_split, args.test_split]}
    settings = {
        "validation_fraction": args.validation_fraction,
        "fold_seed": args.fold_seed,
        "split": args.train_split,
    }
    if args.validation_groups != "auto":  # (only then, so runs made before the option existed still resume)
        settings["validation_groups"] = args.validation_groups
    return settings


def _check_augment_cells(paths: list[str], augmentation) -> None:
    """Refuse to resume `+aug` cells trained with another augmentation than `augmentation`, naming the file."""
    for path in paths:
        with open(path) as f:
            saved = json.load(f).get("augment")
        if saved is not None and saved != augmentation.settings():
            raise ValueError(
                f"{path} was trained with augmentation {saved}, not {augmentation.settings()}; use another --output or "
                "delete the +aug rows' cells"
            )


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


@dataclass
class _Part:
    """One (training, held-out) partition of `_Clips`' rows; None takes every row (the default protocol).

    Attributes:
        prefix: Of its sets, cells and method folders: "" (split), "f<fold>_" (folds) or "val_" (validation).
        fields: Added to each of its cell records, e.g. `{"fold": 2}`.
        train: Sorted positions into the training rows (`latents`, `labels`, `train_pixels`).
        test: Sorted positions into the held-out rows (`test_pixels`, `test_labels`).
    """

    prefix: str
    fields: dict
    train: np.ndarray | None = None
    test: np.ndarray | None = None


@dataclass
class _Clips:
    """What a protocol trains and tests on.

    `latents` `(N, T, C, h, w)`, `labels` `(N,)` and `train_pixels` `(N, T, 3, H, W)` uint8 are the training rows
    (latents and pixels as lazy row arrays of `compressa_hf.rows` in the default protocol, tensors in the others);
    `test_pixels` `(M, test_frames, 3, H, W)` uint8 and `test_labels` `(M,)` the held-out rows (for folds and
    validation the same clips as the training rows, in the same order). `held_ids` names the held-out clips in the
    order the report pools them (the parts' test rows one after another); None for the default protocol.
    """

    latents: torch.Tensor
    labels: torch.Tensor
    train_pixels: torch.Tensor
    test_pixels: torch.Tensor
    test_labels: torch.Tensor
    class_names: list[str]
    latent_shape: list[int]
    parts: list[_Part]
    protocol: dict
    held_ids: list[str] | None = None


def _take(t: torch.Tensor, idx: np.ndarray | None) -> torch.Tensor:
    return t if idx is None else t[torch.as_tensor(idx, dtype=torch.long)]


def _load_clips(args: EvaluateArguments, codec, source, work: str, test_frames: int) -> _Clips:
    """The latent caches (shared with `compressa encode` / `distill`; seed 0: the clips, not the methods, are
    cached) and pixels each protocol needs, and its parts:

    - split: the train split's cache and pixels (T frames, the cache's policy), the test split's pixels
      (`test_frames` uniform); one part.
    - folds: both splits' caches and pixels in both views, concatenated (train split first); K parts.
    - validation: the train split's cache and pixels in both views; one part. The test split is never listed.
    Pixel files are `work/pixels_<split>_T<frames>.safetensors` for the two views the default protocol reads, plus
    `..._test` / `..._train` suffixed ones for the other two views when the views differ.
    """
    from compressa_hf.cache import EncodeConfig, LatentCache, encode_split
    from compressa_hf.clips import ClipConfig
    from compressa_hf.evaluation.splits import clip_groups, fold_split, stratified_folds, validation_split

    def cache_of(split: str):
        enc = EncodeConfig(
            source=args.source,
            split=split,
            codec=codec.codec_id,
            num_frames=args.num_frames,
            size=args.size,
            policy=args.policy,
            num_workers=args.num_workers,
            dtype=args.codec_dtype,
        )
        cache = LatentCache(encode_split(enc, codec=codec, source=source, progress=args.progress)["output_dir"])
        return enc.clip_config(), cache

    clip_cfg, cache = cache_of(args.train_split)
    test_cfg = ClipConfig(num_frames=test_frames, size=args.size, policy="uniform")

    def pixel_path(split: str, training: bool) -> str:
        # The default protocol's two views keep their names; the other two get a suffix unless both views are the
        # same frames (uniform policy and test_frames == T), when one file serves both.
        default = (split == args.train_split) == training
        suffix = "" if default or clip_cfg == test_cfg else "_train" if training else "_test"
        frames = args.num_frames if training else test_frames
        return os.path.join(work, f"pixels_{split}_T{frames}{suffix}.safetensors")

    def view(split: str, training: bool, order: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """A split's pixels in the training (T, the cache's policy) or test (`test_frames` uniform) view, rows in
        the cache's `order`."""
        path = pixel_path(split, training)
        pixels, labels, ids = load_pixels(
            source, split, clip_cfg if training else test_cfg, args.num_workers, path, order=order
        )
        if ids != order:  # a file written without an order, or a clip that decoded at T frames but not now
            at = {c: i for i, c in enumerate(ids)}
            missing = [c for c in order if c not in at]
            if missing:
                raise ValueError(
                    f"{len(missing)} clips of the {split!r} latent cache are not in {path} (they could not be "
                    f"decoded with {test_frames} uniform frames?), e.g. {missing[:3]}; delete it to decode again"
                )
            rows = torch.tensor([at[c] for c in order], dtype=torch.long)
            pixels, labels = pixels[rows], labels[rows]
        return pixels, labels

    latents, labels = cache.latents(), cache.labels  # lazy: rows are read from the shards when a method asks
    class_names = cache.class_names
    ids = [row["clip_id"] for row in cache.index]
    train_pixels, pixel_labels = view(args.train_split, True, ids)
    if not torch.equal(pixel_labels, labels):
        raise AssertionError("the decoded training clips do not match the latent cache's rows")
    common = {"latent_shape": cache.meta["latent_shape"], "class_names": class_names}
    if args.protocol == "split":
        test_pixels, test_labels, _ = load_pixels(
            source, args.test_split, test_cfg, args.num_workers, pixel_path(args.test_split, False)
        )
        protocol = {
            "name": "split",
            "train_split": args.train_split,
            "test_split": args.test_split,
            "description": f"train on {_split_text(source, args.train_split)}, "
            f"test on {_split_text(source, args.test_split)}",
        }
        parts = [_Part("", {})]
        return _Clips(
            latents, labels, train_pixels, test_pixels, test_labels, parts=parts, protocol=protocol, **common
        )

    if args.protocol == "validation":
        test_pixels, test_labels = view(args.train_split, False, ids)
        groups = clip_groups(ids, args.validation_groups)
        train, held = validation_split(
            labels, args.validation_fraction, args.fold_seed, class_names=class_names, groups=groups
        )
        grouped = "" if groups is None else f" in whole groups ({len(set(zip(labels.tolist(), groups)))} in the split)"
        protocol = {
            "name": "validation",
            "split": args.train_split,
            "fraction": args.validation_fraction,
            "fold_seed": args.fold_seed,
            "groups": None if groups is None else args.validation_groups,
            "train_clips": len(train),
            "held_out_clips": len(held),
            "description": f"validation: a stratified {args.validation_fraction:g} of {args.train_split!r} held out"
            f"{grouped} ({len(held)} clips), {args.test_split!r} never read",
        }
        parts = [_Part("val_", {}, train, held)]
        held_ids = [f"{args.train_split}:{ids[i]}" for i in held]
        return _Clips(
            latents,
            labels,
            train_pixels,
            test_pixels,
            test_labels,
            parts=parts,
            protocol=protocol,
            held_ids=held_ids,
            **common,
        )

    # folds: both splits pooled, train split first.
    _, test_cache = cache_of(args.test_split)
    if test_cache.class_names != class_names:
        raise ValueError(
            f"--folds pools {args.train_split!r} and {args.test_split!r}, but their class lists differ "
            f"({class_names} vs {test_cache.class_names}); folds need one label space"
        )
    t_latents, t_labels = test_cache.latents(), test_cache.labels
    t_ids = [row["clip_id"] for row in test_cache.index]
    t_pixels, t_pixel_labels = view(args.test_split, True, t_ids)
    if not torch.equal(t_pixel_labels, t_labels):
        raise AssertionError("the decoded test-split clips do not match their latent cache's rows")
    held_views = [view(args.train_split, False, ids), view(args.test_split, False, t_ids)]
    labels = torch.cat([labels, t_labels])
    pool_ids = [f"{args.train_split}:{c}" for c in ids] + [f"{args.test_split}:{c}" for c in t_ids]
    assignment = stratified_folds(labels, args.folds, args.fold_seed, class_names=class_names)
    parts = [_Part(f"f{f}_", {"fold": f}, *fold_split(assignment, f)) for f in range(args.folds)]
    protocol = {
        "name": "folds",
        "folds": args.folds,
        "fold_seed": args.fold_seed,
        "splits": [args.train_split, args.test_split],
        "pooled_clips": len(labels),
        "fold_train_clips": [len(p.train) for p in parts],
        "fold_test_clips": [len(p.test) for p in parts],
        "description": f"{args.folds}-fold stratified cross-validation over {args.train_split!r} + "
        f"{args.test_split!r} ({len(labels)} clips, fold seed {args.fold_seed})",
    }
    # Folds pool two splits into one array, in memory: a protocol for small labelled sets.
    return _Clips(
        torch.cat([in_memory(latents), in_memory(t_latents)]),
        labels,
        torch.cat([in_memory(train_pixels), in_memory(t_pixels)]),
        torch.cat([in_memory(held_views[0][0]), in_memory(held_views[1][0])]),
        torch.cat([held_views[0][1], held_views[1][1]]),
        parts=parts,
        protocol=protocol,
        held_ids=[pool_ids[i] for p in parts for i in p.test],
        **common,
    )


def _recorded_error(err: Exception, where: str) -> str:
    """Log a failed cell with its traceback (`--cell_errors record`) and free what a CUDA failure left; its reason."""
    logger.error("%s failed; recorded as an error cell, the run goes on", where, exc_info=err)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # an out-of-memory error leaves the failed cell's blocks cached
    return f"{type(err).__name__}: {err}"


def run(args: EvaluateArguments, train_cfg: TrainConfig) -> dict:
    """Run (or resume) every cell and write the report; returns the report dict."""
    from compressa_hf.cache import resolve_device
    from compressa_hf.codecs import load_codec, load_default_codec
    from compressa_hf.distillation.methods import MethodContext, compress, get_method
    from compressa_hf.distillation.methods.base import CompressedSet, parse_options
    from compressa_hf.distillation.soft_labels import SoftLabeller, base_method, is_soft, soft_name
    from compressa_hf.distillation.soft_labels import targets as soft_targets
    from compressa_hf.distributed import get_state
    from compressa_hf.evaluation.augment import aug_name, unaugmented
    from compressa_hf.sources import parse_source_spec

    state = get_state()  # under `accelerate launch`, rank r runs cells r, r + W, ...; the main process reports
    several = state.num_processes > 1 and args.device in ("auto", "cuda")
    device = state.device if several else resolve_device(args.device)  # a GPU per rank
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
            # (reading ahead changes no result, so runs may resume with other `loader_workers`)
            "train_config": {k: v for k, v in asdict(train_cfg).items() if k != "loader_workers"},
            # Only other protocols add this key, so runs made before it existed still resume.
            **({"protocol": _protocol_settings(args)} if args.protocol != "split" else {}),
            **({"frames_per_video": args.frames_per_video} if args.frames_per_video is not None else {}),
        },
    )
    options = _method_options(args.method_config)
    for method in args.method_list:  # option errors now, not as "n/a" cells later
        parse_options(get_method(method).Options, options.get(method), method)

    # Stage 1: the latent caches and pixels of the clips (see `_load_clips`).
    data = _load_clips(args, codec, source, work, test_frames)
    class_names = data.class_names
    num_classes = len(class_names)
    ratios = resolve_ratios(args.ratio_tokens, args.num_frames, args.size, data.latent_shape)
    held_labels = torch.cat([_take(data.test_labels, p.test) for p in data.parts])
    train_sizes = [len(data.labels) if p.train is None else len(p.train) for p in data.parts]
    logger.info(
        "evaluate (%s): %s training clips, %d held-out clips, %d classes; ratios %s; methods %s; archs %s; %d seeds",
        data.protocol["description"],
        "/".join(str(n) for n in sorted(set(train_sizes))),
        len(held_labels),
        num_classes,
        [f"{float(r):.4f}" for r in ratios],
        args.method_list,
        args.arch_list,
        args.seeds,
    )

    labeller = None
    if args.soft_labels:
        from compressa_hf.evaluation.train import train_network

        labeller = SoftLabeller(
            os.path.join(work, "teachers"),
            num_classes,
            train_cfg,
            train_network,
            args.soft_label_teacher,
            args.soft_label_dtype,
            args.soft_label_temperature,
            device,
            args.progress,
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
            options=options.get(base_method(method), {}),
            work_dir=os.path.join(work, "methods", method, f"{part.prefix}r{ratio_key(float(ratio))}_s{seed}"),
            device=device,
            progress=args.progress,
            class_names=class_names,
            label_bytes_per_video=labeller.bytes_per_row if is_soft(method) else 0,
            shared_dir=os.path.join(work, "shared"),
            frames_per_video=args.frames_per_video,
        )

    # Budgets are per part's training set (per fold); one part in the default protocol.
    budgets: dict[str, list[int]] = {ratio_key(float(r)): [] for r in ratios}
    full_bytes: list[int] = []
    cells: list[dict] = []
    jobs = [(m, r) for m in args.method_list for r in ratios]
    if args.full_data:
        jobs.append(("full", None))
    if labeller is not None:  # the same methods on teacher soft labels, as rows of their own
        jobs += [(soft_name(m), r) for m in args.method_list for r in ratios]
    augmentation = args.augmentation
    if augmentation is not None:  # every row's set again, trained with augmentation, as rows of their own
        jobs += [(aug_name(m), r) for m, r in jobs]
    # A `+aug` cell trains on its row's set, so it runs where that row's cell runs: one process makes each set.
    owners = [jobs.index((unaugmented(m), r)) for m, r in jobs]
    blocks = [(p, s) for p in data.parts for s in range(args.seeds)]  # cell order: part, seed, then jobs

    def is_mine(block: int, job: int) -> bool:
        return (block * len(jobs) + owners[job]) % state.num_processes == state.process_index

    bar = None
    if args.progress and state.is_main_process:
        from tqdm.auto import tqdm

        own = sum(is_mine(b, j) for b in range(len(blocks)) for j in range(len(jobs)))  # this rank's cells
        bar = tqdm(total=own, desc="evaluate", unit="cell")
    if state.num_processes > 1:
        logger.info(
            "process %d of %d runs cells %d, %d + %d, ...",
            state.process_index,
            state.num_processes,
            state.process_index,
            state.process_index,
            state.num_processes,
        )
    part, cell_files = None, []
    for block, (next_part, seed) in enumerate(blocks):
        if next_part is not part:  # the part's rows, taken once for all its seeds
            part = next_part
            latents, labels, train_pixels = (
                _take(t, part.train) for t in (data.latents, data.labels, data.train_pixels)
            )
            test_pixels, test_labels = (_take(t, part.test) for t in (data.test_pixels, data.test_labels))
            for r in ratios:
                budgets[ratio_key(float(r))].append(context(r, 0, "uniform").budget_bytes)
            full_bytes.append(context(ratios[0], 0, "uniform").full_bytes)
        for job, (method, ratio) in enumerate(jobs):
            rk = ratio_key(None if ratio is None else float(ratio))
            name = f"{part.prefix}r{rk}_s{seed}"
            kind = get_method(base_method(method)).KIND
            cell_paths = {a: os.path.join(out, "cells", a, method, name + ".json") for a in args.arch_list}
            cell_files += [cell_paths[a] for a in args.arch_list]
            mine = is_mine(block, job)
            todo = [a for a, p in cell_paths.items() if not os.path.exists(p)] if mine else []
            if mine and method != unaugmented(method):
                _check_augment_cells([cell_paths[a] for a in args.arch_list if a not in todo], augmentation)
            set_row = unaugmented(method)  # the row whose set this cell trains on (itself, or `<row>` of `<row>+aug`)
            if todo:
                set_path = os.path.join(out, "sets", set_row, name + ".safetensors")
                na_path = os.path.join(out, "sets", set_row, name + ".na.json")
                ratio_value = None if ratio is None else float(ratio)
                base = {"method": method, "kind": kind, "ratio": ratio_value, "seed": seed, **part.fields}
                cset, compress_s, reason, failed = None, 0.0, None, "n/a"
                if os.path.exists(na_path):
                    with open(na_path) as f:
                        reason = json.load(f)["reason"]
                elif set_row == "full":
                    start = time.perf_counter()
                    cset = compress("full", context(ratios[0], seed, "full"))
                    compress_s = time.perf_counter() - start
                elif os.path.exists(set_path):
                    cset = CompressedSet.load(set_path)
                    compress_s = cset.info.get("compress_s", 0.0)
                    saved = cset.info.get("options")
                    if saved is not None and saved != options.get(base_method(method), {}):
                        raise ValueError(
                            f"{set_path} was made with {method} options {saved}, not "
                            f"{options.get(base_method(method), {})}; use another --output or delete that method's "
                            "sets and cells"
                        )
                    saved = cset.info.get("soft_labels", {}).get("settings")
                    if is_soft(set_row) and saved != labeller.settings:
                        raise ValueError(
                            f"{set_path} was made with soft-label settings {saved}, not {labeller.settings}; use "
                            "another --output or delete that row's sets and cells"
                        )
                else:
                    if is_soft(set_row):  # train or load the teacher outside the n/a net below
                        labeller.teacher(seed, train_pixels, labels, part.prefix)
                    start = time.perf_counter()
                    try:
                        cset = compress(base_method(method), context(ratio, seed, set_row))
                        if is_soft(set_row):  # the teacher's labels, in the room the method left
                            cset = labeller(cset, codec, cset.budget_bytes, seed, train_pixels, labels, part.prefix)
                    except ValueError as err:  # the budget cannot be met by this method at this ratio
                        reason = str(err)
                        atomic_write_json(na_path, {"reason": reason})
                        logger.warning("%s at %s %%: not applicable: %s", set_row, rk, reason)
                    except Exception as err:
                        if args.cell_errors == "raise":
                            raise
                        reason, failed = _recorded_error(err, f"{set_row} at {rk} % {part.prefix}seed {seed}"), "error"
                    else:
                        # the method's own cost: the registry's diagnostics (decoded PSNR) are not part of it
                        compress_s = time.perf_counter() - start - cset.info.get("diagnostics_s", 0.0)
                        cset.info["compress_s"] = compress_s
                        cset.info["options"] = options.get(base_method(method), {})
                        os.makedirs(os.path.dirname(set_path), exist_ok=True)
                        cset.save(set_path)
                frames = cset.frames(codec, device=device) if cset is not None else None
                for arch in todo:
                    res = None
                    if cset is not None:
                        try:
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
                                train_targets=soft_targets(cset),
                                augment=augmentation if method != set_row else None,
                            )
                        except Exception as err:
                            if args.cell_errors == "raise":
                                raise
                            reason = _recorded_error(
                                err, f"training {arch} on {method} at {rk} % {part.prefix}seed {seed}"
                            )
                            failed = "error"
                    if res is None:
                        record = {**base, "arch": arch, "status": failed, "reason": reason}
                    else:
                        stats = cset.frame_stats()  # rows of different K (PRISM's key frames): mean, min, max
                        frames_per_row = stats["mean"] if cset.variable_frames else cset.frames_per_row
                        record = {
                            **base,
                            "arch": arch,
                            "status": "ok",
                            "accuracy": res.accuracy,
                            "correct": [int(c) for c in res.correct],
                            "train_accuracy": res.train_accuracy,
                            "final_loss": res.final_loss,
                            "rows": cset.num_rows,
                            "frames_per_row": frames_per_row,
                            **({"frames_per_row_stats": stats} if cset.variable_frames else {}),
                            "stored_bytes": cset.stored_bytes,
                            "budget_bytes": cset.budget_bytes,
                            "compress_s": compress_s,
                            "train_s": res.seconds,
                            # drift in storage steps, decoded PSNR, overlap with uniform (distillation/diagnostics.py)
                            "diagnostics": cset.info.get("diagnostics", {}),
                            **({"augment": augmentation.settings()} if method != set_row else {}),
                        }
                        logger.info(
                            "%s %s%% %sseed %d %s: %.1f %% (train %.1f %%, %d rows x %s frames, %s bytes)",
                            method,
                            rk,
                            part.prefix,
                            seed,
                            arch,
                            100 * res.accuracy,
                            100 * res.train_accuracy,
                            cset.num_rows,
                            f"{stats['mean']:.2f} [{stats['min']}-{stats['max']}]"
                            if cset.variable_frames
                            else cset.frames_per_row,
                            f"{cset.stored_bytes:,}",
                        )
                    atomic_write_json(cell_paths[arch], record)
            if bar is not None and mine:
                bar.update(1)
    if bar is not None:
        bar.close()
    state.wait_for_everyone()  # every rank's cells are on disk
    for path in cell_files:
        with open(path) as f:
            cells.append(json.load(f))

    meta = {
        "source": args.source,
        "codec": codec.codec_id,
        "num_classes": num_classes,
        # The smallest part's training set (folds differ by a clip or so; `protocol` lists each).
        "train_clips": min(train_sizes),
        # Held-out clips behind each number: every clip of the parts' test rows, each tested once per seed.
        "test_clips": len(held_labels),
        "test_frames": test_frames,
        "num_frames": args.num_frames,
        "size": args.size,
        "chance": chance_levels(held_labels.tolist(), num_classes),
        # The largest part's budget, which every cell respects; per fold in `protocol.budget_bytes_per_fold`.
        "budget_bytes": {rk: max(v) for rk, v in budgets.items()},
        "full_bytes": max(full_bytes),
        "train_config": asdict(train_cfg),
        "seeds": args.seeds,
        "protocol": data.protocol,
        **({"augment": augmentation.settings()} if augmentation is not None else {}),
    }
    if args.protocol == "folds":
        data.protocol.update(budget_bytes_per_fold=budgets, full_bytes_per_fold=full_bytes)
    if data.held_ids is not None:
        meta["held_out_ids"] = data.held_ids
    rows = args.method_list + ([soft_name(m) for m in args.method_list] if labeller is not None else [])
    if augmentation is not None:
        rows += [aug_name(m) for m in rows] + (["full+aug"] if args.full_data else [])
    report = summarise(cells, rows, [float(r) for r in ratios], args.arch_list, meta)
    if not state.is_main_process:
        return report
    atomic_write_json(os.path.join(out, "report.json"), report)
    atomic_write_text(os.path.join(out, "report.md"), to_markdown(report) + "\n")
    png = os.path.join(out, "report.png")
    tmp = os.path.join(out, f".report.{os.getpid()}.png")
    plot(report, tmp)
    os.replace(tmp, png)
    return report
