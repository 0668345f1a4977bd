"""Distil a labelled video split with a method of the registry (VideoCompressa by default) and write a Hub dataset
repo.

Usage:
    compressa distill --source ../shared/data/arid6 --ratio 0.41 --output outputs/arid6_distilled \
        --codec tae:../shared/weights/taef2
    compressa distill --source procedural --ratio 0.5 --output out/proc --dry-run      # the plan, no compute
    compressa distill ... --resume                                                    # after a kill
    accelerate launch --multi_gpu --num_processes 2 -m compressa_hf.cli distill --source ... --ratio ... --output ...

    # the method and allocation (dtype, K) that win on a validation split of your clips, chosen and distilled in one
    # command (config `auto_ratio_<r>`; the card holds the validation table; the test split is never read):
    compressa distill --source path/to/clips --ratio k1 --output outputs/my_distilled --method auto \
        --auto_methods uniform,dm --auto_dtypes uint8,uint4 --auto_frames_per_video plan,2

    # the set that wins `compressa evaluate` on your data, published the same way (config `<method>_ratio_<r>`).
    # Measured on real clips (arid6_iid, BENCHMARKS.md "VideoCompressa's levers"): no VideoCompressa setting beat
    # uniform frames or DM there; DM had the best mean at k1 and k2, so it is the recommendation for such data:
    compressa distill --source path/to/clips --ratio k1 --output outputs/my_distilled --method uniform
    compressa distill --source path/to/clips --ratio k1 --output outputs/my_distilled --method dm \
        --method_options iterations=500,lr=0.01
    compressa distill ... --method lvdd --method_options methods.yaml   # {select: kmeans} or evaluate's {lvdd: {...}}

Steps: (1) the latent cache of the split (stage 1, resumable; the shared cache, so a split encoded before with the
same settings is not encoded again); (2) the budget plan: the
ratio buys K frames per video for some videos per class as uint8 or float16 latents; when it buys fewer videos
than the split has, a seeded random subset per class is kept (the coreset step); (3) joint optimisation of the
latents, the frame scorer and a guide network (`compressa_hf.distill.videocompressa`), checkpointed; (4) top-K
frames per video written as config `ratio_<r>` of the repo at `--output`. A JSON summary ends the run.

Other methods (`--method NAME`, any of `compressa_hf.distill.methods.METHODS` but `full`) replace steps (2)-(3) by
`methods.compress(NAME, ...)` at the same budget, exactly as `compressa evaluate` runs them, and write config
`<NAME>_ratio_<r>` (`<NAME>_<split>_ratio_<r>` for another split). Their options come from `--method_options`: a
YAML/JSON file holding `{option: value}` (or `compressa evaluate --method_config`'s `{method: {option: value}}`, of
which the entry of NAME is used), or inline `key=value,...`; an unknown key is an error naming the method.
`videocompressa` and `scorer_only` take `VideoCompressaConfig`'s flags instead (`--passes 6`), and those flags are
an error with any other method, except `--seed`, which seeds every method. Pixel methods (`pixel_diff`, `avs`, the
proxy training of `herding` / `forgetting` / `grand`) decode the real clips once, in the cache's order, into
`<work_dir>/pixels_<cache>.safetensors`; the others never decode a clip. Only VideoCompressa's checkpoints resume
(`scorer_only` resumes its scorer with `--resume`); the other methods recompute, which is cheap, except that the
expert trajectories of MTT, DATM and MTT+VDSD are kept in `<work_dir>/experts/` and reused by every later run with
that work folder (keyed by the cached latents and the experts' settings).

What a row is depends on the method, and the card says it (`rows`): rows with a source clip (selection, coresets,
and DM / LVDD, whose clips start from or reconstruct one) keep the clip's id, the kept frames' source indices,
timestamps and the real fps, as VideoCompressa's rows do; a row a method makes without any source clip is named
`synthetic_<label>_<i>` and gets nominal `frame_indices` / `timestamps` / `fps` (its frames' positions among T
spread like the source's median clip, at the source's median fps), so it still decodes into a Qwen-VL chat sample.
The rows always hold latents (K x C x h x w) at the run's storage dtype. LVDD stores Tucker / PCA factors instead
of latent frames: its rows hold the clips read back from those factors (what a network trains on), rounded to that
dtype, and the card states both its budgeted stored bytes and the larger bytes the rows take; so do DM+VDSD and
MTT+VDSD, whose rows are the videos their static / dynamic memory and combiner make. DATM's learned soft labels are
counted in its stored bytes but not published (the rows hold hard labels; the card says so). PRISM's rows hold a
different number of key frames each (K_i x C x h x w, byte for byte what it stores), with those frames' own source
indices and timestamps and their positions among T (`keyframe_positions`); its index of those positions is counted
in the stored bytes, and `--dry-run` shows its key-frame plan (`prism.plan_keyframes`). `full`, the uncompressed
reference, is refused: publish the source split itself.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import sys
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)


#: What the card says of each latent format (`compressa_hf.codecs.storage`).
LATENT_SCALING = {
    "uint8": "uint8 = round(255 * clamp(z / 6 + 0.5, 0, 1)) (TAESD's 8-bit convention, for every codec); "
    "z = (q / 255 - 0.5) * 6",
    "float16": "raw latents",
    "uint4": "4-bit codes q in 0..15 (one per uint8 in the rows), per latent channel c: "
    "q = round(15 * (z - lo_c) / (hi_c - lo_c)), z = lo_c + q / 15 * (hi_c - lo_c), [lo_c, hi_c] = latent_ranges[c]",
}

FULL_REFUSAL = (
    "--method full is the uncompressed reference (every real frame of every clip as pixels, 100 % of the split's "
    "bytes): there is nothing to distil, and its rows would not be latents. Publish the source split itself (e.g. "
    "`datasets.load_dataset('videofolder', data_dir=...).push_to_hub(...)`), or pick a method that compresses"
)


@dataclass
class DistillArguments:
    """Arguments of `compressa distill` besides VideoCompressa's hyperparameters (`VideoCompressaConfig`).

    Args:
        method: Method of the registry (`compressa_hf.distill.methods.METHODS`) whose set is written; `full` (the
            uncompressed reference) is refused. See the module docstring for what rows each kind gives. `auto`
            chooses the method, dtype and K on a validation split of the training split (`--auto_*` options,
            `compressa_hf.evaluate.auto`) and writes the winner's set.
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
            fewer videos (`compressa_hf.distill.soft_labels`); the rows get a `soft_label` column. Only for the
            methods that leave room for them (not the whole-clip coresets at a ratio their clips fill).
        teacher_epochs / teacher_width / teacher_batch_size / teacher_lr: The teacher's training (the protocol of
            `compressa_hf.evaluate.train`; defaults: the paper's), cached in `work_dir/teachers/` for re-runs.
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
        from compressa_hf.distill.methods import METHODS

        if self.method == "full":
            raise ValueError(FULL_REFUSAL)
        if self.method not in METHODS and self.method != "auto":
            raise ValueError(
                f"unknown --method {self.method!r}; one of {sorted(m for m in METHODS if m != 'full')} or auto"
            )
        if self.ratio is not None:
            from compressa_hf.distill.budget import check_ratio_token

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
        from compressa_hf.distill.soft_labels import check_options
        from compressa_hf.nets import NETS

        check_options(self.soft_label_dtype, self.soft_label_temperature)
        if self.soft_label_teacher not in NETS:
            raise ValueError(f"unknown --soft_label_teacher {self.soft_label_teacher!r}; known: {sorted(NETS)}")
        self.teacher_config()  # bad teacher_* values are errors now
        self.work_dir = self.work_dir or os.path.normpath(self.output) + ".work"

    def teacher_config(self):
        """The teacher's `TrainConfig` (`--soft_labels`)."""
        from compressa_hf.evaluate.train import TrainConfig

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
        from compressa_hf.distill.soft_labels import SoftLabeller
        from compressa_hf.evaluate.train import train_network

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


