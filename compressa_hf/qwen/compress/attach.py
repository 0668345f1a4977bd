"""A token compressor between a Qwen-VL vision tower and its language model, with a prompt that agrees with it.

    compressor = TokenCompressor.from_pretrained("outputs/svc")        # or build_token_compressor("avgpool", ...)
    attach_token_compressor(model, compressor)                          # model.model.token_compressor + two hooks
    collator = QwenVideoCollator(compressed_processor(processor, compressor.strides))
    model(**collator(samples))                                          # the LM sees the compressed token grid

Where it acts: after the merger (the vision -> language projection), in every family of `compressa_hf.qwen.FAMILIES`
(Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5 dense and MoE) alike. The
paper puts SVC before its projector; in Qwen-VL the merger is both the projector and a 2 x 2 spatial token merge
trained with the language model, and acting after it is the better fit here:
- its output is the token grid the language model's 3D positions index, in raster (t, h, w) order for every family
  (Qwen2.5-VL's tower reorders tokens into attention windows before the merger and back after it), so the strides
  divide that grid directly: a K = 4, 112 px sample is a 2 x 4 x 4 grid;
- Qwen3-VL's DeepStack features leave the tower through their own mergers on that same grid and are added to the
  first language-model layers at the visual positions. They are pooled with the same windows as the main tokens, so
  every compressed position carries the DeepStack features of exactly the region its token summarises. They get the
  pooling only, not SVC's learned residual: that residual is trained to reconstruct the final merger's output, and
  intermediate layers' features are not what it learned (with zero learned weights both streams are pooled alike);
- an SVC with zero learned weights is then average pooling of the very tokens the language model was trained on,
  the usual token-pooling baseline, and pre-training reconstructs the frozen tower's own output.
`tune_vision: merger` trains the merger upstream of the compressor.

What changes for the language model (`compress.grid` holds the arithmetic both sides use):
- the prompt: `compressed_processor` expands each video's placeholder into the compressed count of `<|video_pad|>`
  tokens; for Qwen3-VL one `<t.t seconds>` text per compressed temporal group, the mean time of the group's first and
  last frame (the processor's own rule for a temporal patch, applied to the larger window);
- the positions: `get_rope_index` sees the compressed grid; Qwen2.5-VL's time step per group is
  `second_per_grid_ts * s_t` (a compressed group spans s_t groups; each still starts at its first group's time), and
  Qwen2-VL's group index counts compressed groups.
The batch keeps the processor's own `video_grid_thw` and `second_per_grid_ts` (the vision tower needs the real patch
grid); the hooks derive the compressed ones from them, so one batch feeds the tower and the language model.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import types
from collections.abc import Sequence

import torch

from compressa_hf.qwen.compress.grid import check_strides, compressed_patch_grids, merged_grids, window_frame_indices
from compressa_hf.qwen.compress.svc import KINDS, TokenCompressor, TokenCompressorConfig, pool_token_lists
from compressa_hf.qwen.packing import unwrap

logger = logging.getLogger(__name__)

#: Where `sft_qwen.py` writes the compressor inside its output folder (and inside each checkpoint); `eval_qwen.py`
#: attaches the one it finds there.
SUBFOLDER = "token_compressor"

#: The attribute of the inner Qwen-VL model (`model.model`) that holds an attached compressor.
ATTRIBUTE = "token_compressor"


def _inner(model):
    """The `Qwen*VLModel` (vision tower + language model) inside a (PEFT-wrapped) `...ForConditionalGeneration`."""
    base = unwrap(model)
    inner = getattr(base, "model", None)
    if inner is None or not hasattr(inner, "visual") or not hasattr(inner, "get_rope_index"):
        raise ValueError(f"{type(base).__name__} is no Qwen-VL model (no model.visual / model.get_rope_index)")
    return inner


def attached_compressor(model) -> TokenCompressor | None:
    """The compressor `attach_token_compressor` put on `model`, or None."""
    return getattr(_inner(model), ATTRIBUTE, None)


def build_token_compressor(
    kind: str | None, model, path: str | None = None, strides: Sequence[int] | None = None, seed: int = 0
) -> TokenCompressor | None:
    """The compressor a recipe's `token_compressor` / `token_compressor_path` / `token_compressor_strides` name.

    `none` (or None) gives None. `avgpool` needs no weights (strides default to 4 x 4 x 4). `svc` loads `path` (a
    folder or Hub repo from `recipes/pretrain_svc.py`), or starts a fresh SVC at the model's width when no path is
    given (initialised from `seed`): untrained it is average pooling exactly, and SFT with `tune_token_compressor`
    trains it from there (the paper's "random init" row). Raises ValueError when a loaded compressor's kind, strides
    or width disagree with what was asked or with the model.
    """
    from compressa_hf.qwen.families import family_of

    if kind in (None, "none"):
        if path is not None:
            raise ValueError(f"token_compressor_path {path} is set but token_compressor is none; set it to svc")
        return None
    if kind not in KINDS:
        raise ValueError(f"`token_compressor` must be none, {' or '.join(KINDS)}, got {kind!r}")
    config = _inner(model).config
    hidden = config.text_config.hidden_size
    if path is not None:
        compressor = TokenCompressor.from_pretrained(path)
        got = compressor.config
        if got.kind != kind:
            raise ValueError(f"{path} holds a {got.kind} compressor but token_compressor is {kind}")
        if strides is not None and tuple(strides) != got.strides:
            raise ValueError(
                f"{path} was built for strides {list(got.strides)} but token_compressor_strides is {list(strides)}; "
                "drop the flag (the saved strides are used) or pre-train one at those strides"
            )
        if got.hidden_size not in (None, hidden):
            raise ValueError(f"{path} works on {got.hidden_size}-wide tokens but this model's are {hidden}-wide")
        return compressor
    if kind == "svc":
        logger.warning(
            "token_compressor svc without token_compressor_path: a fresh SVC, which is average pooling until it "
            "trains (the paper pre-trains it first: recipes/pretrain_svc.py)"
        )
    fresh = TokenCompressorConfig(
        kind=kind,
        strides=tuple(strides) if strides is not None else (4, 4, 4),
        hidden_size=hidden if kind == "svc" else None,
        family=family_of(config).name,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the same fresh SVC in every run and on every process, whatever ran before
        return TokenCompressor(fresh)


# -- the model side ------------------------------------------------------------------------------------------------


def _compressed_video_features(self, pixel_values_videos, video_grid_thw=None, **kwargs):
    """`get_video_features` with the merged tokens (and Qwen3-VL's DeepStack features) compressed per video."""
    return_dict = kwargs.pop("return_dict", True)
    out = type(self).get_video_features(self, pixel_values_videos, video_grid_thw, return_dict=True, **kwargs)
    grids = merged_grids(video_grid_thw, self.config.vision_config.spatial_merge_size)
    compressor = getattr(self, ATTRIBUTE)
    out.pooler_output = tuple(compressor(list(out.pooler_output), grids))
    if getattr(out, "deepstack_features", None):
        out.deepstack_features = [
            tuple(pool_token_lists(level, grids, compressor.strides)) for level in out.deepstack_features
        ]
    return out if return_dict else out.to_tuple()


def _compressed_rope_index(self, *args, **kwargs):
    """`get_rope_index` on the compressed token grid (see the module docstring)."""
    original = type(self).get_rope_index
    bound = inspect.signature(original).bind(self, *args, **kwargs)
    grid = bound.arguments.get("video_grid_thw")
    if grid is not None:
        strides = getattr(self, ATTRIBUTE).strides
        bound.arguments["video_grid_thw"] = compressed_patch_grids(
            grid, strides, self.config.vision_config.spatial_merge_size
        )
        if "second_per_grid_ts" in inspect.signature(original).parameters:
            seconds = bound.arguments.get("second_per_grid_ts")
            seconds = torch.ones(len(grid), device=grid.device) if seconds is None else torch.as_tensor(seconds)
            bound.arguments["second_per_grid_ts"] = seconds * strides[0]
    return original(*bound.args, **bound.kwargs)


def attach_token_compressor(model, compressor: TokenCompressor) -> TokenCompressor:
    """Put `compressor` between `model`'s vision tower and language model (see the module docstring).

    The compressor becomes `model.model.token_compressor` (so it trains with the model when its parameters require
    grad) on the model's device and dtype, and is kept out of `model.save_pretrained` (the checkpoint stays a plain
    Qwen-VL one; `save_token_compressor` writes the compressor beside it). Call it before wrapping the model (PEFT,
    Trainer). Raises ValueError when one is attached already or the widths differ.
    """
    inner = _inner(model)
    if getattr(inner, ATTRIBUTE, None) is not None:
        raise ValueError(f"{type(model).__name__} has a token compressor attached already")
    hidden = inner.config.text_config.hidden_size
    if compressor.config.hidden_size not in (None, hidden):
        raise ValueError(
            f"the token compressor works on {compressor.config.hidden_size}-wide tokens but "
            f"{type(model).__name__}'s are {hidden}-wide"
        )
    embedding = inner.get_input_embeddings().weight
    compressor.to(device=embedding.device, dtype=embedding.dtype)
    setattr(inner, ATTRIBUTE, compressor)
    inner.get_video_features = types.MethodType(_compressed_video_features, inner)
    inner.get_rope_index = types.MethodType(_compressed_rope_index, inner)
    base = unwrap(model)
    prefix = next(name for name, module in base.named_modules() if module is compressor)
    base._keys_to_ignore_on_save = set(base._keys_to_ignore_on_save or ()) | {
        f"{prefix}.{key}" for key in compressor.state_dict()
    }
    return compressor


def set_token_compressor_trainable(model, tune: bool) -> None:
    """SFT: SVC's compressor C trains when `tune`, else it is frozen; its decoder is never used (frozen)."""
    compressor = attached_compressor(model)
    if compressor is None or compressor.encoder is None:
        return
    compressor.encoder.requires_grad_(tune)
    compressor.decoder.requires_grad_(False)


# -- the prompt side -----------------------------------------------------------------------------------------------


def _with_row(grids, index: int, row: torch.Tensor):
    """`grids` (the processor's tensor or array of patch grids) with row `index` replaced, in the same type."""
    if isinstance(grids, torch.Tensor):
        out = grids.clone()
        out[index] = row.to(out.dtype)
        return out
    out = torch.as_tensor(grids).clone()  # a numpy array or nested list
    out[index] = row.to(out.dtype)
    return out.numpy() if hasattr(grids, "dtype") else out


class _CompressedVideoTokens:
    """A processor's `replace_video_token` for the compressed grid: the processor's own expansion, asked for the
    compressed patch grid (and, for timestamped families, the compressed groups' frame indices)."""

    def __init__(self, processor, strides: tuple[int, int, int], timestamps: bool):
        self.processor, self.strides, self.timestamps = processor, strides, timestamps
        self.original = type(processor).replace_video_token

    def __call__(self, video_inputs: dict, video_idx: int, **kwargs) -> str:
        vp = self.processor.video_processor
        grids = video_inputs["video_grid_thw"]
        grid = torch.as_tensor(grids[video_idx]).view(1, 3)
        inputs = dict(video_inputs)
        inputs["video_grid_thw"] = _with_row(
            grids, video_idx, compressed_patch_grids(grid, self.strides, vp.merge_size)[0]
        )
        if self.timestamps and inputs.get("video_metadata") is not None:
            metadata = list(inputs["video_metadata"])
            meta = copy.copy(metadata[video_idx])
            meta.frames_indices = window_frame_indices(
                list(meta.frames_indices), vp.temporal_patch_size, self.strides[0]
            )
            metadata[video_idx] = meta
            inputs["video_metadata"] = metadata
        return self.original(self.processor, inputs, video_idx, **kwargs)


def compressed_processor(processor, strides: Sequence[int]):
    """A shallow copy of a Qwen-VL processor whose video placeholders expand to the compressed token grid.

    Pixel values, `video_grid_thw` and `second_per_grid_ts` are the processor's own (the vision tower reads them);
    the text holds `<|video_pad|>` tokens for the compressed grid (and Qwen3-VL one timestamp per compressed group),
    so assistant masks, labels and `mm_token_type_ids` follow. `processor` itself is left as it was.
    """
    from compressa_hf.qwen.families import family_of

    strides = check_strides(strides)
    family = family_of(processor)
    out = copy.copy(processor)
    out.replace_video_token = _CompressedVideoTokens(out, strides, family.time_encoding == "text_timestamps")
    out.token_compressor_strides = strides
    return out


# -- the recipes ---------------------------------------------------------------------------------------------------


def describe_token_compressor(model) -> dict | None:
    """What the attached compressor is, for run summaries and results: kind, strides, and SVC's pre-training (None
    for an SVC that was not pre-trained)."""
    compressor = attached_compressor(model)
    if compressor is None:
        return None
    out = {"kind": compressor.config.kind, "strides": list(compressor.strides)}
    if compressor.encoder is not None:
        out["pretraining"] = compressor.config.metadata.get("pretraining")
    return out


def with_token_compressor(model, processor, args):
    """Attach the compressor `args` names (`compressa_hf.qwen.compress.config.TokenCompressorArguments`) to `model`;
    returns the processor whose prompts match it (`processor` itself when the compressor is none)."""
    compressor = build_token_compressor(
        args.token_compressor, model, args.token_compressor_path, args.token_compressor_strides
    )
    if compressor is None:
        return processor
    attach_token_compressor(model, compressor)
    return compressed_processor(processor, compressor.strides)


def with_saved_token_compressor(model, processor, folder: str, args=None):
    """Evaluation: attach the compressor a run saved in `<folder>/token_compressor/` (if any), or the one `args`
    names when its `token_compressor` is set (`none`: no compressor); returns the processor whose prompts match."""
    if args is not None and args.token_compressor is not None:
        return with_token_compressor(model, processor, args)
    saved = saved_token_compressor(folder) if os.path.isdir(folder) else None
    if saved is None:
        return processor
    attach_token_compressor(model, saved)
    return compressed_processor(processor, saved.strides)


def train_with_token_compressor(trainer, tune: bool, resume_from_checkpoint=None) -> None:
    """SFT: make the attached compressor train (or not) inside `trainer`'s model, save it in every checkpoint, and,
    when resuming, load the one the checkpoint holds.

    Call it after the trainer is built: PEFT freezes every parameter outside its adapters when it wraps the model,
    and SVC's compressor is no adapter (it travels in `token_compressor/` instead, beside the model or adapter).
    """
    if attached_compressor(trainer.model) is None:
        return
    set_token_compressor_trainable(trainer.model, tune)
    trainer.add_callback(token_compressor_callback())
    if resume_from_checkpoint in (None, False, "false", "False"):
        return
    checkpoint = resume_from_checkpoint
    if checkpoint in (True, "true", "True"):
        from transformers.trainer_utils import get_last_checkpoint

        checkpoint = get_last_checkpoint(trainer.args.output_dir)
    if checkpoint is not None and not resume_token_compressor(trainer.model, checkpoint) and tune:
        raise ValueError(
            f"{checkpoint} holds no {SUBFOLDER}/ for the compressor this run trains; resume from a checkpoint written "
            "by a run with the same --token_compressor flags"
        )


# -- saving with a run, loading for evaluation ---------------------------------------------------------------------


def _gathered_state_dict(module: torch.nn.Module) -> dict:
    """The module's state dict, gathered from its DeepSpeed ZeRO-3 partitions when it has them (call on every rank)."""
    params = list(module.parameters())
    if not any(hasattr(p, "ds_id") for p in params):
        return module.state_dict()
    import deepspeed

    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_token_compressor(model, output_dir: str | os.PathLike, is_main_process: bool = True) -> str | None:
    """Write the attached compressor to `<output_dir>/token_compressor/` (nothing when none is attached).

    Call it on every process (ZeRO-3 gathers the weights collectively); only the main one writes.
    """
    compressor = attached_compressor(model)
    if compressor is None:
        return None
    state = _gathered_state_dict(compressor) if compressor.encoder is not None else None
    folder = os.path.join(output_dir, SUBFOLDER)
    if is_main_process:
        compressor.save_pretrained(folder, state_dict=state)
    return folder


def saved_token_compressor(folder: str | os.PathLike) -> TokenCompressor | None:
    """The compressor saved in `<folder>/token_compressor/` (a run's output or checkpoint), or None."""
    path = os.path.join(folder, SUBFOLDER)
    return TokenCompressor.from_pretrained(path) if os.path.isdir(path) else None


def resume_token_compressor(model, checkpoint: str) -> bool:
    """Load the compressor weights a checkpoint holds into the attached compressor; False when it holds none."""
    saved = saved_token_compressor(checkpoint)
    compressor = attached_compressor(model)
    if saved is None or compressor is None or compressor.encoder is None:
        return False
    if saved.config.strides != compressor.strides or saved.config.kind != compressor.config.kind:
        raise ValueError(
            f"{checkpoint}/{SUBFOLDER} is a {saved.config.kind} compressor at strides {list(saved.config.strides)}, "
            f"but this run uses {compressor.config.kind} at {list(compressor.strides)}: resume with the run's own "
            "flags"
        )
    compressor.load_state_dict(saved.state_dict())
    return True


def token_compressor_callback():
    """A `TrainerCallback` that writes the attached compressor into every checkpoint Trainer saves, so a run resumes
    with the compressor it had trained (the model's and adapter's files leave it out)."""
    from transformers import TrainerCallback

    class TokenCompressorCheckpoints(TrainerCallback):
        def on_save(self, args, state, control, model=None, **kwargs):
            if model is not None:  # every rank: ZeRO-3 gathers the weights collectively
                checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
                save_token_compressor(model, checkpoint, is_main_process=state.is_world_process_zero)

    return TokenCompressorCheckpoints()
