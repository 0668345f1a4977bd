"""Argument dataclasses of the SFT and evaluation recipes (`recipes/*.py`), parsed with TRL's `TrlParser`.

One YAML works from the CLI and from a recipe: `--config recipes/qwen2_5_vl_7b/lora/config_hmdb51_0.41.yaml` sets
the fields, flags override them, unknown keys are errors. The SFT script parses
`(SFTScriptArguments, VideoSFTConfig, trl.ModelConfig)`, the evaluation script `EvalArguments`, the comparison
script `CompareArguments`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import SFTConfig

from compressa_hf.qwen.families import TEXT_LINEAR_MODULES as QWEN_TEXT_LINEAR_MODULES
from compressa_hf.qwen.families import VISION_LINEAR_MODULES as QWEN_VISION_LINEAR_MODULES
from compressa_hf.qwen.prompts import PROMPT_STYLES, PromptTemplate

#: How much of the vision side trains (`tune_vision`): with LoRA, `tower` puts adapters on the vision blocks too; with
#: full SFT it trains every vision weight. `merger` trains the patch merger (the vision -> text projection) fully.
TUNE_VISION = ("frozen", "merger", "tower")

#: Leaf names of the language model's linear layers of any family (attention and MLP projections, and Qwen3.5's
#: linear-attention `in_proj_qkv` / `in_proj_z` / `in_proj_b` / `in_proj_a` / `out_proj`); `all-linear` stands for the
#: model family's own (`compressa_hf.qwen.QwenFamily.text_linear_modules`).
TEXT_LINEAR_MODULES = QWEN_TEXT_LINEAR_MODULES
#: Leaf names of the linear layers inside a vision block of any Qwen-VL family (fused `qkv`, `proj`, and the MLP:
#: Qwen2.5-VL's `gate/up/down_proj`, Qwen2-VL's `fc1/fc2`, Qwen3-VL's `linear_fc1/fc2`); the LoRA placement keeps the
#: model family's own (`compressa_hf.sft.lora_target_regex`).
VISION_LINEAR_MODULES = QWEN_VISION_LINEAR_MODULES

#: How raw clips are read (`VideoDataArguments.video_reader`).
VIDEO_READERS = ("qwen_vl_utils", "clips")

_DEFAULT_PROMPT = PromptTemplate()


@dataclass
class VideoDataArguments:
    """Which videos the recipes read, how frames are taken from raw clips, and the prompt; shared by every recipe.

    Args:
        data: Named training set (`compressa_hf.named_sets`): `hmdb51_0.41` (distilled, from the Hub),
            `hmdb51_full` (the raw training split), or an entry of `data_registry`. Its `eval_source` is the test
            split the evaluation reads.
        data_registry: YAML file of extra named sets (name -> repo/config or source, eval_source).
        video_reader: How frames are taken from raw clips (full-data training and every evaluation).
            `qwen_vl_utils` (default): as Qwen's own examples take them, by qwen-vl-utils' rules (`video_*` below;
            `compressa_hf.qwen.video`). `clips`: T = `num_frames` uniform frames, resized and centre-cropped to
            `clip_size` (`compressa_hf.clips`).
        video_fps / video_nframes / video_min_frames / video_max_frames: qwen-vl-utils' frame count: `video_fps`
            frames per second within [min, max] frames, or exactly `video_nframes` when set.
        video_min_pixels / video_max_pixels / video_total_pixels: qwen-vl-utils' pixel bounds per frame and per
            video; None keeps its defaults (128 to 768 visual tokens' worth per frame).
        video_patch_size: The model's patch size for qwen-vl-utils' pixel grid: 14 (Qwen2-VL, Qwen2.5-VL) or 16
            (Qwen3-VL). `eval_qwen.py` takes the evaluated model's.
        num_frames: T, frames sampled per raw clip with `video_reader: clips`. Distilled samples carry the K frames
            they were stored with.
        clip_size: Side of raw frames after resize + centre crop (`video_reader: clips`); distilled frames keep the
            size their codec decodes to (112 for TAESD latents of 14 x 14).
        sampling_policy: How raw frames are sampled with `video_reader: clips` (`uniform`, `gap4`;
            `compressa_hf.clips.POLICIES`).
        fps: Overrides the source frame rate behind the temporal positions; None uses each video's real rate, read
            from its file (raw clips) or its row's `fps` column (distilled sets).
        max_fps: Highest frame rate a video is presented to Qwen2.5-VL at (see `QwenVideoCollator`).
        frame_size: Resize every frame to this side before the processor (rounded to the model's 28- or 32-pixel
            grid); None keeps each video's own size. Visual tokens grow with its square.
        prompt_style: A named prompt (`compressa_hf.chat.prompts.PROMPT_STYLES`): `choices` (default: every class
            named in the question), `short` (no class list: the label space is learned from the answers), or
            `system_choices` (the class list in a system message shared by every sample). BENCHMARKS.md ("The
            prompt's cost") gives the tokens each costs per sample.
        question / answer / system_prompt / humanize_class_names: The prompt (`PromptTemplate`); `question` and
            `system_prompt` override `prompt_style`'s when set. Training and evaluation must use the same one.
    """

    data: str | None = field(
        default=None,
        metadata={"help": "Named set, e.g. hmdb51_0.41 (distilled) or hmdb51_full (raw videos); see named_sets.py."},
    )
    data_registry: str | None = field(
        default=None, metadata={"help": "YAML file with extra named sets (name -> repo/config or source)."}
    )
    video_reader: str = field(
        default="qwen_vl_utils",
        metadata={
            "help": "Raw clips: qwen_vl_utils (as Qwen's examples read video) or clips (num_frames uniform frames).",
            "choices": VIDEO_READERS,
        },
    )
    video_fps: float = field(default=2.0, metadata={"help": "qwen-vl-utils: frames sampled per second of video."})
    video_nframes: int | None = field(
        default=None, metadata={"help": "qwen-vl-utils: exactly this many frames instead of video_fps."}
    )
    video_min_frames: int = field(default=4, metadata={"help": "qwen-vl-utils: fewest frames video_fps gives."})
    video_max_frames: int = field(default=768, metadata={"help": "qwen-vl-utils: most frames video_fps gives."})
    video_min_pixels: int | None = field(
        default=None, metadata={"help": "qwen-vl-utils: least pixels per frame (None: 128 tokens' worth)."}
    )
    video_max_pixels: int | None = field(
        default=None, metadata={"help": "qwen-vl-utils: most pixels per frame (None: 768 tokens' worth)."}
    )
    video_total_pixels: int | None = field(
        default=None, metadata={"help": "qwen-vl-utils: pixel budget of a whole video (None: its default)."}
    )
    video_patch_size: int = field(
        default=14, metadata={"help": "qwen-vl-utils: the model's patch size, 14 (Qwen2/2.5-VL) or 16 (Qwen3-VL)."}
    )
    num_frames: int = field(default=16, metadata={"help": "T, frames per raw clip with video_reader=clips."})
    clip_size: int = field(default=112, metadata={"help": "Side of raw frames after resize + centre crop (clips)."})
    sampling_policy: str = field(default="uniform", metadata={"help": "Raw-frame sampling policy: uniform or gap4."})
    fps: float | None = field(
        default=None, metadata={"help": "Override the source frame rate; None uses each video's real rate."}
    )
    max_fps: float | None = field(
        default=2.0, metadata={"help": "Highest frame rate a video is presented at (Qwen2.5-VL samples at 2)."}
    )
    frame_size: int | None = field(
        default=None, metadata={"help": "Resize frames to this side (rounded to 28); None keeps their size."}
    )
    prompt_style: str = field(
        default="choices",
        metadata={
            "help": "Named prompt: choices (classes in the question), short (no class list), system_choices "
            "(classes in a shared system message). question / system_prompt override it.",
            "choices": list(PROMPT_STYLES),
        },
    )
    question: str = field(
        default=_DEFAULT_PROMPT.question,
        metadata={"help": "User question; {choices} = class names, {num_classes} = their count."},
    )
    answer: str = field(default=_DEFAULT_PROMPT.answer, metadata={"help": "Assistant answer; {class_name} is filled."})
    system_prompt: str | None = field(
        default=None, metadata={"help": "System message; None keeps the chat template's default."}
    )
    humanize_class_names: bool = field(
        default=True, metadata={"help": "Show class names as words: ApplyEyeMakeup -> apply eye makeup."}
    )

    def __post_init__(self):
        if self.num_frames < 1:
            raise ValueError(f"`num_frames` must be >= 1, got {self.num_frames}")
        if self.video_reader not in VIDEO_READERS:
            raise ValueError(f"`video_reader` must be one of {VIDEO_READERS}, got {self.video_reader!r}")
        self.clip_config()  # validates the reader's settings now, not after the model has loaded
        if self.max_fps is not None and self.max_fps <= 0:
            raise ValueError(f"`max_fps` must be > 0 or None, got {self.max_fps}")
        self.prompt_template()  # validates question / answer now, not after the model has loaded

    def prompt_template(self) -> PromptTemplate:
        """`prompt_style`'s template, with `question` / `system_prompt` where they differ from the defaults."""
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"`prompt_style` must be one of {list(PROMPT_STYLES)}, got {self.prompt_style!r}")
        style = PROMPT_STYLES[self.prompt_style]
        question = self.question if self.question != _DEFAULT_PROMPT.question else style.question
        return PromptTemplate(
            question=question,
            answer=self.answer,
            system=self.system_prompt if self.system_prompt is not None else style.system,
            humanize=self.humanize_class_names,
        )

    def clip_config(self, patch_size: int | None = None):
        """How raw clips are read: a `QwenVideoConfig` (`video_reader: qwen_vl_utils`) or a `ClipConfig` (`clips`).

        `patch_size` overrides `video_patch_size` (the evaluation passes its model's).
        """
        if self.video_reader == "clips":
            from compressa_hf.clips import ClipConfig

            return ClipConfig(num_frames=self.num_frames, size=self.clip_size, policy=self.sampling_policy)
        from compressa_hf.qwen.video import QwenVideoConfig

        return QwenVideoConfig(
            fps=self.video_fps,
            nframes=self.video_nframes,
            min_frames=self.video_min_frames,
            max_frames=self.video_max_frames,
            min_pixels=self.video_min_pixels,
            max_pixels=self.video_max_pixels,
            total_pixels=self.video_total_pixels,
            image_patch_size=patch_size or self.video_patch_size,
        )

    def named_set(self):
        """The `NamedSet` for `data` (environment variables expanded); raises naming the known sets."""
        from compressa_hf.named_sets import resolve_named_set

        if not self.data:
            raise ValueError("no training set: pass --data NAME (e.g. hmdb51_0.41 or hmdb51_full)")
        return resolve_named_set(self.data, self.data_registry)


#: What sits between the vision tower and the language model (`compressa_hf.qwen.compress`): nothing, 3D average
#: pooling, or SVC (pooling plus a learned residual).
TOKEN_COMPRESSORS = ("none", "avgpool", "svc")


@dataclass
class TokenCompressorArguments:
    """The visual-token compressor of a recipe (`compressa_hf.qwen.compress`); shared by SFT and evaluation.

    Args:
        token_compressor: `none`, `avgpool` (3D average pooling of the merged video tokens, nothing to train) or `svc`
            (pooling plus SVC's learned residual; `recipes/pretrain_svc.py` pre-trains it). The prompt gets the
            compressed number of video tokens and the language model positions for the compressed grid.
        token_compressor_path: A pre-trained SVC (a `recipes/pretrain_svc.py` output folder or Hub repo). With `svc`
            and no path, a fresh SVC starts as average pooling.
        token_compressor_strides: (t, h, w) strides on the merged token grid; None: the path's, else 4 4 4 (the
            paper's 64x). A K = 4 frame 112 px sample is a 2 x 4 x 4 grid; windows past the edge average what they
            cover (4 4 4 makes it one token).
    """

    token_compressor: str = field(
        default="none",
        metadata={"help": "Visual-token compressor: none, avgpool or svc.", "choices": TOKEN_COMPRESSORS},
    )
    token_compressor_path: str | None = field(
        default=None, metadata={"help": "Pre-trained SVC folder or Hub repo (recipes/pretrain_svc.py output)."}
    )
    token_compressor_strides: list[int] | None = field(
        default=None, metadata={"help": "Strides t h w on the merged token grid (None: the path's, else 4 4 4)."}
    )

    def check_token_compressor(self) -> None:
        if self.token_compressor not in TOKEN_COMPRESSORS:
            raise ValueError(f"`token_compressor` must be one of {TOKEN_COMPRESSORS}, got {self.token_compressor!r}")
        if self.token_compressor_strides is not None:
            from compressa_hf.qwen.compress.grid import check_strides

            self.token_compressor_strides = list(check_strides(self.token_compressor_strides))
        if self.token_compressor_path is not None and self.token_compressor != "svc":
            raise ValueError(
                f"`token_compressor_path` {self.token_compressor_path} needs token_compressor: svc, got "
                f"{self.token_compressor!r}"
            )


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
            schedule scales every rate alike (`compressa_hf.sft_trainer.VideoSFTTrainer`).
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


@dataclass
class EvalArguments(VideoDataArguments, TokenCompressorArguments):
    """Arguments of `recipes/eval_qwen.py`: which model, which test split, which scoring.

    Args:
        model_name_or_path: A base model (zero-shot) or the output of `sft_qwen.py`: a full model, or a LoRA adapter
            folder whose `adapter_config.json` names the base model.
        dtype: Weights dtype (`bfloat16` on GPUs; `float32` on CPU).
        attn_implementation: e.g. `sdpa`, `flash_attention_2`.
        split: Test split of the set's `eval_source`; None uses the set's `eval_split` (`test`).
        methods: `loglik` (constrained: the class whose answer has the highest log-likelihood) and/or `generate`
            (greedy answer matched to a class name after normalisation).
        length_normalize: Rank classes by mean instead of summed token log-likelihood.
        batch_size: Test videos per forward pass on each process.
        choice_batch_size: Class continuations scored per forward pass (lower it for many classes on a small GPU).
        max_new_tokens: Generation length limit for `generate`.
        max_samples: Evaluate the first N test videos only.
        output_dir: Where `results.json`, `results.md` and `predictions.jsonl` go.
        run_name: Name of the run in the results (default: the model folder's name).
        token_compressor / token_compressor_path / token_compressor_strides: `TokenCompressorArguments`. None (the
            default): the compressor saved in the model folder (`<model>/token_compressor/`, written by
            `sft_qwen.py`), else none; set them to evaluate a model with another compressor (a base model zero-shot
            at fewer tokens).
    """

    token_compressor: str | None = field(
        default=None,
        metadata={"help": "none, avgpool or svc; None: the model folder's token_compressor/, if any."},
    )
    model_name_or_path: str | None = field(default=None, metadata={"help": "Base model or sft_qwen.py output."})
    dtype: str = field(
        default="bfloat16",
        metadata={"help": "Weights dtype.", "choices": ["bfloat16", "float16", "float32", "auto"]},
    )
    attn_implementation: str | None = field(default=None, metadata={"help": "Attention kernel, e.g. sdpa."})
    split: str | None = field(default=None, metadata={"help": "Test split; None uses the set's eval_split."})
    methods: list[str] = field(
        default_factory=lambda: ["loglik", "generate"], metadata={"help": "Scoring methods: loglik, generate."}
    )
    length_normalize: bool = field(default=False, metadata={"help": "Rank classes by mean token log-likelihood."})
    batch_size: int = field(default=4, metadata={"help": "Test videos per forward pass per process."})
    choice_batch_size: int = field(default=128, metadata={"help": "Class continuations per forward pass."})
    max_new_tokens: int = field(default=16, metadata={"help": "Generation length limit."})
    max_samples: int | None = field(default=None, metadata={"help": "Evaluate the first N test videos only."})
    output_dir: str = field(default="outputs/eval", metadata={"help": "Folder for results.json / .md."})
    run_name: str | None = field(default=None, metadata={"help": "Run name in the tables (default: model folder)."})

    def __post_init__(self):
        super().__post_init__()
        if self.token_compressor is not None or self.token_compressor_path or self.token_compressor_strides:
            self.token_compressor = self.token_compressor or ("svc" if self.token_compressor_path else "avgpool")
            self.check_token_compressor()
        unknown = sorted(set(self.methods) - {"loglik", "generate"})
        if unknown or not self.methods:
            raise ValueError(f"`methods` must be a non-empty subset of [loglik, generate], got {self.methods}")
        for name in ("batch_size", "choice_batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")


@dataclass
class CompareArguments:
    """Arguments of `recipes/compare_qwen.py`: zero-shot vs full-data SFT vs distilled SFT on one dataset.

    Each run is its own `accelerate launch` of `sft_qwen.py` / `eval_qwen.py` with the recipe
    `<recipe_dir>/<method>/config_<dataset>_<ratio | full>.yaml`; finished runs (their `results.json` exists) are
    skipped, so a killed comparison resumes where it stopped.

    Args:
        dataset: Dataset prefix of the named sets (`hmdb51`, `ucf101`, or a registry prefix such as `tiny`).
        ratios: Distilled ratios to train on (named sets `<dataset>_<ratio>`).
        method: Recipe folder: `lora` or `full`.
        recipe_dir: Folder holding `<method>/config_*.yaml`.
        model_name_or_path: Base model; overrides the recipes' and is the zero-shot model.
        accelerate_config: `--config_file` for the SFT launches (e.g. `accelerate_configs/zero2.yaml`).
        eval_accelerate_config: `--config_file` for the evaluation launches (None: accelerate's default).
        num_processes: Overrides the accelerate configs' process count (None keeps theirs).
        output_dir: Runs go to `<output_dir>/<name>`, the table to `<output_dir>/comparison.{md,json}`.
        data_registry: Extra named sets, passed to every run.
        sft_args / eval_args: Extra flags for every SFT / evaluation run (one string, shell-quoted).
        equal_tokens: Equal-token rows to add after each distilled row: full-data SFT with the visual tokens cut to the
            distilled run's count by `avgpool` (3D average pooling) and / or `svc` (SVC, pre-trained by
            `recipes/pretrain_svc.py` on the full training split unless `svc_path` is given). They separate "better
            frames" from "fewer tokens".
        equal_token_strides: (t, h, w) strides of those rows; None: for each ratio, the strides that bring the
            full-data run's first sample closest to the distilled run's tokens (`compress.grid.choose_strides`).
        svc_path: A pre-trained SVC to use for every `svc` row (its strides must be the rows').
        svc_args: Extra flags for the `recipes/pretrain_svc.py` runs (e.g. `--max_steps 20000`).
        tune_svc: Train the SVC with the model in its SFT runs (`tune_token_compressor`).
        dry_run: Print the commands and stop.
    """

    dataset: str = field(default="hmdb51", metadata={"help": "Dataset prefix: hmdb51, ucf101, ..."})
    ratios: list[str] = field(default_factory=lambda: ["0.21", "0.41", "0.82"], metadata={"help": "Ratios."})
    method: str = field(default="lora", metadata={"help": "Recipe folder: lora or full."})
    recipe_dir: str = field(default="recipes/qwen2_5_vl_7b", metadata={"help": "Folder with <method>/config_*.yaml."})
    model_name_or_path: str | None = field(default=None, metadata={"help": "Base model (also the zero-shot one)."})
    accelerate_config: str | None = field(
        default="accelerate_configs/zero2.yaml", metadata={"help": "accelerate --config_file for SFT runs."}
    )
    eval_accelerate_config: str | None = field(
        default=None, metadata={"help": "accelerate --config_file for evaluation runs."}
    )
    num_processes: int | None = field(default=None, metadata={"help": "Processes per launch (None: the config's)."})
    output_dir: str = field(default="outputs/compare", metadata={"help": "Runs and the comparison table go here."})
    data_registry: str | None = field(default=None, metadata={"help": "Extra named sets YAML."})
    sft_args: str = field(default="", metadata={"help": "Extra flags for every SFT run."})
    eval_args: str = field(default="", metadata={"help": "Extra flags for every evaluation run."})
    equal_tokens: list[str] = field(
        default_factory=list, metadata={"help": "Equal-token full-data rows per ratio: avgpool and / or svc."}
    )
    equal_token_strides: list[int] | None = field(
        default=None, metadata={"help": "Strides t h w of the equal-token rows (None: chosen per ratio)."}
    )
    svc_path: str | None = field(default=None, metadata={"help": "A pre-trained SVC for the svc rows."})
    svc_args: str = field(default="", metadata={"help": "Extra flags for the pretrain_svc.py runs."})
    tune_svc: bool = field(default=True, metadata={"help": "Train the SVC in its SFT runs."})
    dry_run: bool = field(default=False, metadata={"help": "Print the commands only."})

    def __post_init__(self):
        if self.method not in ("lora", "full"):
            raise ValueError(f"`method` must be lora or full, got {self.method!r}")
        unknown = sorted(set(self.equal_tokens) - {"avgpool", "svc"})
        if unknown:
            raise ValueError(f"`equal_tokens` takes avgpool and / or svc, got {unknown}")
        if self.equal_token_strides is not None:
            from compressa_hf.qwen.compress.grid import check_strides

            self.equal_token_strides = list(check_strides(self.equal_token_strides))


@dataclass
class PretrainSVCArguments(VideoDataArguments):
    """Arguments of `recipes/pretrain_svc.py`: SVC's reconstruction pre-training on video without text.

    The frozen vision tower of `model_name_or_path` (its merger included) encodes each video; SVC compresses the
    merged tokens and its decoder reconstructs them; the L1 distance between reconstruction and tower output trains
    both (the AVS/SVC paper, eq. 11). Videos are read like the SFT recipe reads its training set (`data` or `source`,
    and every `video_*` / `num_frames` / `frame_size` setting of `VideoDataArguments`); no text is learned (the prompt
    settings are accepted but play no part).

    Args:
        model_name_or_path: The Qwen-VL checkpoint whose vision tower SVC compresses (a Hub id or a folder).
        dtype: The frozen tower's dtype (bfloat16 on GPUs; float32 on CPU). SVC itself trains in float32.
        source / split: A source spec (`procedural:...`, a videofolder, `hf:path=org/videos`, ...) and split, in place
            of a named set (`data`).
        token_compressor_strides: (t, h, w) strides on the merged token grid (the paper's 4 4 4).
        svc_width / svc_bottleneck_ratio / svc_num_blocks / svc_spatial_kernel / svc_temporal_kernel: SVC's shape
            (`compressa_hf.qwen.compress.svc.TokenCompressorConfig`; None width: hidden size / 2).
        output_dir: The compressor (`compressor_config.json`, `compressor_model.safetensors`), its card
            (`README.md`), `pretrain_summary.json` and the checkpoints go here.
        max_steps / num_train_epochs: Optimizer steps; `max_steps` <= 0 trains `num_train_epochs` passes.
        per_device_train_batch_size: Videos per step.
        learning_rate / weight_decay / lr_scheduler_type / warmup_ratio / max_grad_norm: AdamW and its schedule
            (`transformers.get_scheduler` names).
        seed: Seeds SVC's initialisation and the order videos are read in.
        logging_steps / save_steps / save_total_limit: Loss logging interval, checkpoint interval, checkpoints kept.
        max_train_samples: Read only the first N videos.
        dataloader_num_workers: Processes reading videos ahead of training.
        overwrite_output_dir: Start over even when `output_dir` holds checkpoints (by default a rerun resumes the
            newest one, and refuses one made with other settings, naming them).
        push_to_hub / hub_model_id / hub_private_repo: Upload the finished compressor and its card as a model repo
            (`hub_model_id`, else the folder's name); refused when the card or config would publish a path of this
            machine.
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "Qwen-VL checkpoint (frozen tower)."})
    dtype: str = field(
        default="bfloat16",
        metadata={"help": "Frozen tower dtype.", "choices": ["bfloat16", "float16", "float32", "auto"]},
    )
    source: str | None = field(default=None, metadata={"help": "Source spec to read videos from (instead of data)."})
    split: str = field(default="train", metadata={"help": "Split of `source`."})
    token_compressor_strides: list[int] = field(
        default_factory=lambda: [4, 4, 4], metadata={"help": "Strides t h w on the merged token grid."}
    )
    svc_width: int | None = field(default=None, metadata={"help": "Channels inside SVC (None: hidden size / 2)."})
    svc_bottleneck_ratio: int = field(default=4, metadata={"help": "Spatial conv narrows width by this factor."})
    svc_num_blocks: int = field(default=2, metadata={"help": "Residual blocks in the compressor and the decoder."})
    svc_spatial_kernel: int = field(default=3, metadata={"help": "Spatial kernel side (odd)."})
    svc_temporal_kernel: int = field(default=3, metadata={"help": "Temporal kernel length (odd)."})
    output_dir: str = field(default="outputs/svc", metadata={"help": "Compressor, card and checkpoints go here."})
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps (<= 0: num_train_epochs passes)."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the videos when max_steps <= 0."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Videos per step."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "transformers.get_scheduler name."})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Share of the steps spent warming up."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (<= 0: none)."})
    seed: int = field(default=42, metadata={"help": "Seeds SVC's initialisation and the reading order."})
    logging_steps: int = field(default=10, metadata={"help": "Log the loss every N steps."})
    save_steps: int = field(default=500, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Read the first N videos only."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "Processes reading videos ahead."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Start over instead of resuming."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the compressor and its card."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo id (default: the folder's name)."})
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the Hub repo private."})

    def __post_init__(self):
        super().__post_init__()
        from compressa_hf.qwen.compress.grid import check_strides

        self.token_compressor_strides = list(check_strides(self.token_compressor_strides))
        if (self.data is None) == (self.source is None):
            raise ValueError(
                f"pass exactly one of --data (a named set) or --source (a source spec), got data={self.data!r}, "
                f"source={self.source!r}"
            )
        for name in ("per_device_train_batch_size", "logging_steps", "save_steps", "save_total_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ValueError(
                f"set max_steps > 0 or num_train_epochs > 0, got {self.max_steps} and {self.num_train_epochs}"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"`learning_rate` must be > 0, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"`warmup_ratio` must be in [0, 1), got {self.warmup_ratio}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ValueError(f"`max_train_samples` must be >= 1, got {self.max_train_samples}")

    def named_set(self):
        """The named set `data` names, or one made of `source` / `split`."""
        if self.source is None:
            return super().named_set()
        from compressa_hf.named_sets import NamedSet

        return NamedSet(name=self.source, source=self.source, split=self.split)

    def compressor_config(self, hidden_size: int, family: str, base_model: str | None):
        """The `TokenCompressorConfig` of the SVC these arguments describe, for a model of `hidden_size` tokens."""
        from compressa_hf.qwen.compress.svc import TokenCompressorConfig

        return TokenCompressorConfig(
            kind="svc",
            strides=tuple(self.token_compressor_strides),
            hidden_size=hidden_size,
            width=self.svc_width,
            bottleneck_ratio=self.svc_bottleneck_ratio,
            num_blocks=self.svc_num_blocks,
            spatial_kernel=self.svc_spatial_kernel,
            temporal_kernel=self.svc_temporal_kernel,
            family=family,
            base_model_name_or_path=base_model,
        )
