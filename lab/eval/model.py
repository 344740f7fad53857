"""The model side of a run: load the checkpoint once, sample and encode each video once, answer prompts.

Consecutive questions about the same video (VideoMME asks three, LVBench about fifteen) reuse its frames
and visual tokens; only the most recent video is kept, so memory stays bounded by one video.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flexselect.adapters import AdapterError, VideoLLMAdapter, load_adapter
from flexselect.config import SelectionConfig
from flexselect.lite import LiteScorer, encode_pair
from flexselect.pipeline import AnswerResult, FlexSelectPipeline
from flexselect.types import VisualTokens
from lab.eval.items import ItemFailure
from lab.eval.scorers import make_scorer
from lab.eval.settings import RunSettings
from streams.errors import StreamError
from streams.sampling import probe, sample_uniform

BUDGET_FRAMES = 32  # the paper's budgets are 32 frames' (Qwen: temporal steps') worth of tokens


@dataclass
class EncodedVideo:
    """A video's sampled frame times and visual tokens, and what producing them cost."""

    path: Path
    times: np.ndarray  # (n,) seconds
    tokens: VisualTokens
    decode_ms: float
    encode_ms: float


def apply_pixel_cap(adapter: VideoLLMAdapter, max_pixels: int) -> None:
    """Cap pixels per frame the way the paper's Qwen eval does (qwen-vl-utils `max_pixels`).

    Sets the loaded video processor's `size.longest_edge` (its per-frame pixel budget, which its
    `smart_resize` honours) to `max_pixels`, lowering `shortest_edge` too if it was above.

    Raises:
        AdapterError: the family's video processor resizes to a fixed size and has no pixel budget.
    """
    processor = adapter.processor.video_processor
    size = getattr(processor, "size", None)
    longest = size.get("longest_edge") if isinstance(size, dict) else getattr(size, "longest_edge", None)
    if longest is None:
        raise AdapterError(
            f"max_pixels applies to pixel-budget processors (Qwen-VL); {type(processor).__name__} resizes "
            "to a fixed size: drop --max-pixels"
        )
    shortest = size.get("shortest_edge") if isinstance(size, dict) else size.shortest_edge
    changes: dict[str, Any] = {"longest_edge": max_pixels, "shortest_edge": min(shortest or 0, max_pixels)}
    processor.size = {**size, **changes} if isinstance(size, dict) else dataclasses.replace(size, **changes)


def default_budget(tokens: VisualTokens) -> int:
    """32 frames' worth of visual tokens (for Qwen a frame id is a temporal step of two frames)."""
    frames = len(torch.unique(tokens.frame))
    return max(1, round(BUDGET_FRAMES * len(tokens) / max(frames, 1)))


class ModelSession:
    """One loaded model with its scorer, answering benchmark prompts over sampled videos."""

    def __init__(self, adapter: VideoLLMAdapter, settings: RunSettings) -> None:
        self.adapter = adapter
        self.settings = settings
        if settings.max_pixels is not None:
            apply_pixel_cap(adapter, settings.max_pixels)
        self.scorer = make_scorer(adapter, settings)
        self._last: EncodedVideo | None = None

    @classmethod
    def load(cls, settings: RunSettings, *, device: str | None = None) -> ModelSession:
        """Load `settings.model` (hub id or directory) on `device` (default: cuda when available)."""
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype: Any = settings.dtype if settings.dtype == "auto" else getattr(torch, settings.dtype, None)
        if dtype is None:
            raise AdapterError(f"unknown dtype {settings.dtype!r}")
        return cls(load_adapter(settings.model, dtype=dtype, device=device), settings)

    def video(self, path: Path) -> tuple[EncodedVideo, bool]:
        """The sampled and encoded video, and whether it came from the cache (then it cost nothing now).

        Raises:
            ItemFailure: the file is missing or not decodable ("video"), or the model rejects it ("model").
        """
        if self._last is not None and self._last.path == path:
            return self._last, True
        self._last = None  # free the previous video's tokens before encoding the next
        start = time.perf_counter()
        try:
            n = self.settings.sampling.count(probe(path).duration_s)
            clip = sample_uniform(path, n)
        except StreamError as exc:
            raise ItemFailure("video", f"cannot read video: {exc}") from None
        decoded = time.perf_counter()
        try:
            tokens = self._encode(clip.frames, clip.times)
        except (AdapterError, ValueError, RuntimeError) as exc:
            raise ItemFailure("model", f"cannot encode video: {_first_line(exc)}") from None
        if self.adapter.device.type == "cuda":
            torch.cuda.synchronize(self.adapter.device)
        encoded = time.perf_counter()
        self._last = EncodedVideo(
            path, clip.times, tokens, (decoded - start) * 1e3, (encoded - decoded) * 1e3
        )
        return self._last, False

    def _encode(self, frames: np.ndarray, times: np.ndarray) -> VisualTokens:
        """The base model's tokens; paired with the selector's embeddings when FlexSelect-Lite scores."""
        fps = self.settings.position_fps  # the paper presets: positions as if sampled at 2 fps
        if isinstance(self.scorer, LiteScorer):
            return encode_pair(self.scorer.selector, self.adapter, frames, times, fps=fps)
        return self.adapter.encode(frames, times, fps=fps)

    def answer(self, video: EncodedVideo, prompt: str) -> AnswerResult:
        """Select visual tokens for `prompt` under the budget and generate the answer.

        Raises:
            ItemFailure: the model cannot answer (e.g. all tokens exceed its context without a scorer).
        """
        s = self.settings.selection
        config = SelectionConfig(
            budget=s.budget or default_budget(video.tokens),
            layer=s.layer,
            aggregation=s.aggregation,
            grouping=s.grouping,
            max_frames_per_group=s.max_frames_per_group,
            budget_mode=s.budget_mode,
            budget_rounding=s.budget_rounding,
        )
        pipeline = FlexSelectPipeline(
            self.adapter, self.scorer, config, max_new_tokens=self.settings.max_new_tokens
        )
        try:
            return pipeline.answer_tokens(video.tokens, prompt)
        except (AdapterError, ValueError, RuntimeError) as exc:  # RuntimeError covers CUDA out-of-memory
            raise ItemFailure("model", _first_line(exc)) from None


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
