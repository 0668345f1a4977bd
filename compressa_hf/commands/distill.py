"""Distil a labelled video split into K latent keyframes per video (VideoCompressa) and write a Hub dataset repo.

Usage:
    compressa distill --source ../shared/data/arid6 --ratio 0.41 --output outputs/arid6_distilled \
        --codec tae:../shared/weights/taef2
    compressa distill --source procedural --ratio 0.5 --output out/proc --dry-run      # the plan, no compute
    compressa distill ... --resume                                                    # after a kill
    accelerate launch --multi_gpu --num_processes 2 -m compressa_hf.cli distill --source ... --ratio ... --output ...

Steps: (1) the latent cache of the split (stage 1, resumable; the shared cache, so a split encoded before with the
same settings is not encoded again); (2) the budget plan: the
ratio buys K frames per video for some videos per class as uint8 or float16 latents; when it buys fewer videos
than the split has, a seeded random subset per class is kept (the coreset step); (3) joint optimisation of the
latents, the frame scorer and a guide network (`compressa_hf.distill.videocompressa`), checkpointed; (4) top-K
frames per video written as config `ratio_<r>` of the repo at `--output`. A JSON summary ends the run.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from dataclasses import asdict, dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class DistillArguments:
    """Arguments of `compressa distill` besides the method's hyperparameters (`VideoCompressaConfig`).

    Args:
        source: Source spec (a `videofolder` path or `name:key=value,...`).
        output: Distilled set folder (a Hub dataset repo layout; other configs in it are kept).
        ratio: Storage budget: a percent of the split's uint8 T x 3 x H x W clips (`0.52`), or `k<K>` for exactly K
            uint8 latent frames of every video (`k1`). A percent buys frames by the codec's latent size: TAEF2's 32
            channels cost 8x what TAESD's 4 do, so the same percent keeps 8x fewer frames; `--dry-run` shows the plan.
        split: Split to distil.
        dtype: Latent storage dtype: `uint8` (TAESD scaling), `float16`, or `auto` (uint8 unless float16 fits the
            same plan).
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
    """

    source: str = field(default="procedural", metadata={"help": "Source spec."})
    output: str = field(default="outputs/distilled", metadata={"help": "Distilled set folder (Hub repo layout)."})
    ratio: str | None = field(
        default=None, metadata={"help": "Budget: percent of the split's uint8 clips (0.52), or k<K> (k1)."}
    )
    split: str = field(default="train", metadata={"help": "Split to distil."})
    dtype: str = field(default="auto", metadata={"help": "Latent storage dtype: uint8, float16 or auto."})
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

    def __post_init__(self):
        if self.ratio is not None:
            from compressa_hf.distill.budget import check_ratio_token

            self.ratio = check_ratio_token(self.ratio)
        if self.codec_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"`codec_dtype` must be float32 or bfloat16, got {self.codec_dtype!r}")
        if self.dtype not in ("auto", "uint8", "float16"):
            raise ValueError(f"`dtype` must be auto, uint8 or float16, got {self.dtype!r}")
        self.work_dir = self.work_dir or os.path.normpath(self.output) + ".work"


def make_parser():
    from trl import TrlParser

    from compressa_hf.distill.videocompressa import VideoCompressaConfig

    return TrlParser((DistillArguments, VideoCompressaConfig), prog="compressa distill", allow_abbrev=False)


def class_space(labels: list[int], class_names: list[str], drop_empty: bool) -> tuple[list[int], list[str], list[str]]:
    """(labels, class names, dropped class names) for the clips at hand.

    A class without a clip is an error naming it, or with `drop_empty` it is left out and the labels are renumbered
    over the classes kept (in their order).
    """
    from compressa_hf.distill.budget import counts_per_class

    if not drop_empty:
        counts_per_class(labels, class_names, hint="or pass --drop_empty_classes to leave them out")
        return list(labels), list(class_names), []
    counts = [0] * len(class_names)
    for y in labels:
        counts[y] += 1
    kept = [c for c, n in enumerate(counts) if n > 0]
    if not kept:
        raise ValueError("no class has a clip in the split; nothing to distil")
    new = {old: i for i, old in enumerate(kept)}
    dropped = [name for c, name in enumerate(class_names) if counts[c] == 0]
    if dropped:
        logger.warning("leaving out %d classes without clips: %s", len(dropped), ", ".join(dropped[:10]))
    return [new[y] for y in labels], [class_names[c] for c in kept], dropped


def plan_for(args: DistillArguments, frames_per_video: int | None, labels: list[int], class_names, latent_shape):
    """The budget plan; `frames_per_video` fixes K (the method config's `--frames_per_video`), None lets it choose."""
    from compressa_hf.distill.budget import counts_per_class, plan_budget, ratio_for_frames, resolve_ratio

    counts = counts_per_class(labels, class_names)
    if args.ratio is not None:
        ratio = resolve_ratio(args.ratio, args.num_frames, args.size, latent_shape)
    elif frames_per_video is None:
        raise ValueError("give --ratio (percent of the split's bytes, or k<K>) or --frames_per_video K (all videos)")
    else:
        dtype = "uint8" if args.dtype == "auto" else args.dtype  # K fixed for every video: the ratio it costs
        ratio = ratio_for_frames(frames_per_video, args.num_frames, args.size, latent_shape, dtype)
    plan = plan_budget(ratio, counts, args.num_frames, args.size, latent_shape, frames_per_video, args.dtype)
    if plan.coreset:
        every = ratio_for_frames(1, args.num_frames, args.size, latent_shape, plan.dtype)
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


def _previews(stored, dtype: str, codec, batch: int = 64) -> list[bytes]:
    """PNG strips of what each stored row decodes to (after storage rounding), for the `preview` column."""
    import torch

    from compressa_hf.codecs.base import uint8_to_latents
    from compressa_hf.store import preview_png

    z = torch.from_numpy(stored)
    z = uint8_to_latents(z) if dtype == "uint8" else z.float()
    n, k = z.shape[:2]
    out = []
    with torch.no_grad():
        for chunk in torch.split(z.flatten(0, 1), batch * k):
            frames = codec.decode(chunk.to(codec.device)).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            out += [preview_png(f) for f in frames.reshape(-1, k, *frames.shape[1:])]
    return out


def run(args: DistillArguments, vc_cfg, command: str | None = None) -> dict:
    import dataclasses

    import numpy as np
    import torch
    from accelerate import Accelerator

    from compressa_hf.cache import EncodeConfig, LatentCache, cache_meta, encode_split, refuse_other_settings
    from compressa_hf.codecs import load_codec, load_default_codec
    from compressa_hf.codecs.base import latents_to_uint8
    from compressa_hf.distill.methods.base import choose_videos
    from compressa_hf.distill.videocompressa import distill
    from compressa_hf.distributed import get_state
    from compressa_hf.io import atomic_write_json
    from compressa_hf.publish import public_command, public_info, public_path, public_spec
    from compressa_hf.sources import parse_source_spec, printable_name
    from compressa_hf.store import DistilledConfig, config_name_for_ratio, write_config

    state = get_state()
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

    if args.dry_run:
        plan = plan_for(args, vc_cfg.frames_per_video, labels, class_names, codec.latent_shape(args.size, args.size))
        text = plan.describe()
        if missing:
            text += (
                f"\n{len(missing)} listed clips are missing and left out of the plan "
                f"(first: {', '.join(r.clip_id for r in missing[:3])})"
            )
        if dropped:
            text += f"\nclasses left out (no clips): {', '.join(dropped)}"
        return {
            "dry_run": True,
            "plan": plan.to_dict(),
            "plan_text": text,
            "codec_id": codec.codec_id,
            "class_names": class_names,  # the order of the plan's videos_per_class
            "clips": len(refs),
            "missing_clips": len(missing),
            "dropped_classes": dropped,
        }

    cache_summary = encode_split(enc, codec=codec, source=source)
    cache = LatentCache(cache_summary["output_dir"])
    labels_all, class_names, dropped = class_space(
        [row["label"] for row in cache.index], cache.class_names, args.drop_empty_classes
    )
    plan = plan_for(args, vc_cfg.frames_per_video, labels_all, class_names, cache.meta["latent_shape"])
    logger.info("budget plan:\n%s", plan.describe())
    keep = choose_videos(labels_all, list(plan.videos_per_class), vc_cfg.seed)

    latents, _ = cache.load_latents()
    latents, labels = latents[keep], torch.tensor(labels_all)[keep]
    vc_cfg = dataclasses.replace(vc_cfg, frames_per_video=plan.frames_per_video)
    name = args.config_name or config_name_for_ratio(
        args.ratio if args.ratio is not None else plan.achieved_ratio, args.split
    )
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

    summary = {"config_name": name, "plan": plan.to_dict(), "cache": cache_summary, "distill": result.summary()}
    if state.is_main_process:
        kept_rows = [cache.index[i] for i in keep]
        positions = result.frame_indices.numpy()
        stored = (
            latents_to_uint8(result.latents) if plan.dtype == "uint8" else result.latents.to(torch.float16)
        ).numpy()
        assert stored.nbytes == plan.stored_bytes, (stored.nbytes, plan.stored_bytes)
        frame_indices = np.array([[row["frame_indices"][p] for p in pos] for row, pos in zip(kept_rows, positions)])
        timestamps = np.array([[row["timestamps"][p] for p in pos] for row, pos in zip(kept_rows, positions)])
        previews = _previews(stored, plan.dtype, codec) if args.preview else None
        # Published: nothing machine-local (compressa_hf.publish); the local spec is kept beside, unpublished.
        info = cache.meta["source_info"]
        root = info.get("root") or (info.get("path") if isinstance(info.get("path"), str) else None)
        meta = {
            "source": public_spec(args.source),
            "source_info": public_info(info),
            "split": args.split,
            "method": "videocompressa",
            "codec_id": codec.codec_id,
            "codec_revision": getattr(codec, "revision", None),
            "latent_scaling": (
                "uint8 = round(255 * clamp(z / 6 + 0.5, 0, 1)) (TAESD's 8-bit convention, for every codec); "
                "z = (q / 255 - 0.5) * 6"
                if plan.dtype == "uint8"
                else "raw latents"
            ),
            "frames_per_video": plan.frames_per_video,
            "requested_ratio": plan.ratio,
            "achieved_ratio": plan.achieved_ratio,
            "stored_bytes": plan.stored_bytes,
            "full_bytes": plan.full_bytes,
            "visual_tokens_per_sample": plan.visual_tokens_per_sample,
            "clip": cache.meta["clip"],
            "sampling": cache.meta["sampling"],
            "seed": vc_cfg.seed,
            "hyperparameters": asdict(vc_cfg),
            "command": public_command(command) if command else None,
            "clips_missing": cache_summary.get("clips_missing", 0),
            "clips_skipped": cache_summary.get("clips_skipped", 0),
            "dropped_classes": dropped,
        }
        write_config(
            args.output,
            DistilledConfig(
                name=name,
                video_ids=[row["clip_id"] for row in kept_rows],
                labels=labels.tolist(),
                latents=stored,
                frame_indices=frame_indices,
                timestamps=timestamps,
                fps=[row["fps"] for row in kept_rows],
                sources=[printable_name(public_path(row["path"], root)) for row in kept_rows],
                class_names=class_names,
                meta=meta,
                previews=previews,
            ),
        )
        # What `compressa show` needs to find the source frames on this machine; `push` never uploads local/.
        atomic_write_json(os.path.join(args.output, "local", f"{name}.json"), {"source": args.source})
        summary["output"] = {"repo": args.output, "config": name, "videos": len(kept_rows)}
        if args.push_to_hub:
            from compressa_hf.hub import push_repo

            summary["push"] = push_repo(args.output, args.push_to_hub, private=args.private)
        atomic_write_json(os.path.join(args.work_dir, f"summary_{name}.json"), summary)
    state.wait_for_everyone()
    return summary


def main(argv: list[str] | None = None) -> int:
    from compressa_hf.distributed import get_state

    args, vc_cfg = make_parser().parse_args_and_config(argv)
    command = "compressa distill " + shlex.join(argv if argv is not None else sys.argv[1:])
    summary = run(args, vc_cfg, command=command)
    if get_state().is_main_process:
        if summary.get("dry_run"):
            print(summary["plan_text"])
        print(json.dumps(summary, indent=2, default=str))
    return 0
