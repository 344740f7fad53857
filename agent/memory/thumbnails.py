"""Evidence pictures: one small JPEG per retained frame, in the memory's own backend, evicted with its tokens.

A picture is keyed by its frame's time in integer microseconds (`frame_key`), the same time the frame's
visual tokens carry (the first frame of a temporal patch), so "is this frame still retained" is an exact
set test against the retained tokens' times. The local backend keeps the pictures in the process and writes
them beside the token snapshot (`<snapshot>.pictures.zip`) at close; the Redis backend keeps them under
`<key_prefix>-pictures:` (outside the token memory's own prefix), so a restarted agent, or another agent on
the same Redis, still shows them; it reaches Redis as the token memory does (`open_client`: one Redis, the
Sentinels' master, or a Redis Cluster, where each stream's keys are hash-tagged into one slot). Each stream
holds at most `max_per_stream` pictures (oldest dropped).
"""

from __future__ import annotations

import asyncio
import bisect
import io
import logging
import os
import zipfile
from collections.abc import Awaitable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import numpy as np
from PIL import Image
from redis.exceptions import RedisError

from agent.memory.config import MemoryConfig, PicturesConfig
from agent.memory.redis import open_client

logger = logging.getLogger(__name__)


class PicturesUnavailableError(Exception):
    """The picture backend cannot be reached (Redis down)."""


def frame_key(seconds: float) -> int:
    """A frame time as integer microseconds: the key of its picture."""
    return round(seconds * 1_000_000)


def encode_jpeg(frame: np.ndarray, *, max_side: int, quality: int) -> bytes:
    """One (H, W, 3) uint8 RGB frame as a JPEG no larger than `max_side` (CPU work: run it off the loop)."""
    image = Image.fromarray(np.ascontiguousarray(frame), "RGB")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


class PictureStore(Protocol):
    """Pictures per stream keyed by `frame_key`; an async context manager."""

    async def put(self, stream_id: str, pictures: Sequence[tuple[int, bytes]]) -> None:
        """Store (key, JPEG) pairs and trim the stream to its cap."""
        ...

    async def get(self, stream_id: str, key: int) -> bytes | None:
        """The JPEG at exactly `key`, or None."""
        ...

    async def keys(self, stream_id: str) -> list[int]:
        """Every stored key of the stream, ascending."""
        ...

    async def keys_between(self, stream_id: str, lo: int, hi: int) -> list[int]:
        """The stream's keys in [lo, hi], ascending."""
        ...

    async def keep_only(self, stream_id: str, keep: Iterable[int]) -> int:
        """Drop the stream's pictures whose key is not in `keep`; returns how many were dropped."""
        ...

    async def delete(self, stream_id: str) -> None:
        """Forget a stream's pictures."""
        ...

    async def streams(self) -> list[str]:
        """Streams with pictures, sorted."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


async def nearest_key(store: PictureStore, stream_id: str, start: float, end: float) -> int | None:
    """The stored key in [start, end] (seconds) closest to the span's middle, or None when none lies there."""
    keys = await store.keys_between(stream_id, frame_key(start), frame_key(end))
    if not keys:
        return None
    middle = frame_key((start + end) / 2)
    return min(keys, key=lambda k: abs(k - middle))


class LocalPictures:
    """Pictures in the process; written to `path` (a zip of `<stream>/<key>.jpg`) at close, read at open."""

    def __init__(self, path: Path | None, max_per_stream: int) -> None:
        self.path = path
        self.max_per_stream = max_per_stream
        self._data: dict[str, dict[int, bytes]] = {}

    async def __aenter__(self) -> Self:
        if self.path is not None and self.path.exists():
            self._data = await asyncio.to_thread(_read_zip, self.path)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.path is not None:
            data = {s: dict(p) for s, p in self._data.items()}
            await asyncio.to_thread(_write_zip, self.path, data)

    async def put(self, stream_id: str, pictures: Sequence[tuple[int, bytes]]) -> None:
        stream = self._data.setdefault(stream_id, {})
        stream.update(pictures)
        if len(stream) > self.max_per_stream:
            for key in sorted(stream)[: len(stream) - self.max_per_stream]:
                del stream[key]

    async def get(self, stream_id: str, key: int) -> bytes | None:
        return self._data.get(stream_id, {}).get(key)

    async def keys(self, stream_id: str) -> list[int]:
        return sorted(self._data.get(stream_id, {}))

    async def keys_between(self, stream_id: str, lo: int, hi: int) -> list[int]:
        keys = sorted(self._data.get(stream_id, {}))
        return keys[bisect.bisect_left(keys, lo) : bisect.bisect_right(keys, hi)]

    async def keep_only(self, stream_id: str, keep: Iterable[int]) -> int:
        stream = self._data.get(stream_id, {})
        dropped = set(stream) - set(keep)
        for key in dropped:
            del stream[key]
        return len(dropped)

    async def delete(self, stream_id: str) -> None:
        self._data.pop(stream_id, None)

    async def streams(self) -> list[str]:
        return sorted(s for s, p in self._data.items() if p)


