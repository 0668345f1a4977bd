"""The Python API: every `compressa` job as a function of the same documented dataclasses the command parses, returning
a typed result. `import compressa_hf` exposes these names lazily (nothing heavy is imported until one is used).

    import compressa_hf as ch

    ch.encode(source="procedural", num_frames=8, size=32)                       # stage 1: the latent cache
    out = ch.distill(source="procedural", ratio="k1", num_frames=8, size=32, method="uniform", output="out/proc")
    ds = ch.load_distilled(out.repo, out.config_name)                           # its rows and card
    chat = ch.load_chat_dataset(out.repo, out.config_name)                      # Qwen-VL chat samples
    report = ch.evaluate(source="procedural", methods="uniform,dm", ratios="k1", seeds=2, output="out/eval")

Each job takes its dataclass(es) or their fields as keyword arguments (routed to the dataclass that has the field;
one dataclass is given either as an object or as keywords, not both), runs what `compressa <job>` runs, and raises
what the command turns into its one-paragraph message: `ValueError`, `OSError` (`FileNotFoundError` ...),
`LookupError` and `compressa_hf.errors.SourceError`, with the same text. An unknown keyword is a `TypeError` naming
it and the dataclasses it could belong to.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


def _build(job: str, classes: tuple[type, ...], given: dict[str, Any], options: dict[str, Any]) -> list:
    """One instance per class of `classes`: `given[cls.__name__]` when passed, else built from the `options` that are
    its fields (the rest at their defaults). Unknown options, or options for a class also passed as an object, are a
    `TypeError`."""
    owner = {f.name: cls for cls in classes for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(options) - set(owner))
    if unknown:
        import difflib

        near = {k: difflib.get_close_matches(k, owner, n=1) for k in unknown}
        hints = "".join(f"; did you mean {m[0]!r} for {k!r}?" for k, m in near.items() if m)
        raise TypeError(
            f"{job}() got unknown option(s) {unknown}{hints}; its options are the fields of "
            f"{', '.join(c.__name__ for c in classes)}"
        )
    out = []
    for cls in classes:
        mine = {k: v for k, v in options.items() if owner[k] is cls}
        obj = given.get(cls.__name__)
        if obj is not None and mine:
            raise TypeError(
                f"{job}() got a {cls.__name__} and its field(s) {sorted(mine)} as keywords: pass one or the other"
            )
        if obj is not None and not isinstance(obj, cls):
            raise TypeError(f"{job}(): expected a {cls.__name__}, got {type(obj).__name__}")
        out.append(obj if obj is not None else cls(**mine))
    return out


def _threads(what: str) -> None:
    """The CLI's thread choice (`compressa_hf.threads`), once per process (the `compressa` command has made it
    already); a count the caller set with `torch.set_num_threads` is kept."""
    from compressa_hf.threads import configure_threads, last_choice

    if last_choice() is None:
        configure_threads(what=what)


@dataclass
class EncodeOutput:
    """What `encode` wrote.

    Attributes:
        output_dir: The latent cache folder (`compressa_hf.cache.LatentCache` reads it).
        clips_cached: Clips in the cache.
        clips_skipped: Clips that could not be read (listed, with reasons, in the cache's `skipped.jsonl`).
        summary: The whole JSON summary `compressa encode` prints.
    """

    output_dir: str
    clips_cached: int
    clips_skipped: int
    summary: dict = field(repr=False)


def encode(config=None, /, **options) -> EncodeOutput:
    """Encode every sampled frame of a split once into a resumable latent cache (`compressa encode`).

    Args:
        config: A `compressa_hf.cache.EncodeConfig`, or None to build one from `options`.
        **options: `EncodeConfig` fields (source, split, codec, num_frames, size, output_dir, ...).

    Returns:
        `EncodeOutput`. Latents are `(T, C, h, w)` float16 per clip, `h = w = size / 8` for the tiny VAEs.

    Raises:
        ValueError / OSError / SourceError: a bad option, an unreadable source, a cache made with other settings, or
            a split none of whose listed clips could be read (the cache's `skipped.jsonl` says why for each).
        TypeError: an unknown option.
    """
    from compressa_hf.cache import EncodeConfig, encode_split

    (cfg,) = _build("encode", (EncodeConfig,), {"EncodeConfig": config}, options)
    _threads("compressa_hf.encode")
    summary = encode_split(cfg)
    if summary.get("clips_total") and not summary.get("clips_cached"):
        raise ValueError(
            f"none of the {summary['clips_total']} clips of split {cfg.split!r} in {cfg.source} could be read "
            f"({summary.get('clips_missing', 0)} missing files, "
            f"{summary['clips_skipped'] - summary.get('clips_missing', 0)} unreadable); the reason for each is in "
            f"{summary['skipped_report']}"
        )
    return EncodeOutput(
        output_dir=summary["output_dir"],
        clips_cached=int(summary.get("clips_cached", 0)),
        clips_skipped=int(summary.get("clips_skipped", 0)),
        summary=summary,
    )


@dataclass
class DistilledSet:
    """One config of a distilled set: its rows and what its card says of them.

    Attributes:
        repo: The folder or Hub dataset id.
        config_name: The config (`ratio_1`, `dm_ratio_k1`, ...).
        rows: A `datasets.Dataset` of the config's rows: `video_id`, `label`, `latents` (K x C x h x w as stored:
            uint8, float16 or 4-bit codes as uint8), `frame_indices`, `timestamps` (seconds), `fps`, ...
        meta: The card's record of the config (`meta/<config>.json`): method, options, plan, codec, bytes.
        card: The repo's `README.md` text (every config's section).
    """

    repo: str
    config_name: str
    rows: Any = field(repr=False)
    meta: dict = field(repr=False)
    card: str = field(repr=False)

    def chat_dataset(self, **kwargs):
        """The rows as Qwen-VL chat samples, decoded on access: `load_chat_dataset(repo, config_name, **kwargs)`."""
        return load_chat_dataset(self.repo, self.config_name, **kwargs)


def load_distilled(repo: str, config: str | None = None, split: str = "train", **load_kwargs) -> DistilledSet:
    """A distilled set's config as rows and card, from a folder written by `distill` or a Hub dataset id.

    Args:
        repo: A folder or a Hub dataset id (`org/name`).
        config: The config name; None takes the only one (an error naming them when there are several).
        split: The split (distilled sets have `train`).
        **load_kwargs: Passed to `datasets.load_dataset` (`revision`, `cache_dir`, ...).

    Raises:
        FileNotFoundError: a folder that is not there (a path, not an `org/name` id) or holds no distilled set's card.
        ValueError: `config` missing from the set, or None with several configs.
    """
    import os

    from datasets import load_dataset

    parent = os.path.dirname(os.path.normpath(repo))
    looks_local = (
        os.path.isabs(repo)
        or repo.startswith((".", "~"))
        or repo.count("/") != 1
        or (parent and os.path.isdir(parent))
    )
    if not os.path.isdir(repo) and looks_local:  # a Hub id is `org/name`; anything else is a folder that is not there
        raise FileNotFoundError(f"{repo}: no such folder (and not a Hub dataset id, `org/name`)")
    if os.path.isdir(repo):
        from compressa_hf.store import read_meta

        if not os.path.exists(os.path.join(repo, "README.md")):
            raise FileNotFoundError(f"{repo} has no README.md: not a distilled set (write one with distill first)")
        metas = read_meta(repo)
        with open(os.path.join(repo, "README.md"), encoding="utf-8") as f:
            card = f.read()
    else:
        from huggingface_hub import hf_hub_download

        card_path = hf_hub_download(repo, "README.md", repo_type="dataset", revision=load_kwargs.get("revision"))
        with open(card_path, encoding="utf-8") as f:
            card = f.read()
        metas = None
    if config is None:
        names = sorted(metas) if metas is not None else []
        if len(names) != 1:
            raise ValueError(f"{repo} has configs {names or '(see its card)'}; name one with config=")
        config = names[0]
    if metas is not None and config not in metas:
        raise ValueError(f"{repo} has no config {config!r}; it has {sorted(metas)}")
    rows = load_dataset(repo, config, split=split, **load_kwargs)
    if metas is None:
        import json

        from huggingface_hub import hf_hub_download

        meta_path = hf_hub_download(
            repo, f"meta/{config}.json", repo_type="dataset", revision=load_kwargs.get("revision")
        )
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    else:
        meta = metas[config]
    return DistilledSet(repo=repo, config_name=config, rows=rows, meta=meta, card=card)


def load_chat_dataset(repo_or_folder: str, config: str, **kwargs):
    """A distilled set's config as Qwen-VL chat samples (`compressa_hf.qwen.samples.load_chat_dataset`, whose
    docstring gives every option: prompt, codec, fps, decode_once, streaming, ...).

    Returns:
        A `datasets.Dataset` (or `IterableDataset` with `streaming=True`) whose rows are `{"messages": [...],
        "videos": [(K, H, W, 3) uint8 frames], "video_metadata", "label", "answer", "video_id"}`, decoded on access
        (a transform: `column_names` still lists the stored columns).

    Raises:
        ValueError: a codec other than the card's without `codec=`, or a config the set does not have.
    """
    from compressa_hf.qwen.samples import load_chat_dataset as load

    return load(repo_or_folder, config, **kwargs)


@dataclass
class DistillOutput:
    """What `distill` did.

    Attributes:
        repo: The set's folder (`DistillArguments.output`); None for a dry run.
        config_name: The config written (`ratio_<r>`, `<method>_ratio_<r>`, `auto_ratio_<r>`); for a dry run, the one
            a run would write (None when only `frames_per_video` names it, after the plan).
        method: The method that made the set (`--method auto`: the one it chose).
        plan: The budget plan (K, videos per class, bytes) as a dict, or None for methods without one.
        dry_run: True when only the plan was made (`plan_text` says it).
        summary: The whole JSON summary `compressa distill` prints.
    """

    repo: str | None
    config_name: str | None
    method: str
    plan: dict | None
    dry_run: bool
    summary: dict = field(repr=False)

    @property
    def plan_text(self) -> str | None:
        """The plan as `--dry-run` prints it (dry runs only)."""
        return self.summary.get("plan_text")

    def load(self, **load_kwargs) -> DistilledSet:
        """The written config's rows and card (`load_distilled`)."""
        if self.repo is None:
            raise ValueError("a dry run wrote no set")
        return load_distilled(self.repo, self.config_name, **load_kwargs)


