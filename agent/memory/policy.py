"""Which retained tokens to evict when a budget is exceeded: a pure function of the retained set.

Every retained token of a stream falls in one protection tier:

    3 recent  time > head - recent_seconds                      (head: newest time ever appended)
    2 floor   among the stream's other tokens of its time bucket floor(time / bucket_seconds), one of the
              floor_tokens_per_bucket best by (retention, ref)
    1 score   everything else

Eviction removes tokens in ascending order of the key

    tier 1: (1, retention, ref)        lowest retention first
    tier 2: (2, bucket, retention, ref) floors give way oldest bucket first, lowest retention within it
    tier 3: (3, time, ref)             the recent window shrinks from its old end, staying dense

where `ref` is the byte string `"<stream>|" + "%010x%05x" % (chunk, row)`, until the stream fits its budgets
(tokens and bytes); then, over the merged order of all streams, until the memory fits the global budgets.
Budgets are therefore hard: protections only decide what goes first. The Redis backend maintains the same
order incrementally in sorted sets; the local backend evaluates these functions directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.memory.config import RetentionConfig

TIER_SCORE, TIER_FLOOR, TIER_RECENT = 1, 2, 3


@dataclass(frozen=True)
class StreamIndex:
    """The columns of one stream's retained tokens that eviction looks at.

    Attributes:
        stream_id: the stream.
        head: newest time ever appended to the stream (s).
        width: payload bytes per token (the stream's record width).
        chunk, row: (N,) int64 token identity.
        time: (N,) float64 seconds.
        retention: (N,) float32 retention scores.
    """

    stream_id: str
    head: float
    width: int
    chunk: np.ndarray
    row: np.ndarray
    time: np.ndarray
    retention: np.ndarray

    def __len__(self) -> int:
        return int(self.chunk.shape[0])


def bucket_of(time: np.ndarray, bucket_seconds: float) -> np.ndarray:
    """(N,) int64 time-bucket index of each time."""
    return np.floor(np.asarray(time, dtype=np.float64) / bucket_seconds).astype(np.int64)


def tiers(index: StreamIndex, config: RetentionConfig) -> np.ndarray:
    """(N,) int8 protection tier of each token (1 score, 2 floor, 3 recent)."""
    recent = index.time > index.head - config.recent_seconds
    tier = np.where(recent, TIER_RECENT, TIER_SCORE).astype(np.int8)
    older = np.flatnonzero(~recent)
    if config.floor_tokens_per_bucket == 0 or older.size == 0:
        return tier
    bucket = bucket_of(index.time[older], config.bucket_seconds)
    # best first within each bucket: retention, then ref, descending
    best = np.lexsort(
        (-index.row[older], -index.chunk[older], -index.retention[older].astype(np.float64), bucket)
    )
    sorted_bucket = bucket[best]
    starts = np.flatnonzero(np.r_[True, sorted_bucket[1:] != sorted_bucket[:-1]])
    rank = np.arange(older.size) - np.repeat(starts, np.diff(np.r_[starts, older.size]))
    tier[older[best[rank < config.floor_tokens_per_bucket]]] = TIER_FLOOR
    return tier


def order_keys(index: StreamIndex, config: RetentionConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tier, key1, key2) of each token; eviction goes in ascending (tier, key1, key2, ref)."""
    tier = tiers(index, config)
    score = index.retention.astype(np.float64)
    bucket = bucket_of(index.time, config.bucket_seconds).astype(np.float64)
    key1 = np.select([tier == TIER_SCORE, tier == TIER_FLOOR], [score, bucket], index.time)
    key2 = np.where(tier == TIER_FLOOR, score, 0.0)
    return tier, key1, key2


def eviction_order(index: StreamIndex, config: RetentionConfig) -> np.ndarray:
    """Positions of all of a stream's tokens, first to evict first."""
    tier, key1, key2 = order_keys(index, config)
    return np.lexsort((index.row, index.chunk, key2, key1, tier))


def stream_excess(tokens: int, width: int, config: RetentionConfig) -> int:
    """Tokens a stream holding `tokens` records of `width` bytes must lose to fit its budgets."""
    over_bytes = tokens * width - config.max_bytes_per_stream
    return max(0, tokens - config.max_tokens_per_stream, -(-over_bytes // width))


def plan_stream(index: StreamIndex, config: RetentionConfig) -> np.ndarray:
    """Positions to evict so that the stream fits its per-stream budgets."""
    excess = stream_excess(len(index), index.width, config)
    return eviction_order(index, config)[:excess] if excess else np.empty(0, dtype=np.int64)


def plan_global(indexes: Sequence[StreamIndex], config: RetentionConfig) -> dict[str, np.ndarray]:
    """Positions to evict per stream so that the memory fits its global budgets (empty dict if it does)."""
    tokens = sum(len(ix) for ix in indexes)
    total_bytes = sum(len(ix) * ix.width for ix in indexes)
    over_tokens = tokens - config.max_tokens_total
    over_bytes = total_bytes - config.max_bytes_total
    if over_tokens <= 0 and over_bytes <= 0:
        return {}
    parts = [(ix, *order_keys(ix, config)) for ix in indexes if len(ix)]
    tier = np.concatenate([p[1] for p in parts])
    key1 = np.concatenate([p[2] for p in parts])
    key2 = np.concatenate([p[3] for p in parts])
    ref = np.concatenate([np.full(len(ix), f"{ix.stream_id}|".encode()) for ix, *_ in parts])
    chunk = np.concatenate([ix.chunk for ix, *_ in parts])
    row = np.concatenate([ix.row for ix, *_ in parts])
    owner = np.concatenate([np.full(len(ix), i) for i, (ix, *_) in enumerate(parts)])
    position = np.concatenate([np.arange(len(ix)) for ix, *_ in parts])
    order = np.lexsort((row, chunk, ref, key2, key1, tier))
    widths = np.array([ix.width for ix, *_ in parts], dtype=np.int64)
    freed = np.cumsum(widths[owner[order]])
    count = max(over_tokens, int(np.searchsorted(freed, over_bytes)) + 1 if over_bytes > 0 else 0)
    chosen = order[:count]
    return {
        ix.stream_id: np.sort(position[chosen[owner[chosen] == i]])
        for i, (ix, *_) in enumerate(parts)
        if np.any(owner[chosen] == i)
    }