def make_parser():
    from trl import TrlParser

    from compressa_hf.distill.videocompressa import VideoCompressaConfig
    from compressa_hf.evaluate.auto import AutoArguments

    return TrlParser(
        (DistillArguments, VideoCompressaConfig, AutoArguments), prog="compressa distill", allow_abbrev=False
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
    from compressa_hf.distill.budget import counts_per_class

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


def _class_space_again(labels, class_names, drop_empty: bool, dropped_before: list[str]):
    """`class_space` of the clips left once unreadable ones are known, warning only about classes that became empty
    since the first look (the first look already named the others)."""
    labels, names, dropped = class_space(labels, class_names, drop_empty, warn=False)
    newly = [name for name in dropped if name not in dropped_before]
    if newly:
        logger.warning(
            "leaving out %d more class(es) whose clips are all unreadable: %s", len(newly), ", ".join(newly[:10])
        )
    return labels, names, dropped


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
    from compressa_hf.distill.budget import counts_per_class, plan_budget, ratio_for_frames, resolve_ratio

    counts = counts_per_class(labels, class_names)
    if args.ratio is not None:
        ratio = resolve_ratio(args.ratio, args.num_frames, args.size, latent_shape)
    elif frames_per_video is None:
        raise ValueError("give --ratio (percent of the split's bytes, or k<K>) or --frames_per_video K (all videos)")
    else:
        dtype = "uint8" if args.dtype == "auto" else args.dtype  # K fixed for every video: the ratio it costs
        ratio = ratio_for_frames(frames_per_video, args.num_frames, args.size, latent_shape, dtype, len(labels))
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


def _previews(stored, dtype: str, codec, batch: int = 64, ranges=None) -> list[bytes]:
    """PNG strips of what each stored row decodes to (after storage rounding), for the `preview` column; `ranges`:
    a uint4 set's per-channel ranges."""
    import torch

    from compressa_hf.codecs.storage import dequantise
    from compressa_hf.store import preview_png

    if isinstance(stored, list):  # rows of different K: decode all their frames, then split them back per row
        import numpy as np

        counts = [len(x) for x in stored]
        z = dequantise(np.concatenate(stored), dtype, ranges)
        with torch.no_grad():
            frames = torch.cat(
                [codec.decode(chunk.to(codec.device)).cpu() for chunk in torch.split(z, batch * max(counts))]
            )
        frames = frames.mul(255).round().byte().permute(0, 2, 3, 1).numpy()
        return [preview_png(row) for row in np.split(frames, np.cumsum(counts)[:-1])]
    z = dequantise(stored, dtype, ranges)
    n, k = z.shape[:2]
    out = []
    from tqdm.auto import tqdm

    chunks = torch.split(z.flatten(0, 1), batch * k)
    with torch.no_grad():
        for chunk in tqdm(chunks, desc="preview strips", unit="batch", leave=False):
            frames = codec.decode(chunk.to(codec.device)).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            out += [preview_png(f) for f in frames.reshape(-1, k, *frames.shape[1:])]
    return out


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

        from compressa_hf.distill.methods import METHODS

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
    from compressa_hf.distill.methods import FIXED_K_METHODS, get_method
    from compressa_hf.distill.methods.base import parse_options
    from compressa_hf.distill.videocompressa import VideoCompressaConfig

    module = get_method(args.method)
    if args.ratio is None and args.method != "videocompressa":  # only videocompressa's plan takes K alone
        raise ValueError(f"method {args.method!r} needs --ratio (a percent of the split's bytes, or k<K>)")
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


#: Methods that do not spend the budget as the planner's K-frame plan; `--dry-run` shows this instead.
PLAN_NOTES = {
    "lvdd": (
        "lvdd does not store latent frames: it keeps whole clips recompressed (Tucker or PCA, `keep` of a whole "
        "uint8 clip's bytes, ranks fixed from the latents when it runs), so about 1 / keep times the clips of the "
        "whole-clip plan above; its rows publish those clips read back at {dtype}, which take more bytes than the "
        "ratio counts (the card says both)"
    )
}


def _prism_plan(args, options: dict, labels, class_names, latent_shape) -> tuple[dict, str]:
    """(plan dict, text) of PRISM's key-frame budget (`prism.plan_keyframes`): videos, key frames, index bytes."""
    import math

    from compressa_hf.distill.budget import counts_per_class, resolve_ratio
    from compressa_hf.distill.methods.prism import plan_keyframes

    full_bytes = len(labels) * args.num_frames * 3 * args.size * args.size
    ratio = resolve_ratio(args.ratio, args.num_frames, args.size, latent_shape)
    plan = plan_keyframes(
        math.floor(ratio * full_bytes / 100),
        counts_per_class(labels, class_names),
        args.num_frames,
        latent_shape,
        full_bytes,
        dtype="float16" if args.dtype == "float16" else "uint8",
        videos_per_class=options.get("videos_per_class"),
        initial_share=options.get("initial_share", 0.5),
    )
    text = (
        f"{plan.describe()}\nkey frames per video vary: where each one goes is found while distilling (the "
        "insertion rule, then the fill); the card reports mean, min and max"
    )
    return plan.to_dict(), text


def _static_dynamic_plan(args, options: dict, labels, class_names, latent_shape) -> tuple[dict, str]:
    """(plan dict, text) of a VDSD static/dynamic memory's budget (`static_dynamic.plan_memory`): slots per class,
    the memories' and the combiner's bytes, the rows they expand to."""
    import torch

    from compressa_hf.distill.budget import resolve_ratio
    from compressa_hf.distill.methods.base import MethodContext
    from compressa_hf.distill.static_dynamic import PAIRS, plan_memory

    # plan_memory reads only the context's shapes and budget: a zero-strided stand-in for the latents, no memory
    ctx = MethodContext(
        latents=torch.zeros(()).expand(len(labels), args.num_frames, *latent_shape),
        labels=torch.as_tensor(labels),
        num_classes=len(class_names),
        codec=None,
        ratio=resolve_ratio(args.ratio, args.num_frames, args.size, latent_shape),
        frame_size=(args.size, args.size),
        dtype="float16" if args.dtype == "float16" else "auto",
        class_names=class_names,
    )
    plan = plan_memory(ctx, options.get("combiner_kernel", 3))
    memories = plan.num_classes * plan.videos_per_class * PAIRS
    text = (
        f"static / dynamic memory (VDSD): {plan.videos_per_class} slot(s) per class x {plan.num_classes} classes, "
        f"{memories} static latent frames ({plan.static_bytes:,} bytes each) and {memories} one-channel "
        f"{plan.num_frames}-frame motion maps ({plan.dynamic_bytes:,} bytes each) at {plan.dtype}, combiner "
        f"{plan.combiner_bytes:,} bytes (kernel {plan.kernel}); {plan.stored_bytes:,} of {plan.budget_bytes:,} bytes; "
        f"published as {plan.rows} rows of {plan.num_frames} frames (every static x dynamic pair of a slot)"
    )
    return plan.to_dict(), text


def _dry_run_plan(
    args, kind: str, frames_per_video, labels, class_names, latent_shape, options: dict | None = None
) -> tuple[dict | None, str]:
    """(plan dict, text) of what `--method` keeps: the planner's K frames per video, or whole clips for coresets,
    PRISM's key-frame budget, or a VDSD static/dynamic memory."""
    if args.method == "prism":
        return _prism_plan(args, options or {}, labels, class_names, latent_shape)
    if args.method in ("dm_vdsd", "mtt_vdsd"):
        return _static_dynamic_plan(args, options or {}, labels, class_names, latent_shape)
    whole_clips = kind == "coreset" or args.method in PLAN_NOTES
    label_bytes = 0
    if args.soft_labels:  # the labels' room, as the run reserves it (`soft_labels.label_bytes`)
        from compressa_hf.distill.soft_labels import label_bytes as soft_label_bytes

        label_bytes = soft_label_bytes(len(class_names), args.soft_label_dtype)
    try:
        frames = args.num_frames if whole_clips else frames_per_video
        plan = plan_for(
            args, frames, labels, class_names, latent_shape, warn=not whole_clips, label_bytes_per_video=label_bytes
        )
    except ValueError as err:
        if args.method not in PLAN_NOTES:
            raise
        plan, text = None, f"a whole-clip plan does not fit: {err}"
    else:
        text = plan.describe()
    if args.method in PLAN_NOTES:
        text += "\n" + PLAN_NOTES[args.method].format(dtype="float16" if args.dtype == "float16" else "uint8")
    return (plan.to_dict() if plan else None), text


def _without(stored: dict, key: str) -> dict:
    return {k: v for k, v in stored.items() if k != key}


def _soft_label_meta(cset, soft) -> dict:
    """What the card says of a set's `soft_label` column: its dtype, bytes, and how the labels were made."""
    import torch

    info = cset.info.get("soft_labels")
    made = (
        {k: info[k] for k in ("temperature", "teacher", "agreement", "mean_max_probability") if k in info}
        if info
        else {"made_by": f"{cset.method} learned them with its set (DATM's learnable soft labels)"}
    )
    return {
        "dtype": str(soft.dtype).removeprefix("torch."),
        "bytes": int(soft.numel() * soft.element_size()),
        "reading": "float16: class probabilities"
        if soft.dtype == torch.float16
        else "uint8: class probabilities x 255 (each row sums to 255)"
        if soft.dtype == torch.uint8
        else "class scores",
        **made,
    }


def _published_latents(cset, dtype: str) -> tuple[np.ndarray | list[np.ndarray], str | None, list | None]:
    """The `(M, K, C, h, w)` latents the rows hold, a note when they are not exactly what the method stores, and a
    uint4 set's per-channel ranges (None for every other set).

    A uint4 set (`compressa_hf.codecs.storage`) is published as its codes unpacked, one uint8 (0..15) per value,
    with its ranges for the card; the note gives the packed bytes the budget counts.
    A set storing `latents` (every method but LVDD and the VDSD memories) is published byte for byte (soft labels,
    `--soft_labels`' or DATM's, are taken out by the caller: they get a column of their own). Otherwise the latents
    as read back (what a network trains on) are rounded to `dtype` ("uint8" or "float16"), and the note says how
    their bytes compare to the method's stored ones. Rows of different K (PRISM) store every row's key frames one after
    another `(sum K, C, h, w)` beside their index; they are published byte for byte as a list of `(K_i, C, h, w)`.
    """
    import numpy as np
    import torch

    from compressa_hf.codecs.storage import RANGES_KEY, stored_codes
    from compressa_hf.distill.methods.base import store_latents

    if RANGES_KEY in cset.stored and not cset.variable_frames:
        codes = stored_codes(cset.stored, "uint4", tuple(cset.latents.shape[2:])).numpy()
        ranges = cset.stored[RANGES_KEY]
        others = {k: v for k, v in cset.stored.items() if k not in ("latents", RANGES_KEY)}
        note = (
            f"{codes.nbytes:,}: the stored 4-bit codes ({cset.stored['latents'].nbytes:,} bytes packed two a byte, "
            f"plus {ranges.nbytes} bytes of per-channel ranges, in the stored bytes above) unpacked to one uint8 per "
            "code, so every reader indexes them like uint8 latents (the parquet's dictionary encoding keeps them near "
            "4 bits a value)"
            + "".join(
                f"; the set also stores {k} {tuple(v.shape)} ({v.nbytes:,} bytes, counted), which the rows do not carry"
                for k, v in others.items()
            )
        )
        return codes, note, ranges.float().tolist()
    if cset.variable_frames:
        flat, counts = cset.stored.get("latents"), cset.row_frames
        if flat is None or flat.dtype not in (torch.uint8, torch.float16) or len(flat) != int(counts.sum()):
            raise ValueError(
                f"method {cset.method!r} holds rows of different K but does not store their frames one after "
                "another as `latents`; it cannot be written as a latent set"
            )
        return np.split(flat.numpy(), np.cumsum(counts.numpy())[:-1]), None, None

    if set(cset.stored) == {"latents"} and cset.stored["latents"].dtype in (torch.uint8, torch.float16):
        return cset.stored["latents"].numpy(), None, None
    if cset.latents is None:
        raise ValueError(f"method {cset.method!r} stores pixels, not latents; it cannot be written as a latent set")
    published = store_latents(cset.latents, dtype)[0]["latents"].numpy()
    tensors = ", ".join(f"{k} {tuple(v.shape)} {str(v.dtype).removeprefix('torch.')}" for k, v in cset.stored.items())
    note = (
        f"{published.nbytes:,}: `{cset.method}` stores {tensors} ({cset.stored_bytes:,} bytes, the stored bytes "
        f"above); the rows hold the latents read back from them (what a network trains on) rounded to {dtype}, "
        f"{published.nbytes / cset.stored_bytes:.2f}x the stored bytes"
        + (
            f" and {published.nbytes / cset.budget_bytes:.2f}x the budget"
            if cset.budget_bytes and published.nbytes > cset.budget_bytes
            else ""
        )
        + ". The ratio counts the method's stored bytes, as `compressa evaluate` does"
    )
    return published, note, None


def _stats(values: list[int]) -> dict:
    """`{"mean", "min", "max"}` of per-row numbers (frames, visual tokens) for rows of different K."""
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}


