"""`--dry-run`: what a distillation run would keep (the planner's K frames per video, whole clips, PRISM's key-frame
budget or a VDSD memory), over the clips that exist, without opening a clip."""

from __future__ import annotations

import os

from compressa_hf.distillation.arguments import class_space_again, config_name, plan_for

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

    from compressa_hf.distillation.budget import counts_per_class, resolve_ratio
    from compressa_hf.distillation.methods.prism import plan_keyframes

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

    from compressa_hf.distillation.budget import resolve_ratio
    from compressa_hf.distillation.methods.base import MethodContext
    from compressa_hf.distillation.static_dynamic import PAIRS, plan_memory

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


def dry_run_plan(
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
        from compressa_hf.distillation.soft_labels import label_bytes as soft_label_bytes

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


def dry_run_summary(args, kind: str, vc_cfg, method: dict, codec, enc, source, refs, missing, classes) -> dict:
    """The summary of `--dry-run`: the plan over the listed clips that exist, less the clips the latent cache for
    these settings already found unreadable (the real run will not keep them); `classes` is `class_space`'s
    `(labels, class names, dropped)` of `refs`. Opens no clip."""
    from compressa_hf.cache import cache_meta, known_unreadable, shared_cache_dir

    labels, class_names, dropped = classes
    cache_dir = args.cache_dir or shared_cache_dir(cache_meta(enc, source, codec, refs))
    unreadable = known_unreadable(cache_dir)
    if unreadable:
        bad = {row["clip_id"] for row in unreadable}
        refs = [r for r in refs if r.clip_id not in bad]
        labels, class_names, dropped = class_space_again(
            [r.label for r in refs], source.class_names, args.drop_empty_classes, dropped
        )
    latent_shape = codec.latent_shape(args.size, args.size)
    options = method["method_options"]
    plan, text = dry_run_plan(args, kind, vc_cfg.frames_per_video, labels, class_names, latent_shape, options=options)
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
        "config_name": config_name(args, args.ratio) if args.ratio is not None else None,  # what a run would write
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
