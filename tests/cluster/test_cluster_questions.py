"""Question claims on the real Redis: one agent takes each question, a survivor re-takes a dead taker's."""

from __future__ import annotations

import asyncio
import random

import pytest
import redis.asyncio as aioredis

from agent.cluster.journal import Journal
from agent.cluster.registry import Registry
from agent.memory.config import RedisConfig
from agent.memory.redis import client_kwargs
from agent.mqtt import AskRequest, IncomingMessage
from common.cancel import stop_task
from tests.memory.memory_helpers import REDIS_URL, drop_prefix

pytestmark = [pytest.mark.services]


def question(rid: str) -> IncomingMessage:
    payload = AskRequest(id=rid, question="what color was the square ?").payload()
    return IncomingMessage(topic="site/ask", payload=payload)


@pytest.fixture
async def client(redis_prefix: str):  # type: ignore[no-untyped-def]
    redis = aioredis.Redis.from_url(REDIS_URL)
    yield redis
    await redis.aclose()
    drop_prefix(REDIS_URL, redis_prefix)


def journals(client: aioredis.Redis, prefix: str, *agents: str) -> list[Journal]:
    registry = Registry(client, prefix)
    return [Journal(client, registry, agent, timeout_s=2.0) for agent in agents]


async def test_each_copy_of_a_question_is_taken_by_exactly_one_agent(client, redis_prefix):
    agents = journals(client, redis_prefix, "a", "b", "c")
    message = question("q-1")
    entries = await asyncio.gather(*(j.add(message) for j in agents))
    takers = [j for j, e in zip(agents, entries, strict=True) if e is not None]
    assert len(takers) == 1
    assert [len(j.held) for j in agents if j is not takers[0]] == [1, 1]


async def test_a_late_copy_of_an_answered_question_is_not_taken_again(client, redis_prefix):
    a, b = journals(client, redis_prefix, "a", "b")
    message = question("q-2")
    entry = await a.add(message)
    await a.remove(entry)
    assert await b.add(message) is None
    assert b.held == {}


async def test_a_held_question_is_dropped_once_its_taker_answered(client, redis_prefix):
    a, b = journals(client, redis_prefix, "a", "b")
    message = question("q-3")
    entry = await a.add(message)
    assert await b.add(message) is None
    assert await b.retake(alive=_always(True)) == [] and len(b.held) == 1  # a is still answering
    await a.remove(entry)
    assert await b.retake(alive=_always(False)) == []
    assert b.held == {}


async def test_one_survivor_retakes_a_question_whose_taker_died(client, redis_prefix):
    dead, b, c = journals(client, redis_prefix, "dead", "b", "c")
    message = question("q-4")
    assert await dead.add(message) is not None
    assert await b.add(message) is None and await c.add(message) is None
    retaken = await asyncio.gather(b.retake(alive=_dead("dead")), c.retake(alive=_dead("dead")))
    assert sorted(len(r) for r in retaken) == [0, 1]
    assert [m.payload for r in retaken for m in r] == [message.payload]
    winner, loser = (b, c) if retaken[0] else (c, b)
    entry = await winner.add(message)  # the re-taker's answer goes through add() again: its claim holds
    assert entry is not None and winner.held == {}
    await winner.remove(entry)
    assert await loser.retake(alive=_dead("dead")) == [] and loser.held == {}


async def test_a_stopping_agent_leaves_new_questions_to_its_peers(client, redis_prefix):
    a, b = journals(client, redis_prefix, "a", "b")
    a.yielding = True
    message = question("q-5")
    assert await a.add(message) is None
    assert await b.add(message) is not None


async def test_a_task_cancelled_during_a_call_of_the_memory_client_stops_at_the_first_cancel():
    # The memory's client options; with a socket timeout, redis-py's asyncio.wait_for lost most cancels
    # on Python 3.11 (58 of 60 measured), and a stopping agent waited forever for its ingest to end.
    redis = aioredis.Redis.from_url(REDIS_URL, **client_kwargs(RedisConfig(url=REDIS_URL)))

    async def busy() -> None:
        while True:
            await redis.get("fsatest-none")

    ignored = 0
    try:
        for _ in range(40):
            task = asyncio.create_task(busy())
            await asyncio.sleep(random.uniform(0.001, 0.01))
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=1.0)
            if not done:
                ignored += 1
                assert await stop_task(task, "busy", timeout_s=5.0)
    finally:
        await redis.aclose()
    assert ignored == 0


def _always(value: bool):  # type: ignore[no-untyped-def]
    async def alive(agent: str) -> bool:
        return value

    return alive


def _dead(name: str):  # type: ignore[no-untyped-def]
    async def alive(agent: str) -> bool:
        return agent != name

    return alive
