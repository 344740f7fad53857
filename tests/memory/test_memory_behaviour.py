"""The behaviour every TokenMemory backend shares: run once per backend (local, redis)."""

from __future__ import annotations

import asyncio
import random

import pytest
import torch

from agent.memory import (
    AppendStatus,
    LayoutMismatchError,
    MemoryClosedError,
    MemoryInputError,
    MemoryState,
    RetentionConfig,
)
from flexselect.lite.tokens import PairedTokens
from flexselect.types import VisualTokens
from tests.memory.memory_helpers import (
    REDIS_URL,
    MemoryFactory,
    check_consistency,
    make_paired,
    make_tokens,
    ones,
)

# Scores equal to the given attention: no normalisation, no redundancy term.
PLAIN = {"attention_norm": "none", "redundancy_weight": 0.0}


def same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def assert_same_tokens(got: VisualTokens, want: VisualTokens) -> None:
    assert same_bytes(got.embeds, want.embeds)
    for name in ("frame", "time", "grid", "kind", "token_id"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    if want.deepstack is None:
        assert got.deepstack is None
    else:
        assert got.deepstack is not None and same_bytes(got.deepstack, want.deepstack)
    assert got.seconds_per_step == want.seconds_per_step
    if isinstance(want, PairedTokens):
        assert isinstance(got, PairedTokens) and got.lite is not None and want.lite is not None
        assert same_bytes(got.lite, want.lite)
    else:
        assert not isinstance(got, PairedTokens)


@pytest.mark.parametrize(
    ("dtype", "levels"), [(torch.float32, 0), (torch.bfloat16, 0), (torch.float16, 0), (torch.bfloat16, 3)]
)
async def test_read_returns_appended_tokens_byte_identical(
    make_memory: MemoryFactory, dtype: torch.dtype, levels: int
) -> None:
    tokens = make_tokens([0, 1, 2], dim=16, dtype=dtype, levels=levels, newline=True, seconds_per_frame=0.5)
    attention = torch.rand(len(tokens))
    async with make_memory() as memory:
        result = await memory.append("cam1", tokens, attention)
        got = (await memory.read(["cam1"]))["cam1"]
    assert (result.status, result.chunk, result.kept) == (AppendStatus.STORED, 0, len(tokens))
    assert_same_tokens(got.tokens, tokens)
    assert torch.equal(got.attention, attention)
    assert torch.equal(got.chunk, torch.zeros(len(tokens), dtype=torch.int64))
    assert torch.equal(got.row, torch.arange(len(tokens)))


async def test_read_is_in_time_order_across_chunks(make_memory: MemoryFactory) -> None:
    async with make_memory() as memory:
        await memory.append("cam1", make_tokens([5, 6, 7]), ones(make_tokens([5, 6, 7])))
        await memory.append("cam1", make_tokens([0, 1, 2]), ones(make_tokens([0, 1, 2])))
        got = (await memory.read(["cam1"]))["cam1"]
    assert got.tokens.time.tolist() == [float(t) for t in (0, 1, 2, 5, 6, 7) for _ in range(4)]
    assert got.chunk.tolist() == [1] * 12 + [0] * 12


async def test_read_range_is_inclusive(make_memory: MemoryFactory) -> None:
    tokens = make_tokens(range(10))
    async with make_memory() as memory:
        await memory.append("cam1", tokens, ones(tokens))
        got = (await memory.read(["cam1"], since=3.0, until=5.0))["cam1"]
        empty = (await memory.read(["cam1"], since=20.0))["cam1"]
    assert sorted(set(got.tokens.time.tolist())) == [3.0, 4.0, 5.0]
    assert len(empty) == 0 and empty.tokens.embeds.shape == (0, 8)


async def test_read_of_several_streams_gives_one_result_per_known_stream(make_memory: MemoryFactory) -> None:
    async with make_memory() as memory:
        await memory.append("a", make_tokens([0]), ones(make_tokens([0])))
        await memory.append("b", make_tokens([0, 1]), ones(make_tokens([0, 1])))
        got = await memory.read(["a", "b", "unknown"])
    assert {k: len(v) for k, v in got.items()} == {"a": 4, "b": 8}


async def test_stats_report_sizes_and_time_range(make_memory: MemoryFactory) -> None:
    retention = RetentionConfig(bucket_seconds=2.0)
    async with make_memory(retention) as memory:
        await memory.append("cam1", make_tokens([0, 1, 2]), ones(make_tokens([0, 1, 2])))
        await memory.append("cam1", make_tokens([3]), ones(make_tokens([3])))
        stats = await memory.stats()
    cam = stats.streams["cam1"]
    width = 65 + 8 * 4
    assert (stats.state, stats.tokens, stats.bytes, stats.appended, stats.evicted) == (
        MemoryState.READY, 16, 16 * width, 16, 0
    )  # fmt: skip
    assert (cam.tokens, cam.bytes, cam.chunks, cam.appended, cam.evicted) == (16, 16 * width, 2, 16, 0)
    assert (cam.first_time, cam.last_time, cam.head_time, cam.buckets) == (0.0, 3.0, 3.0, {0: 8, 1: 8})


async def test_eviction_drops_the_lowest_retention_first(make_memory: MemoryFactory) -> None:
    retention = RetentionConfig(
        max_tokens_per_stream=6, floor_tokens_per_bucket=0, recent_seconds=0.0, **PLAIN
    )
    attention = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.8, 0.2, 0.7, 0.4, 0.05, 0.6, 0.95, 0.15])
    async with make_memory(retention) as memory:
        for i in range(3):
            chunk = make_tokens([i])
            result = await memory.append("cam1", chunk, attention[4 * i : 4 * i + 4])
            assert result.stream_tokens <= 6
        got = (await memory.read(["cam1"]))["cam1"]
    assert sorted(got.attention.tolist()) == sorted(attention.topk(6).values.tolist())


