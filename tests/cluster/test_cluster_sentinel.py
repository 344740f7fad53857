"""Redis failover with Sentinel: a real master, replica and Sentinel; the memory and the evidence pictures
follow the promotion."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import torch

from agent.memory import open_memory
from agent.memory.base import MemoryState
from agent.memory.config import MemoryConfig, PicturesConfig, RedisConfig, RetentionConfig
from agent.memory.redis import RedisTokenMemory
from agent.memory.thumbnails import PicturesUnavailableError, RedisPictures, open_pictures
from tests.memory.memory_helpers import RedisServer, free_port, make_tokens

pytestmark = [pytest.mark.services, pytest.mark.slow]

MASTER = "fsa"


class Sentinel:
    """One `redis-server --sentinel` watching `master_port` (quorum 1, down after 1 s)."""

    def __init__(self, directory: Path, master_port: int) -> None:
        self.port = free_port()
        self.conf = directory / "sentinel.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 5000\n"
        )
        command = ["redis-server", str(self.conf), "--sentinel"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, socket_timeout=2)
        _until(lambda: self._ping(), "sentinel up")

    def master_port(self) -> int:
        return int(self.client.sentinel_get_master_addr_by_name(MASTER)[1])

    def _ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        self.client.close()
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def failover(tmp_path: Path) -> Iterator[tuple[RedisServer, subprocess.Popen[bytes], Sentinel]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is needed")
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    master = RedisServer(tmp_path / "m", free_port())
    master.start()
    replica_port = free_port()
    replica = subprocess.Popen(
        ["redis-server", "--port", str(replica_port), "--bind", "127.0.0.1", "--dir", str(tmp_path / "r"),
         "--save", "", "--replicaof", "127.0.0.1", str(master.port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    replica_client = redis.Redis(port=replica_port, socket_timeout=2)
    _until(lambda: _in_sync(replica_client), "replica in sync")
    sentinel = Sentinel(tmp_path, master.port)
    try:
        yield master, replica, sentinel
    finally:
        sentinel.stop()
        replica_client.close()
        replica.kill()
        replica.wait(10)
        master.stop(kill=True)


async def test_the_memory_and_the_pictures_reconnect_to_the_replica_the_sentinel_promotes(failover):
    master, _, sentinel = failover
    config = MemoryConfig(
        backend="redis",
        retention=RetentionConfig(),
        redis=RedisConfig(
            url="redis://127.0.0.1:1/0",  # only the db: the Sentinel names the master
            sentinels=[f"127.0.0.1:{sentinel.port}"],
            sentinel_master=MASTER,
            key_prefix="sentinel",
            retry_initial_s=0.1,
            retry_max_s=0.5,
            connect_timeout_s=1.0,
            op_timeout_s=5.0,
        ),
    )
    memory = open_memory(config)
    pictures = open_pictures(config, PicturesConfig())
    assert isinstance(memory, RedisTokenMemory) and isinstance(pictures, RedisPictures)
    async with memory, pictures:
        await pictures.put("cam", [(1, b"before")])  # through the Sentinel: `url` names no server
        first = make_tokens(range(0, 3))
        await memory.append("cam", first, torch.rand(len(first)))
        # WAIT covers this connection's last write, so the earlier picture too: the replica has both.
        await memory.client.execute_command("WAIT", 1, 2000)
        old_port = sentinel.master_port()

        master.stop(kill=True)
        started = time.monotonic()
        await asyncio.to_thread(_until, lambda: sentinel.master_port() != old_port, "promotion", 30)
        promoted_s = time.monotonic() - started
        failed_puts = await _put_until_stored(pictures, "cam", (2, b"after"), 10.0)
        stored = (await pictures.keys("cam"), await pictures.get("cam", 1), await pictures.get("cam", 2))
        second = make_tokens(range(3, 6))
        await memory.append("cam", second, torch.rand(len(second)))  # finds the master gone: buffered
        ready = await memory.wait_ready(20.0)  # reconnected through the Sentinel, the buffer flushed
        frames: list[int] = []
        deadline = time.monotonic() + 10
        while frames != [0, 1, 2, 3, 4, 5] and time.monotonic() < deadline:
            frames = sorted(set((await memory.read(["cam"]))["cam"].tokens.frame.tolist()))
            await asyncio.sleep(0.2)
        reconnected_s = time.monotonic() - started
    print(
        f"promotion {promoted_s:.1f} s, memory serving both chunks {reconnected_s:.1f} s after the kill, "
        f"{failed_puts} picture puts refused before the promoted master took them"
    )
    assert ready and memory.state is MemoryState.CLOSED  # closed by the `async with`, after READY
    assert frames == [0, 1, 2, 3, 4, 5]
    assert stored == ([1, 2], b"before", b"after")


async def _put_until_stored(
    store: RedisPictures, stream: str, picture: tuple[int, bytes], timeout: float
) -> int:
    """Put as the agent does once per chunk (a refused put is counted, the next chunk tries again) until one
    is stored; returns how many were refused (the Sentinel may name the new master before it serves it)."""
    deadline = time.monotonic() + timeout
    refused = 0
    while True:
        try:
            await store.put(stream, [picture])
            return refused
        except PicturesUnavailableError:
            refused += 1
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def _in_sync(client: redis.Redis) -> bool:
    try:
        return client.info("replication").get("master_link_status") == "up"
    except redis.ConnectionError:
        return False


def _until(check, what: str, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout:g} s")
        time.sleep(0.1)
