"""Helpers for the memory tests: a token factory, real Redis servers and a Redis consistency check."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
import torch

from agent.memory import TokenMemory
from flexselect.types import TokenKind, VisualTokens

if TYPE_CHECKING:
    from flexselect.lite.tokens import PairedTokens

MemoryFactory = Callable[..., TokenMemory]  # builds an unconnected memory of the test's backend
REDIS_URL = os.environ.get("FSA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def make_tokens(
    frames: Sequence[int],
    *,
    rows: int = 2,
    cols: int = 2,
    dim: int = 8,
    dtype: torch.dtype = torch.float32,
    seconds_per_frame: float = 1.0,
    levels: int = 0,
    newline: bool = False,
    seed: int = 0,
) -> VisualTokens:
    """Patch tokens (rows x cols per frame, plus one NEWLINE per frame if asked); frame f lies at f * spf s.

    Embeddings depend on (seed, frame) only, so two calls with the same frame give identical patches.
    """
    parts = []
    for f in frames:
        g = torch.Generator().manual_seed(seed * 1_000_003 + f)
        n = rows * cols + (1 if newline else 0)
        grid = torch.tensor([[0, r, c] for r in range(rows) for c in range(cols)] + [[-1, -1, -1]] * newline)
        kind = torch.tensor(
            [TokenKind.PATCH] * (rows * cols) + [TokenKind.NEWLINE] * newline, dtype=torch.int8
        )
        parts.append(
            VisualTokens(
                embeds=torch.randn(n, dim, generator=g).to(dtype),
                frame=torch.full((n,), f, dtype=torch.int64),
                time=torch.full((n,), f * seconds_per_frame, dtype=torch.float64),
                grid=grid.to(torch.int64),
                kind=kind,
                token_id=torch.full((n,), 151_655, dtype=torch.int64),
                deepstack=torch.randn(levels, n, dim, generator=g).to(dtype) if levels else None,
                seconds_per_step=seconds_per_frame,
            )
        )
    return VisualTokens.concat(parts)


def make_paired(
    frames: Sequence[int], *, lite_dim: int = 6, lite_dtype: torch.dtype = torch.float32, **kwargs: Any
) -> PairedTokens:
    """`make_tokens(frames, **kwargs)` with random selector rows (lite_dim wide) beside the embeddings."""
    from flexselect.lite.tokens import PairedTokens  # lazily: writer processes import these helpers too

    tokens = make_tokens(frames, **kwargs)
    g = torch.Generator().manual_seed(int(kwargs.get("seed", 0)) * 7919 + frames[0])
    return PairedTokens.pair(tokens, torch.randn(len(tokens), lite_dim, generator=g).to(lite_dtype))


def ones(tokens: VisualTokens) -> torch.Tensor:
    return torch.ones(len(tokens))


def redis_reachable(url: str = REDIS_URL) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def drop_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A `redis-server` of our own on a free port with AOF persistence in a temp dir (stopped at teardown)."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not redis_reachable(self.url):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()  # SIGTERM: Redis fsyncs the AOF and exits
        self.process.wait(timeout=10)
        self.process = None


def check_consistency(url: str, prefix: str) -> dict[str, int]:
    """Assert that every stored chunk is whole and every counter and index agrees with the stored chunks.

    Returns:
        Retained tokens per stream.
    """
    client = redis.Redis.from_url(url)
    tokens: dict[str, int] = {}
    total_bytes, candidates = 0, 0
    assert not list(client.scan_iter(match=f"{prefix}:tmp:*")), "a parked chunk was left behind"
    for raw in client.smembers(f"{prefix}:streams"):
        sid = raw.decode()
        key = f"{prefix}:s:{sid}"
        meta = {k.decode(): v.decode() for k, v in client.hgetall(f"{key}:m").items()}
        width = int(meta["width"])
        live_total = 0
        chunks = client.zrange(f"{key}:c0", 0, -1)
        for chunk in chunks:
            c = chunk.decode()
            blob = client.get(f"{key}:d:{c}")
            magic, n, w, _ = struct.unpack_from("<4sIII", blob)
            assert (magic, w, len(blob)) == (b"FSMc", width, 16 + n * width), f"partial chunk {c} of {sid}"
            assert int(client.hget(f"{key}:n", c)) == n and client.zscore(f"{key}:c1", c) is not None
            rows = [struct.unpack_from("<I", blob, 16 + i * width)[0] for i in range(n)]
            dead = sum(client.getbit(f"{key}:x:{c}", row) for row in rows)
            live = int(client.hget(f"{key}:k", c))
            assert live == n - dead > 0, (sid, c, live, n, dead)
            live_total += live
        floors = sum(client.zcard(f"{key}:f:{b.decode()}") for b in client.zrange(f"{key}:fb", 0, -1))
        indexed = client.zcard(f"{key}:r") + client.zcard(f"{key}:c") + floors
        buckets = sum(int(v) for v in client.hvals(f"{key}:b"))
        assert live_total == indexed == buckets == int(meta["tokens"]), (
            sid,
            live_total,
            indexed,
            buckets,
            meta,
        )
        assert client.hlen(f"{key}:k") == client.hlen(f"{key}:n") == len(chunks) == client.zcard(f"{key}:c1")
        tokens[sid] = live_total
        total_bytes += live_total * width
        candidates += client.zcard(f"{key}:c")
    totals = {k.decode(): int(v) for k, v in client.hgetall(f"{prefix}:g").items()}
    assert totals.get("tokens", 0) == sum(tokens.values()) and totals.get("bytes", 0) == total_bytes
    assert client.zcard(f"{prefix}:gc") == candidates
    client.close()
    return tokens
