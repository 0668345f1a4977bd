"""The arguments of a distillation run (`compressa distill`, `compressa_hf.distill_set`) and what they resolve to
before any compute: the method's options, the class space of the clips at hand, the budget plan and the config name.

Every check here raises `ValueError` naming the flag, so a bad run stops before it loads a codec or encodes a clip.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict, dataclass, field, fields

logger = logging.getLogger(__name__)

FULL_REFUSAL = (
    "--method full is the uncompressed reference (every real frame of every clip as pixels, 100 % of the split's "
    "bytes): there is nothing to distil, and its rows would not be latents. Publish the source split itself (e.g. "
    "`datasets.load_dataset('videofolder', data_dir=...).push_to_hub(...)`), or pick a method that compresses"
)


@dataclass
class DistillArguments:
    """Arguments of `compressa distill` besides VideoCompressa's hyperparameters (`VideoCompressaConfig`).

    Args:
        method: Method of the registry (`compressa_hf.distillation.methods.METHODS`) whose set is written; `full` (the
            uncompressed reference) is refused. See the module docstring for what rows each kind gives. `auto`
            chooses the method, dtype and K on a validation split of the training split (`--auto_*` options,
            `compressa_hf.evaluation.auto`) and writes the winner's set.
        method_options: Options of a method other than videocompressa / scorer_only: a YAML/JSON file
            (`{option: value}`, or `{method: {option: value}}` as `compressa evaluate --method_config` takes) or
            inline `key=value,...` (numbers, true/false and none are read as such). Unknown keys are errors naming
            the method.
        source: Source spec (a `videofolder` path or `name:key=value,...`).
        output: Distilled set folder (a Hub dataset repo layout; other configs in it are kept).
        ratio: Storage budget: a percent of the split's uint8 T x 3 x H x W clips (`0.52`), or `k<K>` for exactly K
            uint8 latent frames of every video (`k1`). A percent buys frames by the codec's latent size: TAEF2's 32
            channels cost 8x what TAESD's 4 do, so the same percent keeps 8x fewer frames; `--dry-run` shows the plan.
        split: Split to distil.
        dtype: Latent storage dtype: `uint8` (TAESD scaling), `float16`, `uint4` (4-bit codes under per-channel ranges:
            twice uint8's frames for the bytes, `compressa_hf.codecs.storage`), or `auto` (uint8 unless float16 fits
            the same plan). uint4 suits the methods that go through the planner (frame selection, coresets, DM,
            MTT, DATM, VideoCompressa); PRISM, LVDD and the VDSD memories take uint8 or float16.
        config_name: Config name in the repo (default `ratio_<ratio>`, `<split>_ratio_<ratio>` for a split other than
            train). Writing a config that exists replaces it (logged); other configs are never touched.
        work_dir: Checkpoints and the run summary (default `<output>.work`).
        cache_dir: Latent cache folder; default: the shared cache for these settings, which `compressa encode` and
            `compressa evaluate` reuse too (`compressa_hf.cache.cache_home`).
        codec / num_frames / size / policy / num_workers: The latent cache, see `compressa encode`.
        codec_dtype: Compute dtype of the frozen codec for encoding and distillation; `bfloat16` roughly halves
            decoder time on CPUs with AVX512-BF16 and on GPUs (latents, scorer and guide stay float32).
        drop_empty_classes: Leave out classes with no readable clip in the split (a partial download) instead of
            stopping; the card lists them. Labels are renumbered over the classes kept.
        dry_run: Print the plan (bytes, videos, K, visual tokens per Qwen2.5-VL sample) over the clips that exist,
            and stop.
        preview: Store the decoded K keyframes of each video as a PNG strip in a `preview` column, so the Hub's
            dataset viewer shows what each row keeps; its bytes are reported apart and never count in the ratio.
        resume: Continue from the checkpoints in `work_dir` (the cache always resumes).
        push_to_hub: Also upload the repo to this Hub dataset id (`org/name`).
        private: Create the Hub repo as private.
        soft_labels: Spend part of the budget on a teacher's soft labels (Video-DC's finding: the labels matter as
            much as the frames): a network (`soft_label_teacher`, trained from scratch on every real frame of the
            split with `teacher_*`) labels each kept row with its class probabilities at `soft_label_temperature`,
            stored as `soft_label_dtype` (C x 2 bytes a row as float16, C as uint8) and counted, so the method keeps
            fewer videos (`compressa_hf.distillation.soft_labels`); the rows get a `soft_label` column. Only for the
            methods that leave room for them (not the whole-clip coresets at a ratio their clips fill).
        teacher_epochs / teacher_width / teacher_batch_size / teacher_lr: The teacher's training (the protocol of
            `compressa_hf.evaluation.train`; defaults: the paper's), cached in `work_dir/teachers/` for re-runs.
        license / license_name / license_link: The card's `license` (an identifier of the Hub's list,
            https://hf.co/docs/hub/repositories-licenses, e.g. `cc-by-4.0`; `other` needs `license_name` and
            `license_link`). Default: the source's terms where compressa_hf knows them (UCF101, HMDB51, Kinetics-400,
            SSv2, the procedural set, an `hf:` dataset's own card; `VideoSource.license_info`), else `unknown`.
    """

    source: str = field(default="procedural", metadata={"help": "Source spec."})
    method: str = field(
        default="videocompressa",
        metadata={
            "help": "Method of the registry (not `full`). On real clips (arid6_iid, BENCHMARKS.md) `dm` beat "
            "videocompressa and uniform on average; compare on your data with `compressa evaluate`."
        },
    )
    method_options: str | None = field(
        default=None, metadata={"help": "Options of a non-VideoCompressa method: a YAML/JSON file or key=value,..."}
    )
    output: str = field(default="outputs/distilled", metadata={"help": "Distilled set folder (Hub repo layout)."})
    ratio: str | None = field(
        default=None, metadata={"help": "Budget: percent of the split's uint8 clips (0.52), or k<K> (k1)."}
    )
    split: str = field(default="train", metadata={"help": "Split to distil."})
    dtype: str = field(default="auto", metadata={"help": "Latent storage dtype: uint8, float16, uint4 or auto."})
    config_name: str | None = field(default=None, metadata={"help": "Config name (default ratio_<ratio>)."})
    work_dir: str | None = field(default=None, metadata={"help": "Checkpoints (default <output>.work)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Latent cache folder; default: the shared one."})
    codec: str = field(default="default", metadata={"help": "Codec spec, or `default`."})
    codec_dtype: str = field(default="float32", metadata={"help": "Codec compute dtype: float32 or bfloat16."})
    num_frames: int = field(default=16, metadata={"help": "T, frames sampled per clip."})
    size: int = field(default=112, metadata={"help": "Frame side."})
    policy: str = field(default="uniform", metadata={"help": "Frame sampling policy."})
    num_workers: int = field(default=1, metadata={"help": "Decode workers of the cache pass."})
    drop_empty_classes: bool = field(default=False, metadata={"help": "Leave out classes without clips."})
    dry_run: bool = field(default=False, metadata={"help": "Print the plan only."})
    resume: bool = field(default=False, metadata={"help": "Resume from checkpoints in work_dir."})
    preview: bool = field(default=True, metadata={"help": "Add a `preview` image column (not in the ratio)."})
    push_to_hub: str | None = field(default=None, metadata={"help": "Hub dataset id to upload to."})
    private: bool = field(default=False, metadata={"help": "Private Hub repo."})
    license: str | None = field(
        default=None,
        metadata={"help": "Card licence: a Hub licence id (cc-by-4.0, other, ...); default: the source's."},
    )
    license_name: str | None = field(default=None, metadata={"help": "With --license other: the licence's name."})
    license_link: str | None = field(default=None, metadata={"help": "With --license other: a URL to its text."})
    soft_labels: bool = field(default=False, metadata={"help": "Store a teacher's soft labels in the budget."})
    soft_label_dtype: str = field(default="float16", metadata={"help": "Soft-label storage: float16 or uint8."})
    soft_label_temperature: float = field(default=1.0, metadata={"help": "Teacher softmax temperature."})
    soft_label_teacher: str = field(default="convnet", metadata={"help": "Teacher network (nets.NETS)."})
    teacher_epochs: int = field(default=100, metadata={"help": "Teacher training epochs."})
    teacher_width: int = field(default=128, metadata={"help": "Teacher network width."})
    teacher_batch_size: int = field(default=256, metadata={"help": "Teacher batch size."})
    teacher_lr: float = field(default=0.01, metadata={"help": "Teacher SGD learning rate."})

    def __post_init__(self):
        from compressa_hf.distillation.methods import METHODS

        if self.method == "full":
            raise ValueError(FULL_REFUSAL)
        if self.method not in METHODS and self.method != "auto":
            raise ValueError(
                f"unknown --method {self.method!r}; one of {sorted(m for m in METHODS if m != 'full')} or auto"
            )
        if self.ratio is not None:
            from compressa_hf.distillation.budget import check_ratio_token

            self.ratio = check_ratio_token(self.ratio)
        if self.codec_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"`codec_dtype` must be float32 or bfloat16, got {self.codec_dtype!r}")
        if self.dtype not in ("auto", "uint8", "float16", "uint4"):
            raise ValueError(f"`dtype` must be auto, uint8, float16 or uint4, got {self.dtype!r}")
        if self.license is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", self.license):
            raise ValueError(
                f"--license {self.license!r} is not a Hub licence identifier (lower case, e.g. cc-by-4.0, mit, "
                "apache-2.0, other; https://hf.co/docs/hub/repositories-licenses)"
            )
        if self.license == "other" and not (self.license_name and self.license_link):
            raise ValueError(
                "--license other needs --license_name (an id for it) and --license_link (a URL to its text)"
            )
        if (self.license_name or self.license_link) and self.license is None:
            raise ValueError("--license_name / --license_link go with --license (e.g. --license other)")
        from compressa_hf.distillation.soft_labels import check_options
        from compressa_hf.nets import NETS

        check_options(self.soft_label_dtype, self.soft_label_temperature)
        if self.soft_label_teacher not in NETS:
            raise ValueError(f"unknown --soft_label_teacher {self.soft_label_teacher!r}; known: {sorted(NETS)}")
        self.teacher_config()  # bad teacher_* values are errors now
        self.work_dir = self.work_dir or os.path.normpath(self.output) + ".work"

    def teacher_config(self):
        """The teacher's `TrainConfig` (`--soft_labels`)."""
        from compressa_hf.evaluation.train import TrainConfig

        return TrainConfig(
            epochs=self.teacher_epochs,
            width=self.teacher_width,
            batch_size=self.teacher_batch_size,
            lr=self.teacher_lr,
        )

    def labeller(self, num_classes: int, device):
        """The `SoftLabeller` of `--soft_labels` (its teachers cached in `work_dir/teachers/`), or None."""
        if not self.soft_labels:
            return None
        from compressa_hf.distillation.soft_labels import SoftLabeller
        from compressa_hf.evaluation.train import train_network

        return SoftLabeller(
            os.path.join(self.work_dir, "teachers"),
            num_classes,
            self.teacher_config(),
            train_network,
            self.soft_label_teacher,
            self.soft_label_dtype,
            self.soft_label_temperature,
            device,
            progress=True,
        )


