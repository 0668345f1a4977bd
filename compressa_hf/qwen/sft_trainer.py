"""`VideoSFTTrainer`: TRL's `SFTTrainer` for Qwen-VL video samples, with a learning rate per model part and a `train()`
that says when it trained nothing. Its config is `compressa_hf.qwen.sft_config.VideoSFTConfig`.

    trainer = VideoSFTTrainer(model=model, args=VideoSFTConfig(..., vision_lr=2e-6, merger_lr=1e-5), ...)
    result = trainer.train()        # NoTrainingStepError when no optimizer step ran (and nothing was resumed)
    trainer.steps_this_run          # 0 after resuming a checkpoint that had already finished

- Learning rates: with `vision_lr` or `merger_lr` set, the optimizer gets one parameter group per part (vision tower,
  merger, language model and the rest) and weight-decay class, each at its part's rate; the schedule scales every
  group's rate alike. Without them the optimizer is Trainer's own.
- Packing: with `packing` or `padding_free` (`VideoSFTConfig.packed`) the data collator must pack
  (`QwenVideoCollator(packing=True)`) and the model must keep packed samples apart
  (`compressa_hf.qwen.packing.prepare_packing`); both are checked here. TRL's own handling of the two switches
  (dataset-level packing, its padding-free collator, which refuses a custom one) is kept out of the way.
- No step: Trainer ends a run whose dataloader gave no batch (e.g. 8 samples, `per_device_train_batch_size 16` and
  `dataloader_drop_last`) as if it had trained, with a loss of 0.0. Here such a run raises before anything is saved.
  Resuming a checkpoint that had already reached the end is no error: no step runs, and `checkpoint_train_loss` holds
  the mean loss the checkpoint's log recorded (Trainer would report 0.0).
- The LM head on CPU: TRL's fused head (`trl.trainer.utils.add_fused_lm_head`) scores only the positions with a label
  on Triton devices, but every position elsewhere (static tile shapes for compilers such as Neuron's). On CPU, where
  nothing compiles, that is pure waste: a video sample is mostly prompt and visual tokens, and a 150k-250k vocabulary
  makes the head the bulk of a small model's step. `score_labelled_positions_only_on_cpu` (applied by the trainer)
  makes CPU take the labelled-positions path too; losses and gradients are the same
  (tests/test_sft_switches.py).
"""

from __future__ import annotations

import logging

from transformers import TrainerCallback
from trl import SFTTrainer

from compressa_hf.qwen.models import parameter_part, qwen_parts
from compressa_hf.qwen.packing import unwrap

logger = logging.getLogger(__name__)


class NoTrainingStepError(RuntimeError):
    """A training run made no optimizer step: saving its model would publish the untrained base as trained."""


class _StepsThisRun(TrainerCallback):
    """Counts the optimizer steps of one `train()` call and the step it started from (a resumed checkpoint's)."""

    def __init__(self):
        self.start_step, self.steps = 0, 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_step, self.steps = state.global_step, 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1


def logged_train_loss(log_history: list[dict], up_to_step: int) -> float | None:
    """Mean training loss over the steps a run's log covers up to `up_to_step`: each logged `loss` (the mean over its
    logging interval) weighted by its interval's length. None when the log holds no loss."""
    total, steps, last = 0.0, 0, 0
    for entry in log_history:
        if "loss" in entry and last < entry.get("step", 0) <= up_to_step:
            total += entry["loss"] * (entry["step"] - last)
            steps += entry["step"] - last
            last = entry["step"]
    return total / steps if steps else None


