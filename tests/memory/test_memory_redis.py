"""Redis-only behaviour: persistence across server restarts, cross-process atomicity, corrupt and foreign
keys, outages, shared-config checks. Every test talks to a real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import torch

from agent.memory import (
    AppendStatus,
    ConfigMismatchError,
    CorruptEntryError,
    MemoryConfig,
    MemoryState,
    MemoryUnavailableError,
    RedisConfig,
    RetentionConfig,
    open_memory,
)
from agent.memory.redis import RedisTokenMemory, client_kwargs
from tests.memory.memory_helpers import (
    REDIS_URL,
    RedisServer,
    check_consistency,
    free_port,
    make_tokens,
    ones,
)

pytestmark = pytest.mark.services
REPO = Path(__file__).resolve().parents[2]
FAST_RETRY = {"retry_initial_s": 0.05, "retry_max_s": 0.2, "connect_timeout_s": 1.0, "op_timeout_s": 5.0}


def memory_at(
    url: str, prefix: str, retention: RetentionConfig | None = None, *, compact: float = 0.25, **link: object
) -> RedisTokenMemory:
    redis_config = RedisConfig(url=url, key_prefix=prefix, **link)  # type: ignore[arg-type]
    retention = retention or RetentionConfig()
    config = MemoryConfig(backend="redis", retention=retention, redis=redis_config, compact_fraction=compact)
    memory = open_memory(config)
    assert isinstance(memory, RedisTokenMemory)
    return memory


@pytest.mark.parametrize("crash", [False, True], ids=["sigterm", "sigkill"])
async def test_tokens_survive_a_restart_of_the_persisted_redis_server(
    redis_server: RedisServer, crash: bool
) -> None:
    retention = RetentionConfig(max_tokens_per_stream=30, recent_seconds=2.0, floor_tokens_per_bucket=2)
    async with memory_at(redis_server.url, "agent", retention) as memory:
        for start in range(0, 12, 3):
            chunk = make_tokens(range(start, start + 3), dtype=torch.bfloat16, levels=2, newline=True)
            await memory.append("cam1", chunk, torch.rand(len(chunk)))
        before = (await memory.read(["cam1"]))["cam1"]
        stats_before = await memory.stats()
    redis_server.stop(kill=crash)
    redis_server.start()
    async with memory_at(redis_server.url, "agent", retention) as memory:
        after = (await memory.read(["cam1"]))["cam1"]
        stats_after = await memory.stats()
    assert after.tokens.embeds.view(torch.uint8).equal(before.tokens.embeds.view(torch.uint8))
    assert after.tokens.deepstack is not None and before.tokens.deepstack is not None
    assert after.tokens.deepstack.view(torch.uint8).equal(before.tokens.deepstack.view(torch.uint8))
    for name in ("frame", "time", "grid", "kind", "token_id"):
        assert torch.equal(getattr(after.tokens, name), getattr(before.tokens, name)), name
    assert torch.equal(after.retention, before.retention) and torch.equal(after.chunk, before.chunk)
    assert stats_after == stats_before and stats_after.tokens == 30
    check_consistency(redis_server.url, "agent")


@pytest.mark.slow
async def test_writers_in_several_processes_never_exceed_budgets_nor_leave_partial_chunks(
    redis_prefix: str,
) -> None:
    retention = RetentionConfig(
        max_tokens_per_stream=40, max_tokens_total=100, bucket_seconds=8.0, floor_tokens_per_bucket=2,
        recent_seconds=3.0,
    )  # fmt: skip
    observed = {"total": 0, "stream": 0}
    probe = redis.asyncio.Redis.from_url(REDIS_URL)
    stop = asyncio.Event()

    async def monitor() -> None:
        while not stop.is_set():
            async with probe.pipeline(transaction=True) as pipe:
                pipe.hget(f"{redis_prefix}:g", "tokens")
                for sid in "abc":
                    pipe.hget(f"{redis_prefix}:s:{sid}:m", "tokens")
                total, *streams = await pipe.execute()
            observed["total"] = max(observed["total"], int(total or 0))
            observed["stream"] = max([observed["stream"], *(int(s or 0) for s in streams)])
            await asyncio.sleep(0.001)

    def spawn(count: int, seed: int) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", "tests.memory.writer_process", REDIS_URL, redis_prefix]
        argv += [retention.model_dump_json(), str(count), str(seed)]
        return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True)

    watcher = asyncio.create_task(monitor())
    writers = [spawn(1500, seed) for seed in (1, 2)]
    victim = spawn(100_000, 3)
    assert victim.stdout is not None and victim.stdout.readline().strip() == "ready"
    async with memory_at(REDIS_URL, redis_prefix, retention) as memory:
        for i in range(1000):
            tokens = make_tokens([i * 16 + 4], rows=1 + i % 3, seed=4)
            await memory.append("abc"[i % 3], tokens, torch.rand(len(tokens)))
            if i == 300:
                os.kill(victim.pid, signal.SIGKILL)  # a writer dies mid-run, possibly mid-append
    outputs = [await asyncio.to_thread(w.communicate, timeout=120) for w in writers]
    victim.wait(timeout=10)
    stop.set()
    await watcher
    await probe.aclose()
    assert [w.returncode for w in writers] == [0, 0], outputs
    tokens = check_consistency(REDIS_URL, redis_prefix)
    assert observed["total"] <= 100 and observed["stream"] <= 40
    assert sum(tokens.values()) <= 100 and max(tokens.values()) <= 40


async def test_a_corrupt_chunk_is_reported_and_skipped(redis_prefix: str) -> None:
    async with memory_at(REDIS_URL, redis_prefix) as memory:
        await memory.append("cam1", make_tokens([0]), ones(make_tokens([0])))
        await memory.append("cam1", make_tokens([1]), ones(make_tokens([1])))
        raw = redis.Redis.from_url(REDIS_URL)
        key = f"{redis_prefix}:s:cam1:d:0000000000"
        raw.set(key, raw.get(key)[:-7])  # truncated bytes
        got = (await memory.read(["cam1"]))["cam1"]
        stats = await memory.stats()
    assert got.tokens.time.tolist() == [1.0] * 4
    assert stats.corrupt_entries == 1


async def test_a_stream_with_corrupt_metadata_is_skipped_and_others_still_read(redis_prefix: str) -> None:
    async with memory_at(REDIS_URL, redis_prefix) as memory:
        await memory.append("a", make_tokens([0]), ones(make_tokens([0])))
        await memory.append("b", make_tokens([0]), ones(make_tokens([0])))
        redis.Redis.from_url(REDIS_URL).hset(f"{redis_prefix}:s:a:m", "layout", "not-a-layout")
        got = await memory.read(["a", "b"])
        stats = await memory.stats()
    assert list(got) == ["b"] and len(got["b"]) == 4
    assert stats.corrupt_entries == 1


async def test_foreign_keys_under_the_prefix_are_counted_and_skipped(redis_prefix: str) -> None:
    raw = redis.Redis.from_url(REDIS_URL)
    raw.set(f"{redis_prefix}:somebody-else", b"hello")
    raw.sadd(f"{redis_prefix}:streams", "not a stream id")
    async with memory_at(REDIS_URL, redis_prefix) as memory:
        await memory.append("cam1", make_tokens([0]), ones(make_tokens([0])))
        streams = await memory.streams()
        stats = await memory.stats()
    assert streams == ["cam1"]
    assert (stats.foreign_keys, stats.tokens) == (1, 4)
    assert stats.corrupt_entries >= 1  # the foreign member of the streams set


async def test_a_foreign_type_at_a_stream_key_fails_the_append_and_writes_nothing(redis_prefix: str) -> None:
    redis.Redis.from_url(REDIS_URL).set(f"{redis_prefix}:s:cam1:r", b"not a sorted set")
    async with memory_at(REDIS_URL, redis_prefix) as memory:
        with pytest.raises(CorruptEntryError, match="foreign type"):
            await memory.append("cam1", make_tokens([0]), ones(make_tokens([0])))
        result = await memory.append("cam2", make_tokens([0]), ones(make_tokens([0])))
        stats = await memory.stats()
    assert result.status is AppendStatus.STORED
    assert (stats.tokens, sorted(stats.streams)) == (4, ["cam2"])


async def test_appends_are_buffered_while_redis_is_down_at_start_then_flushed(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, free_port())
    memory = memory_at(server.url, "agent", **FAST_RETRY)
    try:
        await memory.connect()
        assert memory.state is MemoryState.UNAVAILABLE and memory.last_error
        result = await memory.append("cam1", make_tokens([0]), ones(make_tokens([0])))
        with pytest.raises(MemoryUnavailableError, match="unavailable"):
            await memory.read(["cam1"])
        waiting = await memory.stats()
        server.start()
        assert await memory.wait_ready(10.0)
        got = (await memory.read(["cam1"]))["cam1"]
    finally:
        await memory.close()
        server.stop(kill=True)
    assert result.status is AppendStatus.PENDING
    assert (waiting.state, waiting.pending_chunks, waiting.pending_tokens) == (MemoryState.UNAVAILABLE, 1, 4)
    assert len(got) == 4


async def test_an_outage_mid_run_buffers_a_bounded_number_of_chunks_and_counts_the_dropped(
    redis_server: RedisServer,
) -> None:
    memory = memory_at(redis_server.url, "agent", max_pending_chunks=3, **FAST_RETRY)
    async with memory:
        await memory.append("cam1", make_tokens([0]), ones(make_tokens([0])))
        redis_server.stop()
        statuses = [
            (await memory.append("cam1", make_tokens([f]), ones(make_tokens([f])))).status
            for f in range(1, 6)
        ]
        during = await memory.stats()
        with pytest.raises(MemoryUnavailableError):
            await memory.streams()
        redis_server.start()
        assert await memory.wait_ready(10.0)
        got = (await memory.read(["cam1"]))["cam1"]
        after = await memory.stats()
    assert statuses == [AppendStatus.PENDING] * 5
    assert (during.state, during.pending_chunks, during.dropped_chunks, during.dropped_tokens) == (
        MemoryState.UNAVAILABLE, 3, 2, 8
    )  # fmt: skip
    assert sorted(set(got.tokens.time.tolist())) == [0.0, 3.0, 4.0, 5.0]  # frames 1 and 2 were dropped
    assert (after.state, after.pending_chunks, after.dropped_chunks) == (MemoryState.READY, 0, 2)


async def test_a_memory_built_with_other_structural_knobs_is_refused(redis_prefix: str) -> None:
    async with memory_at(REDIS_URL, redis_prefix, RetentionConfig(bucket_seconds=60.0)):
        pass
    memory = memory_at(REDIS_URL, redis_prefix, RetentionConfig(bucket_seconds=30.0))
    with pytest.raises(ConfigMismatchError, match="bucket_seconds"):
        await memory.connect()
    assert memory.state is MemoryState.CLOSED


async def test_a_retried_append_is_stored_once(redis_prefix: str) -> None:
    async with memory_at(REDIS_URL, redis_prefix) as memory:
        first = await memory.append("cam1", make_tokens([0]), ones(make_tokens([0])))
        item = await memory.prepare("cam1", make_tokens([1]), ones(make_tokens([1])))
        stored = await memory.store(item)
        retried = await memory.store(item)  # e.g. the reply was lost to a timeout and the call is repeated
        stats = await memory.stats()
    assert (first.chunk, stored.chunk, retried.chunk) == (0, 1, 1)
    assert (stored.status, retried.status) == (AppendStatus.STORED, AppendStatus.DUPLICATE)
    assert stats.tokens == 8


def test_client_options_carry_credentials_and_tls_files(tmp_path: Path) -> None:
    config = RedisConfig(
        url="rediss://redis.example:6380/0", username="agent", password="s3cret",  # type: ignore[arg-type]
        tls_ca_file=tmp_path / "ca.pem", tls_cert_file=tmp_path / "c.pem", tls_key_file=tmp_path / "k.pem",
    )  # fmt: skip
    kwargs = client_kwargs(config)
    assert (kwargs["username"], kwargs["password"], kwargs["ssl_cert_reqs"]) == (
        "agent",
        "s3cret",
        "required",
    )
    assert (kwargs["ssl_ca_certs"], kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == tuple(
        str(tmp_path / n) for n in ("ca.pem", "c.pem", "k.pem")
    )
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    "retention",
    [
        RetentionConfig(
            max_tokens_per_stream=60, max_tokens_total=130, max_bytes_total=12_000, bucket_seconds=4.0,
            floor_tokens_per_bucket=3, recent_seconds=2.5, similarity_threshold=0.5,
        ),
        RetentionConfig(  # floors and recent windows exceed the global budget: tiers 2 and 3 across streams
            max_tokens_per_stream=60, max_tokens_total=45, bucket_seconds=2.0, floor_tokens_per_bucket=4,
            recent_seconds=3.0,
        ),
    ],
    ids=["scores", "protections-exceed-budget"],
)  # fmt: skip
async def test_the_redis_and_local_backends_retain_exactly_the_same_tokens(
    redis_prefix: str, retention: RetentionConfig
) -> None:
    local = open_memory(MemoryConfig(backend="local", retention=retention, compact_fraction=0.0))
    remote = memory_at(REDIS_URL, redis_prefix, retention, compact=0.0)  # exact chunk time spans, as local
    gen = torch.Generator().manual_seed(11)
    async with local, remote:
        for i in range(120):
            stream = "xyz"[int(torch.randint(3, (1,), generator=gen))]
            frames = range(i * 2, i * 2 + int(torch.randint(1, 3, (1,), generator=gen)))
            tokens = make_tokens(frames, rows=2, cols=3, seed=i % 4, newline=True, seconds_per_frame=0.5)
            attention = torch.rand(len(tokens), generator=gen)
            results = [await m.append(stream, tokens, attention) for m in (local, remote)]
            assert results[0] == results[1], i
        reads = [await m.read(["x", "y", "z"]) for m in (local, remote)]
        # what each read took from its store differs by nature (records in memory, Redis replies)
        stats = [dataclasses.replace(await m.stats(), bytes_read=0) for m in (local, remote)]
    for sid in "xyz":
        for name in ("chunk", "row", "retention"):
            assert torch.equal(getattr(reads[0][sid], name), getattr(reads[1][sid], name)), (sid, name)
    assert stats[0] == stats[1]


async def test_evicted_rows_stay_unread_and_a_chunk_is_rewritten_once_enough_of_it_is_dead(
    redis_prefix: str,
) -> None:
    retention = RetentionConfig(max_tokens_per_stream=16, floor_tokens_per_bucket=0, recent_seconds=0.0)
    raw = redis.Redis.from_url(REDIS_URL)
    key = f"{redis_prefix}:s:cam1:d:0000000000"
    width = 65 + 8 * 4
    sizes, reads = [], []
    async with memory_at(REDIS_URL, redis_prefix, retention, compact=0.5) as memory:
        await memory.append("cam1", make_tokens(range(4)), torch.arange(16, dtype=torch.float32))  # chunk 0
        for frame in (4, 5):  # each evicts chunk 0's four lowest-scored rows
            await memory.append("cam1", make_tokens([frame]), torch.full((4,), 100.0))
            sizes.append(raw.strlen(key))
            reads.append(len((await memory.read(["cam1"], until=3.0))["cam1"]))
    assert sizes == [16 + 16 * width, 16 + 8 * width]  # 4 of 16 dead: kept as is; 8 of 16: rewritten
    assert reads == [12, 8]
