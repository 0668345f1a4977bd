"""Run the pipeline end to end on the built-in procedural action set, offline, in a few minutes on a laptop CPU.

`compressa demo` parses a `DemoConfig` and calls `run_demo`.

Stages: (1) encode the train and test splits into latent caches with the default codec (the paper's TAESD where
the Hub is reachable, else the TAEF2 weights packaged with compressa_hf: the log says which) and check what the
codec keeps (PSNR of decoded latents); (2) distil the train split with VideoCompressa at `--ratio` into a Hub-layout
set; (3) measure what the learned selection kept: the share of videos whose kept frames include the class event
(the procedural set knows where it is), against K uniformly spaced frames; (4) draw a few videos (`compressa show`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """Arguments of `compressa demo` (and `run_demo`).

    Args:
        output_dir: Where the distilled set, pictures and the summary go (the latent caches go to the shared cache).
        codec: Codec spec, or `default`.
        num_classes / train_per_class / test_per_class / length / event_length: The procedural set.
        num_frames / size: Clip sampling (T frames at size x size).
        seed: Seeds the procedural set and the distillation.
        ratio / passes / batch_size: Distillation budget and schedule (the set is small, so smaller batches than
            the paper's 64 give the scorer enough steps).
    """

    output_dir: str = field(default="outputs/demo", metadata={"help": "Output folder."})
    codec: str = field(default="default", metadata={"help": "Codec spec, or `default`."})
    num_classes: int = field(default=6, metadata={"help": "Procedural classes."})
    train_per_class: int = field(default=20, metadata={"help": "Training clips per class."})
    test_per_class: int = field(default=6, metadata={"help": "Test clips per class."})
    length: int = field(default=64, metadata={"help": "Frames per generated clip."})
    event_length: int = field(default=4, metadata={"help": "Frames of the class-defining event."})
    num_frames: int = field(default=16, metadata={"help": "T, frames sampled per clip."})
    size: int = field(default=64, metadata={"help": "Frame side (64 keeps the demo quick on CPU)."})
    seed: int = field(default=0, metadata={"help": "Seed of the procedural set."})
    ratio: float = field(default=1.1, metadata={"help": "Distillation budget in percent (K=1 with TAEF2 at 64x64)."})
    passes: int = field(default=6, metadata={"help": "Distillation passes over the videos."})
    batch_size: int = field(default=8, metadata={"help": "Videos per distillation step."})

    def source_spec(self) -> str:
        return (
            f"procedural:num_classes={self.num_classes},train_per_class={self.train_per_class},"
            f"test_per_class={self.test_per_class},length={self.length},event_length={self.event_length},"
            f"frame_size={self.size},seed={self.seed}"
        )


def codec_psnr(cache_dir: str, codec, max_clips: int = 4) -> float:
    """PSNR (dB) of decoded cached latents against freshly sampled frames of the same clips."""
    import torch

    from compressa_hf.cache import LatentCache
    from compressa_hf.clips import ClipConfig, sample_clip
    from compressa_hf.sources import parse_source_spec

    cache = LatentCache(cache_dir)
    source = parse_source_spec(cache.meta["source"])
    refs = {r.clip_id: r for r in source.list_clips(cache.meta["split"])}
    latents, _ = cache.load_latents()
    errors = []
    for row, z in list(zip(cache.index, latents))[:max_clips]:
        frames = sample_clip(source, refs[row["clip_id"]], ClipConfig(**cache.meta["clip"])).frames
        target = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            recon = codec.decode(z.float().to(codec.device)).cpu()
        errors.append(torch.mean((recon - target) ** 2))
    return float(10 * torch.log10(1 / torch.stack(errors).mean()))


def event_hit_rates(repo: str, config: str, source, cache_dir: str) -> dict:
    """Share of kept videos whose stored frames include an event frame: learned selection vs K uniform frames."""
    from compressa_hf.cache import LatentCache
    from compressa_hf.clips import uniform_indices
    from compressa_hf.store import load_config

    ds = load_config(repo, config)
    refs = {r.clip_id: r for r in source.list_clips("train")}
    cached = {row["clip_id"]: row["frame_indices"] for row in LatentCache(cache_dir).index}
    learned = uniform = 0
    for video_id, kept in zip(ds["video_id"], ds["frame_indices"]):
        events = set(source.event_frames(refs[video_id]))
        t_frames = cached[video_id]  # the T cached source frames both selections choose from
        learned += bool(events & set(kept))
        uniform += bool(events & {t_frames[p] for p in uniform_indices(len(t_frames), len(kept))})
    n = len(ds)
    return {"videos": n, "videocompressa": round(learned / n, 3), "uniform": round(uniform / n, 3)}


def run_demo(cfg: DemoConfig) -> dict:
    """Run the four stages (module docstring) and write `<output_dir>/summary.json`; returns that summary: the codec,
    each split's cache summary, `codec_psnr_db` (dB), the distillation's config, plan and timings (seconds),
    `event_hit_rate` (fractions of kept videos, learned against uniform) and the pictures' paths.

    Raises:
        ValueError / OSError: a bad option, or a codec whose weights cannot be loaded.
    """
    from compressa_hf.cache import EncodeConfig, encode_split
    from compressa_hf.codecs import load_codec, load_default_codec
    from compressa_hf.distillation.arguments import DistillArguments
    from compressa_hf.distillation.pipeline import run as run_distill
    from compressa_hf.distillation.videocompressa import VideoCompressaConfig
    from compressa_hf.io import atomic_write_json
    from compressa_hf.sources import parse_source_spec
    from compressa_hf.strips import ShowConfig, show

    codec = load_default_codec() if cfg.codec == "default" else load_codec(cfg.codec)
    logger.info("codec: %s (weights: %s)", codec.codec_id, getattr(codec, "weights_source", None))
    summary = {
        "codec_id": codec.codec_id,
        "codec_weights": getattr(codec, "weights_source", None),
        "source": cfg.source_spec(),
    }
    caches = {}
    for split in ("train", "test"):
        enc = EncodeConfig(
            source=cfg.source_spec(),
            split=split,
            codec=codec.codec_id,
            num_frames=cfg.num_frames,
            size=cfg.size,
            num_workers=0,
        )
        summary[f"encode_{split}"] = encode_split(enc, codec=codec)
        caches[split] = summary[f"encode_{split}"]["output_dir"]
    summary["codec_psnr_db"] = round(codec_psnr(caches["train"], codec), 2)

    repo = os.path.join(cfg.output_dir, "distilled")
    args = DistillArguments(
        source=cfg.source_spec(),
        output=repo,
        ratio=cfg.ratio,
        work_dir=cfg.output_dir,  # the train cache of stage 1 is found in the shared cache
        codec=codec.codec_id,
        num_frames=cfg.num_frames,
        size=cfg.size,
        num_workers=0,
    )
    vc = VideoCompressaConfig(frames_per_video=None, passes=cfg.passes, batch_size=cfg.batch_size, seed=cfg.seed)
    distilled = run_distill(args, vc, command="compressa demo")
    name = distilled["config_name"]
    summary["distill"] = {k: distilled[k] for k in ("config_name", "plan", "output")}
    summary["distill"]["timings"] = distilled["distill"]["timings"]
    source = parse_source_spec(cfg.source_spec())
    summary["event_hit_rate"] = event_hit_rates(repo, name, source, caches["train"])
    summary["pictures"] = show(ShowConfig(repo=repo, config_name=name, num_videos=cfg.num_classes))
    atomic_write_json(os.path.join(cfg.output_dir, "summary.json"), summary)
    return summary
