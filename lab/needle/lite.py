"""FlexSelect-Lite as a needle-benchmark method: encode once for both models, select with the selector."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from flexselect.adapters import VideoLLMAdapter
from flexselect.config import SelectionConfig, SelectionStyle
from flexselect.lite import LiteScorer, LiteSelector, check_compatible, encode_pair
from flexselect.pipeline import AnswerResult, FlexSelectPipeline


class LiteMethod:
    """Answers through `FlexSelectPipeline` with a `LiteScorer`; the vision tower runs once per clip."""

    def __init__(
        self,
        adapter: VideoLLMAdapter,
        selector: LiteSelector,
        *,
        budget: int,
        layer: int | None,
        max_new_tokens: int,
        selection: SelectionStyle = "paper",
    ) -> None:
        check_compatible(selector, adapter)
        self.adapter = adapter
        self.selector = selector.to(adapter.device).eval()
        config = SelectionConfig.styled(selection, budget=budget, layer=layer)
        self.pipeline = FlexSelectPipeline(
            adapter, LiteScorer(self.selector), config, max_new_tokens=max_new_tokens
        )

    def answer(self, frames: np.ndarray, times: np.ndarray, question: str) -> AnswerResult:
        tokens = encode_pair(self.selector, self.adapter, frames, times)
        return self.pipeline.answer_tokens(tokens, question)


class LiteContext(Protocol):
    """What the `lite` method reads from the benchmark's context (`lab.needle.benchmark.BenchContext`)."""

    @property
    def adapter(self) -> VideoLLMAdapter: ...
    @property
    def budget(self) -> int: ...
    @property
    def layer(self) -> int | None: ...


def lite_method(
    ctx: LiteContext,
    selector_dir: str | Path,
    *,
    max_new_tokens: int = 8,
    selection: SelectionStyle = "paper",
) -> LiteMethod:
    """The benchmark's `lite` entry: the selector in `selector_dir`, with `ctx`'s model, budget and layer."""
    selector = LiteSelector.load(selector_dir, device=ctx.adapter.device)
    return LiteMethod(
        ctx.adapter,
        selector,
        budget=ctx.budget,
        layer=ctx.layer,
        max_new_tokens=max_new_tokens,
        selection=selection,
    )
