"""Three agent processes over a real Redis Cluster and Mosquitto: ownership, shared questions, takeovers."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import signal
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from agent.cluster.config import ClusterConfig
from agent.cluster.status import ClusterStatus, read_status
from agent.memory.redis_scripts import KeyLayout
from bench.cluster_agents import AgentProcess, Asker, agent_yaml
from streams.synth import WorldConfig, generate_world, write_world
from tests.mqtt.mqtt_helpers import HOST, PORT

pytestmark = [pytest.mark.services, pytest.mark.slow]

LEASE_S = 2.0
STREAMS = ["cam0", "cam1", "cam2"]
QUESTION = "what color was the square ?"
RETRYABLE = {"shutting_down", "queue_full"}
AROUND_KILL_S = 2.0  # questions are asked this long before and after the kill -9


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 120 s, 2 fps, 56x56 recording with needles, played at real time (a camera that keeps going)."""
    path = tmp_path_factory.mktemp("rec") / "long.mp4"
    world = generate_world(WorldConfig(seconds=120, fps=2, width=56, height=56, needles=3, seed=5, cell=28))
    write_world(world, path)
    return path


class Cluster:
    def __init__(self, redis_url: str, key_prefix: str) -> None:
        self.client = aioredis.RedisCluster.from_url(redis_url)
        self.keys = KeyLayout(key_prefix, cluster=True)
        self.config = ClusterConfig(enabled=True, agent_id="observer", lease_s=LEASE_S)

    async def status(self) -> ClusterStatus:
        return await read_status(self.client, self.keys, self.config)

    async def owners(self) -> dict[str, tuple[str | None, int | None]]:
        return {s.stream: (s.owner, s.token) for s in (await self.status()).streams}

    async def tokens(self, stream: str) -> int:
        return int(await self.client.hget(self.keys.skey(stream, "m"), "tokens") or 0)

    async def head(self, stream: str) -> float:
        return float(await self.client.hget(self.keys.skey(stream, "m"), "head"))

    async def wait(self, check, what: str, timeout: float) -> float:  # type: ignore[no-untyped-def]
        started = time.monotonic()
        while not await check():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{what} not within {timeout:g} s: {(await self.status()).table()}")
            await asyncio.sleep(0.1)
        return time.monotonic() - started


