"""Behaviour: on the procedural set, the scorer VideoCompressa trains puts the class-event frames on top."""

from __future__ import annotations

import pytest
import torch

from compressa_hf.cache import EncodeConfig, LatentCache, encode_split
from compressa_hf.codecs.pixel import PixelCodec
from compressa_hf.distillation.videocompressa import FrameScorer, VideoCompressaConfig, distill
from compressa_hf.sources import parse_source_spec

SPEC = "procedural:num_classes=6,train_per_class=20,length=64,frame_size=64"


@pytest.fixture(scope="module")
def procedural_cache(tmp_path_factory):
    out = tmp_path_factory.mktemp("proc") / "cache"
    codec = PixelCodec()
    encode_split(EncodeConfig(source=SPEC, output_dir=str(out), codec=codec.codec_id, size=64, num_workers=0),
                 codec=codec, progress=False)  # fmt: skip
    cache = LatentCache(out)
    latents, labels = cache.load_latents()
    source = parse_source_spec(SPEC)
    refs = {r.clip_id: r for r in source.list_clips("train")}
    events = torch.tensor(
        [[i in set(source.event_frames(refs[row["clip_id"]])) for i in row["frame_indices"]] for row in cache.index]
    )
    assert events.sum(1).min() >= 1  # T = 16 frames at stride 4 always catch a 4-frame event
    return codec, latents, labels, events


def _top1_hits(scores: torch.Tensor, events: torch.Tensor) -> float:
    return events.gather(1, scores.argmax(1, keepdim=True)).float().mean().item()


@pytest.mark.slow
def test_trained_scorer_ranks_event_frames_first(procedural_cache):
    codec, latents, labels, events = procedural_cache
    cfg = VideoCompressaConfig(frames_per_video=1, passes=6, batch_size=8, guide_width=32, seed=0)
    result = distill(latents, labels, codec, cfg, num_classes=6, progress=False)
    kept_is_event = events.gather(1, result.frame_indices).any(1).float().mean().item()
    assert kept_is_event > 0.8, kept_is_event  # uniform K=1 keeps an event frame for ~1 video in 16
    assert result.scores[events].mean() > result.scores[~events].mean()


def test_untrained_scorer_does_not(procedural_cache):
    codec, latents, labels, events = procedural_cache
    torch.manual_seed(0)
    scorer = FrameScorer(width=32)
    with torch.no_grad():
        frames = codec.decode(latents.flatten(0, 1).float()).unflatten(0, latents.shape[:2])
        scores = scorer(frames)
    assert _top1_hits(scores, events) < 0.5
