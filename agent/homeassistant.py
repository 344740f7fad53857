"""Home Assistant MQTT discovery: each stream a sensor of its state, each watch an event entity.

Discovery messages are retained under `<discovery_prefix>/<component>/<node_id>/<object_id>/config`; a
removed watch's message is replaced by an empty retained payload, which makes Home Assistant delete the
entity. The sensors read the agent's retained `<prefix>/<stream>/status`; each watch's events are
published (in Home Assistant's event shape, `event_type` = the stream that fired) on
`<prefix>/watches/<watch id>/event`. Every entity is available while `<prefix>/available` is `online`.
"""

from __future__ import annotations

import json
import logging
import re
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from agent.mqtt.config import MqttConfig
from agent.mqtt.messages import WatchEvent, WatchSpec

if TYPE_CHECKING:  # the link is handed in; only its type is named here, keeping the config import light
    from agent.mqtt.link import MqttLink

logger = logging.getLogger(__name__)

STREAM_STATES = ["connecting", "streaming", "stalled", "backing_off", "ended", "failed"]
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")


class HomeAssistantSection(BaseModel):
    """Home Assistant MQTT discovery (off by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, title="Publish Home Assistant MQTT discovery messages")
    discovery_prefix: str = Field(
        "homeassistant",
        pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
        title="Home Assistant's discovery prefix",
    )
    node_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        title="Node id in discovery topics; None: from the MQTT prefix",
    )


def object_id(name: str) -> str:
    """`name` as a discovery topic level: characters outside [A-Za-z0-9_-] become `_<hex>`."""
    return _NOT_ID.sub(lambda m: "_" + "".join(f"{b:02x}" for b in m.group().encode()), name)


def _version() -> str:
    try:
        return version("flexselect-agent")
    except PackageNotFoundError:
        return "0+unknown"


class HomeAssistant:
    """Publishes the discovery messages and the watches' events for Home Assistant over the agent's link."""

    def __init__(self, section: HomeAssistantSection, link: MqttLink, mqtt: MqttConfig) -> None:
        self.section = section
        self.link = link
        self.topics = link.topics
        self.node = section.node_id or object_id(mqtt.prefix.replace("/", "_"))
        self._streams: list[str] = []
        link.allow_root(section.discovery_prefix)

    # --------------------------------------------------------------------------------- topics, payloads
    def config_topic(self, component: str, object_name: str) -> str:
        """Where one entity's discovery message lives."""
        return f"{self.section.discovery_prefix}/{component}/{self.node}/{object_name}/config"

    def stream_topic(self, stream: str) -> str:
        return self.config_topic("sensor", f"{object_id(stream)}_state")

    def watch_topic(self, watch_id: str) -> str:
        return self.config_topic("event", f"watch_{object_id(watch_id)}")

    def event_topic(self, watch_id: str) -> str:
        """Where a watch's events go in Home Assistant's event shape."""
        return f"{self.topics.prefix}/watches/{watch_id}/event"

    def _common(self) -> dict[str, Any]:
        return {
            "availability": [
                {
                    "topic": self.topics.available,
                    "value_template": "{{ 'online' if value == 'online' else 'offline' }}",
                }
            ],
            "device": {
                "identifiers": [f"flexselect_{self.node}"],
                "name": f"FlexSelect Agent {self.topics.prefix}",
                "manufacturer": "FlexSelect",
                "model": "FlexSelect Agent",
                "sw_version": _version(),
            },
            "origin": {"name": "flexselect-agent", "sw_version": _version()},
        }

    def stream_config(self, stream: str) -> dict[str, Any]:
        """A sensor whose state is the stream's state; the status message's fields become attributes."""
        status = self.topics.status(stream)
        return {
            "name": f"{stream} state",
            "unique_id": f"flexselect_{self.node}_{object_id(stream)}_state",
            "state_topic": status,
            "value_template": "{{ value_json.state }}",
            "json_attributes_topic": status,
            "device_class": "enum",
            "options": STREAM_STATES,
            "icon": "mdi:cctv",
            **self._common(),
        }

    def watch_config(self, spec: WatchSpec) -> dict[str, Any]:
        """An event entity per watch; its event types are the streams it watches."""
        return {
            "name": f"Watch {spec.id}",
            "unique_id": f"flexselect_{self.node}_watch_{object_id(spec.id)}",
            "state_topic": self.event_topic(spec.id),
            "event_types": list(spec.streams or self._streams),
            "icon": "mdi:eye",
            **self._common(),
        }

    # --------------------------------------------------------------------------------------- publishing
    async def announce(self, streams: list[str], watches: list[WatchSpec]) -> None:
        """Publish (retained) the discovery message of every stream and watch."""
        self._streams = list(streams)
        for stream in streams:
            await self._publish(self.stream_topic(stream), self.stream_config(stream))
        for spec in watches:
            await self.watch_added(spec)

    async def watch_added(self, spec: WatchSpec) -> None:
        """Publish (or replace) a watch's event entity."""
        if not (spec.streams or self._streams):
            logger.warning("watch %s has no stream to fire on; no Home Assistant entity", spec.id)
            return
        await self._publish(self.watch_topic(spec.id), self.watch_config(spec))

    async def watch_removed(self, watch_id: str) -> None:
        """Delete a watch's entity: an empty retained payload on its discovery topic."""
        await self.link.publish(self.watch_topic(watch_id), b"", retain=True)

    async def watch_fired(self, event: WatchEvent) -> None:
        """Publish a watch event in Home Assistant's event shape (`event_type` is the stream)."""
        pictures = [e.picture for e in event.evidence if e.picture]
        payload = {
            "event_type": event.stream,
            "question": event.question,
            "answer": event.answer,
            "at": event.at.isoformat(),
            "picture": pictures[0] if pictures else None,
        }
        await self.link.publish(self.event_topic(event.watch_id), json.dumps(payload))

    async def _publish(self, topic: str, config: dict[str, Any]) -> None:
        await self.link.publish(topic, json.dumps(config, sort_keys=True), retain=True)
