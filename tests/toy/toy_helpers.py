"""Shared settings of the toy tests."""

from __future__ import annotations

from flexselect.toy.model import ToyModelConfig

# Small enough that a training step takes milliseconds.
TINY = ToyModelConfig(
    vision_hidden=16, hidden=32, layers=3, heads=2, kv_heads=1, intermediate=64, mrope_section=(2, 3, 3)
)
