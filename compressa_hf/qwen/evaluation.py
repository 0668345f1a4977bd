"""Video classification accuracy of a Qwen-VL model: constrained scoring over class names and free generation.

    prompts = prompt_inputs(collator, samples, class_texts[0])       # the training prompt, up to the answer
    scores = score_choices(model, prompts, choice_token_ids(tokenizer, class_texts, prompt))   # (B, C) log-lik
    texts = generate_answers(model, prompts, tokenizer)              # greedy answers
    match_answer(texts[0], class_texts)                              # -> class index or None

Both readings ask exactly what training taught: the prompt comes from the training collator (same template, frame
size, temporal positions) cut where the answer starts, and a class's continuation is its answer text followed by
`<|im_end|>`, the tokens the training labels cover. `EvalArguments` (at the end) are the arguments of
`recipes/eval_qwen.py`.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import os
import re
import string
from dataclasses import dataclass, field

import torch

from compressa_hf.qwen.collator import IGNORE_INDEX
from compressa_hf.qwen.compress.config import TokenCompressorArguments
from compressa_hf.qwen.data_args import VideoDataArguments
from compressa_hf.qwen.packing import unwrap

logger = logging.getLogger(__name__)


# -- inputs --------------------------------------------------------------------------------------------------------


def with_answer(sample: dict, answer: str) -> dict:
    """The sample with its assistant turn replaced by `answer` (frames shared, not copied)."""
    messages = [m for m in sample["messages"] if m["role"] != "assistant"]
    messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return sample | {"messages": messages, "answer": answer}


def prompt_inputs(collator, samples: list[dict], placeholder_answer: str) -> dict:
    """Model inputs for the prompts of `samples`: everything before the answer, left-padded, video included.

    Every sample is collated with the same answer, so with left padding the answers start at one position; cutting
    there leaves the prompt ending in `<|im_start|>assistant\\n`, as the chat template's generation prompt does.
    """
    if collator.padding_side != "left":
        raise ValueError("prompt_inputs needs a collator with padding_side='left'")
    batch = collator([with_answer(s, placeholder_answer) for s in samples])
    answer = batch.pop("labels") != IGNORE_INDEX
    starts = answer.int().argmax(1)
    if not bool(answer.any(1).all()) or not bool((starts == starts[0]).all()):
        raise RuntimeError(f"answers start at different positions {starts.tolist()}; expected one position")
    start = int(starts[0])
    for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
        batch[key] = batch[key][:, :start]
    return batch


def choice_token_ids(tokenizer, class_texts: list[str], prompt) -> list[list[int]]:
    """Token ids of each class's answer followed by `<|im_end|>`: what the training labels cover."""
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return [tokenizer(prompt.format_answer(t), add_special_tokens=False)["input_ids"] + [im_end] for t in class_texts]


def _qwen_inner(model):
    """The `Qwen2_5_VLModel` inside a (PEFT-wrapped) `Qwen2_5_VLForConditionalGeneration`."""
    return unwrap(model).model