def parameter_groups(model, parts, decay_names, base_lr: float, weight_decay: float, part_lrs: dict[str, float]):
    """Optimizer groups of `model`'s trainable parameters: one per (model part, decays or not), at the part's rate.

    `parts` are the model's module names (`compressa_hf.qwen.models.qwen_parts`); `part_lrs` maps `visual` /
    `merger` / `language` / `other` (`compressa_hf.qwen.models.parameter_part`) to a rate, and a part it leaves out
    trains at `base_lr`.
    """
    groups: dict[tuple[str, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((parameter_part(name, parts), name in decay_names), []).append(param)
    return [
        {
            "params": params,
            "weight_decay": weight_decay if decays else 0.0,
            "lr": part_lrs.get(part, base_lr),
        }
        for (part, decays), params in sorted(groups.items())
    ]


def score_labelled_positions_only_on_cpu() -> bool:
    """Make TRL's fused LM head score only the labelled positions on CPU as it does on Triton devices (see the module
    docstring). Only the choice of positions changes: the tiles are still TRL's torch ones off Triton
    (`trl.kernels.chunked_logprob` keeps its own `_use_triton`). Idempotent; returns False, changing nothing, when the
    installed TRL has no such switch (another TRL version: its own behaviour stands)."""
    # A private name of TRL 1.16 (`trl/trainer/utils.py`); TRL exposes no option for it, so the guard above keeps
    # another version working as that version does.
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None or not callable(original):
        return False
    if getattr(original, "_compressa_cpu_compact", False):
        return True

    def use_compact_positions(device) -> bool:
        return device.type == "cpu" or original(device)

    use_compact_positions._compressa_cpu_compact = True
    trl_utils._use_triton = use_compact_positions
    return True


def _numel(param) -> int:
    return param.ds_numel if hasattr(param, "ds_numel") else param.numel()  # ZeRO-3 leaves an empty placeholder


class VideoSFTTrainer(SFTTrainer):
    """`SFTTrainer` with learning rates per model part (`vision_lr`, `merger_lr`) and a `train()` that refuses to end
    a run that made no optimizer step as if it had trained (see the module docstring).

    Attributes set by `train()`: `steps_this_run` (optimizer steps of this call), `resumed_from_step` (the
    checkpoint's step, 0 for a fresh run) and `checkpoint_train_loss` (the checkpoint's logged mean loss, when
    `train()` resumed a finished checkpoint and made no step; else None).
    """

    def __init__(self, *args, **kwargs):
        score_labelled_positions_only_on_cpu()
        args_ = kwargs.get("args")
        packed = bool(getattr(args_, "packed", False))
        if packed:
            self._check_packing(kwargs.get("model"), kwargs.get("data_collator"))
            # TRL would pack the data set itself and refuse a custom collator with padding_free; the batch-level
            # packing is QwenVideoCollator's, so TRL sees both switches off while it sets up
            saved = args_.packing, args_.padding_free
            args_.packing = args_.padding_free = False
        try:
            super().__init__(*args, **kwargs)
        finally:
            if packed:
                args_.packing, args_.padding_free = saved
        self._steps_this_run = _StepsThisRun()
        self.add_callback(self._steps_this_run)
        self.steps_this_run, self.resumed_from_step, self.checkpoint_train_loss = None, 0, None
        plugin = self.accelerator.state.deepspeed_plugin
        if self._part_lrs() and plugin is not None and "optimizer" in plugin.deepspeed_config:
            raise ValueError(
                "vision_lr / merger_lr need the Trainer's optimizer, but the DeepSpeed config defines its own "
                "`optimizer`, which would train every part at one rate; remove it from the DeepSpeed config"
            )

    @staticmethod
    def _check_packing(model, data_collator) -> None:
        from compressa_hf.qwen.packing import is_prepared

        collator = getattr(data_collator, "collator", data_collator)  # inside compressa_hf.qwen.sft.SkipUnreadable
        if not getattr(collator, "packing", False):
            raise ValueError(
                "packing / padding_free is set but the data collator does not pack: build it with "
                "QwenVideoCollator(processor, packing=True, rope_index=compressa_hf.qwen.packing.prepare_packing(model))"
            )
        if model is not None and not isinstance(model, str) and not is_prepared(model):
            raise ValueError(
                "packing / padding_free on a model with linear-attention layers (Qwen3.5) that were not given sample "
                "bounds: call compressa_hf.qwen.packing.prepare_packing(model) before training, or packed samples "
                "would share their recurrent state"
            )

    def _part_lrs(self) -> dict[str, float]:
        rates = {"visual": getattr(self.args, "vision_lr", None), "merger": getattr(self.args, "merger_lr", None)}
        return {part: lr for part, lr in rates.items() if lr is not None}

    def create_optimizer(self, model=None):
        part_lrs = self._part_lrs()
        if self.optimizer is not None or not part_lrs:
            return super().create_optimizer(model)
        from transformers.trainer_optimizer import is_optimizer_factory

        opt_model = self.model if model is None else model
        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        builds_own_groups = {"params", "model", "optimizer_dict"} & set(optimizer_kwargs)
        if is_optimizer_factory(optimizer_cls) or builds_own_groups:
            raise ValueError(
                f"vision_lr / merger_lr need an optimizer that takes parameter groups; optim {self.args.optim!r} "
                "builds its own: use adamw_torch / adamw_torch_fused, or drop vision_lr and merger_lr"
            )
        parts = qwen_parts(unwrap(opt_model))
        trainable = {parameter_part(n, parts) for n, p in opt_model.named_parameters() if p.requires_grad}
        for part in sorted(set(part_lrs) - trainable):
            key = "vision_lr" if part == "visual" else "merger_lr"
            raise ValueError(
                f"`{key}` is {part_lrs[part]} but no parameter of the {part} part trains: set tune_vision to "
                f"{'tower' if part == 'visual' else 'merger or tower'}, or drop {key}"
            )
        decay = self.get_decay_parameter_names(opt_model)
        groups = parameter_groups(opt_model, parts, decay, self.args.learning_rate, self.args.weight_decay, part_lrs)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        logger.info(
            "optimizer groups: "
            + ", ".join(f"{sum(_numel(p) for p in g['params'])} parameters at lr {g['lr']:g}" for g in groups)
        )
        return super().create_optimizer(model)  # Trainer's own wrapping of a ready optimizer

    def train(self, *args, **kwargs):
        result = super().train(*args, **kwargs)
        counter = self._steps_this_run
        self.steps_this_run, self.resumed_from_step = counter.steps, counter.start_step
        if counter.steps > 0:
            return result
        if counter.start_step > 0 and self.state.global_step >= self.state.max_steps:
            self.checkpoint_train_loss = logged_train_loss(self.state.log_history, counter.start_step)
            logger.warning(
                f"no training step ran: the resumed checkpoint had already reached step {counter.start_step} of "
                f"{self.state.max_steps}; its logged mean loss is {self.checkpoint_train_loss}. Raise max_steps or "
                "num_train_epochs to train further"
            )
            return result
        raise NoTrainingStepError(self._no_step_reason())

    def _no_step_reason(self) -> str:
        args = self.args
        batches = len(self.get_train_dataloader())
        return (
            f"no optimizer step ran: {len(self.train_dataset)} training samples give {batches} batches per process "
            f"per epoch (per_device_train_batch_size {args.per_device_train_batch_size}, "
            f"{self.accelerator.num_processes} processes, dataloader_drop_last {args.dataloader_drop_last}, "
            f"gradient_accumulation_steps {args.gradient_accumulation_steps}); lower the batch size, turn "
            "dataloader_drop_last off or train on more samples. Nothing was saved"
        )