def class_space(
    labels: list[int], class_names: list[str], drop_empty: bool, warn: bool = True
) -> tuple[list[int], list[str], list[str]]:
    """(labels, class names, dropped class names) for the clips at hand.

    A class without a clip is an error naming it, or with `drop_empty` it is left out (with a warning unless `warn`
    is False, for a second look at the same split) and the labels are renumbered over the classes kept (in their
    order). Fewer than two classes is an error: a one-class set teaches nothing to tell apart (every chat sample
    would ask to "choose one of" that class), so it is refused rather than published.
    """
    from compressa_hf.distillation.budget import counts_per_class

    if not drop_empty:
        counts_per_class(labels, class_names, hint="or pass --drop_empty_classes to leave them out")
        kept_names, dropped, new = list(class_names), [], None
    else:
        counts = [0] * len(class_names)
        for y in labels:
            counts[y] += 1
        kept = [c for c, n in enumerate(counts) if n > 0]
        if not kept:
            raise ValueError("no class has a clip in the split; nothing to distil")
        new = {old: i for i, old in enumerate(kept)}
        kept_names = [class_names[c] for c in kept]
        dropped = [name for c, name in enumerate(class_names) if counts[c] == 0]
    if len(kept_names) < 2:
        left = f" after --drop_empty_classes left out {len(dropped)} class(es) without clips" if dropped else ""
        raise ValueError(
            f"the split has clips of one class only ({kept_names[0]!r}){left}: a set of one class teaches nothing to "
            "tell apart (every chat sample would ask to choose among that one class), so none is written. Distil a "
            "split with clips of at least two classes (a partial download: fetch more of it)"
        )
    if dropped and warn:
        logger.warning("leaving out %d classes without clips: %s", len(dropped), ", ".join(dropped[:10]))
    return ([new[y] for y in labels] if new else list(labels)), kept_names, dropped