def distill(args=None, /, *, videocompressa=None, auto=None, command: str | None = None, **options) -> DistillOutput:
    """Distil a labelled video split into a few latent frames per video and write it as a config of a Hub dataset
    repo (`compressa distill`; `compressa_hf.distillation.pipeline.run`).

    Args:
        args: A `compressa_hf.distillation.arguments.DistillArguments` (source, method, ratio, output, ...), or None.
        videocompressa: A `VideoCompressaConfig` (VideoCompressa's and scorer_only's options; `seed` and
            `frames_per_video` for every method), or None.
        auto: An `AutoArguments` for `method="auto"`, or None.
        command: What the card records as the command that made the set (default: none).
        **options: Fields of any of the three (routed by name): `source`, `ratio` (a percent of the split's uint8
            clips, or `k<K>`), `method`, `output`, `num_frames`, `size`, `passes`, `auto_methods`, ...

    Returns:
        `DistillOutput`; the set's rows hold `(K, C, h, w)` latents per video at the storage dtype.

    Raises:
        ValueError / OSError / LookupError / SourceError: as `compressa distill` reports them (a bad option, a class
            without clips, a budget that buys nothing, a cache made with other settings, missing weights).
        TypeError: an unknown option.
    """
    from compressa_hf.distillation.arguments import DistillArguments
    from compressa_hf.distillation.pipeline import run
    from compressa_hf.distillation.videocompressa import VideoCompressaConfig
    from compressa_hf.evaluation.auto import AutoArguments

    given = {"DistillArguments": args, "VideoCompressaConfig": videocompressa, "AutoArguments": auto}
    args, vc_cfg, auto_args = _build(
        "distill", (DistillArguments, VideoCompressaConfig, AutoArguments), given, options
    )
    _threads("compressa_hf.distill")
    summary = run(args, vc_cfg, command=command, auto=auto_args)
    if summary.get("dry_run"):
        return DistillOutput(None, summary.get("config_name"), summary["method"], summary.get("plan"), True, summary)
    output = summary.get("output") or {}
    return DistillOutput(
        repo=output.get("repo", args.output),
        config_name=summary["config_name"],
        method=summary["method"],
        plan=summary.get("plan"),
        dry_run=False,
        summary=summary,
    )


