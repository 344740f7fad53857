"""The Redis backend against a real redis-server that demands a password and mutual TLS."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from pydantic import SecretStr

from agent.memory import MemoryAuthError, MemoryConfig, MemoryState, RedisConfig, open_memory
from tests.memory.memory_helpers import free_port, make_tokens
from tests.mqtt.mqtt_helpers import make_tls_files

pytestmark = pytest.mark.services

PASSWORD = "s3cret-pw"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, dict[str, Path]]]:
    """A redis-server on a free port: TLS only (client certificates required) and a password."""
    if shutil.which("redis-server") is None or shutil.which("openssl") is None:
        pytest.skip("redis-server or openssl is not on PATH")
    files = make_tls_files(tmp_path / "tls")
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(files["server.crt"]), "--tls-key-file", str(files["server.key"]),
            "--tls-ca-cert-file", str(files["ca.crt"]), "--tls-auth-clients", "yes",
            "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        probe = subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], capture_output=True)
        if probe.returncode == 0:
            break
        time.sleep(0.05)
    if process.poll() is not None:
        output = process.stdout.read() if process.stdout else ""
        pytest.skip(f"this redis-server cannot serve TLS: {output.strip().splitlines()[-1:]}")
    yield port, files
    process.kill()
    process.wait(timeout=10)


def config(port: int, files: dict[str, Path], **overrides: object) -> MemoryConfig:
    redis = {
        "url": f"rediss://127.0.0.1:{port}/0",
        "password": SecretStr(PASSWORD),
        "tls_ca_file": files["ca.crt"],
        "tls_cert_file": files["client.crt"],
        "tls_key_file": files["client.key"],
        "key_prefix": "fsatls",
        "connect_timeout_s": 2.0,
        **overrides,
    }
    return MemoryConfig(backend="redis", redis=RedisConfig(**redis))


async def test_tls_with_a_client_certificate_and_the_password_stores_and_reads(tls_redis):
    port, files = tls_redis
    tokens = make_tokens([0, 1])
    async with open_memory(config(port, files)) as memory:
        await memory.append("cam", tokens, torch.ones(len(tokens)))
        read = await memory.read(["cam"])
    assert torch.equal(read["cam"].tokens.embeds, tokens.embeds)


async def test_a_wrong_password_fails_to_open_with_a_clear_error(tls_redis):
    port, files = tls_redis
    with pytest.raises(MemoryAuthError, match="refused the credentials") as caught:
        async with open_memory(config(port, files, password=SecretStr("wrong"))):
            pass
    assert "wrong" not in str(caught.value)  # an auth failure is not retried like an outage (issue 17)


async def test_without_a_client_certificate_the_server_refuses(tls_redis):
    port, files = tls_redis
    async with open_memory(config(port, files, tls_cert_file=None, tls_key_file=None)) as memory:
        assert memory.state == MemoryState.UNAVAILABLE
