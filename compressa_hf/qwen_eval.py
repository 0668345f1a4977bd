"""Deprecated: `compressa_hf.qwen_eval` moved to `compressa_hf.qwen.evaluation` (scoring) and
`compressa_hf.qwen.comparison` (the comparison table).

This path keeps working, with a `DeprecationWarning`, until the next release; import from the new modules.
"""

from compressa_hf.deprecated_paths import warn_moved
from compressa_hf.qwen.comparison import comparison_markdown, comparison_rows
from compressa_hf.qwen.evaluation import (
    choice_token_ids,
    choose,
    evaluate_batch,
    generate_answers,
    load_for_eval,
    match_answer,
    normalize_answer,
    prompt_inputs,
    results_markdown,
    score_choices,
    summarize,
    with_answer,
    write_results,
)

__all__ = [
    "choice_token_ids",
    "choose",
    "comparison_markdown",
    "comparison_rows",
    "evaluate_batch",
    "generate_answers",
    "load_for_eval",
    "match_answer",
    "normalize_answer",
    "prompt_inputs",
    "results_markdown",
    "score_choices",
    "summarize",
    "with_answer",
    "write_results",
]

warn_moved(__name__, "compressa_hf.qwen.evaluation", "compressa_hf.qwen.comparison")
