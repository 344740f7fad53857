"""Tiny checkpoints of every family, saved once per session and loaded the way real ones are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from transformers.video_utils import VideoMetadata

from flexselect.adapters import VideoLLMAdapter, adapter_for_model_type, load_adapter
from flexselect.tiny import FAMILIES, build_tiny, save_tiny

FRAME_SIDE = {"qwen2_5_vl": 56, "qwen3_vl": 64, "llava_onevision": 56, "internvl": 56}
QUESTION = "what color was the square that crossed the left side?"


@dataclass
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    times: np.ndarray  # (T,) seconds
    fps: float

    def metadata(self) -> VideoMetadata:
        n, h, w, _ = self.frames.shape
        return VideoMetadata(
            total_num_frames=n,
            fps=self.fps,
            width=w,
            height=h,
            duration=n / self.fps,
            frames_indices=list(range(n)),
        )


def make_clip(family: str, n_frames: int = 8, fps: float = 2.0, seed: int = 0) -> Clip:
    side = FRAME_SIDE[family]
    frames = (np.random.default_rng(seed).random((n_frames, side, side, 3)) * 255).astype(np.uint8)
    return Clip(frames=frames, times=np.arange(n_frames) / fps, fps=fps)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {f: save_tiny(f, root / f, frame_side=FRAME_SIDE[f]) for f in FAMILIES}


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def adapter(family: str, tiny_dirs: dict[str, Path]) -> VideoLLMAdapter:
    return load_adapter(tiny_dirs[family], dtype="float32")


@pytest.fixture
def eager_adapter(family: str, adapter: VideoLLMAdapter) -> VideoLLMAdapter:
    """The same weights with eager attention, whose `output_attentions` are the ground truth."""
    model, _ = build_tiny(family, frame_side=FRAME_SIDE[family], attn_implementation="eager")
    model.load_state_dict(adapter.model.state_dict())
    return adapter_for_model_type(model.config.model_type)(model, adapter.processor)


@pytest.fixture
def clip(family: str) -> Clip:
    return make_clip(family)
