"""The JSON messages on the agent's topics (pydantic models, exported as JSON Schema) and their parsers."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.mqtt.errors import ErrorCode, RequestError, TopicError
from agent.mqtt.topics import MAX_REPLY_TOPIC_CHARS, REQUEST_ID, STREAM_NAME, Topics, check_topic
from common.masking import mask_secrets

DEFAULT_MAX_QUESTION_CHARS = 2000
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_STREAMS = 64
MAX_ERROR_CHARS = 500
MAX_JSON_DEPTH = 16  # a request is at most three levels deep; deeper input is refused before validation
_BLANK_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})  # controls, format (zero-width), spaces
T = TypeVar("T", bound=BaseModel)


def _rfc3339_only(value: Any) -> Any:
    # Lax pydantic would read numbers as Unix times; the wire format is RFC 3339 text only.
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("must be an RFC 3339 string with a timezone, e.g. 2026-11-24T10:00:00Z")
    return value


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339_only),
    Field(description="RFC 3339 date-time with a timezone offset, e.g. 2026-11-24T10:00:00Z"),
]
RequestId = Annotated[
    str, Field(pattern=REQUEST_ID.pattern, title="Request id", description="1-128 of [A-Za-z0-9_.:-]")
]
StreamName = Annotated[str, Field(pattern=STREAM_NAME.pattern, title="Stream name")]
Score = Annotated[float, Field(allow_inf_nan=False)]
# Request numbers are JSON numbers only: no "10" and no true (pydantic's lax mode would take both).
StrictInt = Annotated[int, Strict()]
StrictFloat = Annotated[float, Strict()]


def is_blank(text: str) -> bool:
    """Whether `text` is empty once spaces, controls and format characters (e.g. U+200B) are removed."""
    return all(unicodedata.category(c) in _BLANK_CATEGORIES for c in text)


class _Message(BaseModel):
    # Serialization schemas list every field as required: the agent always writes them all.
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_serialization_defaults_required=True)

    def payload(self) -> bytes:
        """The message as compact UTF-8 JSON, ready to publish."""
        return self.model_dump_json().encode()


def _unique(values: list[str] | None, what: str) -> list[str] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError(f"{what} lists a name twice: {values}")
    return values


class AskRequest(_Message):
    """A question for the agent, published on `<prefix>/ask`."""

    id: RequestId
    question: str = Field(
        min_length=1,
        title="Question",
        description="Not blank once spaces and invisible characters are removed; the agent's configured "
        "limit caps its length",
    )
    streams: list[StreamName] | None = Field(
        None, min_length=1, max_length=MAX_STREAMS, title="Streams to consider (default: all)"
    )
    since: Timestamp | None = Field(None, title="Consider only video at or after this time")
    until: Timestamp | None = Field(None, title="Consider only video before this time")
    budget: StrictInt | None = Field(None, ge=1, le=1 << 24, title="Visual tokens the answer may use")
    reply_to: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_REPLY_TOPIC_CHARS,
        title="Reply topic",
        description="A publish topic (no wildcards) below <prefix>/answer/ (below <prefix>/answer/<client>/ "
        "for a request on <prefix>/ask/<client>); default: <id> below that subtree",
    )
    deadline: Timestamp | None = Field(None, title="Give up (deadline_passed) if not started by then")

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if is_blank(value):
            raise ValueError("question is blank (only spaces or invisible characters)")
        return value

    @field_validator("streams")
    @classmethod
    def _unique_streams(cls, value: list[str] | None) -> list[str] | None:
        return _unique(value, "streams")

    @field_validator("reply_to")
    @classmethod
    def _reply_topic(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:
            check_topic(value, what="reply_to")
        except TopicError as exc:
            raise ValueError(str(exc)) from None
        topics = (info.context or {}).get("topics")
        client = (info.context or {}).get("client")
        if isinstance(topics, Topics) and not topics.is_reply_topic(value, client):
            root = topics.answer_root if client is None else topics.answer_of(client)
            raise ValueError(f"reply_to {value!r} must lie below {root}/")
        return value

    @model_validator(mode="after")
    def _window_order(self) -> Self:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(
                f"since ({self.since.isoformat()}) must be before until ({self.until.isoformat()})"
            )
        return self

    def check_deadline(self, now: datetime | None = None) -> None:
        """Raise `RequestError(deadline_passed)` if the request's deadline is at or before `now` (UTC)."""
        now = now or datetime.now(UTC)
        if self.deadline is not None and self.deadline <= now:
            raise RequestError(
                ErrorCode.DEADLINE_PASSED,
                f"deadline {self.deadline.isoformat()} passed before the question was picked up",
                request_id=self.id,
                reply_to=self.reply_to,
            )


