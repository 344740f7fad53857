"""Agent processes for cluster tests and the scaling benchmark: configs, start, kill, and an asking client.

Each agent is a real `python -m cli serve` process (its own model copy, its own connections), so a
`kill -9` is a real crash; `Asker` is a plain MQTT client that records every reply by request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from agent.mqtt import AskRequest, MqttConfig, MqttLink


def agent_yaml(
    *,
    agent_id: str,
    model: str,
    streams: list[dict[str, Any]],
    redis_url: str,
    redis_cluster: bool,
    key_prefix: str,
    mqtt_host: str,
    mqtt_port: int,
    mqtt_prefix: str,
    capacity: int,
    lease_s: float,
    model_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The config of one clustered agent: every agent gets the same streams, Redis and topic prefix."""
    return {
        "model": {"name": model, **(model_extra or {})},
        "streams": streams,
        "memory": {
            "backend": "redis",
            "redis": {
                "url": redis_url,
                "key_prefix": key_prefix,
                "cluster": redis_cluster,
                "op_timeout_s": 10,
            },
        },
        "mqtt": {
            "host": mqtt_host,
            "port": mqtt_port,
            "prefix": mqtt_prefix,
            "client_id": f"{mqtt_prefix}-{agent_id}",
        },
        "http": {"enabled": False},
        "logging": {"level": "INFO"},
        "shutdown_timeout_s": 5,
        "cluster": {
            "enabled": True,
            "agent_id": agent_id,
            "capacity": capacity,
            "lease_s": lease_s,
            "status_interval_s": 1,
        },
    }


class AgentProcess:
    """One `python -m cli serve` child; its log goes to `<directory>/<id>.log`."""

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        self.id = config["cluster"]["agent_id"]
        self.config_path = directory / f"{self.id}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = directory / f"{self.id}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # faulthandler: SIGABRT dumps every thread's stack into the log (a stop that hangs shows where)
        env = {
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            "PYTHONFAULTHANDLER": "1",
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli", "serve", "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Kill it if it still runs (test teardown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Asker:
    """An MQTT client that asks questions and records every reply (an id may get more than one)."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.config = MqttConfig(
            host=host,
            port=port,
            prefix=prefix,
            client_id=f"{prefix}-asker-{uuid.uuid4().hex[:6]}",
            max_queued_incoming=100_000,
        )
        self.link = MqttLink(
            self.config,
            subscriptions=[f"{prefix}/answer/#", f"{prefix}/errors"],
            availability=False,
            require_connection=True,
        )
        self.replies: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.asked: dict[str, float] = {}
        self.latency: dict[str, float] = {}
        self._reader: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> Asker:
        await self.link.__aenter__()
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._reader is not None
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.link.close(stopped=False)

    async def _read(self) -> None:
        async for message in self.link.messages():
            data = json.loads(message.payload)
            rid = data.get("id")
            if rid is None:
                continue
            self.replies[rid].append(data)
            if rid in self.asked and rid not in self.latency:
                self.latency[rid] = time.perf_counter() - self.asked[rid]
            self._arrived.set()

    async def send(self, question: str, **fields: Any) -> str:
        """Publish a question; returns its id."""
        request = AskRequest(id=f"q-{uuid.uuid4().hex[:10]}", question=question, **fields)
        self.asked[request.id] = time.perf_counter()
        await self.link.publish(self.link.topics.ask, request.payload())
        return request.id

    async def ask(self, question: str, timeout: float = 60.0, **fields: Any) -> dict[str, Any]:
        """Ask and wait for the first reply."""
        rid = await self.send(question, **fields)
        await self.wait_for([rid], timeout)
        return self.replies[rid][0]

    async def wait_for(self, ids: list[str], timeout: float) -> None:
        """Until every id has a reply (TimeoutError names the missing ones)."""
        deadline = time.monotonic() + timeout
        while missing := [i for i in ids if not self.replies.get(i)]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(missing)} questions got no reply: {missing[:5]}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 0.5))