def class_space_again(labels, class_names, drop_empty: bool, dropped_before: list[str]):
    """`class_space` of the clips left once unreadable ones are known, warning only about classes that became empty
    since the first look (the first look already named the others)."""
    labels, names, dropped = class_space(labels, class_names, drop_empty, warn=False)
    newly = [name for name in dropped if name not in dropped_before]
    if newly:
        logger.warning(
            "leaving out %d more class(es) whose clips are all unreadable: %s", len(newly), ", ".join(newly[:10])
        )
    return labels, names, dropped


def run_ratio(args: DistillArguments, frames_per_video: int | None, labels: list[int], latent_shape):
    """The run's budget as an exact percent of the split's uint8 clips: `--ratio` resolved (`k<K>` by the codec's
    latent size), or, given only `--frames_per_video K`, what K frames of every video cost at the storage dtype.

    Raises:
        ValueError: neither is given.
    """
    from compressa_hf.distillation.budget import ratio_for_frames, resolve_ratio

    if args.ratio is not None:
        return resolve_ratio(args.ratio, args.num_frames, args.size, latent_shape)
    if frames_per_video is None:
        raise ValueError("give --ratio (percent of the split's bytes, or k<K>) or --frames_per_video K (all videos)")
    dtype = "uint8" if args.dtype == "auto" else args.dtype  # K fixed for every video: the ratio it costs
    return ratio_for_frames(frames_per_video, args.num_frames, args.size, latent_shape, dtype, len(labels))


