"""`flexselect-agent ask` end to end against a tiny responder: answers, error answers, timeouts, bad input."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from cli.main import main
from common.cancel import stop_task
from tests.mqtt.mqtt_helpers import HOST, PORT, free_port

pytestmark = [pytest.mark.services, pytest.mark.timeout(60)]
REPO = Path(__file__).resolve().parents[2]
ANSWER = {
    "ok": True,
    "question": "what stopped?",
    "answer": "a red van",
    "evidence": [
        {"stream": "cam1", "start": "2026-11-24T10:00:00Z", "end": "2026-11-24T10:00:04Z", "score": 0.91}
    ],
    "tokens": {"retained": 4096, "used": 512},
    "timings_ms": {"total": 812.0},
    "model": "tiny",
    "answered_at": "2026-11-24T10:01:00Z",
}


@asynccontextmanager
async def responder(
    prefix: str, reply: Callable[[dict[str, Any]], dict[str, Any] | None], *, port: int = PORT
) -> AsyncIterator[list[dict[str, Any]]]:
    """A real MQTT client that answers every question on its reply topic (None: stays silent)."""
    seen: list[dict[str, Any]] = []
    async with aiomqtt.Client(HOST, port) as client:
        await client.subscribe(f"{prefix}/ask", qos=1)
        await client.subscribe(f"{prefix}/ask/+", qos=1)

        async def serve() -> None:
            async for message in client.messages:
                request = json.loads(message.payload)
                seen.append({**request, "_topic": str(message.topic)})
                body = reply(request)
                if body is not None:
                    await client.publish(
                        request["reply_to"], json.dumps({"id": request["id"], **body}), qos=1
                    )

        task = asyncio.create_task(serve())
        try:
            yield seen
        finally:
            # Not one cancel: aiomqtt's publish waits with asyncio.wait_for, which on Python 3.11 drops a
            # cancel that arrives with the broker's PUBACK, and the responder then waited for ever.
            assert await stop_task(task, "the responder", timeout_s=10)


async def ask(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, ["ask", *argv])
    out, err = capsys.readouterr()
    return code, out, err


async def test_an_answer_prints_the_text_and_evidence_times(prefix, capsys):
    async with responder(prefix, lambda request: ANSWER) as seen:
        code, out, err = await ask(
            capsys,
            "what stopped?",
            "--prefix", prefix,
            "--stream", "cam1",
            "--stream", "cam2",
            "--since", "2026-11-24T09:00:00Z",
            "--budget", "512",
            "--timeout", "10",
        )  # fmt: skip
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "a red van"
    assert "cam1  2026-11-24T10:00:00Z -> 2026-11-24T10:00:04Z" in out
    (request,) = seen
    assert request["streams"] == ["cam1", "cam2"] and request["budget"] == 512
    assert request["reply_to"] == f"{prefix}/answer/{request['id']}"
    assert request["since"] == "2026-11-24T09:00:00Z" and request["deadline"].endswith("Z")


async def test_a_client_asks_on_its_own_topic_and_is_answered_in_its_own_subtree(prefix, capsys):
    async with responder(prefix, lambda request: ANSWER) as seen:
        code, _, err = await ask(capsys, "what?", "--prefix", prefix, "--client", "panel", "--timeout", "10")
    assert (code, err) == (0, "")
    (request,) = seen
    assert request["_topic"] == f"{prefix}/ask/panel"
    assert request["reply_to"] == f"{prefix}/answer/panel/{request['id']}"


async def test_an_error_answer_exits_1_with_its_code(prefix, capsys):
    error = {"ok": False, "error": {"code": "unknown_stream", "message": "unknown stream 'cam9'"}}
    async with responder(prefix, lambda request: error):
        code, out, err = await ask(capsys, "what?", "--prefix", prefix, "--stream", "cam9", "--timeout", "10")
    assert (code, out) == (1, "")
    assert "unknown_stream: unknown stream 'cam9'" in err


async def test_json_prints_the_raw_reply(prefix, capsys):
    async with responder(prefix, lambda request: ANSWER):
        code, out, _ = await ask(capsys, "what?", "--prefix", prefix, "--json", "--timeout", "10")
    assert code == 0
    reply = json.loads(out)
    assert reply["answer"] == "a red van" and reply["id"].startswith("cli-")


async def test_no_reply_within_the_timeout_is_a_one_line_error(prefix, capsys):
    async with responder(prefix, lambda request: None) as seen:
        code, out, err = await ask(capsys, "anyone?", "--prefix", prefix, "--timeout", "0.5")
    assert (code, out) == (2, "")
    assert err.startswith("flexselect-agent ask: error: no reply within 0.5 s") and err.count("\n") == 1
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["   "], "question"),
        (["q", "--budget", "0"], "budget"),
        (["q", "--since", "2026-11-24T09:00:00"], "--since: Input should have timezone"),
        (["q", "--stream", "a/b"], "--stream: String should match"),
        (["q", "--prefix", "a/#"], "wildcard"),
        (["q", "--timeout", "0"], "--timeout"),
        (["q", "--username", "u", "--password-file", "/nonexistent/pw"], "cannot read --password-file"),
    ],
)
async def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = await ask(capsys, *argv)
    assert (code, out) == (2, "")
    assert message in err and err.count("\n") == 1


async def test_an_unreachable_broker_is_one_line_and_exit_2(capsys):
    code, _, err = await ask(capsys, "q", "--port", str(free_port()), "--timeout", "2")
    assert code == 2 and "cannot connect" in err and err.count("\n") == 1


async def test_the_command_works_from_another_process(prefix):
    async with responder(prefix, lambda request: ANSWER):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "ask", "what?", "--prefix", prefix, "--host", HOST,
            "--port", str(PORT), "--timeout", "20",
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 40)
    assert process.returncode == 0, err.decode()
    assert out.decode().startswith("a red van\n")
