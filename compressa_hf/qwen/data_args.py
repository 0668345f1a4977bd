"""`VideoDataArguments`: which videos the Qwen recipes read, how frames are taken from raw clips, and the prompt.

Shared by every recipe (`recipes/sft_qwen.py` through `sft_config.SFTScriptArguments`, `recipes/eval_qwen.py` through
`evaluation.EvalArguments`, `recipes/pretrain_svc.py` through `compress.config.PretrainSVCArguments`), parsed with
TRL's `TrlParser`: `--config x.yaml` sets the fields, flags override them, unknown keys are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from compressa_hf.qwen.prompts import PROMPT_STYLES, PromptTemplate

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
        prompt_style: A named prompt (`compressa_hf.qwen.prompts.PROMPT_STYLES`): `choices` (default: every class
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