async def test_byte_budget_is_a_hard_limit(make_memory: MemoryFactory) -> None:
    retention = RetentionConfig(max_bytes_per_stream=1024, recent_seconds=0.0, floor_tokens_per_bucket=0)
    async with make_memory(retention) as memory:
        result = await memory.append("cam1", make_tokens([0, 1, 2]), ones(make_tokens([0, 1, 2])))
        stats = await memory.stats("cam1")
    assert result.stream_tokens == 1024 // 97 == stats.tokens
    assert stats.bytes <= 1024


async def test_global_budget_evicts_the_lowest_retention_over_all_streams(make_memory: MemoryFactory) -> None:
    retention = RetentionConfig(
        max_tokens_per_stream=8, max_tokens_total=10, floor_tokens_per_bucket=0, recent_seconds=0.0, **PLAIN
    )
    score_a = torch.arange(8, dtype=torch.float32) / 10
    score_b = score_a + 0.05
    async with make_memory(retention) as memory:
        await memory.append("a", make_tokens([0, 1]), score_a)
        result = await memory.append("b", make_tokens([0, 1]), score_b)
        got = await memory.read(["a", "b"])
    kept = sorted(got["a"].attention.tolist() + got["b"].attention.tolist())
    assert (result.evicted, result.total_tokens) == (6, 10)
    assert kept == sorted(torch.cat([score_a, score_b]).topk(10).values.tolist())


async def test_every_bucket_keeps_its_floor_after_heavy_eviction(make_memory: MemoryFactory) -> None:
    retention = RetentionConfig(
        max_tokens_per_stream=80, bucket_seconds=10.0, floor_tokens_per_bucket=2, recent_seconds=5.0
    )
    gen = torch.Generator().manual_seed(1)
    async with make_memory(retention) as memory:
        for start in range(0, 200, 5):
            chunk = make_tokens(range(start, start + 5), seed=7)
            await memory.append("cam1", chunk, torch.rand(len(chunk), generator=gen))
        stats = await memory.stats("cam1")
        got = (await memory.read(["cam1"]))["cam1"]
    buckets = stats.streams["cam1"].buckets
    assert stats.tokens == 80 and stats.evicted == 720
    assert sorted(buckets) == list(range(20)) and min(buckets.values()) >= 2
    recent = got.tokens.time > 199 - 5
    assert sorted(set(got.tokens.time[recent].tolist())) == [195.0, 196.0, 197.0, 198.0, 199.0]
    assert int(recent.sum()) == 20  # the recent window is dense