def _keyframes_note(cset) -> str:
    """What the card says about rows of different K: what each row holds and how its bytes are counted."""
    index = next((k.removeprefix("keyframe_") for k in cset.stored if k.startswith("keyframe_")), None)
    text = "rows hold different numbers of latent frames (K varies by video)"
    if cset.interpolate_to:
        text = (
            f"each row holds its video's key frames, K varying by video; the clip a network trains on is their linear "
            f"interpolation in latent space to T = {cset.interpolate_to} frames, key frame i at position "
            f"`keyframe_positions[i]` among them (PRISM)"
        )
    if index:
        text += (
            f". The stored bytes count the key frames and a {index} index of where they sit "
            f"({cset.stored[f'keyframe_{index}'].numel():,} bytes), which the rows hold as `keyframe_positions`"
        )
    return text


def _nominal_position(cache_index: list[dict], num_frames: int) -> tuple[float, float]:
    """(median source-frame stride between the T cached frames, median fps) of the cached clips."""
    import numpy as np

    strides = [
        (row["frame_indices"][-1] - row["frame_indices"][0]) / (num_frames - 1) if num_frames > 1 else 1.0
        for row in cache_index
    ]
    return float(np.median(strides)) or 1.0, float(np.median([row["fps"] for row in cache_index]))


