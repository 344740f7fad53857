"""Message parsing: every kind of bad input gets its error code; the published schemas match the models."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from agent.mqtt import (
    AnswerMessage,
    ErrorCode,
    ErrorMessage,
    Evidence,
    RequestError,
    StreamStatus,
    TokenCounts,
    Topics,
    WatchEvent,
    WatchSpec,
    parse_ask,
    parse_watch_add,
    parse_watch_remove,
    schemas,
)

TOPICS = Topics("fx")
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def ask(payload: bytes | dict, **kwargs) -> object:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    options = {"max_question_chars": 40, "topics": TOPICS, "known_streams": {"cam1", "cam2"}, "now": NOW}
    return parse_ask(raw, **(options | kwargs))


def test_a_full_request_parses():
    request = ask(
        {
            "id": "q:1",
            "question": "Did a van stop?",
            "streams": ["cam1"],
            "since": "2026-11-24T09:00:00+01:00",
            "until": "2026-11-24T09:30:00Z",
            "budget": 512,
            "reply_to": "fx/answer/ha/kitchen",
            "deadline": "2026-11-24T10:05:00Z",
        }
    )
    assert request.id == "q:1" and request.streams == ["cam1"] and request.budget == 512
    assert request.since == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


BAD = [
    (b"\xff\xfe", ErrorCode.INVALID_JSON, None),
    (b'{"id": "q1", "question": ', ErrorCode.INVALID_JSON, None),
    (b'{"id": "q1", "question": "x", "budget": NaN}', ErrorCode.INVALID_JSON, None),
    (b'["q1"]', ErrorCode.INVALID_REQUEST, None),
    ({"question": "where?"}, ErrorCode.INVALID_REQUEST, None),
    ({"id": "bad id!", "question": "where?"}, ErrorCode.INVALID_REQUEST, None),
    ({"id": "q1", "question": "   "}, ErrorCode.INVALID_REQUEST, "q1"),
    ({"id": "q1", "question": "x", "since": "2026-11-24T09:00:00"}, ErrorCode.INVALID_REQUEST, "q1"),
    ({"id": "q1", "question": "x", "since": 1700000000}, ErrorCode.INVALID_REQUEST, "q1"),
    (
        {"id": "q1", "question": "x", "since": "2026-11-24T09:00:00Z", "until": "2026-11-24T08:00:00Z"},
        ErrorCode.INVALID_REQUEST,
        "q1",
    ),
    ({"id": "q1", "question": "x", "budget": 0}, ErrorCode.INVALID_REQUEST, "q1"),
    ({"id": "q1", "question": "x", "reply_to": "fx/answer/+"}, ErrorCode.INVALID_REQUEST, "q1"),
    ({"id": "q1", "question": "x", "reply_to": "elsewhere/answer"}, ErrorCode.INVALID_REQUEST, "q1"),
    ({"id": "q1", "question": "x", "reply_to": "fx/cam1/events"}, ErrorCode.INVALID_REQUEST, "q1"),
    ({"id": "q1", "question": "x", "stream": ["cam1"]}, ErrorCode.INVALID_REQUEST, "q1"),
    ({"id": "q1", "question": "x", "streams": ["cam1", "cam1"]}, ErrorCode.INVALID_REQUEST, "q1"),
    ({"id": "q1", "question": "x" * 41}, ErrorCode.QUESTION_TOO_LONG, "q1"),
    ({"id": "q1", "question": "x", "streams": ["cam9"]}, ErrorCode.UNKNOWN_STREAM, "q1"),
    ({"id": "q1", "question": "x", "deadline": "2026-11-24T09:59:59Z"}, ErrorCode.DEADLINE_PASSED, "q1"),
]


@pytest.mark.parametrize(("payload", "code", "request_id"), BAD)
def test_each_bad_request_raises_its_code_with_the_id_when_readable(payload, code, request_id):
    with pytest.raises(RequestError) as caught:
        ask(payload)
    assert caught.value.code == code
    assert caught.value.request_id == request_id
    reply = ErrorMessage.from_error(caught.value)
    assert json.loads(reply.payload()) == {
        "id": request_id,
        "ok": False,
        "error": {"code": code.value, "message": caught.value.message},
    }


def test_schema_errors_name_the_field_path():
    with pytest.raises(RequestError, match=r"field 'streams\.1': String should match pattern"):
        ask({"id": "q1", "question": "x", "streams": ["cam1", "a/b"]})


def test_a_valid_reply_to_survives_a_failed_request_so_the_error_reaches_it():
    with pytest.raises(RequestError) as caught:
        ask({"id": "q1", "question": "x", "budget": -1, "reply_to": "fx/answer/me"})
    assert caught.value.reply_to == "fx/answer/me"


def test_the_deadline_is_checked_again_when_the_question_is_picked_up():
    request = ask({"id": "q1", "question": "x", "deadline": "2026-11-24T10:00:05Z"})
    request.check_deadline(datetime(2026, 11, 24, 10, 0, 1, tzinfo=UTC))
    with pytest.raises(RequestError) as caught:
        request.check_deadline(datetime(2026, 11, 24, 10, 0, 5, tzinfo=UTC))
    assert caught.value.code is ErrorCode.DEADLINE_PASSED


def test_watch_commands_parse_and_reject_like_questions():
    spec = parse_watch_add(
        b'{"id": "door", "question": "Is the door open?", "streams": ["cam1"], "expect": "yes"}',
        max_question_chars=40,
        topics=TOPICS,
        known_streams={"cam1"},
    )
    assert (spec.min_interval_s, spec.cooldown_s) == (10.0, 60.0)
    assert spec.matches(" Yes.") and not spec.matches("no")
    assert WatchSpec(id="w", question="what happens?").matches("anything")
    assert parse_watch_remove(b'{"id": "door"}', topics=TOPICS).id == "door"
    for payload, code in [
        (b'{"id": "door", "question": "' + b"x" * 41 + b'"}', ErrorCode.QUESTION_TOO_LONG),
        (b'{"id": "door", "question": "x", "cooldown_s": -1}', ErrorCode.INVALID_REQUEST),
        (b'{"id": "door", "question": "x", "streams": ["cam7"]}', ErrorCode.UNKNOWN_STREAM),
        (b"{", ErrorCode.INVALID_JSON),
    ]:
        with pytest.raises(RequestError) as caught:
            parse_watch_add(payload, max_question_chars=40, topics=TOPICS, known_streams={"cam1"})
        assert caught.value.code == code
    with pytest.raises(RequestError):
        parse_watch_remove(b'{"id": ""}', topics=TOPICS)


def test_stream_status_masks_credentials_in_the_last_error():
    status = StreamStatus(
        stream="cam1",
        state="backing_off",
        online=False,
        fps=0.0,
        frames=10,
        drops=0,
        reconnects=2,
        stalls=1,
        memory_tokens=0,
        memory_bytes=0,
        last_error="cannot open rtsp://admin:hunter2@10.0.0.5/live?token=abc: timeout",
        updated_at=NOW,
    )
    assert "hunter2" not in status.payload().decode() and "abc" not in status.last_error
    assert status.last_error == "cannot open rtsp://***:***@10.0.0.5/live?token=*** timeout"


def sample_messages() -> dict[str, dict]:
    evidence = Evidence(stream="cam1", start=NOW, end=NOW, score=0.9)
    answer = AnswerMessage(
        id="q1",
        question="x",
        answer="a van",
        evidence=[evidence],
        tokens=TokenCounts(retained=100, used=10),
        timings_ms={"total": 12.5},
        model="tiny",
        answered_at=NOW,
    )
    event = WatchEvent(watch_id="w", stream="cam1", question="x", answer="yes", evidence=[evidence], at=NOW)
    return {
        "answer.json": json.loads(answer.payload()),
        "error.json": json.loads(ErrorMessage.of(ErrorCode.QUEUE_FULL, "busy", None).payload()),
        "watch-event.json": json.loads(event.payload()),
        "ask-request.json": {"id": "q1", "question": "x", "since": "2026-11-24T10:00:00Z"},
    }


def test_answers_carry_rfc3339_times_and_validate_against_the_published_schemas():
    samples = sample_messages()
    assert samples["answer.json"]["evidence"][0]["start"] == "2026-11-24T10:00:00Z"
    for name, message in samples.items():
        schema = json.loads((SCHEMA_DIR / name).read_text())
        jsonschema.Draft202012Validator(schema).validate(message)


def test_committed_schemas_are_up_to_date():
    assert schemas.stale(SCHEMA_DIR) == [], "run: python -m agent.mqtt.schemas --write docs/schemas"
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.json")) == sorted(schemas.MODELS)
