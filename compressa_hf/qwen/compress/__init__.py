"""Visual-token compressors for Qwen-VL: SVC (the AVS/SVC paper's autoencoder compressor) and 3D average pooling.

`svc` holds the module and its PEFT-style save/load, `grid` the token-grid arithmetic, `attach` the hooks that put a
compressor between a Qwen-VL vision tower and its language model (and the processor that writes the matching
prompt), `pretrain` the reconstruction pre-training that `recipes/pretrain_svc.py` runs, `config` the recipes'
arguments for both (`TokenCompressorArguments`, `PretrainSVCArguments`).
"""

from compressa_hf.qwen.compress.attach import (
    attach_token_compressor,
    attached_compressor,
    build_token_compressor,
    compressed_processor,
    save_token_compressor,
    saved_token_compressor,
)
from compressa_hf.qwen.compress.grid import choose_strides, compressed_size, compressed_tokens
from compressa_hf.qwen.compress.svc import KINDS, TokenCompressor, TokenCompressorConfig, avg_pool_tokens

__all__ = [
    "KINDS",
    "TokenCompressor",
    "TokenCompressorConfig",
    "attach_token_compressor",
    "attached_compressor",
    "avg_pool_tokens",
    "build_token_compressor",
    "choose_strides",
    "compressed_processor",
    "compressed_size",
    "compressed_tokens",
    "save_token_compressor",
    "saved_token_compressor",
]