def row_columns(
    cset, published: np.ndarray | list, cached_latents, cache_index: list[dict], root, ranges=None
) -> dict:
    """The rows' columns (video ids, source frame indices, timestamps, fps, sources, starts) and what the rows are.

    A row with a source clip (`source_videos >= 0`) takes its id, the source indices and timestamps of its
    `frame_indices` (positions among the T cached frames) and its fps from the cache index; it is "real" when its
    published latents equal the cached ones at those frames after the same rounding, else "derived" from that clip.
    A row without one is `synthetic_<label>_<i>` with nominal positions (its `frame_indices`, else K uniform
    positions, spread by the cache's median stride) at the cache's median fps. Rows of different K (`published` a
    list) get per-row lists, and `keyframe_positions` (their positions among T) when the set's rows are key frames
    of T-frame clips (`cset.interpolate_to`); else that column is absent. `ranges`: a uint4 set's per-channel ranges
    (its rows hold codes, compared with the cached frames' codes under the same ranges).
    """
    import numpy as np
    import torch

    from compressa_hf.clips import uniform_indices
    from compressa_hf.codecs.storage import uint4_codes
    from compressa_hf.distill.methods.base import store_latents
    from compressa_hf.publish import public_path
    from compressa_hf.sources import printable_name

    variable = isinstance(published, list)  # rows of different K (the frame_indices of each row are padded)
    m, k = (len(published), None) if variable else published.shape[:2]
    counts = [len(x) for x in published] if variable else [k] * m
    num_frames = int(cached_latents.shape[1])
    sources = cset.source_videos if cset.source_videos is not None else torch.full((m,), -1)
    if cset.frame_indices is not None:
        positions = cset.frame_indices
    else:
        positions = torch.tensor(uniform_indices(num_frames, k)).expand(m, k)
    stride, median_fps = _nominal_position(cache_index, num_frames)
    dtype = "uint8" if (published[0] if variable else published).dtype == np.uint8 else "float16"
    columns = {"video_ids": [], "frame_indices": [], "timestamps": [], "fps": [], "sources": [], "starts": []}
    kinds = {"real": 0, "derived": 0, "synthetic": 0}
    per_class: dict[int, int] = {}
    for i in range(m):
        src, pos = int(sources[i]), [int(p) for p in positions[i][: counts[i]]]
        if src < 0:
            label = int(cset.labels[i])
            per_class[label] = per_class.get(label, 0) + 1
            indices = [round(p * stride) for p in pos]
            columns["video_ids"].append(f"synthetic_{label}_{per_class[label] - 1}")
            columns["frame_indices"].append(indices)
            columns["timestamps"].append([j / median_fps for j in indices])
            columns["fps"].append(median_fps)
            columns["starts"].append(None)
            columns["sources"].append("synthetic (no source clip)")
            kinds["synthetic"] += 1
            continue
        row = cache_index[src]
        columns["video_ids"].append(row["clip_id"])
        columns["frame_indices"].append([row["frame_indices"][p] for p in pos])
        columns["timestamps"].append([row["timestamps"][p] for p in pos])
        columns["fps"].append(row["fps"])
        columns["starts"].append(row.get("start"))  # variable-rate clips only (`cache.py`)
        columns["sources"].append(printable_name(public_path(row["path"], root)))
        cached = (
            uint4_codes(cached_latents[src, pos].float(), torch.tensor(ranges)).numpy()
            if ranges is not None
            else store_latents(cached_latents[src, pos].float(), dtype)[0]["latents"].numpy()
        )
        kinds["real" if np.array_equal(cached, published[i]) else "derived"] += 1
    if variable:
        columns["keyframe_positions"] = (
            [[int(p) for p in positions[i][: counts[i]]] for i in range(m)] if cset.interpolate_to else None
        )
    else:
        columns["frame_indices"] = np.asarray(columns["frame_indices"], dtype=np.int64).reshape(m, k)
        columns["timestamps"] = np.asarray(columns["timestamps"], dtype=np.float64).reshape(m, k)
    if all(start is None for start in columns["starts"]):
        columns["starts"] = None  # no `start` column: constant-rate sets keep their bytes
    text = {
        "real": "real frames: the cached latents of the source clip `video_id` at `frame_indices`",
        "derived": (
            "derived from the source clip `video_id`: the method's latents (optimised from, or reconstructed from, "
            "its cached frames at `frame_indices`), not that clip's frames themselves"
        ),
        "synthetic": (
            "synthetic, with no source clip: `video_id` is synthetic_<label>_<i>; `frame_indices`, `timestamps` and "
            f"`fps` are nominal (positions among T spread like the source's median clip, {stride:g} source frames "
            f"apart, at its median {median_fps:g} fps)"
        ),
    }
    described = "; ".join(f"{n} rows {text[kind]}" for kind, n in kinds.items() if n)
    return columns | {"row_kinds": kinds, "rows": described}