def _read_zip(path: Path) -> dict[str, dict[int, bytes]]:
    data: dict[str, dict[int, bytes]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                stream, _, file = name.rpartition("/")
                if not stream or not file.endswith(".jpg") or not file[:-4].lstrip("-").isdigit():
                    logger.warning("pictures file %s: entry %r skipped", path, name)
                    continue
                data.setdefault(stream, {})[int(file[:-4])] = archive.read(name)
    except (OSError, zipfile.BadZipFile) as exc:
        logger.error("pictures file %s unreadable, starting without pictures: %s", path, exc)
        return {}
    return data


def _write_zip(path: Path, data: dict[str, dict[int, bytes]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:  # JPEGs do not compress further
        for stream, pictures in data.items():
            for key, jpeg in pictures.items():
                archive.writestr(f"{stream}/{key}.jpg", jpeg)
    os.replace(tmp, path)


class RedisPictures:
    """Pictures in Redis: per stream a hash `<p>:<stream>:j` (key -> JPEG) and a zset `<p>:<stream>:t` of
    keys, and the set `<p>:streams` of streams; on a Redis Cluster the stream is hash-tagged
    (`<p>:{<stream>}:j`) like the token memory's keys (`KeyLayout`), so its transactions stay in one slot."""

    def __init__(self, memory: MemoryConfig, max_per_stream: int) -> None:
        self.prefix = f"{memory.redis.key_prefix}-pictures"
        self.cluster = memory.redis.cluster
        self.max_per_stream = max_per_stream
        self._timeout_s = memory.redis.op_timeout_s
        self._client = open_client(memory.redis)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    def _k(self, stream_id: str, kind: str) -> str:
        stream = f"{{{stream_id}}}" if self.cluster else stream_id
        return f"{self.prefix}:{stream}:{kind}"

    async def _io(self, call: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call
        except (RedisError, OSError, TimeoutError) as exc:
            raise PicturesUnavailableError(f"pictures in Redis unavailable: {exc}") from exc

    async def put(self, stream_id: str, pictures: Sequence[tuple[int, bytes]]) -> None:
        if not pictures:
            return
        streams = f"{self.prefix}:streams"
        if self.cluster:  # not in the stream's slot: listed first, so stored pictures are never unlisted
            await self._io(self._client.sadd(streams, stream_id))
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self._k(stream_id, "j"), mapping={str(k): v for k, v in pictures})
            pipe.zadd(self._k(stream_id, "t"), {str(k): k for k, _ in pictures})
            if not self.cluster:
                pipe.sadd(streams, stream_id)
            pipe.zcard(self._k(stream_id, "t"))
            *_, count = await self._io(pipe.execute())
        excess = int(count) - self.max_per_stream
        if excess > 0:
            oldest = await self._io(self._client.zrange(self._k(stream_id, "t"), 0, excess - 1))
            await self._drop(stream_id, [int(k) for k in oldest])

    async def _drop(self, stream_id: str, keys: Sequence[int]) -> None:
        if not keys:
            return
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hdel(self._k(stream_id, "j"), *[str(k) for k in keys])
            pipe.zrem(self._k(stream_id, "t"), *[str(k) for k in keys])
            await self._io(pipe.execute())

    async def get(self, stream_id: str, key: int) -> bytes | None:
        return await self._io(self._client.hget(self._k(stream_id, "j"), str(key)))

    async def keys(self, stream_id: str) -> list[int]:
        members = await self._io(self._client.zrange(self._k(stream_id, "t"), 0, -1))
        return [int(m) for m in members]

    async def keys_between(self, stream_id: str, lo: int, hi: int) -> list[int]:
        members = await self._io(self._client.zrangebyscore(self._k(stream_id, "t"), lo, hi))
        return [int(m) for m in members]

    async def keep_only(self, stream_id: str, keep: Iterable[int]) -> int:
        dropped = sorted(set(await self.keys(stream_id)) - set(keep))
        for i in range(0, len(dropped), 1000):
            await self._drop(stream_id, dropped[i : i + 1000])
        return len(dropped)

    async def delete(self, stream_id: str) -> None:
        # One DEL of the stream's two keys (one slot on a cluster), then the stream set.
        await self._io(self._client.delete(self._k(stream_id, "j"), self._k(stream_id, "t")))
        await self._io(self._client.srem(f"{self.prefix}:streams", stream_id))

    async def streams(self) -> list[str]:
        # Listed streams that still hold pictures, as the local store lists them: `keep_only` may empty a
        # stream, and unlisting it there could race a `put` of another agent.
        members = await self._io(self._client.smembers(f"{self.prefix}:streams"))
        listed = sorted(m.decode() if isinstance(m, bytes) else m for m in members)
        counts = [await self._io(self._client.zcard(self._k(s, "t"))) for s in listed]
        return [s for s, n in zip(listed, counts, strict=True) if n]


def open_pictures(memory: MemoryConfig, config: PicturesConfig) -> PictureStore:
    """The picture store beside the configured token memory (same backend), unopened."""
    if memory.backend == "redis":
        return RedisPictures(memory, config.max_per_stream)
    path = memory.snapshot_path
    side = None if path is None else path.with_name(path.name + ".pictures.zip")
    return LocalPictures(side, config.max_per_stream)
