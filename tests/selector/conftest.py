"""Fixtures for the FlexSelect-Lite tests: a saved tiny Qwen2.5-VL and a tiny selector for it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flexselect.adapters import VideoLLMAdapter, load_adapter
from flexselect.lite import LiteSelector
from flexselect.tiny import save_tiny
from tests.selector.selector_helpers import tiny_selector


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("qwen2_5_vl", tmp_path_factory.mktemp("tiny") / "qwen2_5_vl", frame_side=56)


@pytest.fixture
def qwen(qwen_dir: Path) -> VideoLLMAdapter:
    return load_adapter(qwen_dir, dtype="float32")


@pytest.fixture
def selector(qwen: VideoLLMAdapter) -> LiteSelector:
    return tiny_selector(qwen)


@pytest.fixture(autouse=True)
def _one_thread():
    """These tests run tiny ops; one thread avoids stalls when the two cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
