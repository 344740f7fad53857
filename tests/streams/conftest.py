"""Fixtures for stream tests: generated clips, a real loopback RTSP server, state recording."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams import StreamState
from tests.streams.stream_clips import write_counter_clip

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
GST_PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-bad"
)
GST_CHECK = """
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in ("filesrc", "qtdemux", "h264parse", "rtph264pay") if Gst.ElementFactory.find(e) is None]
raise SystemExit(", ".join(missing) or None)
"""


@functools.cache
def gstreamer_missing() -> str | None:
    """Why the RTSP server cannot run here, or None if it can."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found"
    result = subprocess.run([SYSTEM_PYTHON, "-c", GST_CHECK], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or [result.stdout.strip()])[-1]
        return f"GStreamer RTSP server unavailable ({detail}); apt-get install {GST_PACKAGES}"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def decoder_threads() -> list[threading.Thread]:
    """Live decoder threads of every source in this process."""
    return [t for t in threading.enumerate() if t.name.startswith("streams-decode:")]


class RtspServer:
    """A GStreamer RTSP server subprocess serving one MP4 at rtsp://127.0.0.1:<port>/cam."""

    def __init__(self, clip: Path, *, user: str | None = None, password: str | None = None) -> None:
        self.clip = clip
        self.port = free_port()
        self.user, self.password = user, password
        self.process: subprocess.Popen[str] | None = None

    def url(self, *, user: str | None = None, password: str | None = None, path: str = "/cam") -> str:
        """The stream URL, with credentials if given."""
        auth = f"{user}:{password}@" if user is not None else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        """Start serving (again, on the same port) and wait until it listens."""
        args = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--file", str(self.clip)]
        if self.user is not None:
            args += ["--user", self.user, "--password", self.password or ""]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != f"READY {self.port}":
            self.kill()
            pytest.fail(f"RTSP server did not start: {line!r}")

    def kill(self) -> None:
        """SIGKILL the server, as a crash or power cut would."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process is not None:
            for pipe in (self.process.stdout, self.process.stderr):
                if pipe is not None:
                    pipe.close()
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing is sent (a hung camera)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after `freeze`."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


class StateLog:
    """Records the states a source reports through `on_state` and lets a test wait for one."""

    def __init__(self) -> None:
        self.states: list[StreamState] = []
        self._changed = asyncio.Event()

    def __call__(self, state: StreamState) -> None:
        self.states.append(state)
        self._changed.set()

    async def wait_for(self, state: StreamState, *, timeout: float, after: int = 0) -> None:
        """Wait until `state` was reported at position `after` or later."""
        async with asyncio.timeout(timeout):
            while state not in self.states[after:]:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture(scope="session")
def live_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s of counter frames, 320x240 at 10 fps, two slices per frame, GOP 1 s: what the server plays."""
    return write_counter_clip(tmp_path_factory.mktemp("live") / "live.mp4", frames=600, fps=10)


@pytest.fixture
def rtsp_server(live_clip: Path) -> Iterator[RtspServer]:
    """A started RTSP server playing `live_clip`; killed after the test."""
    if (reason := gstreamer_missing()) is not None:
        pytest.skip(reason)
    server = RtspServer(live_clip)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def rtsp_server_with_auth(live_clip: Path) -> Iterator[RtspServer]:
    """Like `rtsp_server`, but requiring user `admin` with password `s3cret!`."""
    if (reason := gstreamer_missing()) is not None:
        pytest.skip(reason)
    server = RtspServer(live_clip, user="admin", password="s3cret!")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def state_log() -> StateLog:
    return StateLog()


@pytest.fixture(autouse=True)
def _no_decoder_threads_left() -> Iterator[None]:
    """Every test must leave no decoder thread behind."""
    yield
    leftover = decoder_threads()
    assert not leftover, f"decoder threads still running: {[t.name for t in leftover]}"
