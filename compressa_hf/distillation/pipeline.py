"""One distillation run, from a source to a written config: the method (or `--method auto`'s choice), its options
and plan, the latent cache, the compressed set, soft labels, and the set written as a Hub dataset config.

`run` is what `compressa distill` and `compressa_hf.distill` call; `--dry-run` stops after the plan
(`compressa_hf.distillation.dry_run`).

Steps, the same for every method (`--method NAME`, any of `compressa_hf.distillation.methods.METHODS` but `full`):
(1) the latent cache of the split (stage 1, resumable; the shared cache, so a split encoded before with the same
settings is not encoded again); (2) the budget plan, logged as `--dry-run` prints it: for the planner's methods the
ratio buys K frames per video for some videos per class as uint8, 4-bit or float16 latents, and when it buys fewer
videos than the split has, a seeded random subset per class is kept (the coreset step); (3) `methods.compress(NAME,
...)` at that budget, exactly as `compressa evaluate` runs it: for VideoCompressa the joint optimisation of the
latents, the frame scorer and a guide network (`compressa_hf.distillation.videocompressa`), checkpointed in
`<work_dir>/checkpoints_<config>/`; (4) the set written as config `ratio_<r>` (VideoCompressa) or `<NAME>_ratio_<r>`
(`<NAME>_<split>_ratio_<r>` for another split) of the repo at `--output`. A JSON summary ends the run.

A method's options come from `--method_options`: a YAML/JSON file holding `{option: value}` (or `compressa evaluate --method_config`'s `{method: {option: value}}`, of
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

import logging
import os
from dataclasses import asdict

from compressa_hf.distillation.arguments import (
    DistillArguments,
    class_space,
    class_space_again,
    config_name,
    method_options,
    plan_for,
    run_ratio,
    videocompressa_flags,
)
from compressa_hf.sources import parse_source_spec

logger = logging.getLogger(__name__)


def _pixels_fn(args, source, enc, cache):
    """Decodes the real clips of the cache, in its order, once (kept in the work dir for a re-run)."""
    import torch

    from compressa_hf.evaluation.runner import load_pixels

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


def _context(
    args, vc_cfg, options, cache, source, enc, codec, labels_all, class_names, name, label_bytes, accelerator
):
    """The `MethodContext` of the run: the whole cached split (read lazily), at the run's ratio, dtype and seed."""
    import shutil

    import torch

    from compressa_hf.distillation.methods import MethodContext

    work = os.path.join(args.work_dir, f"checkpoints_{name}")
    main = accelerator is None or accelerator.is_main_process
    if not args.resume and main:  # a run without --resume starts afresh
        shutil.rmtree(work, ignore_errors=True)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return MethodContext(
        latents=cache.latents(),  # lazy: rows are read from the cache's shards as the method asks for them
        labels=torch.tensor(labels_all, dtype=torch.long),
        num_classes=len(class_names),
        codec=codec,
        ratio=run_ratio(args, vc_cfg.frames_per_video, labels_all, cache.meta["latent_shape"]),
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
        accelerator=accelerator,
    )


def _resolve_auto(args: DistillArguments, vc_cfg, auto) -> tuple[DistillArguments, object, dict]:
    """`--method auto`: the validation choice (`compressa_hf.evaluation.auto.choose`), and the arguments that distil
    the winner: its method, dtype, K and options, into config `auto_ratio_<r>`."""
    import dataclasses

    from compressa_hf.distillation.methods import get_method
    from compressa_hf.distillation.videocompressa import VideoCompressaConfig
    from compressa_hf.evaluation.auto import choose
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