class Evidence(_Message):
    """A stretch of one stream the answer rests on."""

    stream: StreamName
    start: Timestamp
    end: Timestamp
    score: Score = Field(title="Relevance score (higher is more relevant)")
    picture: str | None = Field(
        None, title="Evidence picture", description="HTTP URL of a JPEG of the span (None: no picture kept)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end < self.start:
            raise ValueError(
                f"evidence end {self.end.isoformat()} is before its start {self.start.isoformat()}"
            )
        return self


class TokenCounts(_Message):
    """Visual tokens in memory for the asked streams, and those the answer used."""

    retained: int = Field(ge=0, title="Tokens retained in memory for the asked streams and window")
    used: int = Field(ge=0, title="Tokens the model saw for this answer")


class AnswerMessage(_Message):
    """The answer to an `AskRequest`."""

    id: RequestId
    ok: Literal[True] = True
    question: str
    answer: str
    evidence: list[Evidence] = Field(default_factory=list)
    tokens: TokenCounts
    timings_ms: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=dict, title="Milliseconds per phase, e.g. queue, select, generate, total"
    )
    model: str = Field(title="Model that answered")
    answered_at: Timestamp


class ErrorDetail(_Message):
    """What went wrong."""

    code: ErrorCode
    message: str = Field(title="One line naming the bad value and the fix")


class ErrorMessage(_Message):
    """The reply to a request the agent could not answer."""

    id: RequestId | None = Field(title="The request id, or null when it could not be read")
    ok: Literal[False] = False
    error: ErrorDetail

    @classmethod
    def of(cls, code: ErrorCode, message: str, request_id: str | None = None) -> ErrorMessage:
        """An error reply; an id that is not a valid request id becomes null."""
        if request_id is not None and not REQUEST_ID.match(request_id):
            request_id = None
        return cls(id=request_id, error=ErrorDetail(code=code, message=message))

    @classmethod
    def from_error(cls, error: RequestError) -> ErrorMessage:
        """The reply to a refused request."""
        return cls.of(error.code, error.message, error.request_id)


class StreamStatus(_Message):
    """The retained health of one stream, on `<prefix>/<stream>/status`."""

    stream: StreamName
    state: str = Field(
        pattern=r"^[a-z_]{1,32}$",
        title="Source state: connecting, streaming, stalled, backing_off, ended, failed",
    )
    online: bool = Field(title="Whether frames are arriving now")
    fps: float = Field(ge=0, allow_inf_nan=False, title="Frames per second decoded recently")
    frames: int = Field(ge=0, title="Frames decoded since start")
    drops: int = Field(ge=0, title="Chunks or frames dropped by the live drop policy")
    reconnects: int = Field(ge=0, title="Reconnects since start")
    stalls: int = Field(ge=0, title="Stalls detected since start")
    memory_tokens: int = Field(ge=0, title="Visual tokens retained for this stream")
    memory_bytes: int = Field(ge=0, title="Bytes retained for this stream")
    shed_factor: int = Field(
        1, ge=1, title="1 normally; n while the model is overloaded and the stream keeps 1 frame in n"
    )
    ingest_lag_s: float = Field(
        0.0, ge=0, allow_inf_nan=False, title="How long the stream's last chunk waited for the model"
    )
    last_error: str | None = Field(None, title="Last error, credentials masked")
    updated_at: Timestamp

    @field_validator("last_error")
    @classmethod
    def _masked(cls, value: str | None) -> str | None:
        return None if value is None else mask_secrets(value)[:MAX_ERROR_CHARS]