def plan_for(
    args: DistillArguments,
    frames_per_video: int | None,
    labels: list[int],
    class_names,
    latent_shape,
    warn=True,
    label_bytes_per_video: int = 0,
):
    """The budget plan; `frames_per_video` fixes K (the method config's `--frames_per_video`), None lets it choose.

    `warn` says so when the plan keeps a subset of the videos (not wanted for whole-clip plans, which always do).
    """
    from compressa_hf.distillation.budget import counts_per_class, plan_budget, ratio_for_frames

    counts = counts_per_class(labels, class_names)
    ratio = run_ratio(args, frames_per_video, labels, latent_shape)
    plan = plan_budget(
        ratio, counts, args.num_frames, args.size, latent_shape, frames_per_video, args.dtype, label_bytes_per_video
    )
    if plan.coreset and warn and args.ratio is not None and frames_per_video is not None:
        logger.info(
            "--frames_per_video %d at --ratio %s keeps %d of %d videos (a random subset per class)",
            frames_per_video,
            args.ratio,
            plan.total_videos,
            plan.num_videos,
        )
    elif plan.set_bytes_videos and warn:
        logger.info(
            "--dtype %s at --ratio %s: K=%d frames for %d of %d videos; its %d bytes of per-channel ranges cost %d "
            "video(s) rather than a frame of every video (the planner's rule 6)",
            plan.dtype,
            args.ratio,
            plan.frames_per_video,
            plan.total_videos,
            plan.num_videos,
            plan.set_bytes,
            plan.set_bytes_videos,
        )
    elif plan.coreset and warn:
        every = ratio_for_frames(1, args.num_frames, args.size, latent_shape, plan.dtype, len(labels))
        logger.warning(
            "--ratio %s keeps only %d of %d videos (a random subset per class); one %s latent frame of every video "
            "needs --ratio %.6f (or k1)",
            args.ratio,
            plan.total_videos,
            plan.num_videos,
            plan.dtype,
            float(every),
        )
    return plan


