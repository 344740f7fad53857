"""The token memory's error tree.

TokenMemoryError
├── MemoryInputError (also ValueError)   a chunk, stream id or argument the memory cannot take
├── LayoutMismatchError                  a chunk whose dtype/width differs from what its stream holds
├── CorruptEntryError                    stored data that does not decode (reported and skipped by reads)
├── RowsGoneError                        rows asked by `read_rows` were evicted since their layout was read
├── ConfigMismatchError                  a shared memory built with other structural knobs
├── FencedError                         an append by an agent whose stream lease has passed to another
├── MemoryUnavailableError               the backend cannot be reached now (the memory retries)
├── MemoryAuthError                      the backend refused the credentials (not retried at start)
└── MemoryClosedError                    use before `connect()` or after `close()`
"""

from __future__ import annotations


class TokenMemoryError(Exception):
    """Base class of every error raised by `agent.memory`."""


class MemoryInputError(TokenMemoryError, ValueError):
    """An argument the memory cannot take: bad stream id, misshapen attention, oversized chunk."""


class LayoutMismatchError(TokenMemoryError):
    """A chunk's token layout (dtype, width, deepstack levels) differs from the one its stream stores."""


class CorruptEntryError(TokenMemoryError):
    """Stored bytes or metadata that do not decode; reads log, count and skip them."""


class RowsGoneError(TokenMemoryError):
    """Rows asked for by `read_rows` are no longer retained (evicted after `read_layout`)."""


class ConfigMismatchError(TokenMemoryError):
    """The shared memory was built with other structural knobs (bucket, floor, recent window)."""


class FencedError(TokenMemoryError):
    """A fenced append refused: the stream's lease no longer holds this writer's token (agent.cluster)."""


class MemoryUnavailableError(TokenMemoryError):
    """The backend is unreachable; the memory reconnects with back-off and buffers appends meanwhile."""


class MemoryAuthError(TokenMemoryError):
    """The backend refused the configured credentials; a retry cannot fix that, the config must change."""


class MemoryClosedError(TokenMemoryError):
    """The memory is not connected (never opened, or already closed)."""
