"""Conversions between the domain types (questions, answers, evidence, watch events) and MQTT messages."""

from __future__ import annotations

from agent.evidence import Span
from agent.mqtt import AnswerMessage, AskRequest, Evidence, TokenCounts, WatchEvent
from agent.questions import Answer, Question
from agent.watch_service import WatchFired


def question_of(request: AskRequest) -> Question:
    """The domain question of a parsed `AskRequest`."""
    return Question(
        id=request.id,
        text=request.question,
        streams=request.streams,
        since=request.since,
        until=request.until,
        budget=request.budget,
        deadline=request.deadline,
    )


def evidence_message(evidence: list[Span]) -> list[Evidence]:
    return [
        Evidence(stream=s.stream, start=s.start, end=s.end, score=s.score, picture=s.picture)
        for s in evidence
    ]


def answer_message(answer: Answer) -> AnswerMessage:
    """The `AnswerMessage` of a domain answer."""
    return AnswerMessage(
        id=answer.id,
        question=answer.question,
        answer=answer.text,
        evidence=evidence_message(answer.evidence),
        tokens=TokenCounts(retained=answer.retained_tokens, used=answer.used_tokens),
        timings_ms=answer.timings_ms,
        model=answer.model,
        answered_at=answer.answered_at,
    )


def watch_event(fired: WatchFired) -> WatchEvent:
    """The `WatchEvent` published for a fired watch."""
    return WatchEvent(
        watch_id=fired.watch.id,
        stream=fired.stream,
        question=fired.watch.question,
        answer=fired.answer,
        evidence=evidence_message(fired.evidence),
        at=fired.at,
    )
