"""Hostile and lenient request input is refused with a clear error reply (issue 17, items 4, 6 and 10)."""

from __future__ import annotations

import json
import logging

import pytest

from agent.mqtt import ErrorCode, IncomingMessage, RequestError, Topics, parse_ask, parse_watch_add
from agent.mqtt.inbox import Inbox

TOPICS = Topics("fx")


def refused(payload: bytes | dict, **kwargs: object) -> RequestError:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with pytest.raises(RequestError) as caught:
        parse_ask(raw, max_question_chars=100, topics=TOPICS, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_a_payload_nested_a_thousand_levels_deep_is_an_invalid_json_error():
    error = refused(b"[" * 1000 + b"]" * 1000)
    assert error.code is ErrorCode.INVALID_JSON
    assert error.message == "payload nests 1000 levels deep; the limit is 16"


def test_a_deep_value_inside_a_request_keeps_the_request_id_unread_but_gets_a_reply():
    error = refused(b'{"id": "q1", "question": "hi", "streams": ' + b"[" * 600 + b"]" * 600 + b"}")
    assert error.code is ErrorCode.INVALID_JSON


def test_brackets_inside_strings_do_not_count_as_nesting():
    request = parse_ask(
        json.dumps({"id": "q1", "question": "[" * 40 + '\\"{' * 20}).encode(),
        max_question_chars=200,
        topics=TOPICS,
    )
    assert request.question.startswith("[[[")


@pytest.mark.parametrize("budget", ["10", True, 10.0])
def test_a_budget_that_is_not_a_json_integer_is_refused(budget):
    error = refused({"id": "q1", "question": "what?", "budget": budget})
    assert (error.code, error.message) == (
        ErrorCode.INVALID_REQUEST,
        "field 'budget': Input should be a valid integer",
    )
    assert error.request_id == "q1"


@pytest.mark.parametrize("field", ["min_interval_s", "cooldown_s"])
def test_watch_numbers_given_as_strings_or_booleans_are_refused(field):
    for value in ("10", True):
        payload = json.dumps({"id": "w1", "question": "door open?", field: value}).encode()
        with pytest.raises(RequestError, match=f"field '{field}': Input should be a valid number"):
            parse_watch_add(payload, max_question_chars=100, topics=TOPICS)


@pytest.mark.parametrize("question", ["\u200b", " \u200b\u2060\ufeff\t", "\u00a0\u3000", "\u202e"])
def test_a_question_of_only_invisible_characters_is_blank(question):
    error = refused({"id": "q1", "question": question})
    assert error.code is ErrorCode.INVALID_REQUEST
    assert "question is blank" in error.message


def test_an_error_for_an_overlong_reply_to_does_not_go_to_that_topic():
    long_topic = "fx/answer/" + "x" * 1100
    error = refused({"id": "q1", "question": "hi", "reply_to": long_topic})
    assert error.code is ErrorCode.INVALID_REQUEST
    assert error.reply_to is None
    assert TOPICS.reply_target(request_id=error.request_id, reply_to=long_topic) == ("fx/answer/q1", None)


def test_a_client_request_may_only_reply_into_its_own_answer_subtree():
    request = {"id": "k2", "question": "hi", "reply_to": "fx/answer/kitchen-panel/k2"}
    error = refused(request, client="intruder")
    assert error.message == (
        "field 'reply_to': reply_to 'fx/answer/kitchen-panel/k2' must lie below fx/answer/intruder/"
    )
    assert error.reply_to is None
    assert TOPICS.reply_target(request_id="k2", reply_to="fx/answer/kitchen-panel/k2", client="intruder") == (
        "fx/answer/intruder/k2",
        None,
    )


def test_a_client_request_ignores_a_v5_response_topic_outside_its_subtree():
    target = TOPICS.reply_target(
        request_id="q1", reply_to=None, response_topic="fx/answer/kitchen-panel/x", correlation_data=b"c",
        client="intruder",
    )  # fmt: skip
    assert target == ("fx/answer/intruder/q1", b"c")
    own = TOPICS.reply_target(
        request_id="q1", reply_to=None, response_topic="fx/answer/intruder/r/7", client="intruder"
    )
    assert own == ("fx/answer/intruder/r/7", None)


def test_an_unreadable_client_request_is_answered_in_its_subtree_not_on_the_shared_errors_topic():
    target = TOPICS.reply_target(request_id=None, reply_to=None, client="panel")
    assert target == ("fx/answer/panel/errors", None)


@pytest.mark.parametrize(
    ("topic", "command"),
    [
        ("fx/ask", ("ask", None)),
        ("fx/ask/kitchen-panel", ("ask", "kitchen-panel")),
        ("fx/watch/add/ha", ("watch/add", "ha")),
        ("fx/watch/remove", ("watch/remove", None)),
        ("fx/ask/a/b", None),
        ("fx/answer/a", None),
        ("fxx/ask", None),
    ],
)
def test_request_topics_name_their_command_and_client(topic, command):
    assert TOPICS.command_of(topic) == command


def test_a_full_inbox_logs_its_first_drop_and_then_every_thousandth(caplog):
    inbox = Inbox(2, "drop_oldest")
    with caplog.at_level(logging.WARNING, logger="agent.mqtt.inbox"):
        for i in range(1003):
            inbox.offer(IncomingMessage(topic="fx/ask", payload=str(i).encode()))
    assert inbox.dropped == 1001
    assert [r.getMessage() for r in caplog.records] == [
        "mqtt inbox full (2 messages): dropped the oldest message; 1 dropped so far, unanswered",
        "mqtt inbox full (2 messages): dropped the oldest message; 1001 dropped so far, unanswered",
    ]