async def test_floors_give_way_oldest_bucket_first_when_protections_exceed_the_budget(
    make_memory: MemoryFactory,
) -> None:
    retention = RetentionConfig(
        max_tokens_per_stream=20, bucket_seconds=10.0, floor_tokens_per_bucket=4, recent_seconds=3.0
    )
    async with make_memory(retention) as memory:
        for frame in range(50):
            await memory.append("cam1", make_tokens([frame]), ones(make_tokens([frame])))
        stats = await memory.stats("cam1")
    assert stats.tokens == 20
    assert stats.streams["cam1"].buckets == {3: 4, 4: 16}  # 4 floor + 12 recent (frames 47-49)


async def test_recent_window_shrinks_from_its_old_end_when_it_alone_exceeds_the_budget(
    make_memory: MemoryFactory,
) -> None:
    retention = RetentionConfig(max_tokens_per_stream=8, recent_seconds=10.0)
    tokens = make_tokens([0, 1, 2, 3])
    async with make_memory(retention) as memory:
        result = await memory.append("cam1", tokens, torch.rand(len(tokens)))
        got = (await memory.read(["cam1"]))["cam1"]
    assert (result.kept, result.evicted) == (8, 8)
    assert got.tokens.time.tolist() == [2.0] * 4 + [3.0] * 4


async def test_a_repeated_frame_is_redundant_and_scores_lower(make_memory: MemoryFactory) -> None:
    first = make_tokens([0])
    repeat = make_tokens([1])
    repeat.embeds = first.embeds.clone()
    async with make_memory(RetentionConfig(similarity_threshold=0.9, redundancy_weight=0.5)) as memory:
        await memory.append("cam1", first, ones(first))
        await memory.append("cam1", repeat, ones(repeat))
        got = (await memory.read(["cam1"]))["cam1"]
    assert got.redundancy.tolist() == pytest.approx([0.0] * 4 + [1.0] * 4, abs=1e-5)
    assert got.retention.tolist() == pytest.approx([1.0] * 4 + [0.5] * 4, abs=1e-5)


async def test_delete_forgets_a_stream(make_memory: MemoryFactory) -> None:
    async with make_memory() as memory:
        await memory.append("a", make_tokens([0]), ones(make_tokens([0])))
        await memory.append("b", make_tokens([0, 1]), ones(make_tokens([0, 1])))
        assert await memory.delete("a") is True
        assert await memory.delete("a") is False
        assert await memory.streams() == ["b"]
        assert list(await memory.read(["a", "b"])) == ["b"]
        stats = await memory.stats()
    assert (stats.tokens, list(stats.streams)) == (8, ["b"])


async def test_a_chunk_with_another_layout_is_rejected_and_stores_nothing(make_memory: MemoryFactory) -> None:
    async with make_memory() as memory:
        await memory.append("cam1", make_tokens([0]), ones(make_tokens([0])))
        with pytest.raises(LayoutMismatchError, match="delete the stream or use another stream id"):
            await memory.append("cam1", make_tokens([1], dtype=torch.bfloat16), torch.ones(4))
        stats = await memory.stats("cam1")
    assert (stats.tokens, stats.streams["cam1"].chunks) == (4, 1)


