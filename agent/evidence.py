"""Evidence spans: the stretches of streams an answer or a watch event rests on, in wall-clock time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from agent.engine import EngineAnswer


def rfc3339(unix_seconds: float) -> datetime:
    """A Unix time as an aware UTC datetime (serialised as RFC 3339)."""
    return datetime.fromtimestamp(unix_seconds, tz=UTC)


@dataclass(frozen=True)
class Span:
    """A stretch of one stream, its relevance score, and its picture's URL once one is named."""

    stream: str
    start: datetime
    end: datetime
    score: float
    picture: str | None = None


def spans(result: EngineAnswer) -> list[Span]:
    """The engine's evidence as spans in wall-clock time, best first."""
    return [
        Span(stream=e.stream_id, start=rfc3339(e.span.start), end=rfc3339(e.span.end), score=e.span.score)
        for e in result.evidence
    ]