class WatchSpec(_Message):
    """A standing question, evaluated on each new chunk of its streams.

    An evaluation runs at most every `min_interval_s` per stream; after an event fires, the watch stays
    quiet on that stream for `cooldown_s`. With `expect`, an event fires when the answer equals it
    (case, surrounding space and final punctuation ignored); `threshold` is reserved for the agent's
    confidence rule (see docs/mqtt.md); with neither, every evaluation publishes an event.
    """

    id: RequestId
    question: str = Field(min_length=1, title="The standing question (non-blank)")
    streams: list[StreamName] | None = Field(
        None, min_length=1, max_length=MAX_STREAMS, title="Streams to watch (default: all)"
    )
    min_interval_s: StrictFloat = Field(
        10.0,
        ge=0,
        le=86_400,
        allow_inf_nan=False,
        title="Seconds between runs",
        description="The agent refuses a value below its configured floor (watch_limits.min_interval_s)",
    )
    cooldown_s: StrictFloat = Field(
        60.0, ge=0, le=7 * 86_400, allow_inf_nan=False, title="Quiet time after an event"
    )
    expect: str | None = Field(None, min_length=1, max_length=200, title="Answer that fires an event")
    threshold: StrictFloat | None = Field(
        None, ge=0, le=1, allow_inf_nan=False, title="Confidence an event needs (agent-defined, 0-1)"
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if is_blank(value):
            raise ValueError("question is blank (only spaces or invisible characters)")
        return value

    @field_validator("streams")
    @classmethod
    def _unique_streams(cls, value: list[str] | None) -> list[str] | None:
        return _unique(value, "streams")

    def matches(self, answer: str) -> bool:
        """Whether `answer` fires an event under `expect` (always True without `expect`)."""
        return self.expect is None or _normalise(answer) == _normalise(self.expect)


def _normalise(text: str) -> str:
    return text.strip().rstrip(".!?").strip().casefold()


class WatchRemove(_Message):
    """Removes a standing question, published on `<prefix>/watch/remove`."""

    id: RequestId


class WatchList(_Message):
    """The retained list of standing questions on `<prefix>/watches`."""

    watches: list[WatchSpec]
    updated_at: Timestamp


class WatchEvent(_Message):
    """A standing question fired on a stream, published on `<prefix>/<stream>/events`."""

    watch_id: RequestId
    stream: StreamName
    question: str
    answer: str
    evidence: list[Evidence] = Field(default_factory=list)
    at: Timestamp


def parse_ask(
    payload: bytes,
    *,
    max_question_chars: int,
    topics: Topics,
    known_streams: Collection[str] | None = None,
    now: datetime | None = None,
    client: str | None = None,
) -> AskRequest:
    """Read an `AskRequest` from an MQTT payload.

    Args:
        payload: the raw message body.
        max_question_chars: the longest question accepted (characters).
        topics: the agent's topics; `reply_to` must lie below `topics.answer_root`.
        known_streams: names a request may ask about (None: any).
        now: the time deadlines are checked against (default: now, UTC).
        client: the client whose topic (`<prefix>/ask/<client>`) carried it; `reply_to` must then lie
            below `topics.answer_of(client)`.

    Raises:
        RequestError: with the code of the first problem found and, when readable, the request's id.
    """
    data = _json_object(payload)
    request_id, reply_to = _peek(data, topics, client)
    _check_question_length(data, max_question_chars, request_id, reply_to)
    request = _validate(AskRequest, data, topics, request_id, reply_to, client)
    _check_streams(request.streams, known_streams, request_id, reply_to)
    request.check_deadline(now)
    return request


def parse_watch_add(
    payload: bytes,
    *,
    max_question_chars: int,
    topics: Topics,
    known_streams: Collection[str] | None = None,
    client: str | None = None,
) -> WatchSpec:
    """Read a `WatchSpec` from a `<prefix>/watch/add` payload; raises `RequestError` like `parse_ask`."""
    data = _json_object(payload)
    watch_id, _ = _peek(data, topics, client)
    _check_question_length(data, max_question_chars, watch_id, None)
    spec = _validate(WatchSpec, data, topics, watch_id, None, client)
    _check_streams(spec.streams, known_streams, watch_id, None)
    return spec


def parse_watch_remove(payload: bytes, *, topics: Topics, client: str | None = None) -> WatchRemove:
    """Read a `WatchRemove` from a `<prefix>/watch/remove` payload; raises `RequestError`."""
    data = _json_object(payload)
    watch_id, _ = _peek(data, topics, client)
    return _validate(WatchRemove, data, topics, watch_id, None, client)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_object(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise RequestError(
            ErrorCode.INVALID_REQUEST, f"payload has {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}"
        )
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(ErrorCode.INVALID_JSON, f"payload is not UTF-8 (byte {exc.start})") from None
    depth = _nesting_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise RequestError(
            ErrorCode.INVALID_JSON, f"payload nests {depth} levels deep; the limit is {MAX_JSON_DEPTH}"
        )
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        raise RequestError(ErrorCode.INVALID_JSON, f"payload is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(
            ErrorCode.INVALID_REQUEST, f"payload must be a JSON object, got {type(data).__name__}"
        )
    return data


def _nesting_depth(text: str) -> int:
    """The deepest `[`/`{` nesting outside strings, found without recursion (json.loads would recurse)."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return 0  # too few brackets to be too deep: skip the scan
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _peek(data: dict[str, Any], topics: Topics, client: str | None = None) -> tuple[str | None, str | None]:
    """The id and reply topic of a request that may fail validation, each only if valid on its own."""
    request_id = data.get("id")
    reply_to = data.get("reply_to")
    valid_id = request_id if isinstance(request_id, str) and REQUEST_ID.match(request_id) else None
    valid = isinstance(reply_to, str) and topics.is_reply_topic(reply_to, client)
    return valid_id, reply_to if valid else None


def _check_question_length(
    data: dict[str, Any], limit: int, request_id: str | None, reply_to: str | None
) -> None:
    question = data.get("question")
    if isinstance(question, str) and len(question) > limit:
        raise RequestError(
            ErrorCode.QUESTION_TOO_LONG,
            f"question has {len(question)} characters; the limit is {limit}",
            request_id=request_id,
            reply_to=reply_to,
        )


def _validate(
    model: type[T],
    data: dict[str, Any],
    topics: Topics,
    request_id: str | None,
    reply_to: str | None,
    client: str | None = None,
) -> T:
    try:
        return model.model_validate(data, context={"topics": topics, "client": client})
    except ValidationError as exc:
        raise RequestError(
            ErrorCode.INVALID_REQUEST,
            describe_validation_error(exc),
            request_id=request_id,
            reply_to=reply_to,
        ) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the first invalid field (dotted path) and how many more problems there are."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    path = ".".join(str(part) for part in first["loc"]) or "(request)"
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"field {path!r}: {message}{more}"


def _check_streams(
    streams: list[str] | None, known: Collection[str] | None, request_id: str | None, reply_to: str | None
) -> None:
    if streams is None or known is None:
        return
    unknown = [name for name in streams if name not in known]
    if unknown:
        listed = ", ".join(sorted(known)[:10]) or "none"
        raise RequestError(
            ErrorCode.UNKNOWN_STREAM,
            f"unknown stream {unknown[0]!r}; known streams: {listed}",
            request_id=request_id,
            reply_to=reply_to,
        )
