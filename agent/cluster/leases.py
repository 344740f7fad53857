"""Fenced stream leases in Redis: one key per stream, `"<token> <agent>"` with a TTL, in the stream's slot.

Claiming a free lease INCRs the stream's epoch: the new owner's token is larger than every earlier one, and
the memory's append script refuses a chunk whose token is not the one the lease holds now (FSAMEM_FENCED),
so an agent that lost its lease (paused, partitioned, killed mid-append) cannot write after its successor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.memory.redis_scripts import KeyLayout

# KEYS: lease, epoch. ARGV: agent, ttl ms. Returns the token (>0), or 0 when another agent holds it.
CLAIM = r"""
local cur = redis.call('GET', KEYS[1])
if cur then
  local token, who = string.match(cur, '^(%d+) (.+)$')
  if who == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(token)
  end
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
return token
"""

# KEYS: lease. ARGV: "<token> <agent>", ttl ms. Returns 1 if renewed, 0 if the lease is no longer ours.
RENEW = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease. ARGV: "<token> <agent>". Returns 1 if released, 0 if it was not ours.
RELEASE = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease as stored: its stream, owner, fencing token and remaining time."""

    stream: str
    agent: str
    token: int
    ttl_s: float

    @property
    def value(self) -> str:
        return f"{self.token} {self.agent}"


def parse_lease(stream: str, raw: bytes | str | None, ttl_ms: int) -> Lease | None:
    """A lease from its stored value (None when free or unreadable)."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    token, _, agent = text.partition(" ")
    if not token.isdigit() or not agent:
        return None
    return Lease(stream, agent, int(token), max(ttl_ms, 0) / 1e3)


class LeaseStore:
    """Claims, renews, releases and lists the stream leases of one memory's key space."""

    def __init__(self, client: Any, keys: KeyLayout, agent_id: str, lease_s: float) -> None:
        self._client = client
        self._keys = keys
        self._agent = agent_id
        self._ttl_ms = int(lease_s * 1000)

    async def claim(self, stream: str) -> int | None:
        """Take the stream's lease if it is free (or already ours); returns the fencing token, else None."""
        token = await self._client.eval(
            CLAIM, 2, self._keys.lease(stream), self._keys.epoch(stream), self._agent, self._ttl_ms
        )
        return int(token) or None

    async def renew(self, stream: str, token: int) -> bool:
        """Extend our lease; False when it expired or passed to another agent (stop ingesting then)."""
        value = f"{token} {self._agent}"
        return bool(await self._client.eval(RENEW, 1, self._keys.lease(stream), value, self._ttl_ms))

    async def release(self, stream: str, token: int) -> bool:
        """Give the lease up at once so another agent claims the stream on its next tick."""
        return bool(await self._client.eval(RELEASE, 1, self._keys.lease(stream), f"{token} {self._agent}"))

    async def read(self, stream: str) -> Lease | None:
        """The stream's current lease, None when free."""
        key = self._keys.lease(stream)
        raw = await self._client.get(key)
        ttl = await self._client.pttl(key) if raw is not None else 0
        return parse_lease(stream, raw, ttl)
