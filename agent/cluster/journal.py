"""Question claims in Redis: every agent receives every question, exactly one claims it, survivors re-take.

Each clustered agent subscribes to the question topics plainly (not as a shared subscription), so the
broker gives every agent its own copy. An agent claims a question with one atomic script on a key named by
the digest of the message (topic, payload, correlation data): `"taken <agent>"`, first writer wins. The
winner answers; once its reply is published it marks the claim `done` for `DONE_GRACE_S` (late copies of
the same message then see it was answered). The losers keep their copy: on every tick a survivor reads
the claims it holds copies of, drops those `done` (or gone), and re-takes (compare-and-set) those whose
taker's liveness key expired, answering them itself, late.

Why not a shared subscription: Mosquitto 2.0 drops the shared-subscription messages it already wrote to a
killed agent's socket (it neither re-routes them nor keeps them for a clean session), so questions asked
in the second or two before the broker notices a `kill -9` were lost with no reply. With a copy at every
agent nothing depends on the broker: the claim is in Redis, the cover is every other agent.

Limits: a reply published just before a `kill -9` and its `done` mark (one Redis round trip) is answered
again by a survivor, and an agent paused longer than its lease whose questions were re-taken answers them
too (askers match replies by request id). A byte-identical repeat of a request within `DONE_GRACE_S` of
its reply is taken for a late copy and gets no second reply (a retry after a timeout comes later).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agent.cluster.registry import Registry
from agent.mqtt import IncomingMessage

logger = logging.getLogger(__name__)

DONE_GRACE_S = 5.0  # how long a `done` mark stays: the copies of one publish reach every agent well within
TAKEN_TTL_S = 600.0  # a claim's safety TTL (it stays while its taker lives; this only bounds garbage)
MAX_HELD = 10_000  # copies of others' questions kept for re-taking; the oldest go first beyond it
MINE = "mine"

# KEYS: claim. ARGV: agent, ttl ms. Returns "mine" (taken now, or already ours), else the current value.
TAKE = r"""
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], 'taken ' .. ARGV[1], 'PX', ARGV[2])
  return 'mine'
end
if cur == 'taken ' .. ARGV[1] then return 'mine' end
return cur
"""

# KEYS: claim. ARGV: the value seen ("taken <dead agent>"), agent, ttl ms. Returns 1 if re-taken.
RETAKE = r"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'taken ' .. ARGV[2], 'PX', ARGV[3])
return 1
"""


def digest(message: IncomingMessage) -> str:
    """The identity of one publish as every agent receives it (no MQTT field is unique across clients)."""
    h = hashlib.sha256()
    for part in (message.topic.encode(), message.payload, message.correlation_data or b""):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:32]


@dataclass
class _Held:
    """A copy of a question another agent took: kept until it is done, or re-taken if its taker dies."""

    message: IncomingMessage
    holder: str
    since: float


class Journal:
    """This agent's claims on questions, and the copies it holds of questions other agents took."""

    def __init__(self, client: Any, registry: Registry, agent_id: str, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s  # bounds each Redis call (the client has no socket timeout)
        self._registry = registry
        self._agent = agent_id
        self._taken_ms = int(TAKEN_TTL_S * 1000)
        self._done_ms = int(DONE_GRACE_S * 1000)
        self.held: dict[str, _Held] = {}
        self.mine: set[str] = set()
        self.yielding = False  # set while this agent stops and a live peer takes the questions instead

    def claim_key(self, entry: str) -> str:
        """The claim of a question (hash-tagged by its digest: one slot per question on a Cluster)."""
        return f"{self._registry.prefix}:cluster:q:{{{entry}}}"

    async def add(self, message: IncomingMessage) -> str | None:
        """Claim a question as received; its entry id if this agent answers it, None if another does.

        A stopping agent (`yielding`) leaves every question to its peers. If Redis cannot be reached the
        question is answered here anyway (at least once rather than never).
        """
        entry = digest(message)
        if self.yielding:
            return None
        try:
            async with asyncio.timeout(self._timeout_s):
                raw = await self._client.eval(TAKE, 1, self.claim_key(entry), self._agent, self._taken_ms)
            seen = _text(raw)
        except Exception as exc:
            logger.warning("a question could not be claimed (%s); answering it here", exc)
            return entry
        if seen == MINE:
            self.mine.add(entry)
            self.held.pop(entry, None)
            return entry
        if seen.startswith("taken "):
            self._hold(entry, message, seen.removeprefix("taken "))
        return None

    async def remove(self, entry: str | None) -> None:
        """Mark a question answered (its reply is published): late copies and held copies drop it."""
        if entry is None:
            return
        self.mine.discard(entry)
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._client.set(self.claim_key(entry), b"done", px=self._done_ms)
        except Exception as exc:  # held copies then wait for the TTL; none is answered twice while we live
            logger.warning("a question was not marked done: %s", exc)

    async def finish(self) -> None:
        """On a clean stop: mark done every question this agent took (each got its answer, or
        `shutting_down` when the stop cancelled it), including those whose own mark the stop cut short."""
        for entry in list(self.mine):
            await self.remove(entry)

    async def retake(self, alive: Callable[[str], Awaitable[bool]]) -> list[IncomingMessage]:
        """Re-take the held questions whose taker died before answering; drop those done or gone."""
        now = time.monotonic()
        taken: list[IncomingMessage] = []
        verdicts: dict[str, bool] = {}
        for entry, held in list(self.held.items()):
            raw = await self._client.get(self.claim_key(entry))
            seen = _text(raw) if raw is not None else None
            if seen is None or seen == "done" or now - held.since > TAKEN_TTL_S:
                del self.held[entry]
                continue
            holder = seen.removeprefix("taken ")
            if holder == self._agent:
                del self.held[entry]
                continue
            held.holder = holder
            if holder not in verdicts:
                verdicts[holder] = await alive(holder)
            if verdicts[holder]:
                continue
            won = await self._client.eval(RETAKE, 1, self.claim_key(entry), seen, self._agent, self._taken_ms)
            del self.held[entry]
            if int(won):
                self.mine.add(entry)
                taken.append(held.message)
        return taken

    def _hold(self, entry: str, message: IncomingMessage, holder: str) -> None:
        if entry not in self.held and len(self.held) >= MAX_HELD:
            oldest = min(self.held, key=lambda e: self.held[e].since)
            del self.held[oldest]
            logger.warning("more than %d questions held for re-taking; the oldest is dropped", MAX_HELD)
        self.held[entry] = _Held(message, holder, time.monotonic())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
