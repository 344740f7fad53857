"""FlexSelect-Lite as a needle-benchmark method: encode once for both models, select with the selector."""

from __future__ import annotations

from pathlib import Path

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


def lite_method(
    ctx: object, selector_dir: str | Path, *, max_new_tokens: int = 8, selection: SelectionStyle = "paper"
) -> LiteMethod:
    """The benchmark's `lite` entry: `ctx` is `agent.toy.bench.BenchContext` (adapter, budget, layer)."""
    selector = LiteSelector.load(selector_dir, device=ctx.adapter.device)  # type: ignore[attr-defined]
    return LiteMethod(
        ctx.adapter,  # type: ignore[attr-defined]
        selector,
        budget=ctx.budget,  # type: ignore[attr-defined]
        layer=ctx.layer,  # type: ignore[attr-defined]
        max_new_tokens=max_new_tokens,
        selection=selection,
    )
