"""A question that reads from the memory only what it needs (the cached FlexSelect-Lite path).

1. On the event loop, before the model runs: `read_layout` of the asked streams, every retained row's
   metadata without embeddings (about 70 bytes a row).
2. On the worker thread: the selector caches score the rows from their metadata alone
   (`SelectorCaches.synced_scores`), and top-k keeps the budget.
3. The kept rows' embeddings are read (`read_rows`; the worker thread waits while the event loop reads).
4. The sequence is built from the layout and the kept rows (`build_sequence(kept_rows=...)`) and generated.

The bytes a question reads thus grow with its budget, not with the memory. When scoring needs the selector
rows (a cache rebuild, or fresh passes past the cache's byte budget), or a kept row was evicted between
steps 1 and 3, the question reads every retained token (`read`) and answers through `Engine.answer`, as
the full-read path always did: the same answer, more bytes. `KeptRowsStats` counts each way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from agent.engine import Engine, EngineAnswer, check_paired, merge_streams, stream_evidence
from agent.memory.base import RetainedLayout, TokenMemory
from agent.memory.errors import RowsGoneError
from flexselect.budget import top_k
from flexselect.types import VisualTokens

_T = TypeVar("_T")


@dataclass
class KeptRowsStats:
    """How the questions of the cached Lite path read the memory (for tests and diagnostics)."""

    kept: int = 0  # answered from the layout and the kept rows only
    rebuilt: int = 0  # read everything: scoring needed the selector rows (cache rebuild, fresh passes)
    gone: int = 0  # read everything: a kept row was evicted between the layout read and the rows read


class QuestionReads:
    """The memory reads of one question, made from the worker thread: each runs on the event loop that
    owns the memory while the worker thread waits (at most `timeout_s`).

    Args:
        memory: the token memory.
        loop: the event loop the memory belongs to (not the calling thread's).
        stream_ids / since / until: what the question asks for.
        timeout_s: the longest a read may take.
    """

    def __init__(
        self,
        memory: TokenMemory,
        loop: asyncio.AbstractEventLoop,
        stream_ids: Sequence[str],
        since: float | None,
        until: float | None,
        timeout_s: float,
    ) -> None:
        self.memory = memory
        self.loop = loop
        self.stream_ids = list(stream_ids)
        self.since = since
        self.until = until
        self.timeout_s = timeout_s

    def _wait(self, coro: Coroutine[Any, Any, _T]) -> _T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            coro.close()
            raise RuntimeError("QuestionReads waits on the memory's event loop: call it from another thread")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(self.timeout_s)

    def rows(self, wanted: list[tuple[RetainedLayout, torch.Tensor]]) -> list[VisualTokens]:
        """The rows `index` of each `(layout, index)` in full (`TokenMemory.read_rows`).

        Raises:
            RowsGoneError: a row was evicted since its layout was read.
        """

        async def read() -> list[VisualTokens]:
            return [await self.memory.read_rows(layout, index) for layout, index in wanted]

        return self._wait(read())

    def full(self) -> list[tuple[str, VisualTokens]]:
        """Every retained token of the asked streams that hold any (`TokenMemory.read`).

        Raises:
            RowsGoneError: none of the asked streams holds tokens any more.
        """
        retained = self._wait(self.memory.read(self.stream_ids, since=self.since, until=self.until))
        parts = [(s, retained[s].tokens) for s in self.stream_ids if s in retained and len(retained[s])]
        if not parts:
            raise RowsGoneError(f"streams {self.stream_ids} hold no tokens any more")
        return parts


def answer_kept(
    engine: Engine,
    question: str,
    layouts: list[tuple[str, RetainedLayout]],
    budget: int | None,
    reads: QuestionReads,
    stats: KeptRowsStats,
) -> EngineAnswer:
    """`Engine.answer` over the rows of `layouts` (non-empty streams, in the given order), reading the
    embeddings of only the kept rows; the same answer, evidence and positions (worker thread only).

    Raises:
        SelectorError: a stream's tokens were stored without selector embeddings.
        ValueError: the engine scores without selector caches (`model.scorer` is not `lite`).
    """
    caches = engine.caches
    if caches is None:
        raise ValueError("answer_kept needs the selector caches of model.scorer: lite")
    check_paired([sid for sid, layout in layouts if not layout.selector_rows])
    merged, stream_index = merge_streams([layout.tokens for _, layout in layouts])
    config = engine.selection(budget)
    prompt = engine.adapter.prompt(question)
    start = engine._now()
    parts: list[torch.Tensor] = []
    for stream_id, layout in layouts:
        scored = caches.synced_scores(stream_id, layout.tokens, prompt)
        if scored is None:
            stats.rebuilt += 1
            return engine.answer(question, reads.full(), budget)
        parts.append(scored)
    scores = torch.cat(parts)
    keep = top_k(scores, [torch.arange(len(scores))], config.budget, "global")
    keep = keep.cpu()  # the one read back to the host
    select_ms = (engine._now() - start) * 1e3
    engine.check_positions(prompt, merged, keep)
    started = time.perf_counter()
    first = torch.cumsum(torch.tensor([0] + [len(layout) for _, layout in layouts[:-1]]), 0)
    owner = stream_index[keep]
    wanted = [
        (layout, keep[owner == i] - first[i])
        for i, (_, layout) in enumerate(layouts)
        if bool((owner == i).any())
    ]
    try:
        rows = reads.rows(wanted)
    except RowsGoneError:
        stats.gone += 1
        return engine.answer(question, reads.full(), budget)
    read_ms = (time.perf_counter() - started) * 1e3
    seq = engine.adapter.build_sequence(prompt, merged, keep, kept_rows=VisualTokens.concat(rows))
    generated, ranked = engine.generate_ranked(seq, prompt, config)  # the evidence order of every path
    stats.kept += 1
    return EngineAnswer(
        text=generated.text,
        evidence=stream_evidence([sid for sid, _ in layouts], merged, stream_index, keep, ranked, config),
        retained_tokens=len(merged),
        used_tokens=len(keep),
        timings_ms={"select": select_ms, "read_rows": read_ms, **generated.timings_ms},
    )
