"""The eviction policy as a pure function of the retained set."""

from __future__ import annotations

import numpy as np

from agent.memory import RetentionConfig
from agent.memory.policy import (
    TIER_FLOOR,
    TIER_RECENT,
    TIER_SCORE,
    StreamIndex,
    eviction_order,
    plan_global,
    plan_stream,
    stream_excess,
    tiers,
)


def index(times: list[float], scores: list[float], *, stream: str = "s", width: int = 100) -> StreamIndex:
    n = len(times)
    return StreamIndex(
        stream_id=stream,
        head=max(times),
        width=width,
        chunk=np.zeros(n, dtype=np.int64),
        row=np.arange(n, dtype=np.int64),
        time=np.array(times, dtype=np.float64),
        retention=np.array(scores, dtype=np.float32),
    )


CONFIG = RetentionConfig(bucket_seconds=10.0, floor_tokens_per_bucket=1, recent_seconds=5.0)


def test_tokens_fall_in_recent_floor_and_score_tiers() -> None:
    ix = index([0, 1, 2, 12, 13, 26, 29], [0.1, 0.9, 0.5, 0.3, 0.2, 0.4, 0.0])
    assert tiers(ix, CONFIG).tolist() == [
        TIER_SCORE, TIER_FLOOR, TIER_SCORE, TIER_FLOOR, TIER_SCORE, TIER_RECENT, TIER_RECENT
    ]  # fmt: skip


def test_eviction_goes_by_score_then_oldest_floor_then_oldest_recent() -> None:
    ix = index([0, 1, 2, 12, 13, 26, 29], [0.1, 0.9, 0.5, 0.3, 0.2, 0.4, 0.0])
    assert eviction_order(ix, CONFIG).tolist() == [0, 4, 2, 1, 3, 5, 6]


def test_equal_scores_go_in_chunk_then_row_order() -> None:
    ix = index([0, 0, 0], [0.5, 0.5, 0.5])
    config = RetentionConfig(floor_tokens_per_bucket=0, recent_seconds=0.0)
    assert eviction_order(ix, config).tolist() == [0, 1, 2]


def test_a_stream_over_its_byte_budget_loses_enough_whole_tokens() -> None:
    config = RetentionConfig(max_tokens_per_stream=100, max_bytes_per_stream=1024)
    assert stream_excess(12, 100, config) == 2  # 1200 B -> 1000 B
    assert stream_excess(10, 100, config) == 0
    assert stream_excess(120, 1, config) == 20  # the token budget binds


def test_plan_stream_takes_the_head_of_the_eviction_order() -> None:
    config = CONFIG.model_copy(update={"max_tokens_per_stream": 4})
    ix = index([0, 1, 2, 12, 13, 26, 29], [0.1, 0.9, 0.5, 0.3, 0.2, 0.4, 0.0])
    assert plan_stream(ix, config).tolist() == [0, 4, 2]


def test_global_plan_merges_streams_and_counts_each_stream_width() -> None:
    config = RetentionConfig(
        max_tokens_total=100, max_bytes_total=1024, floor_tokens_per_bucket=0, recent_seconds=0.0
    )
    small = index([0, 1, 2, 3], [0.1, 0.2, 0.6, 0.7], stream="a", width=100)  # 400 B
    large = index([0, 1], [0.3, 0.8], stream="b", width=400)  # 800 B
    plan = plan_global([small, large], config)  # 1200 B: free 176 B in order 0.1, 0.2, (0.3)
    assert {k: v.tolist() for k, v in plan.items()} == {"a": [0, 1]}
    config_tight = config.model_copy(update={"max_bytes_total": 1000})  # free 200 B: 0.1, 0.2 suffice
    assert {k: v.tolist() for k, v in plan_global([small, large], config_tight).items()} == {"a": [0, 1]}
    config_tighter = config.model_copy(update={"max_bytes_total": 900})  # free 300 B: 0.1, 0.2, 0.3
    plan = plan_global([small, large], config_tighter)
    assert {k: v.tolist() for k, v in plan.items()} == {"a": [0, 1], "b": [0]}


def test_global_ties_are_broken_by_the_stream_name_bytes() -> None:
    config = RetentionConfig(max_tokens_total=1, floor_tokens_per_bucket=0, recent_seconds=0.0)
    plan = plan_global([index([0], [0.5], stream="ab"), index([0], [0.5], stream="abc")], config)
    assert list(plan) == ["abc"]  # b"abc|" < b"ab|" bytewise, as Redis orders members
