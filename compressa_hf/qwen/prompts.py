"""What the model is asked and what it should answer: prompt templates and human-readable class names."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Word boundaries inside a CamelCase name: "ApplyEyeMakeup" -> "Apply Eye Makeup", "TVShow" -> "TV Show".
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def humanize_class_name(name: str) -> str:
    """A dataset's class name as words: `ApplyEyeMakeup` -> "apply eye makeup", `brush_hair` -> "brush hair".

    CamelCase is split into words, `_` and `-` become spaces, runs of spaces collapse, everything is lower-cased.
    Other punctuation stays, so SSv2's "Putting [something] into [something]" keeps its brackets.
    """
    words = _CAMEL.sub(" ", name.strip())
    words = re.sub(r"[_\-]+", " ", words)
    return re.sub(r"\s+", " ", words).strip().lower()


@dataclass
class PromptTemplate:
    """How a labelled video becomes a question and an answer; the same for distilled and raw-video samples.

    Args:
        question: User text after the video. `{choices}` is replaced by the class names joined with
            `choice_separator`, `{num_classes}` by their count.
        answer: Assistant text; `{class_name}` is the (humanised) class name.
        system: Optional system message, with the same `{choices}` / `{num_classes}` fields as `question`. `None`
            keeps the chat template's default system turn.
        choice_separator: Joins the class names in `{choices}`.
        humanize: Pass class names through `humanize_class_name` (in the question and the answer).
        video_first: Put the video block before the question text (Qwen2.5-VL's own examples do).
    """

    question: str = "Which action happens in this video? Choose one of: {choices}. Answer with the action's name only."
    answer: str = "{class_name}"
    system: str | None = None
    choice_separator: str = ", "
    humanize: bool = True
    video_first: bool = True

    def __post_init__(self):
        if "{class_name}" not in self.answer:
            raise ValueError(f"`answer` must contain '{{class_name}}', got {self.answer!r}")
        for key in ("question", "system"):
            try:
                (getattr(self, key) or "").format(choices="", num_classes=0)
            except (KeyError, IndexError) as err:
                raise ValueError(
                    f"`{key}` may only use the fields {{choices}} and {{num_classes}}, got {getattr(self, key)!r} "
                    f"({err})"
                ) from err

    def class_texts(self, class_names: list[str]) -> list[str]:
        """The names shown to the model, in label order; raises if humanising makes two of them equal."""
        texts = [humanize_class_name(c) for c in class_names] if self.humanize else list(class_names)
        if len(set(texts)) != len(texts):
            clashes = sorted({t for t in texts if texts.count(t) > 1})
            raise ValueError(
                f"class names {clashes} become identical after humanising; pass PromptTemplate(humanize=False)"
            )
        return texts

    def format_question(self, class_texts: list[str]) -> str:
        return self.question.format(choices=self.choice_separator.join(class_texts), num_classes=len(class_texts))

    def format_answer(self, class_text: str) -> str:
        return self.answer.format(class_name=class_text)

    def format_system(self, class_texts: list[str]) -> str | None:
        """The system message for these classes, or None (the template's default system turn)."""
        if not self.system:
            return None
        return self.system.format(choices=self.choice_separator.join(class_texts), num_classes=len(class_texts))

    def messages(self, video_block: dict, question: str, answer: str | None, system: str | None = None) -> list[dict]:
        """Chat messages in the processor's content-block format; `answer=None` leaves the assistant turn out.

        `system` is the formatted system message (`format_system`); None uses `system` as it is.
        """
        text = {"type": "text", "text": question}
        content = [video_block, text] if self.video_first else [text, video_block]
        system = system if system is not None else self.system
        messages = [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
        messages.append({"role": "user", "content": content})
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return messages


#: Named prompts (`--prompt_style`): where the class list goes, the prompt's cost per sample (BENCHMARKS.md, "The
#: prompt's cost"). `choices` is the default and the one every reported number used.
PROMPT_STYLES: dict[str, PromptTemplate] = {
    # every class named in each question (the default): the model chooses among them; costs ~2-4 tokens per class
    "choices": PromptTemplate(),
    # no class list: the label space is learned from the training answers, as video classification fine-tunes
    # usually do (LLaVA-Video / Qwen-VL SFT recipes ask "What action is being performed?"); the evaluation's
    # log-likelihood reading still chooses among the classes
    "short": PromptTemplate(question="Which action happens in this video? Answer with the action's name only."),
    # the class list in a system message that is the same for every sample: a prefix that serving engines cache once
    # (vLLM's automatic prefix caching) and evaluation could share; training still pays for it in every sample
    "system_choices": PromptTemplate(
        question="Which action happens in this video?",
        system="You classify videos into one of these actions: {choices}. Answer with the action's name only.",
    ),
}
