"""Questions, answers, watches and health over MQTT: config, topics, messages and the broker link."""

from __future__ import annotations

from common.lazy import lazy_exports

# Each public name and the module that defines it, imported on first use (common.lazy), so that importing
# a light submodule (a config, the errors) loads none of the heavy ones (torch, av, aiomqtt, redis).
_EXPORTS = {
    "AnswerMessage": "agent.mqtt.messages",
    "AskRequest": "agent.mqtt.messages",
    "BackoffConfig": "common.backoff",
    "bounded": "agent.mqtt.connect",
    "ConnectError": "agent.mqtt.errors",
    "ConnectRefusedError": "agent.mqtt.errors",
    "ErrorCode": "agent.mqtt.errors",
    "ErrorDetail": "agent.mqtt.messages",
    "ErrorMessage": "agent.mqtt.messages",
    "Evidence": "agent.mqtt.messages",
    "IncomingMessage": "agent.mqtt.inbox",
    "LinkClosedError": "agent.mqtt.errors",
    "LinkCounters": "agent.mqtt.link",
    "LinkError": "agent.mqtt.errors",
    "LinkState": "agent.mqtt.link",
    "LinkTimeoutError": "agent.mqtt.errors",
    "MqttAgentError": "agent.mqtt.errors",
    "MqttConfig": "agent.mqtt.config",
    "MqttLink": "agent.mqtt.link",
    "parse_ask": "agent.mqtt.messages",
    "parse_watch_add": "agent.mqtt.messages",
    "parse_watch_remove": "agent.mqtt.messages",
    "RequestError": "agent.mqtt.errors",
    "StreamStatus": "agent.mqtt.messages",
    "TlsConfig": "agent.mqtt.config",
    "TokenCounts": "agent.mqtt.messages",
    "TopicError": "agent.mqtt.errors",
    "Topics": "agent.mqtt.topics",
    "WatchEvent": "agent.mqtt.messages",
    "WatchList": "agent.mqtt.messages",
    "WatchRemove": "agent.mqtt.messages",
    "WatchSpec": "agent.mqtt.messages",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
