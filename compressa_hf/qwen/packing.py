"""Packed (padding-free) Qwen-VL video batches: several samples in one row, each kept apart as if it were alone.

    rope_index = prepare_packing(model)                       # the model's own 3D positions; Qwen3.5's bounds hook
    collator = QwenVideoCollator(processor, packing=True, rope_index=rope_index)
    loss = model(**collator(samples)).loss                    # = the padded batch's loss, without the padding

A padded batch of short video samples (90-200 tokens each for K = 4 distilled keyframes) spends much of each step on
padding. `pack_batch` turns the collator's padded batch into one row holding every sample's tokens back to back, and
keeps the samples apart in the four places where a packed row could mix them:

- **Positions.** Qwen-VL models place tokens with 3D mRoPE positions (temporal, height, width) from the family's own
  `get_rope_index`; a packed row needs each sample's positions as the model computes them for that sample alone.
  `pack_batch` calls the model's `get_rope_index` on the padded batch (the collator's, with its attention mask, so
  each sample's positions are exactly those of its unpacked forward) and prepends a fourth, text row that restarts at
  0 for every sample: `position_ids` of shape (4, 1, N). transformers' Qwen-VL text models read that row to find the
  samples (axolotl PR #3817 found that packed samples stay apart only with it; with 3 rows they attend across).
- **Attention.** With no `attention_mask` and that text row, transformers builds the attention that cannot cross
  samples itself: flash-attention varlen (`cu_seq_lens` from the restarts, `_is_packed_sequence`) where the kernel is
  installed, a block-diagonal causal mask with sdpa / eager (`masking_utils.find_packed_sequence_indices`). The vision
  tower attends within each video already (its own `cu_seqlens` from `video_grid_thw`).
- **Qwen3.5's linear attention.** Its Gated DeltaNet layers carry a recurrent state and a 4-tap causal convolution
  along the row; transformers' PyTorch path (5.25: `torch_chunk_gated_delta_rule`, `causal_conv1d_fn`) ignores
  `cu_seq_lens_q`, so state would flow from one sample into the next. `prepare_packing` gives each such layer the
  sample bounds (read from the text row by a hook on its decoder layer) and runs it on the samples unpacked into a
  right-padded batch with its padding mask, which is exactly what the unpacked forward computes there; every other
  layer, the LM head and the loss see the packed row.
- **Labels and the loss.** Labels move with their tokens; the first label of each sample is -100 (the shifted loss
  never reads it unpacked, and packed it would be predicted from the previous sample's last token). The loss is the
  mean over the same answer tokens as the padded batch's, so it is the same number; `tests/test_packing.py` checks
  loss and gradients against the samples one at a time for every family.

References: TRL PR #7081 (vision padding-free, mRoPE models refused), axolotl PR #3817 (4-row position ids),
ms-swift PR #8313 (Qwen3.5 packing), NeMo Automodel PR #2172 (packing with the model's `get_rope_index`).
"""

from __future__ import annotations

import types
from collections.abc import Callable

import torch

from compressa_hf.qwen.collator import IGNORE_INDEX

#: Batch keys `pack_batch` packs token by token; every other tensor (pixels, grids, `second_per_grid_ts`) is per video
#: and already in sample order.
TOKEN_KEYS = ("input_ids", "labels", "mm_token_type_ids")


def unwrap(model):
    """The transformers model inside a PEFT / DeepSpeed / DDP wrapper."""
    while True:
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        else:
            return model


def rope_index_of(model) -> Callable:
    """The model's own `get_rope_index` (its inner `*Model`'s): 3D mRoPE positions of a padded batch.

    It reads only the config, never a weight, so it works under ZeRO-3. Raises ValueError for a model without one.
    """
    inner = getattr(unwrap(model), "model", None)
    rope_index = getattr(inner, "get_rope_index", None)
    if rope_index is None:
        raise ValueError(f"{type(unwrap(model)).__name__} has no model.get_rope_index: not a Qwen-VL model")
    return rope_index


