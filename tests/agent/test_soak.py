"""Soak: the agent restarted, killed, its camera and Redis restarted, while questions, watches and junk flow.

One agent process (the bundled toy model) after another, against a private Redis with an append-only file
(so a Redis restart keeps the memory; the shared one on 6379 is left alone), the shared Mosquitto and a
private GStreamer RTSP camera. Seven runs: five end with SIGTERM (questions in flight at the signal), two
with SIGKILL; the camera restarts during run 2, Redis during run 4. At the end:
every valid question got exactly one reply, none `internal`; the memory holds every frame once; no camera
reconnect happened in a run without a camera fault; RSS and Redis connections stayed bounded.

Questions asked while Redis is down need the retryable `memory_unavailable` code (issue 17, item 7, the
`hardening-wire` work); until `ErrorCode` has it, that step is skipped (see `ASK_DURING_REDIS_OUTAGE`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from agent.memory import MemoryConfig, RetainedTokens, open_memory
from agent.mqtt import AskRequest, ErrorCode, MqttLink
from tests.agent.service_helpers import client
from tests.mqtt.mqtt_helpers import free_port
from tests.streams.conftest import RtspServer, gstreamer_missing
from tests.streams.stream_clips import write_counter_clip

pytestmark = [pytest.mark.services, pytest.mark.slow]

# The hardening-wire helper's retryable code for a Redis outage; without it, questions skip that window.
ASK_DURING_REDIS_OUTAGE = hasattr(ErrorCode, "MEMORY_UNAVAILABLE")
RETRYABLE_IN_REDIS_OUTAGE = {"memory_unavailable"}
QUESTION = "what color was the square ?"
MALFORMED = [
    b"{",
    b"not json at all",
    b"\xff\xfe\x00",
    b"[]",
    b'{"id": 5, "question": "x"}',
    b'{"id": "junk-1", "question": ""}',
    b'{"id": "junk-2", "question": "x", "streams": ["nope"]}',
    b'{"id": "junk-3", "question": "x", "budget": -4}',
    b'{"id": "junk-4", "question": "x", "deadline": "yesterday"}',
    json.dumps({"id": "junk-5", "question": "x", "extra": [[[[[[[[[[1]]]]]]]]]]}).encode(),
    b'{"id": "junk-6", "question": NaN}',
]
RECORDING_TOKENS = 32  # the recording once: 16 frames at 2 fps, 8 temporal steps of 4 tokens
RSS_LIMIT_BYTES = 3 << 30
REDIS_CLIENTS_LIMIT = 16


class PrivateRedis:
    """A redis-server on a free port whose append-only file survives its restarts."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while (
            subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout
            != b"PONG\n"
        ):
            assert time.monotonic() < deadline, "private redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: Redis flushes its append-only file and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)
        self.process = None


