"""One agent's part in a cluster: heartbeat, fenced stream leases, re-taking dead agents' questions.

Every `period_s` the member renews its agent key and its leases (a lease it lost stops that ingest at
once), reads the shared stream set, re-takes the questions whose taker died before answering (journal.py),
and claims free streams it may ingest (pins) up to min(capacity, its fair share). A stopping agent first
hands its streams over (ingest stopped, leases released: a peer claims them on its next tick) and leaves
new questions to its live peers, answers the questions it took, and only then leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError

from agent.cluster.config import ClusterConfig
from agent.cluster.journal import Journal
from agent.cluster.leases import LeaseStore
from agent.cluster.registry import AgentInfo, Registry
from agent.cluster.status import ClusterStatus, read_status
from agent.config import StreamSection
from agent.memory.redis import RedisTokenMemory
from agent.mqtt import IncomingMessage
from common.cancel import stop_task

logger = logging.getLogger(__name__)

LOST = 0  # the fence of a stream given up: no lease has token 0, so its appends are refused

StartIngest = Callable[[StreamSection], "asyncio.Task[None]"]
StopIngest = Callable[[str], None]


@dataclass
class _Owned:
    section: StreamSection
    token: int
    task: asyncio.Task[None]
    claimed_at: float


class ClusterMetrics:
    """The cluster's Prometheus metrics, in the agent's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.owned = Gauge("flexselect_cluster_streams_owned", "Streams this agent ingests", registry=r)
        self.capacity = Gauge("flexselect_cluster_capacity", "Streams this agent may ingest", registry=r)
        self.streams = Gauge("flexselect_cluster_streams", "Streams in the cluster", registry=r)
        self.unowned = Gauge("flexselect_cluster_streams_unowned", "Streams no agent ingests now", registry=r)
        self.agents = Gauge("flexselect_cluster_agents_alive", "Agents with a live heartbeat", registry=r)
        self.claims = Counter(
            "flexselect_cluster_claims_total",
            "Leases claimed (takeover: the stream had an owner)",
            ["kind"],
            registry=r,
        )
        self.lost = Counter("flexselect_cluster_leases_lost_total", "Leases lost before release", registry=r)
        self.adopted = Counter(
            "flexselect_cluster_adopted_questions_total", "Questions re-taken from dead agents", registry=r
        )


