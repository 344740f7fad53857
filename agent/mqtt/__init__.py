"""Questions, answers, watches and health over MQTT: config, topics, messages and the broker link."""

from agent.mqtt.config import BackoffConfig, MqttConfig, TlsConfig
from agent.mqtt.connect import bounded
from agent.mqtt.errors import (
    ConnectError,
    ConnectRefusedError,
    LinkClosedError,
    LinkError,
    LinkTimeoutError,
    MqttAgentError,
    RequestError,
    TopicError,
)
from agent.mqtt.inbox import IncomingMessage
from agent.mqtt.link import LinkCounters, LinkState, MqttLink
from agent.mqtt.messages import (
    AnswerMessage,
    AskRequest,
    ErrorCode,
    ErrorDetail,
    ErrorMessage,
    Evidence,
    StreamStatus,
    TokenCounts,
    WatchEvent,
    WatchList,
    WatchRemove,
    WatchSpec,
    parse_ask,
    parse_watch_add,
    parse_watch_remove,
)
from agent.mqtt.topics import Topics

__all__ = [
    "AnswerMessage",
    "AskRequest",
    "BackoffConfig",
    "ConnectError",
    "ConnectRefusedError",
    "ErrorCode",
    "ErrorDetail",
    "ErrorMessage",
    "Evidence",
    "IncomingMessage",
    "LinkClosedError",
    "LinkCounters",
    "LinkError",
    "LinkState",
    "LinkTimeoutError",
    "MqttAgentError",
    "MqttConfig",
    "MqttLink",
    "RequestError",
    "StreamStatus",
    "TlsConfig",
    "TokenCounts",
    "TopicError",
    "Topics",
    "WatchEvent",
    "WatchList",
    "WatchRemove",
    "WatchSpec",
    "bounded",
    "parse_ask",
    "parse_watch_add",
    "parse_watch_remove",
]
