"""The agent's HTTP side: an API beside MQTT, the web console, metrics and health (docs/web.md)."""

from __future__ import annotations

from agent.web.facade import AgentFacade
from agent.web.server import WebServer

__all__ = ["AgentFacade", "WebServer"]
