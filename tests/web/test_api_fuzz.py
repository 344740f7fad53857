"""The HTTP API fuzzed from its own OpenAPI document, plus the answers and errors it shares with MQTT."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from agent.mqtt import ErrorCode
from tests.web.conftest import RunningAgent

pytestmark = [pytest.mark.services, pytest.mark.slow]

EXAMPLES = {GenerationMode.POSITIVE: 8, GenerationMode.NEGATIVE: 10}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def clear_4xx(response: object) -> None:
    """A 4xx is an ErrorMessage whose code and one-line message say what was wrong."""
    status = response.status_code  # type: ignore[attr-defined]
    assert status < 500, f"{status}: {response.text}"  # type: ignore[attr-defined]
    if status >= 400:
        body = response.json()  # type: ignore[attr-defined]
        assert body["ok"] is False and body["error"]["code"] in {c.value for c in ErrorCode}, body
        assert body["error"]["message"].strip(), body


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda m: m.value)
def test_every_operation_answers_fuzzed_requests_without_a_server_error(
    toy_agent: RunningAgent, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{toy_agent.base_url}/openapi.json")
    schema.config.update(base_url=toy_agent.base_url, request_timeout=120)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /api/v1/ask",
        "GET /api/v1/streams",
        "GET /api/v1/streams/{stream}/pictures/{key}.jpg",
        "POST /api/v1/watches",
        "DELETE /api/v1/watches/{watch_id}",
    }
    for operation in operations:
        if (
            mode is GenerationMode.NEGATIVE
            and not operation.definition.raw.get("parameters")
            and ("requestBody" not in operation.definition.raw)
        ):
            continue  # nothing to make invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES[mode],
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=toy_agent.base_url, timeout=120)
            clear_4xx(response)
            if mode is GenerationMode.POSITIVE:
                case.validate_response(response, checks=CHECKS)

        run()


def test_http_and_mqtt_share_the_request_schema_and_its_errors(toy_agent: RunningAgent) -> None:
    cases = [
        (b"{not json", 400, "invalid_json"),
        (json.dumps({"id": "a", "question": "x" * 2001}).encode(), 413, "question_too_long"),
        (json.dumps({"id": "b", "question": "?", "streams": ["nowhere"]}).encode(), 404, "unknown_stream"),
        (json.dumps({"id": "c", "question": " "}).encode(), 422, "invalid_request"),
        (json.dumps({"id": "d", "question": "?", "since": 5}).encode(), 422, "invalid_request"),
        (json.dumps({"id": "e", "question": "?", "deadline": "2000-01-01T00:00:00Z"}).encode(), 408,
         "deadline_passed"),
        (json.dumps({"id": "f", "question": "?", "until": "2001-01-01T00:00:00Z"}).encode(), 409,
         "empty_memory"),
    ]  # fmt: skip
    for payload, status, code in cases:
        got_status, body = toy_agent.post("/api/v1/ask", payload)
        assert (got_status, body["ok"], body["error"]["code"]) == (status, False, code), body


def test_an_answer_over_http_names_its_evidence_pictures(toy_agent: RunningAgent) -> None:
    question = next(q for q in toy_agent.truth.questions if q.kind == "shape")
    status, body = toy_agent.post("/api/v1/ask", {"id": "http-1", "question": question.question})
    assert status == 200 and body["id"] == "http-1" and body["ok"] is True
    assert body["evidence"] and all(e["picture"] for e in body["evidence"])
    for evidence in body["evidence"]:
        path = evidence["picture"].removeprefix(toy_agent.base_url)
        got, jpeg = toy_agent.get(path)
        assert got == 200 and jpeg[:3] == b"\xff\xd8\xff"