@dataclass
class EvaluateOutput:
    """What `evaluate` measured.

    Attributes:
        output: The run folder (`report.md`, `report.json`, `report.png`, resumable cells).
        tables: `{arch: {method: {ratio key: cell}}}`, each cell's mean and std of test accuracy (fractions in [0, 1])
            over seeds, stored bytes, seconds; a ratio key is the exact percent as the report prints it
            (`ratio_keys` maps each ratio as given, e.g. `k1`, to it; full data is under `full`).
        ratio_keys: `{ratio as given: its key in tables}`, e.g. `{"k1": "0.195312"}`.
        report: The whole `report.json`.
    """

    output: str
    tables: dict = field(repr=False)
    ratio_keys: dict
    report: dict = field(repr=False)

    @property
    def markdown(self) -> str:
        """The Table-1-style report `compressa evaluate` prints."""
        from compressa_hf.evaluation.report import to_markdown

        return to_markdown(self.report)


def evaluate(args=None, /, *, train=None, **options) -> EvaluateOutput:
    """Train networks from scratch on every method's set at equal stored bytes and test them (`compressa evaluate`;
    `compressa_hf.evaluation.runner.run`).

    Args:
        args: A `compressa_hf.evaluation.runner.EvaluateArguments`, or None.
        train: A `compressa_hf.evaluation.train.TrainConfig` (epochs, batch size, width, lr), or None.
        **options: Fields of either: `source`, `methods`, `ratios`, `seeds`, `folds`, `validation_fraction`,
            `epochs`, `output`, ...

    Returns:
        `EvaluateOutput`; resumes the cells a killed run finished.

    Raises:
        ValueError / OSError / SourceError: as `compressa evaluate` reports them. TypeError: an unknown option.
    """
    from compressa_hf.evaluation.runner import EvaluateArguments, run
    from compressa_hf.evaluation.train import TrainConfig

    given = {"EvaluateArguments": args, "TrainConfig": train}
    args, train_cfg = _build("evaluate", (EvaluateArguments, TrainConfig), given, options)
    _threads("compressa_hf.evaluate")
    report = run(args, train_cfg)
    from compressa_hf.evaluation.report import ratio_key

    keys = {token: ratio_key(float(r)) for token, r in zip(args.ratio_tokens, report["ratios"])}
    return EvaluateOutput(output=args.output, tables=report["tables"], ratio_keys=keys, report=report)


