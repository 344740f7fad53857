"""The Redis token memory (`redis.asyncio`): shared by several agents, atomic per append, surviving restarts.

Each append is one MULTI/EXEC: the chunk bytes are SET under a scratch key and one Lua script
(`redis_scripts.APPEND`) files them and evicts down to the budgets, so concurrent writers from any number of
processes never see a budget exceeded or a partial chunk.
While Redis is unreachable the memory is UNAVAILABLE: appends go to a bounded pending buffer (oldest dropped
and counted when full), reads raise `MemoryUnavailableError`, and a background task reconnects with
exponential back-off, then flushes the buffer in order.
With `redis.cluster` the client is a `RedisCluster` and every key of a stream is hash-tagged (`KeyLayout`);
with a fencing token set for a stream (`set_fence`, by `agent.cluster`), the append script refuses the chunk
unless the stream's lease still holds that token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import numpy as np
import redis.asyncio as aioredis
import torch
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agent.memory.base import (
    AppendResult,
    AppendStatus,
    MemoryState,
    MemoryStats,
    RetainedLayout,
    RetainedTokens,
    StreamMemoryStats,
)
from agent.memory.chunk import STREAM_ID, check_stream_id, score_chunk
from agent.memory.codec import Layout, chunk_records, decode_parts, decode_records, encode_chunk, index_bytes
from agent.memory.config import MemoryConfig, RedisConfig
from agent.memory.errors import (
    ConfigMismatchError,
    CorruptEntryError,
    FencedError,
    LayoutMismatchError,
    MemoryAuthError,
    MemoryClosedError,
    MemoryUnavailableError,
    RowsGoneError,
    TokenMemoryError,
)
from agent.memory.pending import EncodedAppend, PendingBuffer
from agent.memory.redis_scripts import APPEND, CHUNKS_IN_RANGE, DELETE, KeyLayout
from agent.memory.rows import Rows, retained_tokens
from agent.memory.rows_read import (
    KEPT_ROWS,
    KEPT_ROWS_PER_CALL,
    LAYOUT_IN_RANGE,
    decode_entries,
    full_rows,
    record_head,
    requests,
)
from agent.memory.rows_read import retained_layout as layout_of_entries
from agent.memory.scoring import FrameRef, newest_frame
from common.backoff import Backoff
from common.cancel import stop_task
from flexselect.types import VisualTokens

logger = logging.getLogger(__name__)

SCHEMA = "fsa-memory/1"
_T = TypeVar("_T")
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)
_STREAM_KEY = re.compile(
    r"^s:(?:\{(?P<tagged>[^:{}]+)\}|(?P<id>[^:{}]+))"
    r":(?:m|k|n|u|cu|c0|c1|r|c|fb|b|f:-?\d+|[dx]:[0-9a-f]{10}|lease|epoch|g|streams|gc|tmpc|tmp:[0-9a-f]{32})$"
)
_OWN_KEY = re.compile(r"^(?:g|streams|gc|config|tmp:(?:[0-9a-f]{32}|compact)|cluster:.+)$")
_MAX_REPORTED = 10_000  # distinct corrupt entries remembered so that each is counted once
_TMP_TTL_MS = 600_000  # a chunk parked for its append script expires if the script never ran


def client_kwargs(config: RedisConfig) -> dict[str, Any]:
    """Keyword arguments for `redis.asyncio.Redis.from_url` (binary replies, our own timeouts and retry)."""
    kwargs: dict[str, Any] = {
        "decode_responses": False,
        # No socket timeout: redis-py then wraps every command's write in asyncio.wait_for, which on Python
        # 3.11 drops a cancellation arriving as the write completes (CPython gh-86296), so nearly every task
        # cancelled during a Redis call kept running (a stopping agent hung). Callers bound their calls with
        # asyncio.timeout instead (`_io` here, the pictures store, agent.cluster).
        "socket_timeout": None,
        "socket_connect_timeout": config.connect_timeout_s,
        "retry": Retry(NoBackoff(), 1),  # one immediate retry for a stale pooled connection; we back off
    }
    if config.username is not None:
        kwargs["username"] = config.username
    if config.password is not None:
        kwargs["password"] = config.password.get_secret_value()
    if config.url.startswith("rediss://"):
        kwargs["ssl_cert_reqs"] = "required" if config.tls_verify else "none"
        kwargs["ssl_check_hostname"] = config.tls_verify
        for name, path in (
            ("ssl_ca_certs", config.tls_ca_file),
            ("ssl_certfile", config.tls_cert_file),
            ("ssl_keyfile", config.tls_key_file),
        ):
            if path is not None:
                kwargs[name] = str(path)
    return kwargs


def sentinel_client(config: RedisConfig) -> aioredis.Redis:
    """A client of the master that `config.sentinels` name now; each new connection asks them again, so
    after a failover the memory's reconnect reaches the promoted replica."""
    kwargs = client_kwargs(config)
    if config.url.startswith("rediss://"):
        kwargs["ssl"] = True
    path = urlsplit(config.url).path.strip("/")
    addresses = [(a.rpartition(":")[0], int(a.rpartition(":")[2])) for a in config.sentinels]
    sentinel = Sentinel(
        addresses,
        sentinel_kwargs={"socket_connect_timeout": config.connect_timeout_s},
        **{k: v for k, v in kwargs.items() if k != "retry"},
    )
    client: aioredis.Redis = sentinel.master_for(
        config.sentinel_master,
        db=int(path) if path.isdigit() else 0,
        max_connections=config.max_connections,
        retry=kwargs["retry"],
    )
    return client


