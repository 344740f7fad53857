"""A real three-master Redis Cluster on free ports in a temporary directory (redis-server, redis-cli)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, start: int = 17000) -> list[int]:
    """`count` ports that are free together with their cluster-bus ports (+10000)."""
    ports: list[int] = []
    port = start
    while len(ports) < count and port < 30000:
        if _free(port) and _free(port + 10000):
            ports.append(port)
        port += 7
    return ports


class RedisCluster:
    """Three masters, no replicas; `url` names one node (clients discover the rest)."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.directory = directory
        self.ports = free_ports(masters, start=17000 + (int(time.time() * 1000) % 997) * 7)
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            raise RuntimeError("redis-server and redis-cli are needed (scripts/install.sh installs them)")
        for port in self.ports:
            node = self.directory / str(port)
            node.mkdir(parents=True, exist_ok=True)
            self.processes.append(
                subprocess.Popen(
                    [
                        "redis-server",
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--dir",
                        str(node),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--cluster-node-timeout",
                        "2000",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            self._wait(lambda p=port: self._cli(p, "ping") == "PONG", "node up")
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for port in self.ports:
            self._wait(lambda p=port: "cluster_state:ok" in self._cli(p, "cluster", "info"), "cluster ok")

    def node_of(self, slot: int) -> int:
        """The port of the master that serves `slot`."""
        return _slot_owner(self.ports, slot)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()

    @staticmethod
    def _cli(port: int, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip()

    @staticmethod
    def _wait(check, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise RuntimeError(f"redis cluster: {what} not reached in {timeout:g} s")


def _slot_owner(ports: list[int], slot: int) -> int:
    """The port of the master serving `slot`."""
    out = subprocess.run(
        ["redis-cli", "-p", str(ports[0]), "cluster", "slots"], capture_output=True, text=True, timeout=10
    ).stdout.split()
    # flat: start end ip port id [replicas...] per range
    i = 0
    while i + 3 < len(out):
        start, end, port = int(out[i]), int(out[i + 1]), int(out[i + 3])
        if start <= slot <= end:
            return port
        i += 5
    raise LookupError(f"no master serves slot {slot}")
