"""Model adapters: one file per video-LLM family behind `VideoLLMAdapter`, and `load_adapter`."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig

from flexselect.adapters.base import AdapterError, LayerInput, VideoLLMAdapter
from flexselect.adapters.internvl import InternVLAdapter
from flexselect.adapters.llava_onevision import LlavaOnevisionAdapter
from flexselect.adapters.qwen2_5_vl import Qwen25VLAdapter
from flexselect.adapters.qwen3_vl import Qwen3VLAdapter

ADAPTERS: tuple[type[VideoLLMAdapter], ...] = (
    Qwen25VLAdapter,
    Qwen3VLAdapter,
    LlavaOnevisionAdapter,
    InternVLAdapter,
)

__all__ = [
    "ADAPTERS",
    "AdapterError",
    "InternVLAdapter",
    "LayerInput",
    "LlavaOnevisionAdapter",
    "Qwen3VLAdapter",
    "Qwen25VLAdapter",
    "VideoLLMAdapter",
    "adapter_for_model_type",
    "load_adapter",
]


def adapter_for_model_type(model_type: str) -> type[VideoLLMAdapter]:
    """The adapter class that handles a transformers `model_type`."""
    for cls in ADAPTERS:
        if model_type in cls.model_types:
            return cls
    known = ", ".join(t for cls in ADAPTERS for t in cls.model_types)
    raise AdapterError(f"unsupported model type {model_type!r}; supported: {known}")


def load_adapter(
    name_or_path: str | Path,
    *,
    dtype: torch.dtype | str = "auto",
    device: str | torch.device = "cpu",
    attn_implementation: str | None = None,
) -> VideoLLMAdapter:
    """Load any supported checkpoint (hub id or local directory) with the adapter for its family."""
    try:
        config = AutoConfig.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"cannot load a model config from {str(name_or_path)!r}: {exc}") from exc
    cls = adapter_for_model_type(config.model_type)
    return cls.load(name_or_path, dtype=dtype, device=device, attn_implementation=attn_implementation)
