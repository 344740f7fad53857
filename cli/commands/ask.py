"""`flexselect-agent ask`: ask a running agent a question over MQTT and print its answer."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.errors import UsageError

if TYPE_CHECKING:  # the MQTT stack is imported when the command runs, not when the CLI starts
    from agent.mqtt.config import MqttConfig
    from agent.mqtt.messages import AskRequest

DEFAULT_TIMEOUT_S = 60.0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `ask` subcommand."""
    p = subparsers.add_parser("ask", help="ask a running agent a question over MQTT")
    p.add_argument("question", help="the question")
    p.add_argument(
        "--stream", dest="streams", action="append", metavar="S", help="stream to ask about (repeat)"
    )
    p.add_argument("--since", help="only video from this RFC 3339 time on, e.g. 2026-11-24T10:00:00Z")
    p.add_argument("--until", help="only video before this RFC 3339 time")
    p.add_argument("--budget", type=int, help="visual tokens the answer may use")
    p.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    p.add_argument("--prefix", default="flexselect", help="the agent's topic prefix (default flexselect)")
    p.add_argument("--protocol", choices=("auto", "5", "3.1.1"), default="auto", help="MQTT version")
    p.add_argument("--username", help="broker username")
    p.add_argument("--password-file", type=Path, help="file holding the broker password")
    p.add_argument("--ca-file", type=Path, help="CA bundle (PEM): connect with TLS")
    p.add_argument("--cert-file", type=Path, help="client certificate (PEM) for TLS")
    p.add_argument("--key-file", type=Path, help="client private key (PEM) for TLS")
    p.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS", help="wait this long"
    )
    p.add_argument(
        "--client",
        metavar="NAME",
        help="ask on <prefix>/ask/NAME and take the reply below <prefix>/answer/NAME/ (the per-client "
        "topics a broker ACL confines to one user; usually your username)",
    )
    p.add_argument("--json", action="store_true", help="print the agent's raw JSON reply")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Publish the question, wait for the reply and print it: 0 answer, 1 error answer, 2 no answer."""
    import asyncio

    from agent.mqtt.errors import LinkError, LinkTimeoutError

    if not 0 < args.timeout <= 86_400:
        raise UsageError(f"--timeout must be in (0, 86400] seconds, got {args.timeout}")
    config = _config(args)
    request = _request(args, config)
    topic = config.topics.ask if args.client is None else config.topics.ask_from(args.client)
    try:
        payload = asyncio.run(_ask(config, topic, request, args.timeout))
    except LinkTimeoutError:
        raise UsageError(
            f"no reply within {args.timeout:g} s from an agent with prefix {config.prefix!r} "
            f"at {config.host}:{config.port}"
        ) from None
    except LinkError as exc:
        raise UsageError(str(exc)) from None
    return _print_reply(payload, as_json=args.json)


def _config(args: argparse.Namespace) -> MqttConfig:
    from pydantic import ValidationError

    from agent.mqtt.config import MqttConfig
    from agent.mqtt.messages import describe_validation_error

    password = _read_password(args.password_file) if args.password_file is not None else None
    if password is not None and args.username is None:
        raise UsageError("--password-file needs --username")
    tls = None
    if args.ca_file is not None or args.cert_file is not None:
        tls = {"ca_file": args.ca_file, "cert_file": args.cert_file, "key_file": args.key_file}
    try:
        return MqttConfig.model_validate(
            {
                "host": args.host,
                "port": args.port,
                "prefix": args.prefix,
                "client_id": f"flexselect-ask-{uuid.uuid4().hex[:12]}",
                "protocol": args.protocol,
                "username": args.username,
                "password": password,
                "tls": tls,
                "connect_timeout_s": min(args.timeout, 10.0),
                "publish_timeout_s": min(args.timeout, 10.0),
            }
        )
    except ValidationError as exc:
        raise UsageError(describe_validation_error(exc).replace("field '", "option '")) from None


def _read_password(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise UsageError(f"cannot read --password-file {path}: {exc.strerror}") from None


def _request(args: argparse.Namespace, config: MqttConfig) -> AskRequest:
    from pydantic import ValidationError

    from agent.mqtt.errors import TopicError
    from agent.mqtt.messages import AskRequest, describe_validation_error

    request_id = f"cli-{uuid.uuid4().hex[:16]}"
    try:
        root = config.topics.answer_root if args.client is None else config.topics.answer_of(args.client)
    except TopicError as exc:
        raise UsageError(f"--client: {exc}") from None
    # The agent drops the question if it is still queued when this command has stopped waiting.
    deadline = datetime.now(UTC) + timedelta(seconds=args.timeout)
    try:
        return AskRequest.model_validate(
            {
                "id": request_id,
                "question": args.question,
                "streams": args.streams,
                "since": args.since,
                "until": args.until,
                "budget": args.budget,
                "reply_to": f"{root}/{request_id}",
                "deadline": deadline,
            },
            context={"topics": config.topics, "client": args.client},
        )
    except ValidationError as exc:
        raise UsageError(_as_option(describe_validation_error(exc))) from None


def _as_option(message: str) -> str:
    """Name the option instead of the request field: "field 'streams.0': ..." becomes "--stream: ..."."""
    options = {"since": "--since", "until": "--until", "budget": "--budget", "streams": "--stream"}
    match = re.match(r"field '(\w+)[^']*': ", message)
    if match is None or match[1] not in options:
        return message
    return f"{options[match[1]]}: {message[match.end() :]}"


async def _ask(config: MqttConfig, topic: str, request: AskRequest, timeout: float) -> bytes:
    """Subscribe to the reply topic, publish the question on `topic`, return the first reply with its id."""
    from agent.mqtt.errors import LinkTimeoutError
    from agent.mqtt.link import MqttLink

    assert request.reply_to is not None
    give_up = time.monotonic() + timeout
    async with MqttLink(
        config, subscriptions=[request.reply_to], availability=False, require_connection=True
    ) as link:
        await link.publish(topic, request.payload(), qos=1)
        while True:
            left = give_up - time.monotonic()
            if left <= 0:
                raise LinkTimeoutError("no reply")
            message = await link.receive(timeout=left)
            if message.topic == request.reply_to and _reply_id(message.payload) == request.id:
                return message.payload


def _reply_id(payload: bytes) -> Any:
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    return data.get("id") if isinstance(data, dict) else None


def _print_reply(payload: bytes, *, as_json: bool) -> int:
    data = json.loads(payload)
    ok = data.get("ok") is True
    if as_json:
        print(payload.decode("utf-8"))
        return 0 if ok else 1
    if not ok:
        error = data.get("error") or {}
        print(f"flexselect-agent ask: {error.get('code')}: {error.get('message')}", file=sys.stderr)
        return 1
    print(data.get("answer", ""))
    for item in data.get("evidence") or []:
        print(f"  {item.get('stream')}  {item.get('start')} -> {item.get('end')}  score {item.get('score')}")
    tokens = data.get("tokens") or {}
    total = (data.get("timings_ms") or {}).get("total")
    took = f", {total:.0f} ms" if isinstance(total, int | float) else ""
    print(f"({data.get('model')}; {tokens.get('used')} of {tokens.get('retained')} tokens{took})")
    return 0
