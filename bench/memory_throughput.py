"""Token-memory throughput for both backends: append, append under eviction, read, bytes per token.

    python bench/memory_throughput.py [--dim 3584] [--dtype bfloat16] [--read-tokens 65536] [--json-out F]

Redis runs on a private `redis-server` started on a free port (no persistence) unless --redis-url is given;
then a unique key prefix is used and removed afterwards. Prints one table row per backend.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import redis
import torch

from agent.memory import MemoryConfig, RedisConfig, RetentionConfig, TokenMemory, open_memory
from agent.memory.codec import Layout
from agent.memory.local import LocalTokenMemory
from flexselect.types import TokenKind, VisualTokens

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Row:
    backend: str
    append_tok_s: float
    append_mb_s: float
    evict_tok_s: float
    read_tok_s: float
    read_mb_s: float
    read_s: float
    read_tokens: int
    payload_b_per_token: int
    stored_b_per_token: float


def frame_chunk(frame: int, pool: list[torch.Tensor], side: int, frames: int) -> VisualTokens:
    """`frames` frames of side x side patches starting at `frame`, one second apart."""
    per = side * side
    n = per * frames
    idx = torch.arange(n)
    f = frame + idx // per
    grid = torch.stack([torch.zeros(n, dtype=torch.int64), (idx % per) // side, idx % side], dim=1)
    return VisualTokens(
        embeds=pool[frame % len(pool)],
        frame=f,
        time=f.to(torch.float64),
        grid=grid,
        kind=torch.full((n,), TokenKind.PATCH, dtype=torch.int8),
        token_id=torch.full((n,), 151_655),
    )


async def fill(
    memory: TokenMemory, stream: str, chunks: list[VisualTokens], attention: torch.Tensor
) -> float:
    start = time.perf_counter()
    for chunk in chunks:
        await memory.append(stream, chunk, attention)
    return time.perf_counter() - start


def local_stored_bytes(memory: TokenMemory) -> int:
    assert isinstance(memory, LocalTokenMemory)
    total = 0
    for stream in memory._streams.values():  # bench-only peek at the storage
        for chunk in stream.chunks.values():
            rows = chunk.rows
            tensors = [rows.tokens.embeds, rows.tokens.frame, rows.tokens.time, rows.tokens.grid]
            tensors += [
                rows.tokens.kind,
                rows.tokens.token_id,
                rows.attention,
                rows.redundancy,
                rows.retention,
                rows.row,
            ]
            total += sum(t.nbytes for t in tensors)
    return total


def configs(args: argparse.Namespace, link: RedisConfig | None) -> tuple[MemoryConfig, MemoryConfig]:
    """(fill, evict) configs: the first keeps every token read back, the second holds to the small budget."""
    retention = RetentionConfig(
        max_tokens_per_stream=args.read_tokens, max_bytes_per_stream=1 << 40, max_tokens_total=1 << 30,
        max_bytes_total=1 << 44, max_chunk_bytes=400 * 2**20, recent_seconds=args.recent_seconds,
        floor_tokens_per_bucket=args.floor, bucket_seconds=args.bucket_seconds,
    )  # fmt: skip
    evict = retention.model_copy(update={"max_tokens_per_stream": args.evict_budget})
    backend = "local" if link is None else "redis"
    extra = {} if link is None else {"redis": link}
    return (
        MemoryConfig(backend=backend, retention=retention, **extra),
        MemoryConfig(backend=backend, retention=evict, **extra),
    )


async def measure(name: str, args: argparse.Namespace, link: RedisConfig | None, used_memory) -> Row:  # type: ignore[no-untyped-def]
    dtype = DTYPES[args.dtype]
    per_chunk = args.side * args.side * args.frames_per_chunk
    n_chunks = -(-args.read_tokens // per_chunk)
    pool = [torch.randn(per_chunk, args.dim).to(dtype) for _ in range(4)]
    chunks = [
        frame_chunk(i * args.frames_per_chunk, pool, args.side, args.frames_per_chunk)
        for i in range(n_chunks)
    ]
    attention = torch.rand(per_chunk)
    tokens = n_chunks * per_chunk
    width = Layout.of(chunks[0]).width
    fill_config, evict_config = configs(args, link)
    async with open_memory(fill_config) as memory:
        before = used_memory()
        fill_s = await fill(memory, "fill", chunks, attention)
        stored = (used_memory() - before) if before is not None else local_stored_bytes(memory)
        reads = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            got = (await memory.read(["fill"]))["fill"]
            reads.append(time.perf_counter() - start)
            assert len(got) == tokens, (len(got), tokens)
            del got
        await memory.delete("fill")
    async with open_memory(evict_config) as memory:
        evict_s = await fill(memory, "evict", chunks, attention)
        assert (await memory.stats("evict")).tokens == args.evict_budget
        await memory.delete("evict")
    read_s = min(reads)
    return Row(
        backend=name,
        append_tok_s=tokens / fill_s,
        append_mb_s=tokens * width / fill_s / 1e6,
        evict_tok_s=tokens / evict_s,
        read_tok_s=tokens / read_s,
        read_mb_s=tokens * width / read_s / 1e6,
        read_s=read_s,
        read_tokens=tokens,
        payload_b_per_token=width,
        stored_b_per_token=stored / tokens,
    )


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_for_bench(url: str | None) -> Iterator[tuple[str, str]]:
    """(url, prefix): the given Redis with a fresh prefix (removed afterwards), or a private server."""
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    if url is not None:
        try:
            yield url, prefix
        finally:
            client = redis.Redis.from_url(url)
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
        return
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not on PATH; pass --redis-url")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp, "--save", ""]
        server = subprocess.Popen([*argv, "--appendonly", "no"], stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            for _ in range(500):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0", prefix
        finally:
            server.terminate()
            server.wait(timeout=30)


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    print(
        f"token memory throughput: D={args.dim} {args.dtype}, {args.side * args.side} tokens/frame, "
        f"{args.frames_per_chunk} frames/chunk, eviction budget {args.evict_budget} tokens"
    )
    header = ["backend", "append tok/s", "append MB/s", "append+evict tok/s", "read tok/s", "read MB/s"]
    header += [f"read {rows[0].read_tokens // 1024}k (s)", "payload B/tok", "stored B/tok"]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for r in rows:
        cells = [r.backend, f"{r.append_tok_s:,.0f}", f"{r.append_mb_s:,.0f}", f"{r.evict_tok_s:,.0f}"]
        cells += [f"{r.read_tok_s:,.0f}", f"{r.read_mb_s:,.0f}", f"{r.read_s:.3f}"]
        cells += [str(r.payload_b_per_token), f"{r.stored_b_per_token:,.0f}"]
        print(" | ".join(cells))


async def main(args: argparse.Namespace) -> list[Row]:
    rows = []
    for backend in args.backends.split(","):
        if backend == "local":
            rows.append(await measure("local", args, None, lambda: None))
        elif backend == "redis":
            with redis_for_bench(args.redis_url) as (url, prefix):
                probe = redis.Redis.from_url(url)
                link = RedisConfig(url=url, key_prefix=prefix, op_timeout_s=600.0)
                rows.append(await measure("redis", args, link, functools.partial(used_memory, probe)))
                probe.close()
        else:
            raise SystemExit(f"unknown backend {backend!r}; use local and/or redis")
    return rows


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="local,redis")
    parser.add_argument("--dim", type=int, default=3584, help="embedding width (3584: Qwen2.5-VL-7B)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    parser.add_argument("--side", type=int, default=16, help="patches per frame side (16 -> 256 tokens)")
    parser.add_argument("--frames-per-chunk", type=int, default=2)
    parser.add_argument("--read-tokens", type=int, default=65_536, help="retained tokens to read back")
    parser.add_argument("--evict-budget", type=int, default=8_192, help="stream budget for append+evict")
    parser.add_argument("--recent-seconds", type=float, default=10.0)
    parser.add_argument("--floor", type=int, default=16, help="floor tokens per bucket")
    parser.add_argument("--bucket-seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3, help="reads timed (best kept)")
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of a private server")
    parser.add_argument("--json-out", type=Path, default=None)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    torch.manual_seed(0)
    result = asyncio.run(main(arguments))
    print_table(result, arguments)
    if arguments.json_out is not None:
        report = {
            "args": vars(arguments) | {"json_out": str(arguments.json_out)},
            "rows": [asdict(r) for r in result],
        }
        arguments.json_out.write_text(json.dumps(report, indent=2))
