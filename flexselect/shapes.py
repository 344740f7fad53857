"""Full-size model shapes with random weights, for speed measurements (speed does not depend on weights).

Real checkpoints cannot be downloaded everywhere; the published configs' shapes are enough to time the
real code paths on a GPU. The tokenizer and processors are the tiny offline ones with the real geometry.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from flexselect.tiny import build_tiny, special_id

# Qwen2.5-VL-7B-Instruct (published config.json): 28 layers, 3584 wide, GQA 28/4, vocab 152064.
QWEN2_5_VL_7B_TEXT: dict[str, Any] = {
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 128000,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
}
QWEN2_5_VL_7B_VISION: dict[str, Any] = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "out_hidden_size": 3584,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
}
# Qwen2.5-0.5B: the selector's shapes (24 layers, 896 wide, GQA 14/2).
QWEN2_5_0_5B_TEXT: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 131072,
}


def qwen2_5_vl_7b(
    *,
    device: str | torch.device,
    dtype: torch.dtype = torch.bfloat16,
    frame_side: int = 448,
    max_positions: int | None = None,
) -> tuple[PreTrainedModel, Any]:
    """A random Qwen2.5-VL-7B-shaped model on `device` and a processor resizing frames to `frame_side`.

    `max_positions` raises the position limit (128,000) for timing longer sequences: rotary tables are
    computed per position, so speed does not depend on it.
    """
    text = {**QWEN2_5_VL_7B_TEXT, "eos_token_id": special_id("<|im_end|>")}
    if max_positions is not None:
        text["max_position_embeddings"] = max_positions
    config = Qwen2_5_VLConfig(
        vision_config=QWEN2_5_VL_7B_VISION,
        text_config=text,
        image_token_id=special_id("<|image_pad|>"),
        video_token_id=special_id("<|video_pad|>"),
        vision_start_token_id=special_id("<|vision_start|>"),
        vision_end_token_id=special_id("<|vision_end|>"),
    )
    config._attn_implementation = "sdpa"
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config).to(dtype)
    _, processor = build_tiny("qwen2_5_vl", frame_side=frame_side)
    return model.eval(), processor
