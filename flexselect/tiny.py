"""Tiny randomly initialised checkpoints of every supported family, for tests and CPU benchmarks.

They are built from small configs the way transformers tests its own models, with an offline byte-level
tokenizer and the families' real processor classes, and saved with `save_pretrained` so that they load
through exactly the path real checkpoints use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import pre_tokenizers
from transformers import (
    GotOcr2ImageProcessor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    InternVLVideoProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
    PreTrainedModel,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

FAMILIES = ("qwen2_5_vl", "qwen3_vl", "llava_onevision", "internvl")

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<image>",
    "<video>",
    "<img>",
    "</img>",
    "<IMG_CONTEXT>",
)
BYTE_SYMBOLS = 256
VOCAB_SIZE = BYTE_SYMBOLS + len(SPECIAL_TOKENS)


def special_id(token: str) -> int:
    """Id of a special token in the tiny tokenizer (after the 256 byte symbols)."""
    return BYTE_SYMBOLS + SPECIAL_TOKENS.index(token)


# A ChatML template in the shape the real checkpoints use; VIDEO is the family's video placeholder.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant."
    "<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'video' %}VIDEO"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
VIDEO_TEMPLATE_TEXT = {
    "qwen2_5_vl": "<|vision_start|><|video_pad|><|vision_end|>",
    "qwen3_vl": "<|vision_start|><|video_pad|><|vision_end|>",
    "llava_onevision": "<video>\n",
    "internvl": "<video>\n",
}

TEXT = {
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "pad_token_id": special_id("<|endoftext|>"),
    "bos_token_id": None,
    "eos_token_id": special_id("<|im_end|>"),
}


def build_tokenizer(named: dict[str, str] | None = None) -> Qwen2Tokenizer:
    """A byte-level Qwen2 tokenizer with no merges (every UTF-8 string round-trips) and atomic specials."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=named or {},
    )
    tokenizer.add_special_tokens(
        {"extra_special_tokens": list(SPECIAL_TOKENS)}, replace_extra_special_tokens=False
    )
    return tokenizer


def _text(num_layers: int, max_positions: int, **extra: Any) -> dict[str, Any]:
    return {**TEXT, "num_hidden_layers": num_layers, "max_position_embeddings": max_positions, **extra}


def _qwen2_5_vl(num_layers: int, max_positions: int, frame_side: int) -> tuple[PreTrainedModel, Any]:
    config = Qwen2_5_VLConfig(
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        },
        text_config=_text(
            num_layers,
            max_positions,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
        ),
        image_token_id=special_id("<|image_pad|>"),
        video_token_id=special_id("<|video_pad|>"),
        vision_start_token_id=special_id("<|vision_start|>"),
        vision_end_token_id=special_id("<|vision_end|>"),
    )
    pixels = {"shortest_edge": 28 * 28, "longest_edge": frame_side * frame_side}
    tokenizer = build_tokenizer({"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"})
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=pixels),
        video_processor=Qwen2VLVideoProcessor(size=pixels),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE.replace("VIDEO", VIDEO_TEMPLATE_TEXT["qwen2_5_vl"]),
    )
    return Qwen2_5_VLForConditionalGeneration(config), processor


def _qwen3_vl(num_layers: int, max_positions: int, frame_side: int) -> tuple[PreTrainedModel, Any]:
    config = Qwen3VLConfig(
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0, 1],
        },
        text_config=_text(
            num_layers,
            max_positions,
            head_dim=16,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 5e5,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
        ),
        image_token_id=special_id("<|image_pad|>"),
        video_token_id=special_id("<|video_pad|>"),
        vision_start_token_id=special_id("<|vision_start|>"),
        vision_end_token_id=special_id("<|vision_end|>"),
    )
    pixels = {"shortest_edge": 32 * 32, "longest_edge": frame_side * frame_side}
    tokenizer = build_tokenizer({"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"})
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=pixels, patch_size=16),
        video_processor=Qwen3VLVideoProcessor(size=pixels, patch_size=16),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE.replace("VIDEO", VIDEO_TEMPLATE_TEXT["qwen3_vl"]),
    )
    return Qwen3VLForConditionalGeneration(config), processor


def _llava_onevision(num_layers: int, max_positions: int, frame_side: int) -> tuple[PreTrainedModel, Any]:
    config = LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": frame_side,
            "patch_size": 14,
            "vision_use_head": False,
        },
        text_config={"model_type": "qwen2", **_text(num_layers, max_positions)},
        image_token_index=special_id("<image>"),
        video_token_index=special_id("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=[[frame_side, frame_side]],
    )
    size = {"height": frame_side, "width": frame_side}
    tokenizer = build_tokenizer({"image_token": "<image>", "video_token": "<video>"})
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size=size, image_grid_pinpoints=[[frame_side, frame_side]]
        ),
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        tokenizer=tokenizer,
        num_image_tokens=(frame_side // 14) ** 2,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE.replace("VIDEO", VIDEO_TEMPLATE_TEXT["llava_onevision"]),
    )
    return LlavaOnevisionForConditionalGeneration(config), processor


def _internvl(num_layers: int, max_positions: int, frame_side: int) -> tuple[PreTrainedModel, Any]:
    per_frame = (frame_side // 14 // 2) ** 2
    config = InternVLConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": frame_side,
            "patch_size": 14,
        },
        text_config={"model_type": "qwen2", **_text(num_layers, max_positions)},
        image_token_id=special_id("<IMG_CONTEXT>"),
        image_seq_length=per_frame,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    size = {"height": frame_side, "width": frame_side}
    tokenizer = build_tokenizer(
        {
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        }
    )
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=False),
        video_processor=InternVLVideoProcessor(size=size),
        tokenizer=tokenizer,
        image_seq_length=per_frame,
        chat_template=CHAT_TEMPLATE.replace("VIDEO", VIDEO_TEMPLATE_TEXT["internvl"]),
    )
    return InternVLForConditionalGeneration(config), processor


_BUILDERS = {
    "qwen2_5_vl": _qwen2_5_vl,
    "qwen3_vl": _qwen3_vl,
    "llava_onevision": _llava_onevision,
    "internvl": _internvl,
}


def build_tiny(
    family: str,
    *,
    seed: int = 0,
    num_layers: int = 4,
    max_positions: int = 4096,
    frame_side: int = 56,
    attn_implementation: str = "sdpa",
) -> tuple[PreTrainedModel, Any]:
    """A tiny random model of `family` and its processor (frames resized to `frame_side` pixels)."""
    if family not in _BUILDERS:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    torch.manual_seed(seed)
    model, processor = _BUILDERS[family](num_layers, max_positions, frame_side)
    model.set_attn_implementation(attn_implementation)
    return model.eval(), processor


def save_tiny(family: str, directory: str | Path, **kwargs: Any) -> Path:
    """Build a tiny checkpoint of `family` and `save_pretrained` it (model and processor) to `directory`."""
    model, processor = build_tiny(family, **kwargs)
    directory = Path(directory)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