async def test_three_agents_share_streams_and_questions_and_survive_kill_and_sigterm(
    redis_cluster, model_dir, long_recording, prefix, tmp_path
):
    key_prefix = f"fsatest-{uuid.uuid4().hex[:8]}"
    source = {"sample_fps": 2, "chunk_seconds": 1, "realtime": True}
    streams = [{"id": s, "uri": str(long_recording), "source": source} for s in STREAMS]
    agents = [
        AgentProcess(
            tmp_path,
            agent_yaml(
                agent_id=f"a{i}",
                model=str(model_dir),
                streams=streams,
                redis_url=redis_cluster.url,
                redis_cluster=True,
                key_prefix=key_prefix,
                mqtt_host=HOST,
                mqtt_port=PORT,
                mqtt_prefix=prefix,
                capacity=3,
                lease_s=LEASE_S,
                model_extra={"budget": 16, "layer": 2, "max_new_tokens": 3},
            ),
        )
        for i in range(3)
    ]
    by_id = {a.id: a for a in agents}
    cluster = Cluster(redis_cluster.url, key_prefix)
    try:
        for agent in agents:
            agent.start()

        async def settled() -> bool:
            status = await cluster.status()
            alive = [a for a in status.agents if a.alive]
            return len(alive) == 3 and not status.unowned and len(status.streams) == 3

        await cluster.wait(settled, "three agents owning every stream", timeout=240)

        async def filled() -> bool:
            return all([await cluster.tokens(s) >= 24 for s in STREAMS])

        await cluster.wait(filled, "every stream in memory", timeout=30)
        status = await cluster.status()
        owned = [s for a in status.agents for s in a.streams]
        assert sorted(owned) == STREAMS  # every stream owned by exactly one agent

        async with Asker(HOST, PORT, prefix) as asker:
            # Each question is taken by exactly one agent, whichever stream it asks about.
            ids = [await asker.send(QUESTION, streams=[s]) for s in STREAMS * 3]
            await asker.wait_for(ids, timeout=60)
            await asyncio.sleep(1.0)  # room for duplicates to show up
            assert {i: len(asker.replies[i]) for i in ids} == {i: 1 for i in ids}
            assert all(asker.replies[i][0]["ok"] for i in ids)

            # A needle answer about the past, pinned with `until`, before the owner dies.
            victim_stream = "cam0"
            victim = by_id[(await cluster.owners())[victim_stream][0]]
            old_token = (await cluster.owners())[victim_stream][1]
            # Just after the newest stored frame: later chunks of this stream (from any owner) lie after it.
            until = datetime.fromtimestamp(await cluster.head(victim_stream) + 0.001, tz=UTC)
            before = await asker.ask(QUESTION, streams=[victim_stream], until=until.isoformat())
            tokens_before = await cluster.tokens(victim_stream)
            victim_streams = [s for s, (o, _) in (await cluster.owners()).items() if o == victim.id]

            # kill -9 while questions keep coming (also those the broker hands the victim before it notices
            # the death); the streams move within the lease + 5 s.
            around = await _ask_for(asker, AROUND_KILL_S, streams=[victim_stream])
            victim.signal(signal.SIGKILL)
            killed = time.monotonic()
            around += await _ask_for(asker, AROUND_KILL_S, streams=[victim_stream])

            async def moved() -> bool:
                owners = await cluster.owners()
                return all(owners[s][0] not in (None, victim.id) for s in victim_streams)

            await cluster.wait(moved, "takeover after kill -9", timeout=LEASE_S + 5)
            takeover_s = time.monotonic() - killed
            owners = await cluster.owners()
            tokens_after = await cluster.tokens(victim_stream)
            after = await asker.ask(QUESTION, streams=[victim_stream], until=until.isoformat())
            # Every question asked around the kill gets exactly one reply: an answer or a retryable error.
            with contextlib.suppress(TimeoutError):
                await asker.wait_for(around, timeout=60)
            await asyncio.sleep(1.0)  # room for duplicates to show up
            counts = {i: len(asker.replies.get(i, [])) for i in around}
            histogram = sorted(collections.Counter(counts.values()).items())
            print(f"takeover {takeover_s:.2f} s; {len(around)} asked; (replies, questions): {histogram}")
            assert counts == {i: 1 for i in around}

            assert takeover_s <= LEASE_S + 5
            assert owners[victim_stream][1] > old_token  # a new fencing token
            assert tokens_after >= tokens_before > 0  # the memory the stream had is still there
            assert before["ok"] and after["ok"]
            assert after["answer"] == before["answer"]
            assert after["tokens"] == before["tokens"]
            assert after["evidence"] == before["evidence"]
            for rid in around:  # answered, or a retryable error
                reply = asker.replies[rid][0]
                assert reply["ok"] or reply["error"]["code"] in RETRYABLE, reply

            # The new owner keeps ingesting the same stream (its appends pass the fence).
            new_owner = owners[victim_stream][0]
            await cluster.wait(
                lambda: _more(cluster, victim_stream, tokens_after), "ingest by the new owner", timeout=15
            )

            # SIGTERM: the stopping agent releases its leases; the last agent claims them with no gap.
            stopping = by_id[new_owner]
            last = next(a for a in agents if a.id not in (victim.id, stopping.id))
            moving = [s for s, (o, _) in (await cluster.owners()).items() if o == stopping.id]
            stopping.signal(signal.SIGTERM)
            termed = time.monotonic()

            async def handed() -> bool:
                owners = await cluster.owners()
                return all(owners[s][0] == last.id for s in moving)

            await cluster.wait(handed, "handover after SIGTERM", timeout=LEASE_S + 5)
            handover_s = time.monotonic() - termed
            assert stopping.wait(30) == 0
            assert handover_s < LEASE_S  # released, not left to expire
            final = await asker.ask(QUESTION, streams=[victim_stream])
            assert final["ok"]
            retained = json.loads(json.dumps(final["tokens"]))["retained"]
            assert retained >= after["tokens"]["retained"]
    except BaseException:
        for agent in agents:
            lines = [line for line in agent.log().splitlines() if "consumer behind" not in line]
            print(f"---- {agent.id}\n" + "\n".join(lines[-60:]))
        raise
    finally:
        for agent in agents:
            agent.stop()
        keys = [k async for k in cluster.client.scan_iter(match=f"{key_prefix}*")]
        for key in keys:
            await cluster.client.delete(key)
        await cluster.client.aclose()


async def _ask_for(asker: Asker, seconds: float, **fields: object) -> list[str]:
    """Ask a question every 0.1 s for `seconds`; returns their ids."""
    ids: list[str] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ids.append(await asker.send(QUESTION, **fields))
        await asyncio.sleep(0.1)
    return ids


async def _more(cluster: Cluster, stream: str, than: int) -> bool:
    return await cluster.tokens(stream) > than
