"""The toy model: a small Qwen2.5-VL configuration and its real processor around a word-level tokenizer.

Frames are `frame_side` pixels square; with patch 14, temporal patch 2 and a 2x2 merge, a 56 px frame pair
becomes 2x2 visual tokens, one per 28 px cell. The processor resizes any input to that area, so frames are
never upscaled beyond what the model was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from transformers import (
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

from flexselect.toy.tokenizer import IM_END, IMAGE_PAD, PAD, VIDEO_PAD, VISION_END, VISION_START

# ChatML without a default system turn; a video renders as Qwen2.5-VL's vision span.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PATCH, MERGE, TEMPORAL_PATCH = 14, 2, 2


@dataclass(frozen=True)
class ToyModelConfig:
    """Sizes of the toy Qwen2.5-VL (defaults: about 1.2 M parameters, 4.6 MB in float32).

    Attributes:
        frame_side: frames are resized to this many pixels square (a multiple of 28).
        vision_hidden, vision_depth, vision_heads: the vision tower (window = the whole frame).
        hidden, layers, heads, kv_heads, intermediate: the decoder.
        mrope_section: rotary pairs given to (time, height, width); sums to hidden / heads / 2.
        rope_theta: rotary base.
        max_positions: position range; generous so that 1024-frame all-token baselines fit.
        tokens_per_second: temporal position step per second of video (Qwen2.5-VL's is 2).
        vocab_multiple: the embedding table is padded to a multiple of this.
    """

    frame_side: int = 56
    vision_hidden: int = 64
    vision_depth: int = 2
    vision_heads: int = 2
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 384
    mrope_section: tuple[int, int, int] = (4, 6, 6)
    rope_theta: float = 1e4
    max_positions: int = 32768
    tokens_per_second: int = 2
    vocab_multiple: int = 64

    def __post_init__(self) -> None:
        if self.frame_side < PATCH * MERGE or self.frame_side % (PATCH * MERGE):
            raise ValueError(f"frame_side must be a positive multiple of 28, got {self.frame_side}")
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError(
                f"hidden {self.hidden} must divide into {self.heads} heads, and heads into "
                f"{self.kv_heads} kv heads"
            )
        if 2 * sum(self.mrope_section) != self.hidden // self.heads:
            raise ValueError(
                f"mrope_section {self.mrope_section} must sum to head_dim / 2 = "
                f"{self.hidden // self.heads // 2}"
            )
        if self.vision_hidden % self.vision_heads:
            raise ValueError(f"vision_hidden {self.vision_hidden} must divide into {self.vision_heads} heads")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToyModelConfig:
        """Inverse of `to_dict`."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def build_toy_model(
    config: ToyModelConfig, tokenizer: PreTrainedTokenizerFast
) -> Qwen2_5_VLForConditionalGeneration:
    """A randomly initialised toy Qwen2.5-VL using the tokenizer's special token ids (seed torch first)."""
    ids = tokenizer.convert_tokens_to_ids
    vocab = -(-len(tokenizer) // config.vocab_multiple) * config.vocab_multiple
    hf_config = Qwen2_5_VLConfig(
        vision_config={
            "depth": config.vision_depth,
            "hidden_size": config.vision_hidden,
            "intermediate_size": 2 * config.vision_hidden,
            "num_heads": config.vision_heads,
            "patch_size": PATCH,
            "spatial_merge_size": MERGE,
            "temporal_patch_size": TEMPORAL_PATCH,
            "window_size": config.frame_side,
            "fullatt_block_indexes": [config.vision_depth - 1],
            "out_hidden_size": config.hidden,
            "tokens_per_second": config.tokens_per_second,
        },
        text_config={
            "vocab_size": vocab,
            "hidden_size": config.hidden,
            "intermediate_size": config.intermediate,
            "num_hidden_layers": config.layers,
            "num_attention_heads": config.heads,
            "num_key_value_heads": config.kv_heads,
            "max_position_embeddings": config.max_positions,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": config.rope_theta,
                "mrope_section": list(config.mrope_section),
            },
            "tie_word_embeddings": False,
            "pad_token_id": ids(PAD),
            "bos_token_id": None,
            "eos_token_id": ids(IM_END),
        },
        image_token_id=ids(IMAGE_PAD),
        video_token_id=ids(VIDEO_PAD),
        vision_start_token_id=ids(VISION_START),
        vision_end_token_id=ids(VISION_END),
        tie_word_embeddings=False,
    )
    model = Qwen2_5_VLForConditionalGeneration(hf_config)
    model.generation_config = GenerationConfig(
        eos_token_id=ids(IM_END), pad_token_id=ids(PAD), do_sample=False, max_new_tokens=4
    )
    return model


def build_toy_processor(tokenizer: PreTrainedTokenizerFast, frame_side: int) -> Qwen2_5_VLProcessor:
    """The real Qwen2.5-VL processor with min = max pixels = `frame_side`², so inputs land at that area."""
    pixels = {"shortest_edge": frame_side * frame_side, "longest_edge": frame_side * frame_side}
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=pixels),
        video_processor=Qwen2VLVideoProcessor(size=pixels, cap_pixels_per_frame=False),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
