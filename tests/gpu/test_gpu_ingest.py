"""Batched ingest on CUDA (`pytest -m gpu tests/gpu`): the Qwen2.5-VL-7B vision tower with one attention
call per layer against transformers' stock per-window sdpa in bf16, and chunks of several streams encoded
together against each chunk alone. Skipped without CUDA."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from agent.config import ModelSection
from agent.engine import ChunkInput, Engine
from flexselect.adapters import Qwen25VLAdapter
from flexselect.shapes import QWEN2_5_VL_7B_VISION
from flexselect.tiny import build_tiny, special_id
from flexselect.vision_attention import enable_batched_vision_attention

pytestmark = pytest.mark.gpu

BF16_RELATIVE_ERROR = 1e-2  # ||batched - stock|| / ||stock|| over the tower's output, 32 layers in bf16


@pytest.fixture(scope="module")
def ingest_cuda() -> torch.device:
    """The first CUDA device with TF32 off (float32 comparisons stay tight); skips without one."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch.device("cuda", 0)


@contextmanager
def counting_sdpa():
    calls: list[int] = []
    original = torch.nn.functional.scaled_dot_product_attention

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    torch.nn.functional.scaled_dot_product_attention = counted
    try:
        yield calls
    finally:
        torch.nn.functional.scaled_dot_product_attention = original


def test_7b_vision_tower_in_bf16_batched_equals_stock(ingest_cuda):
    config = Qwen2_5_VLConfig(
        vision_config=QWEN2_5_VL_7B_VISION,
        text_config={"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "num_key_value_heads": 1, "intermediate_size": 64, "vocab_size": 160,
                     "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3]}},
        video_token_id=special_id("<|video_pad|>"),
    )  # fmt: skip
    config.vision_config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with ingest_cuda:
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16).eval()
    grid = torch.tensor([[2, 32, 32], [2, 32, 32]], device=ingest_cuda)  # two 4-frame 448x448 chunks
    pixels = torch.randn(int(grid.prod(-1).sum()), 3 * 2 * 14 * 14, device=ingest_cuda, dtype=torch.bfloat16)
    with torch.no_grad(), counting_sdpa() as stock_calls:
        stock = torch.cat(model.model.get_video_features(pixels, grid).pooler_output).float()
    assert enable_batched_vision_attention(model)
    with torch.no_grad(), counting_sdpa() as batched_calls:
        batched = torch.cat(model.model.get_video_features(pixels, grid).pooler_output).float()
    depth = QWEN2_5_VL_7B_VISION["depth"]
    assert len(batched_calls) == depth
    assert len(stock_calls) == 28 * 16 * 4 + 4 * 4  # 28 window layers x 64 windows, 4 full x 4 steps
    error = float((batched - stock).norm() / stock.norm())
    assert error < BF16_RELATIVE_ERROR, error


def test_chunks_of_many_streams_encode_together_equal_to_each_alone(ingest_cuda):
    model, processor = build_tiny("qwen2_5_vl", frame_side=112)
    adapter = Qwen25VLAdapter(model.to(ingest_cuda), processor)
    engine = Engine(adapter, ModelSection(name="tiny"), standing_prompts=["describe the video"])
    rng = np.random.default_rng(0)
    chunks = [
        ChunkInput(f"s{k}", rng.integers(0, 256, (4, 112, 112, 3), dtype=np.uint8),
                   100.0 + np.arange(4.0), frame_offset=0, time_origin=100.0, fps=1.0)
        for k in range(6)
    ]  # fmt: skip
    prepared = [engine.prepare(c) for c in chunks]
    assert all(p.clip.inputs["pixel_values_videos"].is_pinned() for p in prepared)
    together = engine.encode_batch(prepared)
    for c, result in zip(chunks, together, strict=True):
        alone = engine.encode(c)
        assert result.tokens.embeds.device.type == "cpu"
        torch.testing.assert_close(result.tokens.embeds, alone.tokens.embeds, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(result.attention, alone.attention, atol=1e-5, rtol=1e-3)