@dataclass
class Replies:
    """Every reply and error seen on the agent's answer subtree and error topic, by request id."""

    by_id: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    async def collect(self, link: MqttLink) -> None:
        while True:
            data = json.loads((await link.receive()).payload)
            self.by_id[str(data.get("id"))].append(data)

    async def wait(self, ids: list[str], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while any(i not in self.by_id for i in ids):
                await asyncio.sleep(0.05)


@dataclass
class Agent:
    """One agent process; `pid` for RSS, `http` for readiness and metrics."""

    process: subprocess.Popen[bytes]
    http: int

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    async def wait_ready(self, timeout: float = 90.0) -> None:
        async with asyncio.timeout(timeout):
            while (await asyncio.to_thread(self.get, "/health/ready"))[0] != 200:
                assert self.process.poll() is None, f"the agent exited with {self.process.returncode}"
                await asyncio.sleep(0.2)

    def metric(self, name: str, stream: str) -> float:
        """A per-stream metric's value; -1 while the agent does not export it (yet)."""
        status, body = self.get("/metrics")
        assert status == 200
        match = re.search(rf'^{name}\{{stream="{stream}"\}} (\S+)$', body, re.MULTILINE)
        return float(match.group(1)) if match else -1.0

    def rss(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")


@dataclass
class Soak:
    """The moving parts and what was observed."""

    tmp: Path
    redis: PrivateRedis
    camera: RtspServer
    recording: Path
    prefix: str
    key_prefix: str
    link: MqttLink | None = None
    replies: Replies = field(default_factory=Replies)
    asked: dict[str, str] = field(default_factory=dict)  # id -> the window it was asked in
    rss: list[int] = field(default_factory=list)
    redis_clients: list[int] = field(default_factory=list)
    reconnects: list[tuple[str, float]] = field(default_factory=list)  # (run, camera reconnects seen)
    runs: int = 0
    startup_s: list[float] = field(default_factory=list)

    def config(self, http: int) -> dict[str, Any]:
        fast = {"backoff_base_s": 0.2, "backoff_cap_s": 1.0, "backoff_jitter": 0.0, "stall_seconds": 5.0}
        return {
            "model": {"name": "toy", "budget": 32, "max_new_tokens": 4},
            "streams": [
                {
                    "id": "cam",
                    "uri": self.camera.url(),
                    "source": {"sample_fps": 2, "chunk_seconds": 2, **fast},
                },
                {"id": "rec", "uri": str(self.recording), "source": {"sample_fps": 2, "chunk_seconds": 2}},
            ],
            "memory": {
                "backend": "redis",
                "redis": {
                    "url": self.redis.url,
                    "key_prefix": self.key_prefix,
                    "retry_initial_s": 0.2,
                    "retry_max_s": 1.0,
                    "connect_timeout_s": 1.0,
                    "op_timeout_s": 5.0,
                },
            },
            "mqtt": {"prefix": self.prefix, "client_id": f"{self.prefix}-agent"},
            "watches": [{"id": "w-config", "question": QUESTION, "min_interval_s": 4}],
            "http": {"port": http},
            "logging": {"level": "WARNING"},
            "shutdown_timeout_s": 20,
        }

    async def start_agent(self) -> Agent:
        self.runs += 1
        http = free_port()
        path = self.tmp / f"agent-{self.runs}.yaml"
        path.write_text(json.dumps(self.config(http)))
        log = (self.tmp / f"agent-{self.runs}.log").open("wb")
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "-c", str(path)], env=env, stdout=log, stderr=log
        )
        agent = Agent(process, http)
        started = time.monotonic()
        await agent.wait_ready()
        self.startup_s.append(time.monotonic() - started)
        return agent

    async def ask(self, n: int, window: str, *, streams: list[str] | None = None) -> list[str]:
        assert self.link is not None
        ids = []
        for _ in range(n):
            request = AskRequest(
                id=f"good-{uuid.uuid4().hex[:10]}", question=QUESTION, streams=streams or ["cam"]
            )
            self.asked[request.id] = window
            ids.append(request.id)
            await self.link.publish(self.link.topics.ask, request.payload())
        return ids

    async def junk(self) -> None:
        assert self.link is not None
        for payload in MALFORMED:
            await self.link.publish(self.link.topics.ask, payload)
        await self.link.publish(self.link.topics.watch_add, b'{"id": "w-bad", "question": ""}')
        watch = {"id": f"w-{self.runs}", "question": QUESTION, "min_interval_s": 4}
        await self.link.publish(self.link.topics.watch_add, json.dumps(watch).encode())

    async def observe(self, agent: Agent, run: str) -> None:
        """Before a fault: the camera's reconnects in this run, RSS and Redis connections."""
        reconnects = agent.metric("flexselect_stream_reconnects_total", "cam")
        assert reconnects >= 0, "the agent exports no reconnect counter for the camera"
        self.reconnects.append((run, reconnects))
        self.rss.append(agent.rss())
        r = aioredis.Redis(port=self.redis.port)
        try:
            self.redis_clients.append(len(await r.client_list()) - 1)  # not this one
        finally:
            await r.aclose()

    async def sigterm(self, agent: Agent, run: str) -> None:
        """SIGTERM with questions in flight: each gets its answer or `shutting_down`, the process exits 0."""
        ids = await self.ask(4, f"{run}:sigterm")
        await asyncio.sleep(0.3)  # delivered to the agent
        agent.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(agent.process.wait, 60) == 0
        await self.replies.wait(ids, 15)

    async def sigkill(self, agent: Agent) -> None:
        agent.process.kill()
        await asyncio.to_thread(agent.process.wait, 30)

    async def steady(self, agent: Agent, run: str, n: int = 3) -> None:
        """Questions and junk with nothing failing: every question answered."""
        await self.junk()
        ids = await self.ask(n, f"{run}:steady")
        await self.replies.wait(ids, 60)
        await self.observe(agent, run)


@pytest.fixture
def soak(tmp_path: Path, prefix: str) -> Iterator[Soak]:
    if (reason := gstreamer_missing()) is not None:
        pytest.skip(reason)
    # 56x56 at 2 fps, what the toy model knows; longer than the soak, so the camera never ends by itself.
    clip = write_counter_clip(tmp_path / "camera.mp4", frames=2 * 600, fps=2, width=56, height=56)
    recording = write_counter_clip(tmp_path / "recording.mp4", frames=16, fps=2, width=56, height=56)
    (tmp_path / "redis").mkdir()
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    camera = RtspServer(clip)
    camera.start()
    try:
        yield Soak(tmp_path, redis, camera, recording, prefix, f"soak-{uuid.uuid4().hex[:8]}")
    finally:
        camera.kill()
        redis.stop()


async def held(soak: Soak, stream: str) -> tuple[RetainedTokens, int]:
    """A stream's retained tokens and its appended count, read straight from the Redis memory."""
    config = MemoryConfig.model_validate(
        {"backend": "redis", "redis": {"url": soak.redis.url, "key_prefix": soak.key_prefix}}
    )
    async with open_memory(config) as memory:
        tokens = (await memory.read([stream]))[stream]
        appended = (await memory.stats(stream)).streams[stream].appended
    return tokens, appended