def open_client(config: RedisConfig) -> aioredis.Redis | aioredis.RedisCluster:
    """The client `config` names: a `RedisCluster` (`cluster`), the Sentinels' master (`sentinels`), or
    one Redis at `url`; shared by the token memory and the evidence pictures so both reach the same place."""
    if config.cluster:  # the cluster client keeps a pool per node (bounded by max_connections)
        return aioredis.RedisCluster.from_url(
            config.url, max_connections=config.max_connections, **client_kwargs(config)
        )
    if config.sentinels:  # the master the Sentinels name; after a failover, the promoted one
        return sentinel_client(config)
    # A bounded pool that waits for a free connection: a flood of questions or watches queues here
    # instead of failing with "Too many connections".
    pool = aioredis.BlockingConnectionPool.from_url(
        config.url,
        max_connections=config.max_connections,
        timeout=config.op_timeout_s,
        **client_kwargs(config),
    )
    return aioredis.Redis.from_pool(pool)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class RedisTokenMemory:
    """`TokenMemory` in Redis; see `redis_scripts` for the key layout and `docs/memory.md` for behaviour."""

    def __init__(self, config: MemoryConfig) -> None:
        self._config = config
        self._retention = config.retention
        self._link = config.redis
        self._prefix = config.redis.key_prefix
        self.keys = KeyLayout(config.redis.key_prefix, cluster=config.redis.cluster)
        self._fences: dict[str, str] = {}
        self._state = MemoryState.CLOSED
        self._last_error: str | None = None
        self._client: aioredis.Redis | aioredis.RedisCluster | None = None
        self._scripts: dict[str, Any] = {}
        self._pending = PendingBuffer(
            max_chunks=config.redis.max_pending_chunks, max_bytes=config.redis.max_pending_bytes
        )
        self._flushing = False
        self._reconnect: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._frames: dict[str, FrameRef | None] = {}
        self._layouts: dict[str, Layout] = {}
        self._corrupt = 0
        self._reported: set[str] = set()
        self._foreign = 0
        self._readers = asyncio.Semaphore(1)
        self._bytes_read = 0

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def state(self) -> MemoryState:
        return self._state

    @property
    def last_error(self) -> str | None:
        return self._last_error

    async def connect(self) -> None:
        """Reach Redis, check the shared config, enforce budgets; if Redis is away, start reconnecting.

        Raises:
            ConfigMismatchError: the memory under this prefix was built with other structural knobs.
        """
        if self._state is not MemoryState.CLOSED:
            raise TokenMemoryError("the memory is already connected; a memory is not reentrant")
        self._client = open_client(self._link)
        # Reads hold at most half of the pool, so appends and stats always find a connection.
        self._readers = asyncio.Semaphore(max(1, self._link.max_connections // 2))
        self._scripts = {
            name: self._client.register_script(src)
            for name, src in (
                ("append", APPEND),
                ("delete", DELETE),
                ("range", CHUNKS_IN_RANGE),
                ("layout", LAYOUT_IN_RANGE),
                ("rows", KEPT_ROWS),
            )
        }
        self._state = MemoryState.UNAVAILABLE
        try:
            await self._handshake()
        except MemoryUnavailableError:
            logger.error(
                "Redis at %s is unavailable (%s); retrying with back-off", self._where(), self._last_error
            )
        except TokenMemoryError:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop reconnecting and release the connections; buffered appends still pending are dropped."""
        if self._state is MemoryState.CLOSED:
            return
        self._state = MemoryState.CLOSED
        self._ready.clear()
        if self._reconnect is not None:
            await stop_task(self._reconnect, "the Redis memory's reconnect loop")
            self._reconnect = None
        if self._pending:
            logger.warning("closing with %d appends still pending; they are dropped", len(self._pending))
            self._pending.drop_all("closing")
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def wait_ready(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return False
        return self._state is MemoryState.READY

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _where(self) -> str:
        return f"{self._link.url.split('@')[-1]} (prefix {self._prefix!r})"

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    def _skey(self, stream_id: str, suffix: str) -> str:
        return self.keys.skey(stream_id, suffix)

    @property
    def client(self) -> aioredis.Redis | aioredis.RedisCluster:
        """The connected client (for `agent.cluster`, which keeps its leases beside the memory)."""
        if self._client is None:
            raise MemoryClosedError("the Redis memory is not connected; use `async with` or connect()")
        return self._client

    def set_fence(self, stream_id: str, token: int | None) -> None:
        """Fence the stream's appends with a lease's token (None: unfenced); a stale token is refused."""
        if token is None:
            self._fences.pop(stream_id, None)
        else:
            self._fences[stream_id] = str(int(token))
            self._frames.pop(stream_id, None)  # a new owner continues from the newest stored frame

    async def _call(self, name: str, stream_id: str, args: list[Any]) -> Any:
        """Run one of the memory's scripts on the stream's keys (loading it again after a failover)."""
        script = self._scripts[name]
        keys = self.keys.script_keys(stream_id)
        try:
            return await self._io(script(keys=keys, args=args))
        except NoScriptError:
            await self._load_scripts()
            return await self._io(script(keys=keys, args=args))

    async def _load_scripts(self) -> None:
        """SCRIPT LOAD every script (on every primary of a cluster), so EVALSHA in a MULTI finds them."""
        assert self._client is not None
        for script in self._scripts.values():
            await self._io(self._client.script_load(script.script))

    async def _handshake(self) -> None:
        """Ping, check the shared config, scan for foreign keys, enforce budgets, then flush the buffer."""
        assert self._client is not None
        await self._io(self._client.ping())
        await self._load_scripts()
        await self._check_config()
        self._foreign = await self._scan_foreign()
        for stream_id in await self._stream_ids():
            await self._run_append(stream_id, None)
        self._state = MemoryState.READY
        self._last_error = None
        self._ready.set()
        await self._flush()

    async def _check_config(self) -> None:
        assert self._client is not None
        wanted = json.dumps(self._retention.structure(), sort_keys=True)
        key = self._key("config")
        await self._io(self._client.hsetnx(key, "schema", SCHEMA))
        await self._io(self._client.hsetnx(key, "structure", wanted))
        stored = await self._io(self._client.hmget(key, ["schema", "structure"]))
        schema, structure = (_text(v) if v is not None else None for v in stored)
        if schema != SCHEMA:
            raise ConfigMismatchError(f"keys under {self._prefix!r} hold schema {schema!r}, not {SCHEMA!r}")
        if structure != wanted:
            raise ConfigMismatchError(
                f"the memory under prefix {self._prefix!r} was built with {structure}, this agent uses "
                f"{wanted}; use the same bucket_seconds, floor_tokens_per_bucket and recent_seconds, another "
                "key_prefix, or delete the memory"
            )

    async def _scan_foreign(self) -> int:
        """Count (and log) keys under the prefix that this memory does not own."""
        assert self._client is not None
        foreign = 0
        head = f"{self._prefix}:"
        for raw in await self._io(self._scan(f"{head}*")):
            name = _text(raw)[len(head) :]
            stream = _STREAM_KEY.match(name)
            sid = stream and (stream["tagged"] or stream["id"])
            if _OWN_KEY.match(name) or (sid and STREAM_ID.match(sid)):
                continue
            foreign += 1
            logger.warning("foreign key %r under the memory prefix; skipped", _text(raw))
        return foreign

    async def _scan(self, match: str) -> list[bytes]:
        """Every key matching `match` (on every primary of a cluster)."""
        assert self._client is not None
        return [raw async for raw in self._client.scan_iter(match=match, count=1000)]

    # -- errors and reconnection -----------------------------------------------------------------------

    async def _io(self, call: Awaitable[_T]) -> _T:
        """Await one Redis call under the op timeout, translating failures into the memory's errors."""
        try:
            async with asyncio.timeout(self._link.op_timeout_s):
                return await call
        except (AuthenticationError, AuthorizationError) as exc:  # no retry fixes credentials
            self._last_error = f"{type(exc).__name__}: {exc}"
            raise MemoryAuthError(
                f"Redis at {self._where()} refused the credentials ({exc}); check memory.redis.username "
                "and memory.redis.password"
            ) from exc
        except _UNAVAILABLE as exc:
            self._mark_unavailable(exc)
            raise MemoryUnavailableError(
                f"Redis at {self._where()} is unavailable: {self._last_error}; retrying with back-off"
            ) from exc
        except NoScriptError:
            raise  # the caller loads the scripts again (a failover or a restart lost them) and retries
        except ResponseError as exc:
            raise self._translate(exc) from exc

    @staticmethod
    def _translate(exc: ResponseError) -> TokenMemoryError:
        text = str(exc)
        if "FSAMEM_FENCED" in text:
            return FencedError(text.split("FSAMEM_FENCED", 1)[-1].strip())
        if "FSAMEM_LAYOUT" in text:
            return LayoutMismatchError(text)
        if "FSAMEM_CORRUPT" in text or text.startswith("WRONGTYPE"):
            return CorruptEntryError(text)
        return TokenMemoryError(f"Redis rejected a memory command: {text}")

    def _mark_unavailable(self, exc: BaseException) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self._state is MemoryState.CLOSED:
            return
        if self._state is MemoryState.READY:
            logger.error("lost Redis at %s (%s); buffering appends", self._where(), self._last_error)
        self._state = MemoryState.UNAVAILABLE
        self._ready.clear()
        if self._reconnect is None or self._reconnect.done():
            self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        backoff = Backoff(self._link.backoff)
        delay = backoff.next_delay()
        while self._state is MemoryState.UNAVAILABLE:
            await asyncio.sleep(delay)
            try:
                await self._handshake()
            except MemoryUnavailableError:
                delay = backoff.next_delay()
            except TokenMemoryError as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
                logger.error("reconnecting to Redis failed: %s", exc)
                delay = backoff.config.max_s
        if self._state is MemoryState.READY:
            logger.info("Redis at %s is back; %d appends pending", self._where(), len(self._pending))

    def _require_ready(self) -> None:
        if self._state is MemoryState.CLOSED:
            raise MemoryClosedError("the Redis memory is not connected; use `async with` or connect()")
        if self._state is MemoryState.UNAVAILABLE:
            raise MemoryUnavailableError(
                f"Redis at {self._where()} is unavailable ({self._last_error}); {len(self._pending)} appends "
                "pending, retrying with back-off"
            )

    # -- append ----------------------------------------------------------------------------------------

    async def append(self, stream_id: str, tokens: VisualTokens, attention: torch.Tensor) -> AppendResult:
        chunk = await self.prepare(stream_id, tokens, attention)
        if self._state is MemoryState.READY and not self._pending and not self._flushing:
            try:
                return await self.store(chunk)
            except MemoryUnavailableError:
                pass  # buffered below; the reconnect task flushes it
        self._pending.push(chunk)
        return AppendResult(AppendStatus.PENDING)

    async def prepare(self, stream_id: str, tokens: VisualTokens, attention: torch.Tensor) -> EncodedAppend:
        """Check, score and encode a chunk (the first half of `append`); advances the redundancy reference.

        Raises:
            MemoryInputError, LayoutMismatchError, MemoryClosedError: as `append`.
        """
        if self._state is MemoryState.CLOSED:
            raise MemoryClosedError("the Redis memory is not connected; use `async with` or connect()")
        check_stream_id(stream_id)
        previous = await self._previous_frame(stream_id)
        chunk, newest = score_chunk(tokens, attention, previous, self._retention, copy=False)
        layout = Layout.of(chunk.tokens)
        known = self._layouts.get(stream_id)
        if known is not None and known != layout:
            raise LayoutMismatchError(
                f"stream {stream_id!r} stores {known.describe()}, the chunk is {layout.describe()}; "
                "delete the stream or use another stream id"
            )
        self._frames[stream_id] = newest
        return EncodedAppend(
            stream_id, uuid.uuid4().hex, layout, encode_chunk(chunk), index_bytes(chunk), len(chunk)
        )

    async def store(self, chunk: EncodedAppend) -> AppendResult:
        """Write a prepared chunk and enforce the budgets in one script; safe to repeat after a lost reply.

        Raises:
            MemoryUnavailableError: Redis is unreachable (the chunk was not stored, or a retry will say so).
            LayoutMismatchError, CorruptEntryError: the stream's stored state rejects the chunk.
        """
        try:
            reply = await self._run_append(chunk.stream_id, chunk)
        except LayoutMismatchError as exc:
            stored = str(exc).split("FSAMEM_LAYOUT", 1)[-1].strip()
            raise LayoutMismatchError(
                f"stream {chunk.stream_id!r} stores {stored!r}, the chunk is {chunk.layout.encode()!r}; "
                "delete the stream or use another stream id"
            ) from exc
        self._layouts[chunk.stream_id] = chunk.layout
        status, number, kept, evicted, stream_tokens, total, over = reply
        if int(over):
            logger.error("global budget still exceeded after eviction: corrupt streams could not be evicted")
        return AppendResult(
            AppendStatus.DUPLICATE if status == b"dup" else AppendStatus.STORED,
            int(number, 16) if number else None,
            int(kept),
            int(evicted),
            int(stream_tokens),
            int(total),
        )

    async def _run_append(self, stream_id: str, item: EncodedAppend | None) -> list[Any]:
        """Run the append script; a chunk's bytes are SET under a scratch key in the same MULTI/EXEC."""
        assert self._client is not None
        cfg = self._retention
        args: list[Any] = [
            self._prefix,
            stream_id,
            item.uid if item else "",
            item.layout.encode() if item else "",
            item.index if item else b"",
            item.layout.width if item else 0,
            cfg.max_tokens_per_stream,
            cfg.max_bytes_per_stream,
            cfg.max_tokens_total,
            cfg.max_bytes_total,
            repr(cfg.bucket_seconds),
            cfg.floor_tokens_per_bucket,
            repr(cfg.recent_seconds),
            repr(self._config.compact_fraction),
            self._fences.get(stream_id, "") if item else "",
        ]
        script = self._scripts["append"]
        if item is None:
            return await self._call("append", stream_id, args)
        keys = self.keys.script_keys(stream_id, item.uid)

        async def transaction() -> list[Any]:
            async with self._client.pipeline(transaction=True) as pipe:  # type: ignore[union-attr]
                pipe.set(keys[4], item.blob, px=_TMP_TTL_MS)
                pipe.evalsha(script.sha, len(keys), *keys, *args)
                try:
                    return (await pipe.execute())[1]
                except ResponseError as exc:  # inside MULTI a missing script is a plain ResponseError
                    if "NOSCRIPT" in str(exc) or "No matching script" in str(exc):
                        raise NoScriptError(str(exc)) from exc
                    raise

        try:
            reply = await self._io(transaction())
        except NoScriptError:
            await self._load_scripts()
            reply = await self._io(transaction())
        if self.keys.cluster and reply[0] == b"ok":
            await self._io(self._client.sadd(self._key("streams"), stream_id))  # type: ignore[union-attr]
        return reply

    async def _flush(self) -> None:
        """Store the buffered appends in arrival order; stops (keeping the rest) if Redis goes away again."""
        self._flushing = True
        try:
            while (item := self._pending.head()) is not None and self._state is MemoryState.READY:
                try:
                    await self.store(item)
                except MemoryUnavailableError:
                    return
                except TokenMemoryError as exc:
                    self._pending.drop(item, f"Redis rejected a buffered chunk ({exc})")
                self._pending.remove(item)
        finally:
            self._flushing = False

    async def _previous_frame(self, stream_id: str) -> FrameRef | None:
        """The stream's newest frame for the redundancy term: cached, else read from the newest chunk."""
        if stream_id in self._frames or self._state is not MemoryState.READY:
            return self._frames.get(stream_id)
        frame: FrameRef | None = None
        try:
            layout = await self._layout(stream_id)
            if layout is not None:
                self._layouts[stream_id] = layout
                newest = await self._io(self._client.zrange(self._skey(stream_id, "c1"), -1, -1))  # type: ignore[union-attr]
                rows = await self._fetch(stream_id, layout, [_text(c) for c in newest])
                frame = newest_frame(rows[0].tokens) if rows is not None else None
        except (CorruptEntryError, MemoryUnavailableError) as exc:
            logger.warning("no previous frame for %r: %s", stream_id, exc)
        self._frames[stream_id] = frame
        return frame

    # -- read ------------------------------------------------------------------------------------------

    def _report(self, what: str, exc: Exception) -> None:
        """Log and count a corrupt entry once (later sightings are skipped quietly)."""
        if what in self._reported:
            return
        if len(self._reported) < _MAX_REPORTED:
            self._reported.add(what)
        self._corrupt += 1
        logger.error("skipping %s: %s", what, exc)

    async def _layout(self, stream_id: str) -> Layout | None:
        """The stream's layout, None if unknown. Raises CorruptEntryError if it does not decode."""
        raw = await self._io(self._client.hget(self._skey(stream_id, "m"), "layout"))  # type: ignore[union-attr]
        return None if raw is None else Layout.decode(_text(raw))

    async def _fetch(
        self, stream_id: str, layout: Layout, chunks: list[str]
    ) -> tuple[Rows, torch.Tensor] | None:
        """Live rows of `chunks` and the chunk number of each (None if none has rows); corrupt ones skipped.

        Each page of chunks and their dead-row bitmaps is read in one MULTI, so the two always agree.
        """
        assert self._client is not None
        parts: list[tuple[memoryview, bytes | None]] = []
        numbers: list[int] = []
        step = self._link.read_batch_chunks
        for start in range(0, len(chunks), step):
            page = chunks[start : start + step]
            async with self._client.pipeline(transaction=True) as pipe:
                # MGET by name: a cluster pipeline blocks `mget()`, though one slot's keys are fine
                pipe.execute_command("MGET", *[self._skey(stream_id, f"d:{c}") for c in page])
                pipe.execute_command("MGET", *[self._skey(stream_id, f"x:{c}") for c in page])
                blobs, deads = await self._io(pipe.execute())
            self._bytes_read += sum(len(b) for b in (*blobs, *deads) if b is not None)
            for chunk, blob, dead in zip(page, blobs, deads, strict=True):
                if blob is None:
                    continue  # dropped after the range query
                try:
                    parts.append((chunk_records(blob, layout), dead))
                except CorruptEntryError as exc:
                    self._report(f"chunk {chunk} of stream {stream_id!r}", exc)
                    continue
                numbers.append(int(chunk, 16))
        if not parts:
            return None
        rows, counts = decode_parts(parts, layout)
        return rows, torch.from_numpy(np.repeat(np.array(numbers, dtype=np.int64), counts))

    async def read(
        self, stream_ids: Sequence[str], *, since: float | None = None, until: float | None = None
    ) -> dict[str, RetainedTokens]:
        self._require_ready()
        out: dict[str, RetainedTokens] = {}
        for stream_id in stream_ids:
            check_stream_id(stream_id)
            try:
                async with self._readers:
                    tokens = await self._read_stream(stream_id, since, until)
            except CorruptEntryError as exc:
                self._report(f"stream {stream_id!r}", exc)
                continue
            if tokens is not None:
                out[stream_id] = tokens
        return out

    async def _read_stream(
        self, stream_id: str, since: float | None, until: float | None
    ) -> RetainedTokens | None:
        layout = await self._layout(stream_id)
        if layout is None:
            return None
        low = "-inf" if since is None else repr(float(since))
        high = "+inf" if until is None else repr(float(until))
        chunks = await self._call("range", stream_id, [self._prefix, stream_id, low, high])
        fetched = await self._fetch(stream_id, layout, [_text(c) for c in chunks])
        if fetched is None:
            return retained_tokens(
                stream_id, decode_records(b"", layout), torch.empty(0, dtype=torch.int64), None, None
            )
        rows, numbers = fetched
        return retained_tokens(stream_id, rows, numbers, since, until)

    async def read_layout(
        self, stream_ids: Sequence[str], *, since: float | None = None, until: float | None = None
    ) -> dict[str, RetainedLayout]:
        self._require_ready()
        out: dict[str, RetainedLayout] = {}
        for stream_id in stream_ids:
            check_stream_id(stream_id)
            try:
                async with self._readers:
                    layout = await self._layout(stream_id)
                    if layout is not None:
                        out[stream_id] = await self._read_layout(stream_id, layout, since, until)
            except CorruptEntryError as exc:
                self._report(f"stream {stream_id!r}", exc)
        return out

    async def _read_layout(
        self, stream_id: str, layout: Layout, since: float | None, until: float | None
    ) -> RetainedLayout:
        low = "-inf" if since is None else repr(float(since))
        high = "+inf" if until is None else repr(float(until))
        args = [self._prefix, stream_id, low, high, layout.width]
        keys = self.keys.script_keys(stream_id)
        reply = await self._io(self._scripts["layout"](keys=keys, args=args))
        self._bytes_read += sum(len(part) for part in reply)
        metas, chunks, slots = [], [], []
        for chunk, entries in zip(reply[0::2], reply[1::2], strict=True):
            if entries[:1] == b"c":
                self._report(f"chunk {_text(chunk)} of stream {stream_id!r}", CorruptEntryError("bad chunk"))
            if entries[:1] != b"o":
                continue  # gone after the range query, or corrupt
            meta, slot = decode_entries(memoryview(entries)[1:])
            metas.append(meta)
            slots.append(slot)
            chunks.append(np.full(len(slot), int(_text(chunk), 16), dtype=np.int64))
        if not metas:
            meta, slot = decode_entries(b"")
            return layout_of_entries(stream_id, layout, meta, slot, slot, since, until)
        meta, chunk, slot = (np.concatenate(a) for a in (metas, chunks, slots))
        return layout_of_entries(stream_id, layout, meta, chunk, slot, since, until)

    async def read_rows(self, layout: RetainedLayout, index: torch.Tensor) -> VisualTokens:
        self._require_ready()
        stored = await self._layout(layout.stream_id)
        if stored is None:
            raise RowsGoneError(f"stream {layout.stream_id!r} was deleted since its layout was read")
        step = KEPT_ROWS_PER_CALL
        parts: list[bytes] = []
        for start in range(0, len(index), step):
            part = index[start : start + step]
            args = [self._prefix, layout.stream_id, stored.width, record_head(stored), requests(layout, part)]
            async with self._readers:
                status, payload = await self._io(
                    self._scripts["rows"](keys=self.keys.script_keys(layout.stream_id), args=args)
                )
            if status == b"gone":
                raise RowsGoneError(
                    f"row {int(part[int(payload)])} of stream {layout.stream_id!r} was evicted since its "
                    "layout was read; read the layout again"
                )
            self._bytes_read += len(payload)
            parts.append(payload)
        return full_rows(layout, index, b"".join(parts), stored)

    # -- stats, streams, delete ------------------------------------------------------------------------

    async def _stream_ids(self) -> list[str]:
        assert self._client is not None
        members = await self._io(self._client.smembers(self._key("streams")))
        ids = []
        for raw in members:
            text = _text(raw)
            if STREAM_ID.match(text):
                ids.append(text)
            else:
                self._report(
                    f"stream id {text!r} in {self._key('streams')}", CorruptEntryError("not a stream id")
                )
        return sorted(ids)

    async def streams(self) -> list[str]:
        self._require_ready()
        return await self._stream_ids()

    async def _stream_stats(self, stream_id: str) -> StreamMemoryStats:
        assert self._client is not None
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._skey(stream_id, "m"))
            pipe.hgetall(self._skey(stream_id, "b"))
            pipe.zcard(self._skey(stream_id, "c0"))
            pipe.zrange(self._skey(stream_id, "c0"), 0, 0, withscores=True)
            pipe.zrange(self._skey(stream_id, "c1"), -1, -1, withscores=True)
            meta, buckets, chunks, first, last = await self._io(pipe.execute())
        meta = {_text(k): _text(v) for k, v in meta.items()}
        try:
            tokens, width = int(meta.get("tokens", 0)), int(meta.get("width", 0))
            head = float(meta["head"]) if "head" in meta else None
            counts = {int(k): int(v) for k, v in buckets.items()}
        except ValueError as exc:
            raise CorruptEntryError(f"counters of stream {stream_id!r} do not parse: {exc}") from exc
        return StreamMemoryStats(
            stream_id=stream_id,
            tokens=tokens,
            bytes=tokens * width,
            chunks=int(chunks),
            appended=int(meta.get("appended", 0)),
            evicted=int(meta.get("evicted", 0)),
            first_time=float(first[0][1]) if first else None,
            last_time=float(last[0][1]) if last else None,
            head_time=head,
            buckets=dict(sorted(counts.items())),
        )

    async def stats(self, stream_id: str | None = None) -> MemoryStats:
        local = {
            "pending_chunks": len(self._pending),
            "pending_tokens": self._pending.tokens,
            "dropped_chunks": self._pending.dropped_chunks,
            "dropped_tokens": self._pending.dropped_tokens,
            "bytes_read": self._bytes_read,
        }
        if self._state is not MemoryState.READY or self._client is None:
            return MemoryStats(
                state=self._state, corrupt_entries=self._corrupt, foreign_keys=self._foreign, **local
            )
        try:
            totals = await self._totals()
            per: dict[str, StreamMemoryStats] = {}
            for sid in [stream_id] if stream_id is not None else await self._stream_ids():
                try:
                    per[sid] = await self._stream_stats(sid)
                except CorruptEntryError as exc:
                    self._report(f"stats of stream {sid!r}", exc)
        except MemoryUnavailableError:
            return MemoryStats(
                state=self._state, corrupt_entries=self._corrupt, foreign_keys=self._foreign, **local
            )
        per = {sid: s for sid, s in per.items() if s.head_time is not None or s.tokens}
        return MemoryStats(
            state=self._state,
            tokens=totals.get("tokens", 0),
            bytes=totals.get("bytes", 0),
            appended=totals.get("appended", 0),
            evicted=totals.get("evicted", 0),
            corrupt_entries=self._corrupt + totals.get("corrupt", 0),
            foreign_keys=self._foreign,
            streams=per,
            **local,
        )

    async def _totals(self) -> dict[str, int]:
        """The global counters; on a cluster each stream keeps its own, summed here."""
        assert self._client is not None
        names = [self.keys.script_keys(s)[1] for s in await self._stream_ids()] if self.keys.cluster else []
        totals: dict[str, int] = {}
        for name in names or [self._key("g")]:
            for k, v in (await self._io(self._client.hgetall(name))).items():
                totals[_text(k)] = totals.get(_text(k), 0) + int(v)
        return totals

    async def delete(self, stream_id: str) -> bool:
        self._require_ready()
        check_stream_id(stream_id)
        self._frames.pop(stream_id, None)
        self._layouts.pop(stream_id, None)
        existed = bool(await self._call("delete", stream_id, [self._prefix, stream_id]))
        if self.keys.cluster:
            await self._io(self._client.srem(self._key("streams"), stream_id))  # type: ignore[union-attr]
        return existed