@dataclass
class PushOutput:
    """What `push` uploaded (or, with `dry_run`, would upload).

    Attributes:
        repo_id: The Hub dataset id.
        files: Paths relative to the folder.
        bytes: Their total size in bytes.
        url: The repo's URL (None for a dry run).
        warnings: What the card or files lack (licence, codec), also logged.
        summary: The whole JSON summary `compressa push` prints.
    """

    repo_id: str
    files: list[str]
    bytes: int
    url: str | None
    warnings: list[str]
    summary: dict = field(repr=False)


def push(folder: str, repo_id: str, *, private: bool = False, dry_run: bool = False) -> PushOutput:
    """Upload a distilled set folder to the Hub as a dataset repo (`compressa push`; `compressa_hf.hub.push_repo`):
    `README.md`, `data/**` and `meta/**`; work files and `local/` stay behind. The token comes from `HF_TOKEN` or
    `hf auth login`.

    Raises:
        FileNotFoundError: `folder` is not a distilled set.
        ValueError: the set would publish paths of this machine.
    """
    from compressa_hf.hub import push_repo

    summary = push_repo(folder, repo_id, private=private, dry_run=dry_run)
    return PushOutput(
        repo_id=repo_id,
        files=summary["files"],
        bytes=summary["bytes"],
        url=summary.get("url"),
        warnings=summary.get("warnings", []),
        summary=summary,
    )