def _cache_keyword(model) -> str:
    """The forward's name for the KV cache: `cache` since transformers renamed `past_key_values` (5.25 warns on the
    old name; it goes in 5.40), `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(unwrap(model).forward).parameters else "past_key_values"


# -- constrained scoring -------------------------------------------------------------------------------------------


@torch.no_grad()
def score_choices(model, inputs: dict, choices: list[list[int]], choice_batch_size: int = 128) -> torch.Tensor:
    """Summed log-likelihood of every choice continuation after every prompt: a (B, C) float tensor.

    The prompt (video included) runs once; its key/value cache is repeated for the choices, which run in batches of
    `choice_batch_size` from the prompt's last position on. Qwen2.5-VL puts text after a video at 1D positions that
    continue from the largest 3D position of the prompt, so the choices' positions are given explicitly.
    """
    device = next(model.parameters()).device
    inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
    mask = inputs["attention_mask"]
    position_ids, _ = _qwen_inner(model).get_rope_index(
        inputs["input_ids"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
        video_grid_thw=inputs.get("video_grid_thw"),
        image_grid_thw=inputs.get("image_grid_thw"),
        second_per_grid_ts=inputs.get("second_per_grid_ts"),
        attention_mask=mask,
    )
    next_position = position_ids.masked_fill(mask[None] == 0, -1).amax(dim=(0, 2)) + 1  # (B,)
    out = model(**inputs, position_ids=position_ids, use_cache=True, logits_to_keep=1)
    first = out.logits[:, -1].float().log_softmax(-1)  # (B, V): the first answer token
    cache_keyword = _cache_keyword(model)
    prefix = out[cache_keyword]

    b = mask.shape[0]
    scores = torch.zeros(b, len(choices), device=device)
    for lo in range(0, len(choices), choice_batch_size):
        chunk = choices[lo : lo + choice_batch_size]
        c, width = len(chunk), max(map(len, chunk))
        tokens = torch.zeros(c, width, dtype=torch.long, device=device)
        valid = torch.zeros(c, width, dtype=torch.bool, device=device)
        for i, ids in enumerate(chunk):
            tokens[i, : len(ids)] = torch.tensor(ids, device=device)
            valid[i, : len(ids)] = True
        chunk_scores = first[:, tokens[:, 0]]  # (B, c)
        if width > 1:
            cache = copy.deepcopy(prefix)
            # every prompt row repeated for the c choices; `reorder_cache` (beam search's) covers every layer type,
            # where `batch_repeat_interleave` is missing on Qwen3.5's linear-attention cache layers (transformers 5.25)
            cache.reorder_cache(torch.arange(b, device=device).repeat_interleave(c))
            steps = width - 1
            rows = torch.arange(steps, device=device)
            positions = (next_position.repeat_interleave(c)[:, None] + rows).unsqueeze(0).expand(3, -1, -1)
            logits = model(
                input_ids=tokens[:, :-1].repeat(b, 1),
                attention_mask=torch.cat([mask.repeat_interleave(c, 0), valid[:, :-1].repeat(b, 1).long()], 1),
                position_ids=positions,
                use_cache=True,
                **{cache_keyword: cache},
            ).logits
            logp = logits.float().log_softmax(-1).gather(-1, tokens[:, 1:].repeat(b, 1)[..., None]).squeeze(-1)
            rest = (logp * valid[:, 1:].repeat(b, 1)).sum(-1).view(b, c)
            chunk_scores = chunk_scores + rest
        scores[:, lo : lo + c] = chunk_scores
    return scores


def choose(scores: torch.Tensor, choices: list[list[int]], length_normalize: bool = False) -> list[int]:
    """The best choice per row; `length_normalize` ranks by mean token log-likelihood instead of the sum."""
    if length_normalize:
        scores = scores / torch.tensor([len(c) for c in choices], device=scores.device, dtype=scores.dtype)
    return scores.argmax(-1).tolist()


# -- free generation -----------------------------------------------------------------------------------------------


@torch.no_grad()
def generate_answers(model, inputs: dict, tokenizer, max_new_tokens: int = 16) -> list[str]:
    """Greedy answers to left-padded prompts, decoded without special tokens."""
    device = next(model.parameters()).device
    inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    out = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=im_end,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else im_end,
    )
    return tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


_PUNCTUATION = str.maketrans(dict.fromkeys(set(string.punctuation) - set("[]"), " "))
_ARTICLES = re.compile(r"^(?:the|a|an)\s+")


def normalize_answer(text: str) -> str:
    """Lower case, punctuation (but SSv2's brackets) to spaces, `_` / `-` splits, leading article dropped."""
    from compressa_hf.qwen.prompts import humanize_class_name

    text = humanize_class_name(text.strip()).translate(_PUNCTUATION)
    return _ARTICLES.sub("", re.sub(r"\s+", " ", text).strip())


def match_answer(text: str, class_texts: list[str]) -> int | None:
    """The class a generated answer names, or None.

    An exact match after `normalize_answer` wins; otherwise the class names found in the answer as whole words, when
    one of them contains all the others ("ride horse" over "ride"); otherwise None (counted wrong).
    """
    answer = normalize_answer(text)
    names = [normalize_answer(t) for t in class_texts]
    if answer in names:
        return names.index(answer)
    found = [i for i, n in enumerate(names) if n and re.search(rf"(?<!\w){re.escape(n)}(?!\w)", answer)]
    if not found:
        return None
    longest = max(found, key=lambda i: len(names[i]))
    return longest if all(names[i] in names[longest] for i in found) else None


# -- one batch of test clips ---------------------------------------------------------------------------------------


def evaluate_batch(
    model,
    collator,
    samples: list[tuple[int, dict | None]],
    class_texts: list[str],
    prompt,
    choices: list[list[int]],
    methods: list[str],
    choice_batch_size: int = 128,
    length_normalize: bool = False,
    max_new_tokens: int = 16,
) -> list[dict]:
    """Records for `(index, sample)` pairs: both readings of one forward batch, and unreadable clips (None) skipped.

    One record per pair: `{"index", "skipped": True}` for a None sample, else `index`, `video_id`, `label` and, per
    method, `loglik_pred` + `loglik_scores` and / or `generated` + `generate_pred`. `recipes/eval_qwen.py` calls it
    on each process's share of the test split; `bench/gpu/eval_loglik.py` times it.
    """
    records = [{"index": i, "skipped": True} for i, s in samples if s is None]  # counted, reported, not scored
    samples = [(i, s) for i, s in samples if s is not None]
    if not samples:
        return records
    inputs = prompt_inputs(collator, [s for _, s in samples], prompt.format_answer(class_texts[0]))
    rows = [{"index": i, "video_id": s["video_id"], "label": s["label"]} for i, s in samples]
    if "loglik" in methods:
        scores = score_choices(model, inputs, choices, choice_batch_size)
        for row, pred, s in zip(rows, choose(scores, choices, length_normalize), scores.tolist()):
            row |= {"loglik_pred": pred, "loglik_scores": [round(x, 4) for x in s]}
    if "generate" in methods:
        texts = generate_answers(model, inputs, collator.processor.tokenizer, max_new_tokens)
        for row, text in zip(rows, texts):
            row |= {"generated": text, "generate_pred": match_answer(text, class_texts)}
    return records + rows


# -- results -------------------------------------------------------------------------------------------------------


def summarize(records: list[dict], methods: list[str]) -> dict:
    """Accuracy per method over the readable test clips, its standard error, unreadable clips, unmatched answers."""
    scored = [r for r in records if not r.get("skipped")]
    n = len(scored)
    out = {"num_samples": n, "num_skipped": len(records) - n}
    for method in methods:
        acc = sum(r[f"{method}_pred"] == r["label"] for r in scored) / n if n else float("nan")
        out[f"accuracy_{method}"] = acc
        out[f"stderr_{method}"] = math.sqrt(acc * (1 - acc) / n) if n else float("nan")
    if "generate" in methods and n:
        out["unmatched_generate"] = sum(r["generate_pred"] is None for r in scored) / n
    return out


def results_markdown(results: dict) -> str:
    """A one-row markdown table of an evaluation's results."""
    cols = [("run", results["run_name"]), ("data", results["data"]), ("test videos", results["num_samples"])]
    for method in results["methods"]:
        acc, se = results[f"accuracy_{method}"], results[f"stderr_{method}"]
        cols.append((f"accuracy ({method})", f"{100 * acc:.2f} +- {100 * se:.2f}"))
    if results.get("num_skipped"):
        cols.append(("unreadable test videos", results["num_skipped"]))
    if "unmatched_generate" in results:
        cols.append(("unmatched answers", f"{100 * results['unmatched_generate']:.1f} %"))
    return "\n".join(
        [
            "| " + " | ".join(str(k) for k, _ in cols) + " |",
            "|" + "---|" * len(cols),
            "| " + " | ".join(str(v) for _, v in cols) + " |",
            "",
        ]
    )


def write_results(output_dir: str, results: dict, records: list[dict]) -> None:
    """`results.json`, `results.md` and `predictions.jsonl` in `output_dir`."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(output_dir, "results.md"), "w") as f:
        f.write(results_markdown(results))
    with open(os.path.join(output_dir, "predictions.jsonl"), "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


# -- models --------------------------------------------------------------------------------------------------------


def load_for_eval(
    model_name_or_path: str, dtype=None, attn_implementation: str | None = None, device="cpu", token_compressor=None
):
    """(model, processor) for a base model, a fully fine-tuned one, or a LoRA adapter folder (merged into its base).

    A token compressor saved with the run (`<folder>/token_compressor/`, `compressa_hf.qwen.compress`) is attached
    and the processor returned writes prompts for it; `token_compressor` (`compress.config.TokenCompressorArguments`) with
    `token_compressor` set replaces that choice (`none`: no compressor).
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    adapter_file = os.path.join(model_name_or_path, "adapter_config.json")
    kwargs = {"dtype": dtype, "attn_implementation": attn_implementation}
    if os.path.isfile(adapter_file):
        from peft import PeftModel

        with open(adapter_file) as f:
            base = json.load(f)["base_model_name_or_path"]
        model = AutoModelForImageTextToText.from_pretrained(base, **kwargs)
        model = PeftModel.from_pretrained(model, model_name_or_path).merge_and_unload()
        saved = ("processor_config.json", "preprocessor_config.json")  # transformers 5 / 4 processor files
        has_processor = any(os.path.isfile(os.path.join(model_name_or_path, f)) for f in saved)
        processor = AutoProcessor.from_pretrained(model_name_or_path if has_processor else base)
    else:
        model = AutoModelForImageTextToText.from_pretrained(model_name_or_path, **kwargs)
        processor = AutoProcessor.from_pretrained(model_name_or_path)
    from compressa_hf.qwen.compress.attach import with_saved_token_compressor

    processor = with_saved_token_compressor(model, processor, model_name_or_path, token_compressor)
    return model.to(device).eval(), processor


# -- the recipe's arguments (recipes/eval_qwen.py) ----------------------------------------------------------------


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
