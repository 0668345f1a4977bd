"""The arguments of the visual-token compressors: which one a recipe attaches (`TokenCompressorArguments`, shared by
SFT and evaluation), and SVC's reconstruction pre-training (`PretrainSVCArguments`, `recipes/pretrain_svc.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from compressa_hf.qwen.data_args import VideoDataArguments

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