def card_license(args: DistillArguments, source) -> dict:
    """The licence the card states: `--license` (with its name and link) when given, else the source's terms."""
    if args.license is None:
        return source.license_info()
    info = {"license": args.license, "note": "stated with `compressa distill --license`"}
    info.update({k: v for k, v in (("license_name", args.license_name), ("license_link", args.license_link)) if v})
    return info


def _scalar(text: str):
    """An inline option value: an int, a float, true/false, none, else the text itself."""
    text = text.strip()
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def read_method_options(spec: str | None, method: str) -> dict:
    """`--method_options` as `{option: value}` for `method` (see `DistillArguments.method_options`).

    A file may hold `{option: value}` or, as `compressa evaluate --method_config` takes, `{method: {option: value}}`
    (every key a registered method, every value a mapping), of which `method`'s entry is used. Strings that read as
    numbers become numbers (YAML reads `1e-3` as a string). The keys are checked by the caller.
    """
    if not spec:
        return {}
    if os.path.isfile(spec):
        import yaml

        from compressa_hf.distillation.methods import METHODS

        with open(spec) as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise ValueError(f"--method_options {spec}: expected a mapping {{option: value}}, got {data!r:.200}")
        if data and all(k in METHODS and isinstance(v, dict) for k, v in data.items()):
            if method not in data:
                raise ValueError(f"--method_options {spec} has options for {sorted(data)} but none for {method!r}")
            data = data[method]
        return {k: _scalar(v) if isinstance(v, str) else v for k, v in data.items()}
    if "=" not in spec:
        raise ValueError(f"--method_options {spec!r}: no such file, and not inline key=value,... options")
    options = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"--method_options {spec!r}: {item!r} is not key=value")
        options[key.strip()] = _scalar(value)
    return options


def videocompressa_flags(vc_cfg) -> list[str]:
    """The `VideoCompressaConfig` fields set away from their defaults, but `seed` (which every method uses)."""
    default = type(vc_cfg)()
    return [
        f"--{f.name}"
        for f in fields(vc_cfg)
        if f.name != "seed" and getattr(vc_cfg, f.name) != getattr(default, f.name)
    ]


def method_options(args: DistillArguments, vc_cfg) -> tuple[str, dict]:
    """(KIND, every option value) `--method` runs with; option errors name the method, before any compute."""
    from compressa_hf.distillation.methods import FIXED_K_METHODS, get_method
    from compressa_hf.distillation.methods.base import parse_options
    from compressa_hf.distillation.videocompressa import VideoCompressaConfig

    module = get_method(args.method)
    if args.ratio is None and (args.method not in FIXED_K_METHODS or vc_cfg.frames_per_video is None):
        alone = " or --frames_per_video K (K frames of every video)" if args.method in FIXED_K_METHODS else ""
        raise ValueError(f"method {args.method!r} needs --ratio (a percent of the split's bytes, or k<K>){alone}")
    if module.Options is VideoCompressaConfig:
        if args.method_options:
            raise ValueError(
                f"method {args.method!r} takes VideoCompressaConfig's flags (e.g. --passes 6), not --method_options"
            )
        return module.KIND, asdict(vc_cfg)
    flags = videocompressa_flags(vc_cfg)
    if "--frames_per_video" in flags:
        if args.method not in FIXED_K_METHODS:
            raise ValueError(
                f"method {args.method!r} chooses its own frames per video; --frames_per_video applies to "
                f"{', '.join(FIXED_K_METHODS)}"
            )
        flags.remove("--frames_per_video")  # it fixes every planner method's K
    if flags:
        raise ValueError(
            f"{', '.join(flags)} belong to videocompressa (VideoCompressaConfig), not to method {args.method!r}; "
            f"pass its options with --method_options (known: {sorted(f.name for f in fields(module.Options))})"
        )
    options = parse_options(module.Options, read_method_options(args.method_options, args.method), args.method)
    return module.KIND, asdict(options)


def config_name(args: DistillArguments, ratio) -> str:
    """`--config_name`, else `ratio_<r>` for videocompressa and `<method>_ratio_<r>` for any other method."""
    from compressa_hf.store import config_name_for_ratio

    if args.config_name:
        return args.config_name
    name = config_name_for_ratio(ratio, args.split)
    return name if args.method == "videocompressa" else f"{args.method}_{name}"
