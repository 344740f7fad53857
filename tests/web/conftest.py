"""The web tests' agent: the bundled toy model on a synthetic recording, served in a thread of its own.

Browsers and the API fuzzer are synchronous clients, so the agent runs its asyncio loop in a background
thread; the tests talk to it only over HTTP and MQTT, as a user would.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.app import AgentApp
from agent.config import AgentConfig
from agent.models import TOY_MODEL_DIR
from streams.synth import GroundTruth, WorldConfig, generate_world, write_world
from tests.agent.service_helpers import agent_config
from tests.mqtt.mqtt_helpers import HOST, PORT, clear_retained, reachable

# The toy's world: 56x56 frames at 2 fps with grid-aligned needles of 1-2 s (what the toy learned).
WORLD = WorldConfig(
    seconds=16, fps=2, width=56, height=56, needles=2, seed=21, cell=28,
    min_needle_seconds=1.0, max_needle_seconds=2.0,
)  # fmt: skip


@dataclass
class RunningAgent:
    """An agent serving in a background thread."""

    app: AgentApp
    base_url: str
    prefix: str
    truth: GroundTruth
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base_url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.app.stop)
        self.thread.join(60)
        assert not self.thread.is_alive(), "the agent did not stop within 60 s"


def start_agent(config: AgentConfig, truth: GroundTruth, prefix: str) -> RunningAgent:
    """Run `config` in a thread until ready; raises the start-up error if it fails."""
    holder: dict[str, Any] = {}
    started = threading.Event()

    def main() -> None:
        async def run() -> None:
            app = AgentApp(config)
            holder["app"], holder["loop"] = app, asyncio.get_running_loop()
            started.set()
            await app.run()

        try:
            asyncio.run(run())
        except BaseException as exc:
            holder["error"] = exc
            started.set()

    thread = threading.Thread(target=main, name="agent", daemon=True)
    thread.start()
    started.wait(60)
    deadline = time.monotonic() + 120
    while "error" not in holder and not holder["app"].ready.is_set():
        if time.monotonic() > deadline:
            raise TimeoutError("the agent did not get ready within 120 s")
        time.sleep(0.05)
    if "error" in holder:
        raise holder["error"]
    app = holder["app"]
    assert app.http is not None
    return RunningAgent(app, app.http.base_url, prefix, truth, thread, holder["loop"])


def wait_ingested(agent: RunningAgent, stream: str, timeout: float = 120.0) -> dict[str, Any]:
    """Until every frame of the recording is ingested; the stream view."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = agent.get(f"/api/v1/streams/{stream}")
        view = json.loads(body) if status == 200 else {}
        if view.get("state") == "ended" and view.get("frames", 0) >= agent.truth.frame_count:
            return view
        time.sleep(0.2)
    raise TimeoutError(f"stream {stream} not ingested within {timeout} s")


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GroundTruth]:
    path = tmp_path_factory.mktemp("web") / "scene.mp4"
    return path, write_world(generate_world(WORLD), path)


@pytest.fixture(scope="session")
def toy_agent(world: tuple[Path, GroundTruth]) -> Iterator[RunningAgent]:
    """The toy agent with the recording fully ingested (local memory, real Mosquitto, HTTP on loopback)."""
    if not reachable(HOST, PORT):
        pytest.skip(f"no Mosquitto at {HOST}:{PORT}")
    path, truth = world
    prefix = f"fsatest-{uuid.uuid4().hex[:10]}"
    stream = {"id": "cam", "uri": str(path), "source": {"sample_fps": WORLD.fps, "chunk_seconds": 2.0},
              "time_origin": 1_700_000_000.0}  # fmt: skip
    color = next(q for q in truth.questions if q.kind == "color")
    watch = {"id": "color-watch", "question": color.question, "streams": ["cam"], "min_interval_s": 0}
    limits = {"min_interval_s": 0}  # a watch on every chunk
    config = agent_config(TOY_MODEL_DIR, [stream], prefix, watches=[watch], watch_limits=limits)
    config = config.model_copy(
        update={"model": config.model.model_copy(update={"budget": 32, "layer": None, "max_new_tokens": 4})}
    )
    agent = start_agent(config, truth, prefix)
    try:
        wait_ingested(agent, "cam")
        yield agent
    finally:
        agent.stop()
        asyncio.run(clear_retained(prefix))
