"""The MQTT layer's error tree.

MqttAgentError
├── TopicError (also ValueError)      a prefix, topic or stream name that is malformed or outside the prefix
├── RequestError (also ValueError)    a bad request payload; carries the error code answered to the requester
└── LinkError                         the broker connection
    ├── ConnectError                  cannot connect now (unreachable, timed out, busy): retried with back-off
    │   └── ConnectRefusedError       refused for good (credentials, authorisation, TLS, version): fix config
    ├── LinkTimeoutError              a network operation exceeded its timeout
    └── LinkClosedError               the link is closed (or never opened)
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Why a request got an error answer instead of an answer."""

    INVALID_JSON = "invalid_json"
    INVALID_REQUEST = "invalid_request"
    QUESTION_TOO_LONG = "question_too_long"
    UNKNOWN_STREAM = "unknown_stream"
    EMPTY_MEMORY = "empty_memory"
    DEADLINE_PASSED = "deadline_passed"
    QUEUE_FULL = "queue_full"
    TOO_MANY_WATCHES = "too_many_watches"
    MEMORY_UNAVAILABLE = "memory_unavailable"
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal"
    NOT_FOUND = "not_found"  # HTTP only: no such stream picture, watch or path
    UNAUTHORIZED = "unauthorized"  # HTTP only: the bearer token is missing or wrong


class MqttAgentError(Exception):
    """Base class of every error raised by `agent.mqtt`."""


class TopicError(MqttAgentError, ValueError):
    """A prefix, topic or topic level that is malformed (wildcards, empty levels) or outside the prefix."""


class RequestError(MqttAgentError, ValueError):
    """A request the agent refuses; answered with an `ErrorMessage` carrying `code` and `message`.

    Attributes:
        code: the machine-readable error code.
        message: one human-readable line that names the bad value and the fix.
        request_id: the request's `id` when it could be read, else None.
        reply_to: the request's `reply_to` when it could be read and is a valid reply topic, else None.
    """

    def __init__(
        self, code: ErrorCode, message: str, *, request_id: str | None = None, reply_to: str | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id
        self.reply_to = reply_to


class LinkError(MqttAgentError):
    """A problem with the broker connection."""


class ConnectError(LinkError):
    """The broker cannot be reached or refused the connection for a reason that may pass."""


class ConnectRefusedError(ConnectError):
    """The broker refused this client: username/password, authorisation, TLS certificate or MQTT version.

    Attributes:
        code: the CONNACK reason code (MQTT 5 numbering) when the broker sent one, else None.
    """

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class LinkTimeoutError(LinkError):
    """A network operation (connect, subscribe, publish, disconnect) exceeded its timeout."""


class LinkClosedError(LinkError):
    """The link is closed, or was never opened."""