def _pixels_fn(args, source, enc, cache):
    """Decodes the real clips of the cache, in its order, once (kept in the work dir for a re-run)."""
    import torch

    from compressa_hf.evaluate.runner import load_pixels

    def pixels():
        path = os.path.join(args.work_dir, f"pixels_{os.path.basename(os.path.normpath(cache.path))}.safetensors")
        order = [row["clip_id"] for row in cache.index]
        frames, labels, ids = load_pixels(source, args.split, enc.clip_config(), args.num_workers, path, order=order)
        if ids != order or not torch.equal(labels, torch.tensor([row["label"] for row in cache.index])):
            raise ValueError(
                f"the clips decoded into {path} are not the cached ones (some unreadable now?); delete it and re-run"
            )
        return frames

    return pixels


def _run_method(args, vc_cfg, options, cache, source, enc, codec, labels_all, class_names, name, label_bytes=0):
    """`methods.compress(args.method, ...)` over the whole cached split, at the run's ratio, dtype and seed."""
    import shutil

    import torch

    from compressa_hf.distill.budget import resolve_ratio
    from compressa_hf.distill.methods import MethodContext, compress

    latents, _ = cache.load_latents()
    work = os.path.join(args.work_dir, f"checkpoints_{name}")
    if not args.resume:  # only scorer_only checkpoints; a run without --resume starts afresh, as videocompressa's
        shutil.rmtree(work, ignore_errors=True)
    ctx = MethodContext(
        latents=latents,
        labels=torch.tensor(labels_all, dtype=torch.long),
        num_classes=len(class_names),
        codec=codec,
        ratio=resolve_ratio(args.ratio, args.num_frames, args.size, cache.meta["latent_shape"]),
        seed=vc_cfg.seed,
        frame_size=(args.size, args.size),
        pixels_fn=_pixels_fn(args, source, enc, cache),
        dtype=args.dtype,
        options=options,
        work_dir=work,
        shared_dir=args.work_dir,  # kept across runs (expert trajectories); `work` is cleared without --resume
        device=codec.device,
        progress=True,  # the main process runs this; DM printed nothing for 14 minutes without it
        class_names=class_names,
        frames_per_video=vc_cfg.frames_per_video,  # None unless `--frames_per_video` (a FIXED_K_METHODS method)
        label_bytes_per_video=label_bytes,  # `--soft_labels`: room for each kept row's labels
    )
    return compress(args.method, ctx), ctx, latents