@pytest.mark.parametrize(
    ("dtype", "levels", "lite_dtype"),
    [
        (torch.float32, 0, torch.float32),
        (torch.bfloat16, 2, torch.float32),
        (torch.float16, 0, torch.bfloat16),
    ],
)
async def test_paired_tokens_come_back_with_their_selector_rows_byte_identical_also_after_a_restart(
    make_memory: MemoryFactory, dtype: torch.dtype, levels: int, lite_dtype: torch.dtype
) -> None:
    chunks = [
        make_paired(
            frames, dim=16, dtype=dtype, levels=levels, lite_dim=6, lite_dtype=lite_dtype, newline=True
        )
        for frames in ([0, 1], [2, 3])
    ]
    async with make_memory() as memory:
        for chunk in chunks:
            await memory.append("cam1", chunk, ones(chunk))
        before = (await memory.read(["cam1"]))["cam1"]
        stats = await memory.stats("cam1")
    async with make_memory() as memory:  # local: from the snapshot; redis: a new client on the same keys
        after = (await memory.read(["cam1"]))["cam1"]
    want = PairedTokens.concat(chunks)  # type: ignore[arg-type]
    assert_same_tokens(before.tokens, want)
    assert_same_tokens(after.tokens, want)
    row = 16 * dtype.itemsize * (1 + levels) + 6 * lite_dtype.itemsize
    assert (stats.tokens, stats.bytes) == (20, 20 * (65 + row))


async def test_an_empty_read_of_a_paired_stream_gives_paired_tokens_of_the_stream_width(
    make_memory: MemoryFactory,
) -> None:
    chunk = make_paired([0], lite_dim=6)
    async with make_memory() as memory:
        await memory.append("cam1", chunk, ones(chunk))
        got = (await memory.read(["cam1"], since=5.0))["cam1"].tokens
    assert isinstance(got, PairedTokens) and got.lite is not None
    assert (len(got), tuple(got.lite.shape), tuple(got.embeds.shape)) == (0, (0, 6), (0, 8))


async def test_the_byte_budget_counts_the_selector_rows(make_memory: MemoryFactory) -> None:
    retention = RetentionConfig(max_bytes_per_stream=1024, recent_seconds=0.0, floor_tokens_per_bucket=0)
    chunk = make_paired([0, 1, 2], lite_dim=6)  # 65 + 8 * 4 + 6 * 4 = 121 bytes a token
    async with make_memory(retention) as memory:
        result = await memory.append("cam1", chunk, ones(chunk))
        stats = await memory.stats("cam1")
    assert result.stream_tokens == 1024 // 121 == stats.tokens == 8
    assert stats.bytes == 8 * 121


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (make_paired([0]), make_tokens([1])),
        (make_tokens([0]), make_paired([1])),
        (make_paired([0], lite_dim=6), make_paired([1], lite_dim=4)),
        (make_paired([0]), make_paired([1], lite_dtype=torch.bfloat16)),
    ],
    ids=["paired-then-plain", "plain-then-paired", "other-width", "other-dtype"],
)
async def test_a_stream_keeps_its_selector_layout(
    make_memory: MemoryFactory, first: VisualTokens, second: VisualTokens
) -> None:
    async with make_memory() as memory:
        await memory.append("cam1", first, ones(first))
        with pytest.raises(LayoutMismatchError, match="delete the stream or use another stream id"):
            await memory.append("cam1", second, ones(second))
        stats = await memory.stats("cam1")
        got = (await memory.read(["cam1"]))["cam1"]
    assert (stats.tokens, stats.streams["cam1"].chunks) == (4, 1)
    assert_same_tokens(got.tokens, first)


@pytest.mark.parametrize(
    ("stream_id", "attention", "message"),
    [
        ("cam:1", torch.ones(4), "stream id"),
        ("cam1", torch.ones(3), "attention has shape"),
        ("cam1", -torch.ones(4), "non-negative"),
        ("cam1", torch.tensor([1.0, float("nan"), 1.0, 1.0]), "finite"),
    ],
)
async def test_bad_input_is_rejected(
    make_memory: MemoryFactory, stream_id: str, attention: torch.Tensor, message: str
) -> None:
    async with make_memory() as memory:
        with pytest.raises(MemoryInputError, match=message):
            await memory.append(stream_id, make_tokens([0]), attention)
        assert (await memory.stats()).tokens == 0


