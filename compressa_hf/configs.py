"""Deprecated: the classes of `compressa_hf.configs` moved beside what each configures: `compressa_hf.qwen.data_args`
(`VideoDataArguments`), `compressa_hf.qwen.compress.config` (`TokenCompressorArguments`, `PretrainSVCArguments`),
`compressa_hf.qwen.sft_config` (`SFTScriptArguments`, `VideoSFTConfig`), `compressa_hf.qwen.evaluation`
(`EvalArguments`), `compressa_hf.qwen.comparison` (`CompareArguments`); `TEXT_LINEAR_MODULES` and
`VISION_LINEAR_MODULES` are `compressa_hf.qwen.families`'.

This path keeps working, with a `DeprecationWarning`, until the next release; import from the new modules.
"""

from compressa_hf.deprecated_paths import warn_moved
from compressa_hf.qwen.comparison import CompareArguments
from compressa_hf.qwen.compress.config import TOKEN_COMPRESSORS, PretrainSVCArguments, TokenCompressorArguments
from compressa_hf.qwen.data_args import VIDEO_READERS, VideoDataArguments
from compressa_hf.qwen.evaluation import EvalArguments
from compressa_hf.qwen.families import TEXT_LINEAR_MODULES, VISION_LINEAR_MODULES
from compressa_hf.qwen.sft_config import LOSS_SPANS, TUNE_VISION, SFTScriptArguments, VideoSFTConfig

__all__ = [
    "CompareArguments",
    "EvalArguments",
    "LOSS_SPANS",
    "PretrainSVCArguments",
    "SFTScriptArguments",
    "TEXT_LINEAR_MODULES",
    "TOKEN_COMPRESSORS",
    "TUNE_VISION",
    "TokenCompressorArguments",
    "VIDEO_READERS",
    "VISION_LINEAR_MODULES",
    "VideoDataArguments",
    "VideoSFTConfig",
]

warn_moved(
    __name__,
    "compressa_hf.qwen.data_args",
    "compressa_hf.qwen.compress.config",
    "compressa_hf.qwen.sft_config",
    "compressa_hf.qwen.evaluation",
    "compressa_hf.qwen.comparison",
    "compressa_hf.qwen.families",
)
