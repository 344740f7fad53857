"""Qwen vision towers: one batched attention call per layer, exact against transformers' stock sdpa path,
and several clips through one vision forward."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from flexselect.adapters import Qwen3VLAdapter, Qwen25VLAdapter, load_adapter
from flexselect.adapters.base import VideoClip
from flexselect.shapes import QWEN2_5_VL_7B_VISION
from flexselect.tiny import build_tiny, save_tiny, special_id
from flexselect.vision_attention import VARLEN_SDPA, enable_batched_vision_attention

PATCH = {"qwen2_5_vl": 14, "qwen3_vl": 16}


@contextmanager
def counting_sdpa():
    """Count calls of torch's scaled_dot_product_attention (every sdpa path ends there)."""
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    torch.nn.functional.scaled_dot_product_attention = counted
    try:
        yield calls
    finally:
        torch.nn.functional.scaled_dot_product_attention = original


def tower_outputs(model, pixels, grid):
    with torch.no_grad():
        out = model.model.get_video_features(pixels, grid)
    deep = getattr(out, "deepstack_features", None)
    return [*out.pooler_output, *(t for level in deep or [] for t in level)]


def random_video(patch: int, grids: list[tuple[int, int, int]], seed: int = 0):
    grid = torch.tensor(grids)
    rows = int(grid.prod(-1).sum())
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 3 * 2 * patch * patch, generator=g), grid


def stock_and_batched(model, pixels, grid):
    """Outputs and sdpa call counts of the stock tower, then of the same weights batched."""
    model.config.vision_config._attn_implementation = "sdpa"
    with counting_sdpa() as stock_calls:
        stock = tower_outputs(model, pixels, grid)
    assert enable_batched_vision_attention(model)
    with counting_sdpa() as batched_calls:
        batched = tower_outputs(model, pixels, grid)
    return stock, batched, len(stock_calls), len(batched_calls)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_tiny_tower_is_exact_with_one_attention_call_per_layer(family):
    model, _ = build_tiny(family)
    pixels, grid = random_video(PATCH[family], [(2, 8, 8), (4, 8, 8)])  # two videos, 6 steps
    stock, batched, stock_calls, batched_calls = stock_and_batched(model, pixels, grid)
    assert all(torch.equal(a, b) for a, b in zip(stock, batched, strict=True))
    depth = model.config.vision_config.depth
    assert batched_calls == depth
    assert stock_calls > depth


def test_unequal_windows_fall_back_to_the_stock_calls_and_stay_exact():
    model, _ = build_tiny("qwen2_5_vl")  # windows of 2x2 merged tokens; a 3x3 merged grid cuts them
    pixels, grid = random_video(14, [(2, 6, 6)])
    stock, batched, stock_calls, batched_calls = stock_and_batched(model, pixels, grid)
    assert all(torch.equal(a, b) for a, b in zip(stock, batched, strict=True))
    # block 0 windowed: 4 windows (16, 8, 8, 4 patches) per step, 2 steps; block 1 full: 2 equal steps
    assert stock_calls == 4 * 2 + 2
    assert batched_calls == 4 * 2 + 1  # the unequal windows stay per window, the equal steps batch


@pytest.mark.slow
def test_qwen2_5_vl_7b_vision_geometry_at_448_is_exact_with_one_call_per_layer():
    """The 7B tower's heads, head size, windows and full-attention layer pattern, two layers deep."""
    vision = {**QWEN2_5_VL_7B_VISION, "depth": 2, "intermediate_size": 256, "fullatt_block_indexes": [1]}
    config = Qwen2_5_VLConfig(
        vision_config=vision,
        text_config={
            "hidden_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "intermediate_size": 64,
            "vocab_size": 160,
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3]},
        },
        video_token_id=special_id("<|video_pad|>"),
    )
    config.vision_config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    pixels, grid = random_video(14, [(2, 32, 32)])  # 4 frames of 448x448: 16 windows of 64 per step
    stock, batched, stock_calls, batched_calls = stock_and_batched(model, pixels, grid)
    assert stock_calls == 16 * 2 + 2  # window layer: 16 windows x 2 steps; full layer: 2 steps
    assert batched_calls == 2
    for a, b in zip(stock, batched, strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-6)


def test_loading_an_adapter_batches_the_vision_tower_and_leaves_eager_alone(tmp_path):
    directory = save_tiny("qwen2_5_vl", tmp_path / "q")
    adapter = load_adapter(directory, dtype="float32")
    assert adapter.config.vision_config._attn_implementation == VARLEN_SDPA
    assert adapter.text_config._attn_implementation == "sdpa"
    eager, processor = build_tiny("qwen2_5_vl", attn_implementation="eager")
    Qwen25VLAdapter(eager, processor)
    assert eager.config.vision_config._attn_implementation == "eager"


def clips(n: int, side: int, frames: int = 4) -> list[VideoClip]:
    rng = np.random.default_rng(1)
    return [
        VideoClip(
            frames=rng.integers(0, 256, (frames, side, side, 3), dtype=np.uint8),
            times=100.0 * k + np.arange(frames, dtype=np.float64),
            frame_offset=frames * k,
            time_origin=0.0,
            fps=1.0,
        )
        for k in range(n)
    ]


@pytest.mark.parametrize(("family", "side"), [("qwen2_5_vl", 56), ("qwen3_vl", 64)])
def test_several_clips_encode_in_one_vision_forward_equal_to_each_alone(family, side):
    model, processor = build_tiny(family, frame_side=side)
    adapter = (Qwen25VLAdapter if family == "qwen2_5_vl" else Qwen3VLAdapter)(model, processor)
    batch = clips(5, side)
    forwards = []
    handle = model.model.visual.register_forward_hook(lambda *_: forwards.append(1))
    try:
        together = adapter.encode_prepared([adapter.prepare(c) for c in batch])
    finally:
        handle.remove()
    assert len(forwards) == 1
    for clip, tokens in zip(batch, together, strict=True):
        alone = adapter.encode(
            clip.frames, clip.times, frame_offset=clip.frame_offset, time_origin=0.0, fps=clip.fps
        )
        for field in ("frame", "time", "grid", "kind", "token_id"):
            assert torch.equal(getattr(tokens, field), getattr(alone, field)), field
        torch.testing.assert_close(tokens.embeds, alone.embeds, atol=1e-6, rtol=1e-5)
        if alone.deepstack is not None:
            torch.testing.assert_close(tokens.deepstack, alone.deepstack, atol=1e-6, rtol=1e-5)
        assert tokens.seconds_per_step == alone.seconds_per_step
