"""Chat samples -> a Qwen-VL training batch: video metadata, exact frame size, answer-only labels.

One collator for every family in `compressa_hf.qwen.FAMILIES` (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5); the family is
read from the processor. Video SFT goes wrong silently in four places; this collator closes each:

- Time. Qwen2.5-VL spaces temporal groups (2 frames each) by `int(t * tokens_per_second * second_per_grid_ts)`, and
  the processor derives `second_per_grid_ts` from the video metadata. A video without metadata gets 24 fps, so
  `second_per_grid_ts` = 2/24 and consecutive groups share one temporal position. Qwen3-VL and Qwen3.5 write a
  `<t.t seconds>` text before each group instead, from the metadata's frame indices and fps (24 fps when missing: wrong times).
  The collator passes every video's metadata with `do_sample_frames=False`, refuses a sample without `fps`, and
  presents videos at no more than `max_fps` frames per second (default 2, Qwen2.5-VL's own sampling rate), at which
  each Qwen2.5-VL group gets its own temporal position; it checks the processor kept `second_per_grid_ts` fractional
  (a truncation to integers would collapse groups above 2 fps). Qwen2-VL places group t at t whatever the rate, and
  Qwen3-VL's timestamps are the frames' real times (the cap does not change them).
- `mm_token_type_ids`. The model computes 3D positions only when it receives them; the processor returns them and
  the collator keeps them.
- Frame size. The video processor resizes every frame into its pixel bounds; with its class defaults (at least
  128 x 28 x 28 pixels) a 112x112 frame comes out 336x336, 9x the visual tokens, and a checkpoint's config may set
  other bounds. The collator sets the bounds to the frames' own area (per frame for Qwen2/2.5-VL, per video for
  Qwen3-VL, whose bounds count all frames), so frames keep their size rounded to the family's pixel grid (28 for
  patch 14 x merge 2, 32 for Qwen3-VL's patch 16) or take `frame_size` when given, whatever the processor's defaults.
- Labels. By default only the assistant answer and its `<|im_end|>` are learned (the family's template in
  `chat_templates/` marks them for `return_assistant_tokens_mask`); everything else, padding included, is -100.
  `train_on="sequence"` learns every token but padding and the visual placeholders (`<|video_pad|>`, whose
  embeddings the vision tower replaces): what TRL's `completion_only_loss: false` with `assistant_only_loss: false`
  means (`compressa_hf.qwen.sft_config.VideoSFTConfig.train_on`).

With `packing=True` the batch comes back as one row without padding (`compressa_hf.qwen.packing`): the samples' 3D
positions from the model's own `get_rope_index` plus a text row restarting per sample, labels and loss as padded.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from compressa_hf.qwen.chat_templates import load_chat_template
from compressa_hf.qwen.families import family_of

IGNORE_INDEX = -100

#: What the labels cover (`QwenVideoCollator(train_on=...)`): the answer and its `<|im_end|>`, or every real token.
TRAIN_ON = ("answer", "sequence")


def qwen_side(pixels: int, factor: int = 28) -> int:
    """The side Qwen2-VL processors give a frame side: the nearest multiple of `factor` (at least one)."""
    return max(factor, round(pixels / factor) * factor)


class QwenVideoCollator:
    """Collates chat samples (`compressa_hf.qwen.samples`) into a Qwen-VL batch with labels.

    The batch holds `input_ids`, `attention_mask`, `mm_token_type_ids`, `pixel_values_videos`, `video_grid_thw`,
    `labels` and, for Qwen2.5-VL, `second_per_grid_ts`; pass it to the model as `model(**batch)`. None items (clips a
    raw dataset could not decode) are dropped.

    Args:
        processor: A Qwen-VL processor (`Qwen2VLProcessor`, `Qwen2_5_VLProcessor`, `Qwen3VLProcessor`); its class and
            vocabulary name the family (`compressa_hf.qwen.family_of`).
        max_length: Longest allowed sequence. A longer sample is an error, not a truncation: cutting it would drop
            video tokens (the processor then fails) or the answer (the sample then teaches nothing).
        padding_side: `right` for training, `left` for batched generation.
        frame_size: Side in pixels every frame is resized to (rounded to the family's 28- or 32-pixel grid); None
            keeps each video's own size (also rounded).
        max_fps: Highest frame rate a video is presented at. Denser samples (16 frames of a 2-second clip) are
            presented as if taken at `max_fps`; at Qwen2.5-VL's `tokens_per_second` = 2 and temporal patch 2, any
            rate up to 4 keeps consecutive temporal groups on distinct positions (`tests/test_families.py` checks
            1, 2 and 4 against the installed transformers), and 2 is the rate it was trained at. None presents the
            true rate. Qwen2-VL and Qwen3-VL positions do not depend on it (see the module docstring).
        chat_template: Template text; the family's `chat_templates/<family.chat_template>.jinja` when None.
        family: A `compressa_hf.qwen.QwenFamily` or its name; None reads it from the processor.
        train_on: `answer` (default): labels on the assistant answer and its `<|im_end|>`. `sequence`: on every token
            but padding and visual placeholders.
        packing: Return each batch as one packed row (`compressa_hf.qwen.packing.pack_batch`): no padding, no
            attention mask, 4-row `position_ids`. Needs `rope_index`; Qwen3.5 models also need
            `compressa_hf.qwen.packing.prepare_packing(model)`, which returns it.
        rope_index: The model's `get_rope_index` (`prepare_packing(model)`), for `packing`.
    """

    def __init__(
        self,
        processor,
        max_length: int | None = None,
        padding_side: str = "right",
        frame_size: int | None = None,
        max_fps: float | None = 2.0,
        chat_template: str | None = None,
        family=None,
        train_on: str = "answer",
        packing: bool = False,
        rope_index=None,
    ):
        if train_on not in TRAIN_ON:
            raise ValueError(f"`train_on` must be one of {TRAIN_ON}, got {train_on!r}")
        if packing and rope_index is None:
            raise ValueError(
                "packing=True needs the model's 3D positions: pass rope_index=compressa_hf.qwen.packing."
                "prepare_packing(model)"
            )
        if packing and padding_side != "right":
            raise ValueError("packing=True packs a training batch; use padding_side='right' (left is for generation)")
        self.train_on, self.packing, self.rope_index = train_on, packing, rope_index

        if padding_side not in ("left", "right"):
            raise ValueError(f"`padding_side` must be 'left' or 'right', got {padding_side!r}")
        if max_length is not None and max_length < 1:
            raise ValueError(f"`max_length` must be >= 1, got {max_length}")
        if frame_size is not None and frame_size < 1:
            raise ValueError(f"`frame_size` must be >= 1, got {frame_size}")
        if max_fps is not None and max_fps <= 0:
            raise ValueError(f"`max_fps` must be > 0, got {max_fps}")
        self.processor, self.max_length, self.padding_side = processor, max_length, padding_side
        self.frame_size, self.max_fps = frame_size, max_fps
        self.family = family_of(processor if family is None else family)
        self.chat_template = chat_template or load_chat_template(self.family.chat_template)
        vp = processor.video_processor
        self.factor = vp.patch_size * vp.merge_size
        self.temporal_patch_size = vp.temporal_patch_size
        if self.factor != self.family.factor:
            raise ValueError(
                f"{type(processor).__name__} has a {self.factor}-pixel token grid (patch {vp.patch_size} x merge "
                f"{vp.merge_size}) but family {self.family.name} uses {self.family.factor}; its preprocessor config does "
                f"not match the model family"
            )
        valid = getattr(getattr(vp, "valid_kwargs", None), "__annotations__", {})
        # Keep our exact bounds (no per-video budget on top) and silence the processor's warning about its default.
        self.extra_video_kwargs = {"cap_pixels_per_frame": False} if "cap_pixels_per_frame" in valid else {}

    # -- pieces, each usable on its own ---------------------------------------------------------------------------

    def presented_metadata(self, metadata: dict) -> dict:
        """The metadata the processor sees: the sample's, with the frame rate capped at `max_fps`."""
        if not metadata.get("fps") or not metadata.get("frames_indices"):
            raise ValueError(
                f"video metadata {metadata} has no fps or frames_indices; without them Qwen2.5-VL puts consecutive "
                f"frame pairs on one temporal position. Build samples with compressa_hf.qwen.samples"
            )
        out = dict(metadata)
        k, fps = len(out["frames_indices"]), float(out["fps"])
        total = out.get("total_num_frames") or k
        if self.max_fps is not None and k / total * fps > self.max_fps:
            # transformers reads the rate as len(frames_indices) / total_num_frames * fps.
            total = math.ceil(k * fps / self.max_fps)
        out["total_num_frames"] = int(total)
        return out

    def size_bounds(self, videos: list[np.ndarray]) -> dict:
        """`size` for the video processor: min and max pixel counts that leave every frame at its target size.

        Per frame for families whose bounds measure one frame; for Qwen3-VL, whose bounds measure a whole video
        (`round(F / 2) * 2` frames, as its `smart_resize` counts them), per video.
        """
        if self.frame_size is not None:
            areas = [qwen_side(self.frame_size, self.factor) ** 2] * len(videos)
        else:
            areas = [qwen_side(v.shape[-3], self.factor) * qwen_side(v.shape[-2], self.factor) for v in videos]
        if self.family.size_bounds == "video":
            tp = self.temporal_patch_size
            areas = [a * max(tp, round(len(v) / tp) * tp) for a, v in zip(areas, videos)]
        return {"shortest_edge": min(areas), "longest_edge": max(areas)}

    def check_time_scale(self, second_per_grid_ts, metadata: list[dict]) -> None:
        """Raise if the processor truncated Qwen2.5-VL's `second_per_grid_ts` (temporal patch / presented rate).

        Some transformers releases are reported to cast it to integers above 2 fps, which puts consecutive groups on
        one temporal position; compressa_hf refuses such a batch instead of training on it.
        """
        if self.family.time_encoding != "mrope_seconds":
            return
        if second_per_grid_ts is None:
            raise RuntimeError("the processor returned no second_per_grid_ts; Qwen2.5-VL would space groups 1 s apart")
        got = torch.as_tensor(second_per_grid_ts, dtype=torch.float64).flatten()
        want = torch.tensor(
            [
                self.temporal_patch_size * m["total_num_frames"] / (len(m["frames_indices"]) * m["fps"])
                for m in metadata
            ],
            dtype=torch.float64,
        )
        if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4):
            raise RuntimeError(
                f"the processor returned second_per_grid_ts {got.tolist()} for presented rates giving {want.tolist()}; "
                f"this transformers version rounds it, which merges consecutive temporal groups"
            )

    def padded(self, sample: dict) -> dict:
        """The sample with each video shorter than the family's `min_video_frames` (Qwen3-VL: 2) made that long.

        The last frame and its index repeat, which is how the processor pads a video to whole temporal groups
        anyway: a one-keyframe row gives the same tokens and the same timestamp, instead of an error from the
        processor.
        """
        need = self.family.min_video_frames
        if all(len(v) >= need for v in sample.get("videos") or []):
            return sample
        swap, videos, metadata = {}, [], []
        for video, meta in zip(sample["videos"], sample["video_metadata"]):
            if len(video) < need:
                extra = need - len(video)
                swap[id(video)] = np.concatenate([video, np.repeat(video[-1:], extra, axis=0)])
                video = swap[id(video)]
                meta = meta | {"frames_indices": list(meta["frames_indices"]) + [meta["frames_indices"][-1]] * extra}
            videos.append(video)
            metadata.append(meta)

        def padded_block(block: dict) -> dict:
            return block | {"video": swap[id(block["video"])]} if id(block.get("video")) in swap else block

        messages = [
            m | {"content": [padded_block(b) for b in m["content"]]} if isinstance(m.get("content"), list) else m
            for m in sample["messages"]
        ]
        return sample | {"messages": messages, "videos": videos, "video_metadata": metadata}

    @staticmethod
    def _conversation(sample: dict) -> list[dict]:
        """The sample's messages, with video blocks that carry no frames filled from `videos` in order."""
        videos = iter(sample.get("videos") or [])
        messages = copy.copy(sample["messages"])
        for i, message in enumerate(messages):
            if isinstance(message.get("content"), list) and any(
                b.get("type") == "video" and b.get("video") is None for b in message["content"]
            ):
                content = [
                    b | {"video": next(videos)} if b.get("type") == "video" and b.get("video") is None else b
                    for b in message["content"]
                ]
                messages[i] = message | {"content": content}
        return messages

    # -- the batch ----------------------------------------------------------------------------------------------------

    def __call__(self, samples: list[dict | None]) -> dict:
        from transformers import BatchFeature

        samples = [self.padded(s) for s in samples if s is not None]
        if not samples:
            raise ValueError("no samples to collate (every item of the batch was None: unreadable clips)")
        conversations = [self._conversation(s) for s in samples]
        videos = [
            b["video"]
            for conv in conversations
            for m in conv
            if isinstance(m["content"], list)
            for b in m["content"]
            if b.get("type") == "video"
        ]
        metadata = [self.presented_metadata(m) for s in samples for m in s["video_metadata"]]
        if len(metadata) != len(videos):
            raise ValueError(f"{len(videos)} videos in the messages but {len(metadata)} video_metadata entries")
        batch = self.processor.apply_chat_template(
            conversations,
            chat_template=self.chat_template,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            # Lists until the masks are built: transformers aligns them token by token, ~10x slower over tensors.
            return_tensors=None,
            processor_kwargs={
                "text_kwargs": {"padding": True, "padding_side": self.padding_side},
                "videos_kwargs": {
                    "video_metadata": metadata,
                    "do_sample_frames": False,
                    "size": self.size_bounds(videos),
                    **self.extra_video_kwargs,
                },
            },
        )
        batch = {k: v for k, v in dict(batch).items() if k != "video_metadata"}  # Qwen3-VL hands the metadata back
        batch = BatchFeature(batch, tensor_type="pt")
        self.check_time_scale(batch.get("second_per_grid_ts"), metadata)
        if "mm_token_type_ids" not in batch:
            raise RuntimeError("the processor returned no mm_token_type_ids; the model would use 1D text positions")
        lengths = batch["attention_mask"].sum(1)
        if self.max_length is not None and int(lengths.max()) > self.max_length:
            raise ValueError(
                f"a sample has {int(lengths.max())} tokens, more than max_length={self.max_length}; raise max_length, "
                f"or use fewer frames or a smaller frame_size"
            )
        answer = batch.pop("assistant_masks").bool() & batch["attention_mask"].bool()
        has_answer = torch.tensor([any(m["role"] == "assistant" for m in conv) for conv in conversations])
        if (has_answer & ~answer.any(1)).any():
            # transformers releases before the fix for its issue #44521 return all-zero masks once placeholders are
            # expanded into video tokens: training would then learn nothing, silently.
            raise RuntimeError(
                "the processor returned an empty assistant mask for a sample with an answer; this transformers "
                "version does not align assistant masks with expanded video tokens (transformers issue #44521)"
            )
        if self.train_on == "answer":
            learned = answer
        else:
            placeholders = [getattr(self.processor, f"{m}_token_id", None) for m in ("video", "image")]
            learned = batch["attention_mask"].bool() & ~torch.isin(
                batch["input_ids"], torch.tensor([t for t in placeholders if t is not None])
            )
        batch["labels"] = batch["input_ids"].masked_fill(~learned, IGNORE_INDEX)
        if self.packing:
            from compressa_hf.qwen.packing import pack_batch

            return pack_batch(dict(batch), self.rope_index)
        return dict(batch)
