"""Evidence pictures of the running agent: thumbnails made at ingest, swept with the tokens, named in answers.

Ingest hands each stored chunk's frames to `Pictures.record`: the first frame of every temporal patch (the
frame whose time the patch's tokens carry) becomes a JPEG in a worker thread, never on the model's thread.
Every `sweep_every_chunks` chunks (of any stream) every stream's pictures are matched against the times its
retained tokens still carry and the rest are dropped, so the pictures are evicted in step with the tokens,
also where one stream's appends evict another's tokens under the global budget.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch

from agent.evidence import Span
from agent.memory.base import TokenMemory
from agent.memory.config import PicturesConfig
from agent.memory.errors import TokenMemoryError
from agent.memory.thumbnails import (
    PictureStore,
    PicturesUnavailableError,
    encode_jpeg,
    frame_key,
    nearest_key,
)

logger = logging.getLogger(__name__)


@dataclass
class PictureCounters:
    """What the picture keeper did since start (read by the metrics at scrape time)."""

    stored: int = 0
    swept: int = 0
    errors: int = 0
    chunks: int = 0


class Pictures:
    """Makes, keeps and names the evidence pictures of every stream."""

    def __init__(self, store: PictureStore, memory: TokenMemory, config: PicturesConfig) -> None:
        self.store = store
        self.memory = memory
        self.config = config
        self.counters = PictureCounters()
        self._base_url = ""

    def set_base_url(self, base_url: str) -> None:
        """Where the HTTP API serves pictures (e.g. `http://10.0.0.5:9410`); '' leaves URLs relative."""
        self._base_url = base_url.rstrip("/")

    def url(self, stream_id: str, key: int) -> str:
        """The HTTP URL of one picture."""
        return f"{self._base_url}/api/v1/streams/{stream_id}/pictures/{key}.jpg"

    async def record(
        self, stream_id: str, frames: np.ndarray, times: np.ndarray, temporal_patch: int
    ) -> None:
        """Store a thumbnail of each temporal patch's first frame; sweep evicted ones when due."""
        step = max(1, temporal_patch)
        picked, stamps = frames[::step], times[::step]
        config = self.config
        try:
            jpegs = await asyncio.to_thread(
                lambda: [encode_jpeg(f, max_side=config.max_side, quality=config.quality) for f in picked]
            )
            await self.store.put(
                stream_id, [(frame_key(float(t)), j) for t, j in zip(stamps, jpegs, strict=True)]
            )
            self.counters.stored += len(jpegs)
            self.counters.chunks += 1
            if self.counters.chunks % config.sweep_every_chunks == 0:
                for stream in await self.store.streams():
                    await self.sweep(stream)
        except (PicturesUnavailableError, TokenMemoryError, OSError, ValueError) as exc:
            self.counters.errors += 1
            logger.warning("stream %s: evidence pictures not stored: %s", stream_id, exc)

    async def sweep(self, stream_id: str) -> int:
        """Drop the stream's pictures whose frame no longer has a retained token; returns how many."""
        retained = await self.memory.read_layout([stream_id])  # times only: no embeddings read
        keep: set[int] = set()
        if stream_id in retained:
            times = torch.unique(retained[stream_id].tokens.time).tolist()
            keep = {frame_key(t) for t in times}
        dropped = await self.store.keep_only(stream_id, keep)
        self.counters.swept += dropped
        return dropped

    async def best_key(self, evidence: Span) -> int | None:
        """The picture that shows an evidence span: the stored frame nearest the span's middle."""
        return await nearest_key(
            self.store, evidence.stream, evidence.start.timestamp(), evidence.end.timestamp()
        )

    async def named(self, evidence: list[Span]) -> tuple[list[Span], list[tuple[str, bytes]]]:
        """The evidence with picture URLs filled in, and (stream, JPEG) of the first pictured span."""
        out: list[Span] = []
        best: list[tuple[str, bytes]] = []
        for item in evidence:
            try:
                key = await self.best_key(item)
                jpeg = None if key is None or best else await self.store.get(item.stream, key)
            except PicturesUnavailableError as exc:
                logger.warning("evidence picture of %s unavailable: %s", item.stream, exc)
                key, jpeg = None, None
            if jpeg is not None:
                best.append((item.stream, jpeg))
            out.append(item if key is None else dataclasses.replace(item, picture=self.url(item.stream, key)))
        return out, best
