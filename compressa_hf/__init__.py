"""compressa_hf: distil a labelled video dataset into a few latent keyframes per video (VideoCompressa and every
baseline at equal stored bytes), publish it as a Hugging Face dataset, and fine-tune Qwen-VL models on it.

The jobs of the `compressa` command, as functions (`compressa_hf.api`):

    import compressa_hf as ch

    out = ch.distill(source="path/to/clips", ratio="k1", method="dm", output="out/my_set")  # -> DistillOutput
    kept = ch.load_distilled(out.repo, out.config_name)                                   # rows + card
    chat = ch.load_chat_dataset(out.repo, out.config_name)                               # Qwen-VL samples
    report = ch.evaluate(source="path/to/clips", methods="uniform,dm", ratios="k1")      # -> EvaluateOutput

`encode`, `distill`, `evaluate`, `push`, `load_distilled`, `load_chat_dataset`, their argument dataclasses and typed
outputs, and `QwenVideoCollator` are importable from here; each is imported on first use, so `import compressa_hf`
stays instant. The library below them: `compressa_hf.distillation` (methods, planner, pipeline),
`compressa_hf.evaluation` (train-from-scratch protocol, report), `compressa_hf.qwen` (chat samples, collator, SFT,
evaluation), `compressa_hf.sources`, `compressa_hf.codecs`, `compressa_hf.cache`, `compressa_hf.store`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from compressa_hf.deprecated_paths import install_moved_packages

__version__ = "0.1.0"

install_moved_packages()  # `compressa_hf.distill.*` and `compressa_hf.evaluate.*` import, with a warning

#: Public name -> the module that defines it.
_PUBLIC = {
    "encode": "compressa_hf.api",
    "distill": "compressa_hf.api",
    "evaluate": "compressa_hf.api",
    "push": "compressa_hf.api",
    "load_distilled": "compressa_hf.api",
    "load_chat_dataset": "compressa_hf.api",
    "EncodeOutput": "compressa_hf.api",
    "DistillOutput": "compressa_hf.api",
    "DistilledSet": "compressa_hf.api",
    "EvaluateOutput": "compressa_hf.api",
    "PushOutput": "compressa_hf.api",
    "EncodeConfig": "compressa_hf.cache",
    "DistillArguments": "compressa_hf.distillation.arguments",
    "VideoCompressaConfig": "compressa_hf.distillation.videocompressa",
    "AutoArguments": "compressa_hf.evaluation.auto",
    "EvaluateArguments": "compressa_hf.evaluation.runner",
    "TrainConfig": "compressa_hf.evaluation.train",
    "QwenVideoCollator": "compressa_hf.qwen.collator",
}
__all__ = [
    "AutoArguments",
    "DistillArguments",
    "DistillOutput",
    "DistilledSet",
    "EncodeConfig",
    "EncodeOutput",
    "EvaluateArguments",
    "EvaluateOutput",
    "PushOutput",
    "QwenVideoCollator",
    "TrainConfig",
    "VideoCompressaConfig",
    "distill",
    "encode",
    "evaluate",
    "load_chat_dataset",
    "load_distilled",
    "push",
]  # fmt: skip (the keys of _PUBLIC, spelt out for tools that read __all__)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time each name is imported on first use
    from compressa_hf.api import (
        DistilledSet,
        DistillOutput,
        EncodeOutput,
        EvaluateOutput,
        PushOutput,
        distill,
        encode,
        evaluate,
        load_chat_dataset,
        load_distilled,
        push,
    )
    from compressa_hf.cache import EncodeConfig
    from compressa_hf.distillation.arguments import DistillArguments
    from compressa_hf.distillation.videocompressa import VideoCompressaConfig
    from compressa_hf.evaluation.auto import AutoArguments
    from compressa_hf.evaluation.runner import EvaluateArguments
    from compressa_hf.evaluation.train import TrainConfig
    from compressa_hf.qwen.collator import QwenVideoCollator


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'compressa_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
