"""Tiny base models, selectors and clips for the FlexSelect-Lite tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from flexselect.adapters import VideoLLMAdapter, adapter_for_model_type
from flexselect.lite import TINY, LiteSelector, PairedTokens, encode_pair
from flexselect.tiny import build_tiny

FRAME_SIDE = {"qwen2_5_vl": 56, "qwen3_vl": 64, "llava_onevision": 56, "internvl": 56}
QUESTION = "what color was the square ?"


def tiny_adapter(family: str, frame_side: int | None = None) -> VideoLLMAdapter:
    """A tiny random base model of `family` (built in memory)."""
    model, processor = build_tiny(family, frame_side=frame_side or FRAME_SIDE[family])
    return adapter_for_model_type(model.config.model_type)(model, processor)


def tiny_selector(adapter: VideoLLMAdapter, *, seed: int = 0, **shape: int) -> LiteSelector:
    """A tiny selector for `adapter` (M-RoPE for the Qwen families, 1-D RoPE otherwise)."""
    torch.manual_seed(seed)
    decoder = TINY if adapter.mrope else replace(TINY, mrope_section=None)
    return LiteSelector.for_adapter(adapter, replace(decoder, **shape)).eval()


def frames_for(family: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    side = FRAME_SIDE[family]
    frames = (np.random.default_rng(seed).random((n, side, side, 3)) * 255).astype(np.uint8)
    return frames, np.arange(n) / 2.0


def paired(selector: LiteSelector, adapter: VideoLLMAdapter, n_frames: int, seed: int = 0) -> PairedTokens:
    frames, times = frames_for(adapter.family, n_frames, seed)
    return encode_pair(selector, adapter, frames, times)


def frame_chunks(tokens: PairedTokens, frames_per_chunk: int) -> list[PairedTokens]:
    """Consecutive chunks of whole frames, as a stream delivers them."""
    ids = torch.unique(tokens.frame)
    return [
        tokens.select(torch.isin(tokens.frame, ids[i : i + frames_per_chunk]))
        for i in range(0, len(ids), frames_per_chunk)
    ]


@contextmanager
def counting(module: nn.Module) -> Iterator[list[int]]:
    """Count the forwards `module` enters inside the block (a pre-hook on the real module)."""
    calls = [0]

    def count(*_: object) -> None:
        calls[0] += 1

    handle = module.register_forward_pre_hook(count)
    try:
        yield calls
    finally:
        handle.remove()