class ClusterMember:
    """Runs the lease loop for one agent; the app gives it ways to start and stop ingest and to answer."""

    def __init__(
        self,
        config: ClusterConfig,
        memory: RedisTokenMemory,
        *,
        start_ingest: StartIngest,
        stop_ingest: StopIngest,
        on_adopted: Callable[[IncomingMessage], Awaitable[None]],
        publish_status: Callable[[ClusterStatus], Awaitable[None]],
        metrics: CollectorRegistry,
    ) -> None:
        self.config = config
        self.memory = memory
        client = memory.client
        self.registry = Registry(client, memory.keys.prefix)
        self.leases = LeaseStore(client, memory.keys, config.agent_id, config.lease_s)
        self.journal = Journal(client, self.registry, config.agent_id, timeout_s=config.lease_s)
        self.metrics = ClusterMetrics(metrics)
        self.metrics.capacity.set(config.capacity)
        self._start_ingest = start_ingest
        self._stop_ingest = stop_ingest
        self._on_adopted = on_adopted
        self._publish_status = publish_status
        self.owned: dict[str, _Owned] = {}
        self.streams: dict[str, StreamSection] = {}
        self._started_at = time.time()
        self._last_renewed = time.monotonic()
        self._last_status = 0.0
        self._loop: asyncio.Task[None] | None = None
        self._leaving = False
        self._peers = 0  # other live agents at the last tick

    # ------------------------------------------------------------------------------------------ lifecycle
    async def start(self, configured: list[StreamSection]) -> None:
        """Add the configured streams to the shared set, take a first share, then tick in the background."""
        await self.registry.put_streams(configured)
        await self.tick()
        self._loop = asyncio.create_task(self._run(), name="cluster")

    async def handover(self) -> None:
        """Stop ingesting and release every lease now, so peers take the streams on their next tick."""
        if self._loop is not None:
            await stop_task(self._loop, "the cluster tick loop")
            self._loop = None
        self._leaving = True
        self.journal.yielding = self._peers > 0  # the peers have their own copy of every new question
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.config.lease_s):
                await self._heartbeat()  # peers stop counting us before our streams come free
        for stream in list(self.owned):
            await self._drop(stream, release=True)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.config.lease_s):
                await self._heartbeat()
        logger.info("cluster: handed every stream over")

    async def leave(self) -> None:
        """After the last reply: mark our questions done, delete the liveness key and registry entry."""
        await self.journal.finish()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.config.lease_s):
                await self.registry.forget(self.config.agent_id)
                await self.publish_status()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.period_s)
            try:
                async with asyncio.timeout(self.config.lease_s):  # a stuck Redis call must not stop fencing
                    await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("cluster tick failed: %s", exc)
                self._self_fence()

    def _self_fence(self) -> None:
        """Without a renewal for a whole lease our leases may have passed on: stop ingesting them."""
        if self.owned and time.monotonic() - self._last_renewed > self.config.lease_s:
            logger.error("cluster: no lease renewal for %.1f s; stopping ingest", self.config.lease_s)
            for stream in list(self.owned):
                owned = self.owned.pop(stream)
                owned.task.cancel()
                self.memory.set_fence(stream, LOST)  # not awaited: a late append is refused
                self._stop_ingest(stream)
                self.metrics.lost.inc()

    # ------------------------------------------------------------------------------------------ one tick
    async def tick(self) -> None:
        """Heartbeat, renew, follow the stream set, re-take dead agents' questions, claim free streams."""
        await self._heartbeat()
        await self._renew()
        self.streams = await self.registry.streams()
        for stream in [s for s in self.owned if s not in self.streams]:
            logger.info("cluster: stream %s was removed from the cluster", stream)
            await self._drop(stream, release=True)
        agents = await self.registry.agents()
        alive = [a for a, (info, up) in agents.items() if up and not info.leaving]
        self._peers = len([a for a in alive if a != self.config.agent_id])
        await self._retake()
        for agent, (_, up) in agents.items():
            if not up and agent != self.config.agent_id:
                await self._forget_if_free(agent)
        await self._claim(len(alive))
        await self._shed(agents)
        self.metrics.owned.set(len(self.owned))
        self.metrics.streams.set(len(self.streams))
        self.metrics.agents.set(len(alive))
        if time.monotonic() - self._last_status >= self.config.status_interval_s:
            await self.publish_status()

    async def _heartbeat(self) -> None:
        info = AgentInfo(
            id=self.config.agent_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            capacity=self.config.capacity,
            labels=self.config.labels,
            streams={s: o.claimed_at for s, o in self.owned.items()},
            started_at=self._started_at,
            seen_at=time.time(),
            leaving=self._leaving,
        )
        await self.registry.heartbeat(info, self.config.lease_s)

    async def _renew(self) -> None:
        for stream, owned in list(self.owned.items()):
            if not await self.leases.renew(stream, owned.token):
                logger.error("cluster: lost the lease of %s (token %d); stops", stream, owned.token)
                self.metrics.lost.inc()
                await self._drop(stream, release=False)
        self._last_renewed = time.monotonic()

    async def _claim(self, alive: int) -> None:
        eligible = sorted(s for s in self.streams if self.config.may_ingest(s))
        share = math.ceil(len(self.streams) / max(alive, 1))
        target = min(self.config.capacity, max(share, 1))
        free = 0
        for stream in eligible:
            if stream in self.owned:
                continue
            lease = await self.leases.read(stream)
            if lease is not None:
                continue
            free += 1
            if len(self.owned) >= target:
                continue
            token = await self.leases.claim(stream)
            if token is None:
                continue
            free -= 1
            self.metrics.claims.labels("takeover" if token > 1 else "first").inc()
            self.memory.set_fence(stream, token)
            task = self._start_ingest(self.streams[stream])
            self.owned[stream] = _Owned(self.streams[stream], token, task, time.time())
            logger.info("cluster: %s now ingests %s (token %d)", self.config.agent_id, stream, token)
        self.metrics.unowned.set(free)

    async def _shed(self, agents: dict[str, tuple[AgentInfo, bool]]) -> None:
        """Release one stream per tick while we hold more than our share and a live peer has room for it.

        This is how a joining agent gets work: the stream moves with one tick's gap (release, then the
        peer's claim), its memory stays in Redis.
        """
        alive = {a: info for a, (info, up) in agents.items() if up and not info.leaving}
        share = math.ceil(len(self.streams) / max(len(alive), 1))
        if len(self.owned) <= share:
            return
        for stream, _ in sorted(self.owned.items(), key=lambda kv: -kv[1].claimed_at):
            pin = self.config.pins.get(stream, {})
            taker = [
                a
                for a, info in alive.items()
                if a != self.config.agent_id
                and len(info.streams) < min(info.capacity, share)
                and all(info.labels.get(k) == v for k, v in pin.items())
            ]
            if taker:
                logger.info(
                    "cluster: %s hands %s over to balance (share %d)", self.config.agent_id, stream, share
                )
                await self._drop(stream, release=True)
                return

    async def _drop(self, stream: str, *, release: bool) -> None:
        owned = self.owned.pop(stream, None)
        if owned is None:
            return
        self.memory.set_fence(stream, LOST)  # a late append (or a buffered one flushed later) is refused
        await stop_task(owned.task, f"the ingest of {stream}")
        self._stop_ingest(stream)
        if release:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.config.lease_s):
                    await self.leases.release(stream, owned.token)

    async def _retake(self) -> None:
        questions = await self.journal.retake(self.registry.alive)
        if questions:
            logger.warning("cluster: answering %d questions whose agent died", len(questions))
            self.metrics.adopted.inc(len(questions))
        for message in questions:
            await self._on_adopted(message)

    async def _forget_if_free(self, agent: str) -> None:
        """Drop a dead agent from the registry once no lease names it any more."""
        leased = [s for s in self.streams if (lease := await self.leases.read(s)) and lease.agent == agent]
        if not leased:
            await self.registry.forget(agent)

    # ------------------------------------------------------------------------------------------- status
    async def status(self) -> ClusterStatus:
        """The whole cluster as seen from Redis now."""
        return await read_status(self.memory.client, self.memory.keys, self.config)

    async def publish_status(self) -> None:
        """Publish the cluster status (retained) through the app."""
        self._last_status = time.monotonic()
        await self._publish_status(await self.status())

    # ----------------------------------------------------------------------------------------- commands
    async def command(self, topic: str, payload: bytes) -> None:
        """Add (a stream section as JSON) or remove (`{"id": ...}`) a stream of the cluster.

        Raises:
            ValueError: the payload is not a valid stream section or removal.
        """
        if topic.endswith("/add"):
            try:
                section = StreamSection.model_validate_json(payload)
            except ValidationError as exc:
                raise ValueError(f"not a stream section: {exc.errors()[0]['msg']}") from None
            await self.registry.put_streams([section])
        else:
            try:
                stream = json.loads(payload)["id"]
            except (ValueError, KeyError, TypeError):
                raise ValueError('a stream removal is {"id": "<stream id>"}') from None
            await self.registry.remove_stream(str(stream))
