"""A tiny toy checkpoint (random weights, real tokenizer and processor) saved once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flexselect.adapters import VideoLLMAdapter, load_adapter
from flexselect.toy.model import build_toy_model, build_toy_processor
from flexselect.toy.tokenizer import build_word_tokenizer
from streams.synth import WORDS
from tests.toy.toy_helpers import TINY


@pytest.fixture(scope="session")
def tiny_toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-toy")
    torch.manual_seed(0)
    tokenizer = build_word_tokenizer(WORDS)
    build_toy_model(TINY, tokenizer).save_pretrained(directory)
    build_toy_processor(tokenizer, TINY.frame_side).save_pretrained(directory)
    return directory


@pytest.fixture
def tiny_toy(tiny_toy_dir: Path) -> VideoLLMAdapter:
    return load_adapter(tiny_toy_dir, dtype="float32")
