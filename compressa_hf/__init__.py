"""compressa_hf: distil labelled video datasets into latent keyframes and fine-tune Qwen2.5-VL on them."""

__version__ = "0.1.0"