def _resolve_auto(args: DistillArguments, vc_cfg, auto) -> tuple[DistillArguments, object, dict]:
    """`--method auto`: the validation choice (`compressa_hf.evaluate.auto.choose`), and the arguments that distil
    the winner: its method, dtype, K and options, into config `auto_ratio_<r>`."""
    import dataclasses

    from compressa_hf.distill.methods import get_method
    from compressa_hf.distill.videocompressa import VideoCompressaConfig
    from compressa_hf.evaluate.auto import choose
    from compressa_hf.io import atomic_write_json
    from compressa_hf.store import config_name_for_ratio

    if args.ratio is None:
        raise ValueError("--method auto needs --ratio (a percent of the split's bytes, or k<K>)")
    flags = videocompressa_flags(vc_cfg)
    if flags:
        raise ValueError(
            f"--method auto takes no VideoCompressaConfig flags ({', '.join(flags)}): give every candidate's options "
            "in one --method_options file, {method: {option: value}}, and K with --auto_frames_per_video"
        )
    if args.method_options and not os.path.isfile(args.method_options):
        raise ValueError(
            f"--method auto reads --method_options from a YAML/JSON file of {{method: {{option: value}}}}, not "
            f"{args.method_options!r}"
        )
    selection = choose(args, auto, seed=vc_cfg.seed, method_config=args.method_options)
    chosen = selection["chosen"]
    options = {}
    if args.method_options:
        import yaml

        with open(args.method_options) as f:
            options = (yaml.safe_load(f) or {}).get(chosen["method"], {})
    method_options = None
    if get_method(chosen["method"]).Options is VideoCompressaConfig:
        vc_cfg = dataclasses.replace(vc_cfg, **options)
    elif options:
        method_options = os.path.join(args.work_dir, "auto", "chosen_options.json")
        atomic_write_json(method_options, options)
    vc_cfg = dataclasses.replace(vc_cfg, frames_per_video=chosen["frames_per_video"])
    soft = {}
    if chosen["soft_labels"]:  # the published set's teacher is trained as the validated candidates' teachers were
        train = auto.train_config()
        soft = dict(
            soft_labels=True,
            soft_label_dtype=chosen["soft_labels"],
            soft_label_teacher=auto.auto_arch,
            teacher_epochs=train.epochs,
            teacher_width=train.width,
            teacher_batch_size=train.batch_size,
            teacher_lr=train.lr,
        )
    args = dataclasses.replace(
        args,
        method=chosen["method"],
        dtype=chosen["dtype"],
        method_options=method_options,
        config_name=args.config_name or "auto_" + config_name_for_ratio(args.ratio, args.split),
        codec=chosen["codec"],  # the codec as given, or wrapped at the chosen stored side
        ratio=chosen["ratio"],  # `k<K>` as its exact percent when stored sides competed
        **soft,
    )
    return args, vc_cfg, selection


