"""Helpers for the MQTT tests: own Mosquitto servers, TLS files, retained-topic reads and clean-up."""

from __future__ import annotations

import asyncio
import getpass
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import aiomqtt

HOST = os.environ.get("FSA_TEST_MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("FSA_TEST_MQTT_PORT", "1883"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class MosquittoServer:
    """A mosquitto process of the test's own on a loopback port, with extra config lines."""

    def __init__(self, directory: Path, port: int, lines: Sequence[str] = ()) -> None:
        self.directory, self.port = directory, port
        self.config = directory / "mosquitto.conf"
        # `user` keeps a root-started mosquitto able to read files under the test's 0700 tmp directory.
        body = [f"listener {port} 127.0.0.1", "persistence false", f"user {getpass.getuser()}", *lines]
        if not any(line.startswith("allow_anonymous") for line in lines):
            body.append("allow_anonymous true")  # mosquitto 2 refuses anonymous clients on explicit listeners
        self.config.write_text("\n".join(body) + "\n")
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(["mosquitto", "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 5
        while not reachable("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def make_tls_files(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made with openssl."""
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=fsa-test-ca")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=fsa-test-{name}")
        run(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", "san.ext",
        )  # fmt: skip
    return {
        name: directory / name for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")
    }


async def read_retained(topic: str, *, host: str = HOST, port: int = PORT, wait: float = 1.0) -> bytes | None:
    """The retained payload of `topic` now, or None if nothing is retained there."""
    async with aiomqtt.Client(host, port, timeout=5) as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(wait):
                async for message in client.messages:
                    if message.retain:
                        return bytes(message.payload)  # type: ignore[arg-type]
        except TimeoutError:
            return None
    return None


async def wait_retained(
    topic: str, expected: bytes, *, host: str = HOST, port: int = PORT, timeout: float = 5.0
) -> None:
    """Poll until `topic` retains `expected`; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await read_retained(topic, host=host, port=port, wait=0.3)
        if value == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{topic} retained {value!r}, expected {expected!r}")


async def clear_retained(prefix: str, *, host: str = HOST, port: int = PORT) -> None:
    """Delete every retained message under `prefix/`."""
    topics: set[str] = set()
    async with aiomqtt.Client(host, port, timeout=5) as client:
        await client.subscribe(f"{prefix}/#", qos=0)
        messages = aiter(client.messages)
        while True:  # retained messages follow the SUBACK at once: stop after 0.1 s of quiet
            try:
                message = await asyncio.wait_for(anext(messages), 0.1)
            except TimeoutError:
                break
            if message.retain and message.payload:
                topics.add(str(message.topic))
        for topic in topics:
            await client.publish(topic, b"", qos=1, retain=True)


async def wait_until(predicate: object, timeout: float = 5.0, what: str = "condition") -> None:
    """Poll a zero-argument callable until it is true."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