def run(args: DistillArguments, vc_cfg=None, command: str | None = None, auto=None) -> dict:
    """Distil `args.source` with `args.method` and write config `config_name` of the repo at `args.output` (or, with
    `args.dry_run`, plan only); returns the run summary (JSON-ready: `config_name`, `method`, `plan`, `cache`,
    `diagnostics`, `output`; `dry_run` and `plan_text` for a dry run).

    Args:
        args: The run (`DistillArguments`).
        vc_cfg: `VideoCompressaConfig`: VideoCompressa's and scorer_only's options, and `seed` and
            `frames_per_video` for every method (defaults when None).
        command: The command line recorded on the card (`compressa_hf.publish.public_command`), or None.
        auto: The `AutoArguments` of `--method auto` (defaults when None).

    Every method goes the same way: its options are checked, the split is encoded (the shared latent cache), the
    method runs on a `MethodContext` of the whole cached split (`compressa_hf.distillation.methods.compress`; on several
    processes every rank runs a method whose module sets `MULTI_PROCESS`, others run on the main process while the
    rest wait), a teacher's soft labels fill the room left for them (`--soft_labels`), and the main process writes
    the set (`compressa_hf.distillation.set_writer.write_set`).

    Raises:
        ValueError, OSError, LookupError (and `SourceError`): what the user can fix (a bad option, a cache made with
            other settings, a class without clips, missing weights or files), with one-paragraph messages.
    """
    import dataclasses

    import torch

    from compressa_hf.cache import EncodeConfig, LatentCache, cache_meta, encode_split, refuse_other_settings
    from compressa_hf.codecs import load_codec, load_default_codec
    from compressa_hf.distillation.dry_run import dry_run_plan, dry_run_summary
    from compressa_hf.distillation.methods import compress, get_method
    from compressa_hf.distillation.set_writer import card_diagnostics, write_set
    from compressa_hf.distillation.videocompressa import VideoCompressaConfig
    from compressa_hf.distributed import get_state
    from compressa_hf.io import atomic_write_json

    vc_cfg = vc_cfg if vc_cfg is not None else VideoCompressaConfig()
    state = get_state()
    selection = None
    if args.method == "auto":
        from compressa_hf.evaluation.auto import AutoArguments, check_sides, describe

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
        return dry_run_summary(
            args, kind, vc_cfg, method, codec, enc, source, refs, missing, (labels, class_names, dropped)
        )

    cache_summary = encode_split(enc, codec=codec, source=source)
    cache = LatentCache(cache_summary["output_dir"])
    labels_all, class_names, dropped = class_space_again(
        [row["label"] for row in cache.index], cache.class_names, args.drop_empty_classes, dropped
    )
    labeller = args.labeller(len(class_names), codec.device)  # `--soft_labels`: a teacher and room for its labels
    label_bytes = labeller.bytes_per_row if labeller is not None else 0
    latent_shape = cache.meta["latent_shape"]
    try:  # the plan, as --dry-run shows it (the method plans again, identically, and raises what does not fit)
        _, text = dry_run_plan(args, kind, vc_cfg.frames_per_video, labels_all, class_names, latent_shape, options)
        logger.info("budget plan (%s):\n%s", args.method, text)
    except ValueError:
        pass
    ratio_name = args.ratio
    if ratio_name is None:  # `--frames_per_video K` alone: named by the ratio K frames of every video achieve
        plan = plan_for(args, vc_cfg.frames_per_video, labels_all, class_names, latent_shape, False, label_bytes)
        ratio_name = plan.achieved_ratio
    name = config_name(args, ratio_name)

    several = state.num_processes > 1 and getattr(get_method(args.method), "MULTI_PROCESS", False)
    if state.num_processes > 1 and not several:
        logger.warning("method %s runs on the main process only; the other processes wait", args.method)
    cset = None
    if several or state.is_main_process:
        accelerator = None
        if several:
            from accelerate import Accelerator

            accelerator = Accelerator(cpu=not torch.cuda.is_available())
        ctx = _context(
            args, vc_cfg, options, cache, source, enc, codec, labels_all, class_names, name, label_bytes, accelerator
        )
        cset = compress(args.method, ctx)
        method["method_options"] = cset.info.get("options", options)  # as run (a method may resolve some, e.g. K)
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
    info = cset.info if cset is not None else {}
    summary = {"config_name": name, **method, "plan": info.get("plan"), "cache": cache_summary}
    summary |= {"distill": info["distill"]} if "distill" in info else {}
    summary |= {"method_info": info or None, "diagnostics": card_diagnostics(cset) if cset is not None else None}
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
        budget = (float(ctx.ratio), ctx.full_bytes, vc_cfg.seed)
        classes = (class_names, dropped)
        summary["output"] = write_set(
            args, cset, name, method, budget, cache, cache_summary, codec, source, classes, selection, command
        )
        if args.push_to_hub:
            from compressa_hf.hub import push_repo

            summary["push"] = push_repo(args.output, args.push_to_hub, private=args.private)
        atomic_write_json(os.path.join(args.work_dir, f"summary_{name}.json"), summary)
    state.wait_for_everyone()
    return summary
