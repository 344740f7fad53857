"""Service setup shared by the agent's wiring and its commands: the steps `agent.app` calls by name.

The config, the model and its engine, the parts under an exit stack, the cluster member, starting ingest,
the streams a question may ask about, and serving until a stop signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Callable, Collection, Coroutine
from pathlib import Path
from typing import Any, Protocol

import torch

from agent.cluster.member import ClusterMember
from agent.config import AgentConfig, ConfigError, StreamSection, load_config
from agent.config_checks import selector_cache_problem, selector_cache_rows
from agent.engine import Engine
from agent.ingests import Ingests
from agent.memory import MemoryState, TokenMemory, open_memory
from agent.memory.errors import TokenMemoryError
from agent.memory.redis import RedisTokenMemory
from agent.memory.thumbnails import open_pictures
from agent.metrics import AgentMetrics
from agent.models import resolve_model
from agent.mqtt import IncomingMessage, MqttLink
from agent.pictures import Pictures
from agent.watches import WatchBook
from agent.worker import ModelWorker
from common.cancel import stop_task
from flexselect.adapters import AdapterError, VideoLLMAdapter, load_adapter
from flexselect.decoding import StaticDecoder


class Servable(Protocol):
    """What `serve_forever` needs of the app (a protocol, so the wiring and its runner import no cycle)."""

    ready: asyncio.Event

    def stop(self) -> None: ...

    async def run(self) -> None: ...


def load(path: Path | None) -> AgentConfig:
    """The agent config at `path` (None: the embedded defaults); a bad one raises `ConfigError`."""
    return load_config(path)


def build_adapter(config: AgentConfig) -> VideoLLMAdapter:
    """Load the configured model on its device."""
    device = config.model.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = config.model.dtype if config.model.dtype == "auto" else getattr(torch, config.model.dtype)
    return load_adapter(resolve_model(config.model.name), dtype=dtype, device=device)


def build_engine(adapter: VideoLLMAdapter, config: AgentConfig, book: WatchBook) -> Engine:
    """The engine over `adapter`, its standing prompts the config's and then the watches' questions; with
    `scorer: lite` its selector caches sized for what the memory retains (`selector_cache_rows`).

    With `model.decode_graphs` the adapter's answers decode by CUDA graph replays (`StaticDecoder`).

    Raises:
        ConfigError: the selector does not load, `model.selector_cache_max_bytes` cannot hold the rows the
            memory retains per stream, or `model.decode_graphs` is set for a model not on a CUDA device.
    """
    prompts = [*config.ingest.standing_prompts, *book.questions()]
    retained = config.memory.retention.max_tokens_per_stream
    engine = Engine(
        adapter,
        config.model,
        standing_prompts=prompts,
        cache_max_rows=selector_cache_rows(retained),
        cache_max_bytes=config.model.selector_cache_max_bytes,
    )
    if engine.caches is not None:
        problem = selector_cache_problem(engine.caches.max_bytes, retained, engine.caches.row_bytes)
        if problem is not None:
            raise ConfigError(problem)
    if config.model.decode_graphs:
        try:
            StaticDecoder(adapter, graphs=True).attach()
        except AdapterError as error:
            raise ConfigError(f"model.decode_graphs: {error}") from error
    return engine


async def open_parts(
    stack: contextlib.AsyncExitStack, config: AgentConfig, engine: Engine
) -> tuple[TokenMemory, Pictures | None, ModelWorker, MqttLink]:
    """Memory, evidence pictures, model worker and MQTT link, each closed by `stack` in reverse."""
    memory = await stack.enter_async_context(open_memory(config.memory))
    pictures = None
    if config.pictures.enabled:
        store = await stack.enter_async_context(open_pictures(config.memory, config.pictures))
        pictures = Pictures(store, memory, config.pictures)
    q = config.questions
    worker = await stack.enter_async_context(
        ModelWorker(
            engine,
            # questions, the watches' share, and one standing-prompt update: none takes another's slot
            question_slots=q.queue_size + config.watch_limits.max_running + 1,
            chunk_slots=config.ingest.queue_chunks,
            max_batch_chunks=config.ingest.max_batch_chunks,
            max_consecutive=q.max_consecutive,
        )
    )
    group = config.cluster.share_group
    topics = config.cluster.enabled and MqttLink(config.mqtt).topics.cluster_commands(group)
    link = MqttLink(config.mqtt, subscriptions=topics or None)
    await link.__aenter__()
    stack.push_async_callback(link.close, stopped=False)  # a crash leaves `offline`
    return memory, pictures, worker, link


def cluster_member(
    config: AgentConfig,
    memory: TokenMemory,
    ingests: Ingests,
    link: MqttLink,
    metrics: AgentMetrics,
    on_adopted: Callable[[IncomingMessage], Awaitable[None]],
) -> ClusterMember:
    """The agent's part in a cluster: it ingests (through `ingests`) the streams whose leases it holds."""
    if not isinstance(memory, RedisTokenMemory):
        raise ConfigError("cluster.enabled needs memory.backend redis (the cluster shares it)")
    return ClusterMember(
        config.cluster,
        memory,
        start_ingest=ingests.start,
        stop_ingest=ingests.forget,
        on_adopted=on_adopted,
        publish_status=lambda s: link.publish(link.topics.cluster_status, s.payload(), retain=True),
        metrics=metrics.registry,
    )


async def start_ingest(streams: list[StreamSection], ingests: Ingests, cluster: ClusterMember | None) -> None:
    """Ingest every configured stream, or (a clustered agent) those whose leases the cluster gives it."""
    if cluster is not None:
        await cluster.start(list(streams))
    else:
        for section in streams:
            ingests.start(section)


async def known_streams(
    ingested: Collection[str], memory: TokenMemory, cluster: ClusterMember | None
) -> list[str]:
    """Ingested streams plus those the memory still remembers (e.g. from before a restart) and the
    cluster's shared set."""
    remembered: list[str] = []
    if memory.state == MemoryState.READY:
        with contextlib.suppress(TokenMemoryError):  # lost meanwhile: the read answers memory_unavailable
            remembered = await memory.streams()
    shared = list(cluster.streams) if cluster is not None else []
    return sorted({*ingested, *remembered, *shared})


async def serve_until(
    stop: Coroutine[Any, Any, Any], until: Coroutine[Any, Any, None] | None
) -> BaseException | None:
    """Wait for `stop` or for `until` to end; returns the error `until` raised, if any."""
    waiters = [asyncio.create_task(stop)]
    if until is not None:
        waiters.append(asyncio.create_task(until))
    done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.gather(*(stop_task(task, "waiting for the agent's stop") for task in pending))
    return next((t.exception() for t in done if not t.cancelled() and t.exception()), None)


async def serve_forever(app: Servable) -> None:
    """`app.run()` until SIGTERM or SIGINT calls `app.stop()` (the `serve` command's main).

    Once the agent is ready, everything alive (the imported libraries, the model: millions of objects) is
    moved out of the garbage collector's reach with `gc.freeze()`. Full collections otherwise walk it all:
    the last one, at interpreter exit, took 5 to 8 s on a loaded 2-core machine, which is most of why a
    stopped agent was slow to exit (issue 18).
    """
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.stop)
    running = asyncio.create_task(app.run(), name="agent")
    ready = asyncio.create_task(app.ready.wait())
    await asyncio.wait([running, ready], return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if app.ready.is_set():
        gc.collect()
        gc.freeze()
    await running