async def test_use_before_connect_is_an_error(make_memory: MemoryFactory) -> None:
    memory = make_memory()
    with pytest.raises(MemoryClosedError):
        await memory.append("cam1", make_tokens([0]), ones(make_tokens([0])))


async def test_a_restarted_memory_finds_its_tokens_intact(make_memory: MemoryFactory) -> None:
    retention = RetentionConfig(max_tokens_per_stream=24, recent_seconds=2.0, floor_tokens_per_bucket=1)
    gen = torch.Generator().manual_seed(3)
    async with make_memory(retention) as memory:
        for start in range(0, 12, 3):
            chunk = make_tokens(range(start, start + 3), dtype=torch.bfloat16, levels=2)
            await memory.append("cam1", chunk, torch.rand(len(chunk), generator=gen))
        before = (await memory.read(["cam1"]))["cam1"]
        stats_before = await memory.stats()
    async with make_memory(retention) as memory:
        after = (await memory.read(["cam1"]))["cam1"]
        stats_after = await memory.stats()
    assert_same_tokens(after.tokens, before.tokens)
    for name in ("attention", "redundancy", "retention", "chunk", "row"):
        assert torch.equal(getattr(after, name), getattr(before, name)), name
    assert stats_after == stats_before


async def test_a_restarted_memory_compares_the_next_frame_with_the_last_retained_one(
    make_memory: MemoryFactory,
) -> None:
    first = make_tokens([0])
    async with make_memory() as memory:
        await memory.append("cam1", first, ones(first))
    repeat = make_tokens([1])
    repeat.embeds = first.embeds.clone()
    async with make_memory() as memory:
        await memory.append("cam1", repeat, ones(repeat))
        got = (await memory.read(["cam1"], since=1.0))["cam1"]
    assert got.redundancy.tolist() == pytest.approx([1.0] * 4, abs=1e-5)


@pytest.mark.slow
async def test_ten_thousand_concurrent_appends_never_exceed_the_budgets(
    make_memory: MemoryFactory, backend: str, request: pytest.FixtureRequest
) -> None:
    retention = RetentionConfig(
        max_tokens_per_stream=48, max_tokens_total=120, bucket_seconds=5.0, floor_tokens_per_bucket=2,
        recent_seconds=2.0,
    )  # fmt: skip
    streams = ["a", "b", "c"]
    memories = [make_memory(retention) for _ in range(4)]
    for memory in memories:
        await memory.connect()
    peaks = {"stream": 0, "total": 0}

    async def writer(index: int) -> None:
        rng = random.Random(index)
        memory = memories[index % len(memories)]
        for i in range(10_000 // 8):
            frame = i * 8 + index
            tokens = make_tokens([frame], rows=rng.randint(1, 3), seed=index)
            result = await memory.append(rng.choice(streams), tokens, torch.rand(len(tokens)))
            assert result.status is AppendStatus.STORED
            peaks["stream"] = max(peaks["stream"], result.stream_tokens)
            peaks["total"] = max(peaks["total"], result.total_tokens)

    await asyncio.gather(*(writer(i) for i in range(8)))
    stats = await memories[0].stats()
    assert peaks["stream"] <= 48 and peaks["total"] <= 120
    assert stats.tokens <= 120 and all(s.tokens <= 48 for s in stats.streams.values())
    assert stats.appended - stats.evicted == stats.tokens
    if backend == "redis":  # and every stored chunk is whole, every index and counter agrees
        assert check_consistency(REDIS_URL, request.getfixturevalue("redis_prefix")) == {
            sid: s.tokens for sid, s in stats.streams.items()
        }


async def test_a_lowered_budget_is_enforced_when_the_memory_reopens(make_memory: MemoryFactory) -> None:
    tokens = make_tokens(range(10))
    async with make_memory(RetentionConfig(max_tokens_per_stream=40)) as memory:
        await memory.append("cam1", tokens, ones(tokens))
    async with make_memory(RetentionConfig(max_tokens_per_stream=20, max_tokens_total=30)) as memory:
        stats = await memory.stats()
    assert (stats.tokens, stats.evicted) == (20, 20)