def run(args: DistillArguments, vc_cfg, command: str | None = None, auto=None) -> dict:
    """Distil (or plan, with `--dry-run`) and write the config; returns the run summary. `auto`: the
    `AutoArguments` of `--method auto` (defaults when None)."""
    import dataclasses

    import numpy as np
    import torch
    from accelerate import Accelerator

    from compressa_hf.cache import (
        EncodeConfig,
        LatentCache,
        cache_meta,
        encode_split,
        known_unreadable,
        refuse_other_settings,
        shared_cache_dir,
    )
    from compressa_hf.clips import describe_policy
    from compressa_hf.codecs import load_codec, load_default_codec
    from compressa_hf.distill.budget import qwen_visual_tokens
    from compressa_hf.distill.diagnostics import set_diagnostics
    from compressa_hf.distill.methods.base import CompressedSet, choose_videos, store_latents
    from compressa_hf.distill.videocompressa import distill
    from compressa_hf.distributed import get_state
    from compressa_hf.evaluate.auto import card_text as auto_card_text
    from compressa_hf.io import atomic_write_json
    from compressa_hf.publish import public_command, public_info, public_spec
    from compressa_hf.sources import parse_source_spec
    from compressa_hf.store import DistilledConfig, write_config

    state = get_state()
    selection = None
    if args.method == "auto":
        from compressa_hf.evaluate.auto import AutoArguments, check_sides, describe

        auto = auto or AutoArguments()
        check_sides(args, auto)  # a side the codec cannot be wrapped at is an error now, not at a candidate's turn
        if args.dry_run:
            text = describe(auto).replace("auto_ratio_<r>", config_name(args, args.ratio))
            return {"dry_run": True, "method": "auto", "plan_text": text, "auto": asdict(auto)}
        args, vc_cfg, selection = _resolve_auto(args, vc_cfg, auto)
    kind, options = method_options(args, vc_cfg)  # option errors before loading or encoding anything
    dtype = getattr(torch, args.codec_dtype)
    codec = load_default_codec(dtype=dtype) if args.codec == "default" else load_codec(args.codec, dtype=dtype)
    source = parse_source_spec(args.source)

    enc = EncodeConfig(
        source=args.source,
        output_dir=args.cache_dir,
        split=args.split,
        codec=codec.codec_id,
        num_frames=args.num_frames,
        size=args.size,
        policy=args.policy,
        seed=vc_cfg.seed,
        num_workers=args.num_workers,
        dtype=args.codec_dtype,
    )
    # What can be checked before any encoding is: the classes of the clips that exist, the plan, a given cache folder.
    refs, missing = source.list_clips(args.split), source.missing_clips(args.split)
    labels, class_names, dropped = class_space([r.label for r in refs], source.class_names, args.drop_empty_classes)
    if args.cache_dir is not None:
        refuse_other_settings(args.cache_dir, cache_meta(enc, source, codec, refs))

    method = {"method": args.method, "method_kind": kind, "method_options": options}
    if args.dry_run:
        # Clips the cache for these settings already found unreadable are not planned: the real run will not keep them.
        cache_dir = args.cache_dir or shared_cache_dir(cache_meta(enc, source, codec, refs))
        unreadable = known_unreadable(cache_dir)
        if unreadable:
            bad = {row["clip_id"] for row in unreadable}
            refs = [r for r in refs if r.clip_id not in bad]
            labels, class_names, dropped = _class_space_again(
                [r.label for r in refs], source.class_names, args.drop_empty_classes, dropped
            )
        latent_shape = codec.latent_shape(args.size, args.size)
        plan, text = _dry_run_plan(
            args, kind, vc_cfg.frames_per_video, labels, class_names, latent_shape, options=options
        )
        text = f"method: {args.method} ({kind})\n{text}"
        if missing:
            text += (
                f"\n{len(missing)} listed clips are missing and left out of the plan "
                f"(first: {', '.join(r.clip_id for r in missing[:3])})"
            )
        if unreadable:
            text += (
                f"\n{len(unreadable)} clips the latent cache ({cache_dir}) found unreadable are left out of the plan "
                f"(first: {', '.join(row['clip_id'] for row in unreadable[:3])}; reasons in its skipped.jsonl)"
            )
        elif not os.path.isdir(cache_dir):
            text += (
                f"\nno latent cache for these settings yet ({cache_dir}): no clip has been opened, so the plan counts "
                "every listed clip; the run leaves out the ones it cannot read (`compressa encode` first makes a dry "
                "run count them)"
            )
        if dropped:
            text += f"\nclasses left out (no clips): {', '.join(dropped)}"
        return {
            "dry_run": True,
            **method,
            "plan": plan,
            "plan_text": text,
            "codec_id": codec.codec_id,
            "class_names": class_names,  # the order of the plan's videos_per_class
            "clips": len(refs),
            "missing_clips": len(missing),
            "unreadable_clips": len(unreadable),
            "dropped_classes": dropped,
        }

    cache_summary = encode_split(enc, codec=codec, source=source)
    cache = LatentCache(cache_summary["output_dir"])
    labels_all, class_names, dropped = _class_space_again(
        [row["label"] for row in cache.index], cache.class_names, args.drop_empty_classes, dropped
    )
    labeller = args.labeller(len(class_names), codec.device)  # `--soft_labels`: a teacher and room for its labels
    label_bytes = labeller.bytes_per_row if labeller is not None else 0
    if args.method == "videocompressa":
        plan = plan_for(
            args,
            vc_cfg.frames_per_video,
            labels_all,
            class_names,
            cache.meta["latent_shape"],
            label_bytes_per_video=label_bytes,
        )
        logger.info("budget plan:\n%s", plan.describe())
        keep = choose_videos(labels_all, list(plan.videos_per_class), vc_cfg.seed)
        # Lazy: rows are read from the cache's shards as the method asks for them (`--state_storage disk` keeps
        # memory bounded by the batch; in memory the method holds its own copy of the kept videos).
        latents_all = cache.latents()
        latents, labels = latents_all.select(torch.tensor(keep)), torch.tensor(labels_all)[keep]
        vc_cfg = dataclasses.replace(vc_cfg, frames_per_video=plan.frames_per_video)
        method["method_options"] = asdict(vc_cfg)
        name = config_name(args, args.ratio if args.ratio is not None else plan.achieved_ratio)
        accelerator = Accelerator(cpu=not torch.cuda.is_available()) if state.num_processes > 1 else None
        result = distill(
            latents,
            labels,
            codec,
            vc_cfg,
            num_classes=len(class_names),
            checkpoint_dir=os.path.join(args.work_dir, f"checkpoints_{name}"),
            resume=args.resume,
            accelerator=accelerator,
        )
        stored, readback = store_latents(result.latents, plan.dtype)
        cset = CompressedSet(
            method="videocompressa",
            labels=labels,
            stored=stored,
            latents=readback,
            source_videos=torch.tensor(keep, dtype=torch.long),
            frame_indices=result.frame_indices,
            budget_bytes=plan.budget_bytes,
        )
        assert cset.stored_bytes == plan.stored_bytes - plan.label_bytes, (cset.stored_bytes, plan.stored_bytes)
        cset.info["diagnostics"] = set_diagnostics(cset, latents_all, codec)
        if result.history:
            cset.info["diagnostics"]["scorer_entropy"] = result.history[-1]["scorer_entropy"]
            cset.info["diagnostics"]["guide_acc"] = result.history[-1]["acc"]
        full_bytes, ratio, plan_dict, details = plan.full_bytes, plan.ratio, plan.to_dict(), result.summary()
        summary = {"config_name": name, **method, "plan": plan_dict, "cache": cache_summary, "distill": details}
        summary["diagnostics"] = cset.info["diagnostics"]
    else:
        name = config_name(args, args.ratio)
        if state.num_processes > 1:
            logger.warning("method %s runs on the main process only; the other processes wait", args.method)
        cset = ctx = latents_all = None
        if state.is_main_process:
            cset, ctx, latents_all = _run_method(
                args, vc_cfg, options, cache, source, enc, codec, labels_all, class_names, name, label_bytes
            )
            full_bytes, ratio = ctx.full_bytes, float(ctx.ratio)
            stats = cset.frame_stats()
            logger.info(
                "%s: %d rows of %s frames, %d stored bytes (budget %d)",
                args.method,
                cset.num_rows,
                f"{stats['mean']:.2f} (min {stats['min']}, max {stats['max']})"
                if cset.variable_frames
                else cset.frames_per_row,
                cset.stored_bytes,
                cset.budget_bytes,
            )
        plan_dict = cset.info.get("plan") if cset is not None else None
        summary = {"config_name": name, **method, "plan": plan_dict, "cache": cache_summary}
        summary["method_info"] = cset.info if cset is not None else None
        summary["diagnostics"] = cset.info.get("diagnostics") if cset is not None else None

    if selection is not None:
        summary["auto"] = selection
    if labeller is not None and state.is_main_process:  # the teacher labels the kept rows, in the room left for it
        pixels = _pixels_fn(args, source, enc, cache)()
        relabelled = labeller(cset, codec, cset.budget_bytes, vc_cfg.seed, pixels, torch.tensor(labels_all))
        cset = dataclasses.replace(relabelled, method=cset.method)
        summary["soft_labels"] = cset.info["soft_labels"]
        logger.info(
            "with its soft labels (%d bytes): %d rows, %d stored bytes (budget %d)",
            cset.info["soft_labels"]["bytes"],
            cset.num_rows,
            cset.stored_bytes,
            cset.budget_bytes,
        )
    from compressa_hf.threads import last_choice

    choice = last_choice()  # how many threads ran this (some results' last bits depend on it)
    summary["torch_threads"] = choice.to_dict() if choice is not None else {"threads": torch.get_num_threads()}
    if state.is_main_process:
        # Soft labels (`--soft_labels`, or DATM's learned ones) are published as their own column, as stored.
        soft = cset.stored.get("soft_labels")
        rows_set = cset if soft is None else dataclasses.replace(cset, stored=_without(cset.stored, "soft_labels"))
        published, published_note, ranges = _published_latents(
            rows_set, "float16" if args.dtype == "float16" else "uint8"
        )
        info = cache.meta["source_info"]
        root = info.get("root") or (info.get("path") if isinstance(info.get("path"), str) else None)
        rows = row_columns(cset, published, latents_all, cache.index, root, ranges=ranges)
        variable = isinstance(published, list)  # rows of different K (PRISM's key frames)
        latents_dtype = "uint8" if (published[0] if variable else published).dtype == np.uint8 else "float16"
        latents_dtype = "uint4" if ranges is not None else latents_dtype
        previews = _previews(published, latents_dtype, codec, ranges=ranges) if args.preview else None
        # Published: nothing machine-local (compressa_hf.publish); the local spec is kept beside, unpublished.
        meta = {
            "source": public_spec(args.source),
            "source_info": public_info(info),
            "split": args.split,
            **method,
            "rows": rows["rows"],
            "row_kinds": rows["row_kinds"],
            "codec_id": codec.codec_id,
            "codec_revision": getattr(codec, "revision", None),
            "latent_scaling": LATENT_SCALING[latents_dtype],
            "frames_per_video": cset.frame_stats() if variable else cset.frames_per_row,
            "requested_ratio": ratio,
            "achieved_ratio": cset.stored_bytes / full_bytes * 100,
            "stored_bytes": cset.stored_bytes,
            "budget_bytes": cset.budget_bytes,
            "full_bytes": full_bytes,
            "published_note": published_note,
            "visual_tokens_per_sample": (
                _stats([qwen_visual_tokens(int(k), args.size) for k in cset.row_frames])
                if variable
                else qwen_visual_tokens(cset.frames_per_row, args.size)
            ),
            **({"keyframes": _keyframes_note(cset)} if variable else {}),
            "clip": cache.meta["clip"],
            "sampling": (
                describe_policy(cache.meta["clip"]["policy"], variable_rate=True)
                if rows["starts"] is not None  # the set holds a variable-rate clip: say how it was sampled
                else cache.meta["sampling"]
            ),
            "seed": vc_cfg.seed,
            "command": public_command(command) if command else None,
            "clips_missing": cache_summary.get("clips_missing", 0),
            "clips_skipped": cache_summary.get("clips_skipped", 0),
            "dropped_classes": dropped,
            "diagnostics": cset.info.get("diagnostics"),
            "license": card_license(args, source),
            **({"auto": selection, "auto_text": auto_card_text(selection)} if selection is not None else {}),
            **({"soft_labels": _soft_label_meta(cset, soft)} if soft is not None else {}),
        }
        if args.method == "videocompressa":
            meta["hyperparameters"] = method["method_options"]  # the key sets written before --method read
            meta["achieved_ratio"] = plan.achieved_ratio
        write_config(
            args.output,
            DistilledConfig(
                name=name,
                video_ids=rows["video_ids"],
                labels=cset.labels.tolist(),
                latents=published,
                frame_indices=rows["frame_indices"],
                timestamps=rows["timestamps"],
                fps=rows["fps"],
                sources=rows["sources"],
                class_names=class_names,
                meta=meta,
                previews=previews,
                starts=rows["starts"],
                keyframe_positions=rows.get("keyframe_positions"),
                latent_ranges=ranges,
                soft_labels=None if soft is None else soft.numpy(),
            ),
        )
        # What `compressa show` needs to find the source frames on this machine; `push` never uploads local/.
        atomic_write_json(os.path.join(args.output, "local", f"{name}.json"), {"source": args.source})
        summary["output"] = {
            "repo": args.output,
            "config": name,
            "videos": cset.num_rows,
            "rows": rows["row_kinds"],
            "frames_per_video": meta["frames_per_video"],
            "stored_bytes": cset.stored_bytes,
            "budget_bytes": cset.budget_bytes,
            "published_latent_bytes": int(sum(x.nbytes for x in published) if variable else published.nbytes),
        }
        if args.push_to_hub:
            from compressa_hf.hub import push_repo

            summary["push"] = push_repo(args.output, args.push_to_hub, private=args.private)
        atomic_write_json(os.path.join(args.work_dir, f"summary_{name}.json"), summary)
    state.wait_for_everyone()
    return summary


def main(argv: list[str] | None = None) -> int:
    from compressa_hf.distributed import get_state

    args, vc_cfg, auto = make_parser().parse_args_and_config(argv)
    command = "compressa distill " + shlex.join(argv if argv is not None else sys.argv[1:])
    summary = run(args, vc_cfg, command=command, auto=auto)
    if get_state().is_main_process:
        if summary.get("dry_run"):
            print(summary["plan_text"])
        print(json.dumps(summary, indent=2, default=str))
    return 0
