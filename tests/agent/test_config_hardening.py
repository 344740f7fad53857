"""Config values that used to pass validation and fail later, or leak a secret (issue 17, items 5 and 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from cli.main import main


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


def refusal(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env=env or {})
    return str(caught.value)


@pytest.mark.parametrize(
    "uri",
    ["rtsp://admin:pw@192.0.2.10/stream1", "rtsp://admin@192.0.2.10/s", "rtsp://192.0.2.10/s?token=abc"],
)
def test_a_stream_uri_with_credentials_is_refused_in_the_file(tmp_path, uri):
    message = refusal(tmp_path, f"streams: [{{id: cam, uri: '{uri}'}}]")
    assert "streams.0.uri: credentials" in message
    assert "streams.0.uri_file" in message and "FLEXSELECT__STREAMS__0__URI" in message
    assert "pw" not in message and "abc" not in message


def test_a_stream_uri_with_credentials_is_accepted_from_the_environment(tmp_path):
    env = {"FLEXSELECT__STREAMS__0__URI": "rtsp://admin:pw@192.0.2.10/stream1"}
    config = load_config(write(tmp_path, "streams: [{id: cam}]"), env=env)
    assert config.streams[0].uri == "rtsp://admin:pw@192.0.2.10/stream1"


@pytest.mark.parametrize(
    "url", ["redis://:pw@127.0.0.1:6379/0", "redis://u:pw@h/0", "redis://h/0?password=pw"]
)
def test_a_redis_url_with_credentials_is_refused(tmp_path, url):
    message = refusal(tmp_path, f"memory: {{redis: {{url: '{url}'}}}}")
    assert "memory.redis.url" in message and "memory.redis.password_file" in message
    assert ":pw@" not in message and "=pw" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("memory: {redis: {url: 'redis://h[bad/0'}}", "memory.redis.url: Value error, not a valid URL"),
        ("memory: {redis: {url: 'redis://h:99999/0'}}", "memory.redis.url: Value error, not a valid URL"),
        ("memory: {redis: {url: 'redis:///0'}}", "memory.redis.url: Value error, the URL names no host"),
        ("streams: [{id: cam, uri: 'rtspx://h/s'}]", "streams.0.uri: Value error, unsupported scheme"),
        ("streams: [{id: cam, uri: 'rtsp://192.0.2.10:70000/s'}]", "streams.0.uri: Value error, "),
        ("streams: [{id: cam, uri: 'rtsp:///s'}]", "streams.0.uri: Value error, 'rtsp:///s' names no host"),
    ],
)
def test_a_malformed_url_fails_validation_naming_its_key(tmp_path, text, expected):
    assert expected in refusal(tmp_path, text)


def test_validate_config_reports_a_malformed_redis_url_in_one_line_without_a_traceback(tmp_path, capsys):
    path = write(tmp_path, "memory: {backend: redis, redis: {url: 'redis://x@[bad/0'}}")
    code = main(["serve", "-c", str(path), "--validate-config"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        "flexselect-agent serve: error: invalid configuration:\n"
        "  memory.redis.url: Value error, not a valid URL: Invalid IPv6 URL (got 'redis://***@[bad/0')\n"
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "agent.example"])
def test_http_beyond_loopback_needs_a_token(tmp_path, host):
    message = refusal(tmp_path, f"http: {{host: '{host}'}}")
    assert f"http.host {host!r} is reachable from other machines and no token is set" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_http_on_loopback_needs_no_token(tmp_path, host):
    assert load_config(write(tmp_path, f"http: {{host: '{host}'}}"), env={}).http.host == host


def test_http_beyond_loopback_with_a_token_file_validates(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    config = load_config(write(tmp_path, f"http: {{host: 0.0.0.0, token_file: {token}}}"), env={})
    assert config.http.host == "0.0.0.0"
    assert config.http.token is not None and config.http.token.get_secret_value() == "s3cret"


def test_an_http_token_written_in_the_file_is_refused(tmp_path):
    assert "http.token: secrets may not be written in config files" in refusal(tmp_path, "http: {token: abc}")


def test_configured_watches_obey_the_watch_limits(tmp_path):
    watch = "{id: w1, question: 'door open?', min_interval_s: 0.5}"
    assert "below watch_limits.min_interval_s 2" in refusal(tmp_path, f"watches: [{watch}]")
    many = ", ".join(f"{{id: w{i}, question: 'door open?'}}" for i in range(3))
    assert "3 watches are configured; watch_limits.max_watches is 2" in refusal(
        tmp_path, f"watches: [{many}]\nwatch_limits: {{max_watches: 2}}"
    )
