"""A token guards the API, the console's data and the metrics; health stays open for probes."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.models import TOY_MODEL_DIR
from tests.agent.service_helpers import agent_config, running
from tests.mqtt.mqtt_helpers import HOST, PORT, reachable

TOKEN = "s3cret-token"


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    def fetch() -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    return await asyncio.to_thread(fetch)


def test_the_token_comes_from_a_file_or_the_environment_never_the_config_file(tmp_path: Path) -> None:
    literal = tmp_path / "literal.yaml"
    literal.write_text("http: {token: abc}\n")
    with pytest.raises(ConfigError, match=r"http\.token: secrets may not be written in config files"):
        load_config(literal, env={})
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    from_file = tmp_path / "file.yaml"
    from_file.write_text(f"http: {{token_file: {secret}}}\n")
    assert load_config(from_file, env={}).http.token.get_secret_value() == TOKEN  # type: ignore[union-attr]
    from_env = load_config(None, env={"FLEXSELECT__HTTP__TOKEN": "12345"})
    assert from_env.http.token.get_secret_value() == "12345"  # type: ignore[union-attr]


@pytest.mark.services
async def test_with_a_token_only_health_and_static_files_are_open() -> None:
    if not reachable(HOST, PORT):
        pytest.skip(f"no Mosquitto at {HOST}:{PORT}")
    prefix = f"fsatest-{uuid.uuid4().hex[:10]}"
    config = agent_config(TOY_MODEL_DIR, [], prefix, http={"port": 0, "token": TOKEN})
    async with running(config) as app:
        assert app.http is not None
        base = app.http.base_url
        status, headers, body = await _get(f"{base}/api/v1/streams")
        assert status == 401 and headers["www-authenticate"] == "Bearer"
        assert json.loads(body)["error"]["code"] == "unauthorized"
        assert (await _get(f"{base}/metrics"))[0] == 401
        assert (await _get(f"{base}/api/v1/streams", {"Authorization": "Bearer wrong"}))[0] == 401
        assert (await _get(f"{base}/api/v1/streams", {"Authorization": f"Bearer {TOKEN}"}))[0] == 200
        assert (await _get(f"{base}/api/v1/watches?access_token={TOKEN}"))[0] == 200
        assert (await _get(f"{base}/health/live"))[0] == 200
        assert (await _get(f"{base}/"))[0] == 200  # the page itself holds no data; it asks for the token