def assert_every_frame_once(tokens: RetainedTokens) -> None:
    """One time per frame number and one frame number per time, frame order being time order."""
    pairs = set(zip(tokens.tokens.frame.tolist(), tokens.tokens.time.tolist(), strict=True))
    frames = [f for f, _ in pairs]
    times = [t for _, t in pairs]
    assert len(set(frames)) == len(pairs), "a frame number holds two times: frames of two runs collided"
    assert len(set(times)) == len(pairs), "a time holds two frame numbers: one frame was ingested twice"
    assert [t for _, t in sorted(pairs)] == sorted(times)


async def test_the_agent_survives_restarts_kills_and_outages_without_losing_an_answer(soak: Soak) -> None:
    started = time.monotonic()
    async with client(soak.prefix) as link:
        soak.link = link
        collector = asyncio.create_task(soak.replies.collect(link))
        try:
            # Run 1: fill the memory; the recording is ingested once, here.
            agent = await soak.start_agent()
            async with asyncio.timeout(60):
                while (
                    agent.metric("flexselect_memory_tokens", "cam") < 8
                    or agent.metric("flexselect_memory_tokens", "rec") < RECORDING_TOKENS
                ):
                    await asyncio.sleep(0.2)
            await soak.steady(agent, "run1")
            await soak.sigterm(agent, "run1")
            # Run 2: the camera restarts.
            agent = await soak.start_agent()
            await soak.steady(agent, "run2")
            soak.camera.kill()
            await asyncio.sleep(1.5)
            soak.camera.start()
            async with asyncio.timeout(60):  # reconnected (the metrics follow each status update)
                while (
                    agent.metric("flexselect_stream_reconnects_total", "cam") < 1
                    or agent.metric("flexselect_stream_online", "cam") < 1
                ):
                    await asyncio.sleep(0.2)
            await soak.steady(agent, "run2-camera-fault")
            await soak.sigterm(agent, "run2-camera-fault")
            # Run 3: killed.
            agent = await soak.start_agent()
            await soak.steady(agent, "run3")
            await soak.sigkill(agent)
            # Run 4: Redis restarts under it.
            agent = await soak.start_agent()
            await soak.steady(agent, "run4")
            soak.redis.stop()
            if ASK_DURING_REDIS_OUTAGE:
                await soak.replies.wait(await soak.ask(2, "run4:redis-outage"), 60)
            await asyncio.sleep(1.0)
            soak.redis.start()
            await agent.wait_ready(60)
            await soak.steady(agent, "run4")
            await soak.sigterm(agent, "run4")
            # Run 5: killed; runs 6 and 7: SIGTERM.
            agent = await soak.start_agent()
            await soak.steady(agent, "run5")
            await soak.sigkill(agent)
            for run in ("run6", "run7"):
                agent = await soak.start_agent()
                await soak.steady(agent, run)
                await soak.sigterm(agent, run)
        finally:
            collector.cancel()
    elapsed = time.monotonic() - started

    # Every valid question got exactly one reply, none `internal`.
    missing = [i for i in soak.asked if i not in soak.replies.by_id]
    assert not missing, [soak.asked[i] for i in missing]
    twice = {i: len(r) for i, r in soak.replies.by_id.items() if i in soak.asked and len(r) != 1}
    assert not twice
    for request_id, window in soak.asked.items():
        (reply,) = soak.replies.by_id[request_id]
        if reply["ok"]:
            continue
        code = reply["error"]["code"]
        if window.endswith(":sigterm"):
            assert code == "shutting_down", (window, reply)
        elif window.endswith(":redis-outage"):
            assert code in RETRYABLE_IN_REDIS_OUTAGE, (window, reply)
        else:
            raise AssertionError(f"{window}: {reply}")
    # Malformed requests were answered with errors, not with silence or a crash.
    assert {r["error"]["code"] for r in soak.replies.by_id["junk-1"]} == {"invalid_request"}
    # The memory holds every frame once; the recording was not ingested again by the seven later runs.
    cam, _ = await held(soak, "cam")
    rec, appended = await held(soak, "rec")
    assert_every_frame_once(cam)
    assert_every_frame_once(rec)
    assert appended == len(rec) == RECORDING_TOKENS
    # No reconnect in a run without a camera fault.
    assert [(run, n) for run, n in soak.reconnects if n and "camera-fault" not in run] == []
    assert any(n >= 1 for run, n in soak.reconnects if "camera-fault" in run)
    # RSS and Redis connections bounded.
    assert max(soak.rss) < RSS_LIMIT_BYTES and max(soak.rss) < 1.5 * min(soak.rss), soak.rss
    assert max(soak.redis_clients) <= REDIS_CLIENTS_LIMIT, soak.redis_clients
    startup = ", ".join(f"{s:.0f}" for s in soak.startup_s)
    print(f"soak: {soak.runs} runs (start-up s: {startup}), {len(soak.asked)} questions, {elapsed:.0f} s")
