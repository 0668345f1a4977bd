"""The arguments of `recipes/sft_qwen.py`, parsed with TRL's `TrlParser` as `(SFTScriptArguments, VideoSFTConfig,
trl.ModelConfig)`: the data, the vision side and the token compressor (`SFTScriptArguments`), and TRL's `SFTConfig`
with the settings video chat samples need (`VideoSFTConfig`, the config of `sft_trainer.VideoSFTTrainer`).

One YAML works from the CLI and from a recipe: `--config recipes/qwen2_5_vl_7b/lora/config_hmdb51_0.41.yaml` sets the
fields, flags override them, unknown keys are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import SFTConfig

from compressa_hf.qwen.compress.config import TokenCompressorArguments
from compressa_hf.qwen.data_args import VideoDataArguments
from compressa_hf.qwen.families import VISION_LINEAR_MODULES

#: How much of the vision side trains (`tune_vision`): with LoRA, `tower` puts adapters on the vision blocks too; with
#: full SFT it trains every vision weight. `merger` trains the patch merger (the vision -> text projection) fully.
TUNE_VISION = ("frozen", "merger", "tower")


@dataclass
class SFTScriptArguments(VideoDataArguments, TokenCompressorArguments):
    """Arguments of `recipes/sft_qwen.py` besides `VideoSFTConfig` (trainer) and `trl.ModelConfig` (model, LoRA).

    LoRA goes on the language model's linear layers named by `ModelConfig.lora_target_modules` (`all-linear` or
    None: every attention and MLP projection); the vision side follows `tune_vision`.

    Args:
        tune_vision: `frozen` (default): the vision tower and merger stay as released. `merger`: the patch merger
            (vision -> text projection) trains fully, with LoRA too. `tower`: with LoRA, adapters on the vision
            blocks' linear layers (`vision_lora_target_modules`) and the merger trained fully; in full SFT, every
            vision weight trains.
        vision_lora_target_modules: Vision-block linear layers that get adapters when `tune_vision=tower`.
        max_train_samples: Use only the first N training samples (smoke tests, quick looks).
        streaming: Stream a distilled set (`load_chat_dataset(..., streaming=True)`): rows are read and decoded as
            training consumes them, nothing is downloaded or prepared first. An iterable has no length, so the run
            needs `max_steps`. Raw sets are read clip by clip on access already; streaming them is refused.
        summary_file: JSON written beside the model: the data set, samples, frames and visual tokens per sample,
            run time (what `recipes/compare_qwen.py` tabulates).
        token_compressor / token_compressor_path / token_compressor_strides: `TokenCompressorArguments`; the run
            writes the compressor to `<output_dir>/token_compressor/`, where `eval_qwen.py` finds it.
        tune_token_compressor: Train SVC's compressor with the model (its decoder is never used in SFT); False keeps
            it as loaded. Average pooling has nothing to train.
    """

    tune_vision: str = field(
        default="frozen",
        metadata={
            "help": "Vision side: frozen, merger (train the merger), tower (tune it all).",
            "choices": TUNE_VISION,
        },
    )
    vision_lora_target_modules: list[str] = field(
        default_factory=lambda: list(VISION_LINEAR_MODULES),
        metadata={"help": "Vision-block layers given LoRA adapters when tune_vision=tower."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N samples only."})
    streaming: bool = field(default=False, metadata={"help": "Stream a distilled set (needs max_steps)."})
    summary_file: str = field(
        default="training_summary.json", metadata={"help": "Run summary JSON written into output_dir."}
    )
    tune_token_compressor: bool = field(
        default=False, metadata={"help": "Train the SVC token compressor with the model (false: keep it as loaded)."}
    )

    def __post_init__(self):
        super().__post_init__()
        self.check_token_compressor()
        if self.tune_token_compressor and self.token_compressor != "svc":
            raise ValueError(
                f"`tune_token_compressor` trains an svc compressor, but token_compressor is {self.token_compressor!r}"
            )
        if self.tune_vision not in TUNE_VISION:
            raise ValueError(f"`tune_vision` must be one of {TUNE_VISION}, got {self.tune_vision!r}")
        unknown = sorted(set(self.vision_lora_target_modules) - set(VISION_LINEAR_MODULES))
        if unknown:
            raise ValueError(
                f"`vision_lora_target_modules` {unknown} are not vision-block linear layers; choose from "
                f"{list(VISION_LINEAR_MODULES)}"
            )
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ValueError(f"`max_train_samples` must be >= 1, got {self.max_train_samples}")


#: Where the loss goes for each (`completion_only_loss`, `assistant_only_loss`) pair (`VideoSFTConfig.train_on`).
#: A video chat sample is a conversational prompt-completion pair: the question (with the video) is the prompt, the
#: assistant answer the completion, and the answer is the one assistant turn. So TRL's two switches name the same span
#: (the answer and its `<|im_end|>`) unless both are off, which TRL reads as "the entire sequence".
LOSS_SPANS = {
    (None, False): "answer",  # TRL's defaults: completion-only for prompt-completion data
    (True, False): "answer",
    (None, True): "answer",
    (True, True): "answer",
    (False, True): "answer",
    (False, False): "sequence",
}


@dataclass
class VideoSFTConfig(SFTConfig):
    """TRL's `SFTConfig` with the two settings video chat samples need as defaults; every other field is TRL's.

    Args:
        remove_unused_columns: Must stay False: `QwenVideoCollator` reads the chat samples' own columns (`messages`,
            `videos`, `video_metadata`), which `Trainer` would otherwise drop for not being model inputs.
        dataset_kwargs: Must keep `skip_prepare_dataset: true`: samples are tokenised, and their frames decoded,
            on the fly by the collator; TRL's text preparation cannot read videos.
        vision_lr: Learning rate of the vision tower's trainable parameters (its LoRA adapters with
            `tune_vision: tower`, its weights in full SFT), the merger excepted. None: `learning_rate`.
        merger_lr: Learning rate of the patch merger (the vision -> text projection; trained with `tune_vision: merger`
            or `tower`). None: `learning_rate`. The language model and everything else train at `learning_rate`; the
            schedule scales every rate alike (`compressa_hf.qwen.sft_trainer.VideoSFTTrainer`).
        packing / padding_free: Either packs each batch into one row without padding (`compressa_hf.qwen.packing`:
            every sample's own 3D mRoPE positions plus a text row restarting per sample, attention that cannot cross
            samples, Qwen3.5's linear-attention layers run per sample; loss as the padded batch's). TRL packs the
            whole data set into `max_length` rows before training, which needs every sample tokenised up front; video
            samples are collated on the fly, so here the batch is what is packed and `per_device_train_batch_size`
            still counts samples. `packing_strategy` must stay `bfd` (`wrapped` would cut samples in two).
        completion_only_loss / assistant_only_loss: Where the loss goes (`train_on`, table `LOSS_SPANS`): on the
            assistant answer and its `<|im_end|>` (the default, and any pair with a True or None), or with both False
            on every token but padding and visual placeholders.
        push_to_hub: `recipes/sft_qwen.py` pushes the output folder once, after the model card and training summary
            are written (Trainer would push from `save_model`, before them); checkpoints are not pushed, so
            `hub_strategy` must stay `every_save`.
    """

    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep False: the collator reads the chat samples' columns."}
    )
    dataset_kwargs: dict[str, Any] | str | None = field(
        default_factory=lambda: {"skip_prepare_dataset": True},
        metadata={"help": "Keep {'skip_prepare_dataset': true}: the collator tokenises video samples on the fly."},
    )
    vision_lr: float | None = field(
        default=None, metadata={"help": "Learning rate of the vision tower (merger excepted); None: learning_rate."}
    )
    merger_lr: float | None = field(
        default=None, metadata={"help": "Learning rate of the patch merger; None: learning_rate."}
    )

    @property
    def packed(self) -> bool:
        """Whether batches are packed into one row (`packing` or `padding_free`)."""
        return bool(self.packing or self.padding_free)

    @property
    def train_on(self) -> str:
        """`QwenVideoCollator(train_on=...)` for the two loss switches: `answer` or `sequence` (`LOSS_SPANS`)."""
        return LOSS_SPANS[(self.completion_only_loss, bool(self.assistant_only_loss))]

    def __post_init__(self):
        if self.completion_only_loss not in (None, True, False):
            raise ValueError(f"`completion_only_loss` must be true, false or null, got {self.completion_only_loss!r}")
        if self.packing and self.packing_strategy != "bfd":
            raise ValueError(
                f"`packing_strategy` {self.packing_strategy!r} is not supported for video chat samples: each batch is "
                "packed whole into one row (strategy bfd), since cutting a sample would split its video tokens from "
                "their pixels; set packing_strategy: bfd"
            )
        for key in ("vision_lr", "merger_lr"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise ValueError(f"`{key}` must be > 0 or None (= learning_rate), got {getattr(self, key)}")
        super().__post_init__()
        strategy = getattr(self.hub_strategy, "value", self.hub_strategy)
        if self.push_to_hub and strategy != "every_save":
            raise ValueError(
                f"`hub_strategy` {strategy!r} is not supported: the recipe pushes the finished output folder once, "
                "with its model card and training summary, and no checkpoint; leave hub_strategy at every_save"
            )
        if self.remove_unused_columns:
            raise ValueError(
                "`remove_unused_columns` must be False for video chat samples (got True): the collator reads the "
                "`messages`, `videos` and `video_metadata` columns, which Trainer would drop"
            )
        if not (self.dataset_kwargs or {}).get("skip_prepare_dataset"):
            raise ValueError(
                f"`dataset_kwargs` must hold skip_prepare_dataset: true for video chat samples, got "
                f"{self.dataset_kwargs!r}; the collator tokenises them"
            )