def pack_batch(batch: dict, rope_index: Callable) -> dict:
    """A padded collator batch (B, L) -> one packed row (1, N), N the batch's token count (see the module docstring).

    Args:
        batch: `QwenVideoCollator`'s padded batch: `input_ids`, `attention_mask`, `mm_token_type_ids`, `labels`,
            `pixel_values_videos`, `video_grid_thw` (and `second_per_grid_ts` for Qwen2.5-VL).
        rope_index: The model's `get_rope_index` (`rope_index_of(model)`).

    Returns:
        The batch without `attention_mask` (nothing is padding), its token tensors (1, N), `position_ids`
        (4, 1, N): the text row restarting at 0 per sample, then the model's temporal, height and width rows (the
        samples are found again from the text row, `sample_ids`), and `use_cache=False`.
    """
    mask = batch["attention_mask"].bool()
    extra = {k: batch[k] for k in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts") if k in batch}
    positions, _ = rope_index(
        batch["input_ids"],
        mm_token_type_ids=batch["mm_token_type_ids"],
        attention_mask=batch["attention_mask"],
        **extra,
    )
    lengths = mask.sum(1)
    text = torch.cat([torch.arange(int(n), device=mask.device) for n in lengths])
    out = {k: v for k, v in batch.items() if k not in TOKEN_KEYS and k != "attention_mask"}
    for key in TOKEN_KEYS:
        if key in batch:
            out[key] = batch[key][mask][None]
    out["position_ids"] = torch.cat([text[None], positions[:, mask].to(text.dtype)])[:, None]
    if "labels" in out:
        starts = torch.cumsum(lengths, 0) - lengths
        out["labels"][0, starts] = IGNORE_INDEX
    # transformers looks for packed samples only when no cache is built (`masking_utils._preprocess_mask_arguments`);
    # a forward with `use_cache` (the configs' default) would let the samples attend to each other
    out["use_cache"] = False
    return out


def sample_ids(text_positions: torch.Tensor) -> torch.Tensor:
    """(B, L) text position row -> (B, L) sample index per token: a new sample wherever the position does not step by
    1 (transformers' rule, `masking_utils.find_packed_sequence_indices`)."""
    first = text_positions[:, :1] - 1
    return (torch.diff(text_positions, prepend=first, dim=-1) != 1).cumsum(-1)


# -- Qwen3.5: sample bounds for the Gated DeltaNet layers ---------------------------------------------------------


def _bounds_hook(module, args, kwargs):
    """Decoder-layer pre-hook: pass the packed samples' ids to its linear-attention layer (see the module docstring).

    Only a packed training forward qualifies: text positions given, no attention mask, no cache.
    """
    positions = kwargs.get("position_ids")
    if positions is None or kwargs.get("attention_mask") is not None or kwargs.get("cache") is not None:
        return None
    ids = sample_ids(positions)
    if not bool((ids[:, -1] > 0).any()):
        return None  # one sample per row: nothing to keep apart
    return args, kwargs | {"packed_sample_ids": ids}


def _packed_linear_attention_forward(self, hidden_states, cache=None, attention_mask=None, **kwargs):
    """A Gated DeltaNet forward that runs each packed sample on its own: unpacked into a right-padded batch with its
    padding mask (what the unpacked forward computes), then packed back."""
    ids = kwargs.pop("packed_sample_ids", None)
    forward = type(self).forward
    if ids is None:
        return forward(self, hidden_states, cache=cache, attention_mask=attention_mask, **kwargs)
    if hidden_states.shape[0] != 1:
        raise ValueError(f"packed rows are one per batch; got a batch of {hidden_states.shape[0]} packed rows")
    ids = ids[0]
    lengths = torch.bincount(ids)
    starts = torch.cumsum(lengths, 0) - lengths
    offsets = torch.arange(ids.numel(), device=ids.device) - starts[ids]
    padded = hidden_states.new_zeros(len(lengths), int(lengths.max()), hidden_states.shape[-1])
    padded[ids, offsets] = hidden_states[0]
    mask = torch.zeros(padded.shape[:2], dtype=torch.long, device=ids.device)
    mask[ids, offsets] = 1
    out = forward(self, padded, cache=None, attention_mask=mask, **kwargs)
    return out[ids, offsets][None]


def _linear_attention_layers(model) -> list[torch.nn.Module]:
    return [m for m in unwrap(model).modules() if hasattr(m, "linear_attn") and isinstance(m, torch.nn.Module)]


def prepare_packing(model) -> Callable:
    """Make `model` keep packed samples apart and return its `get_rope_index` for `QwenVideoCollator(rope_index=...)`.

    Attention layers need nothing (transformers reads the text position row). For Qwen3.5 (dense and MoE) each
    decoder layer with a Gated DeltaNet gets a pre-hook and its `linear_attn` a forward that runs the samples apart
    (module docstring). Idempotent; parameters, their names and saved checkpoints are unchanged.
    """
    for layer in _linear_attention_layers(model):
        if getattr(layer, "_compressa_packing", False):
            continue
        layer.register_forward_pre_hook(_bounds_hook, with_kwargs=True)
        layer.linear_attn.forward = types.MethodType(_packed_linear_attention_forward, layer.linear_attn)
        layer._compressa_packing = True
    return rope_index_of(model)


def is_prepared(model) -> bool:
    """Whether every linear-attention layer of `model` runs packed samples apart (True for models without any)."""
    return all(getattr(layer, "_compressa_packing", False) for layer in _linear_attention_layers(model))
