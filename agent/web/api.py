"""The HTTP API (FastAPI): ask, streams, pictures, watches, events, metrics, health, and the console.

Requests and answers are the MQTT messages (`agent.mqtt.messages`): a question posted here is read by the
same parser, so it gets the same errors; each error is an `ErrorMessage` with the HTTP status of its code.
With `http.token` set, every route except `/health/*` and the console's static files requires it, as
`Authorization: Bearer <token>` or (for `<img>` links) the `access_token` query parameter.
"""

import hmac
import logging
from collections.abc import Callable
from datetime import datetime
from importlib.resources import files
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.event_log import MAX_EVENTS
from agent.memory.thumbnails import PicturesUnavailableError
from agent.mqtt import AnswerMessage, AskRequest, ErrorCode, ErrorMessage, RequestError, WatchList, WatchSpec
from agent.mqtt.messages import STREAM_NAME
from agent.mqtt.topics import REQUEST_ID
from agent.web.facade import MAX_PICTURES_LISTED, AgentFacade
from agent.web.models import EventList, Health, PictureList, StreamList, StreamView

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

STATUS = {
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.INVALID_REQUEST: 422,
    ErrorCode.QUESTION_TOO_LONG: 413,
    ErrorCode.UNKNOWN_STREAM: 404,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.EMPTY_MEMORY: 409,
    ErrorCode.DEADLINE_PASSED: 408,
    ErrorCode.QUEUE_FULL: 429,
    ErrorCode.TOO_MANY_WATCHES: 429,
    ErrorCode.MEMORY_UNAVAILABLE: 503,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.SHUTTING_DOWN: 503,
    ErrorCode.INTERNAL: 500,
}
ASK_ERRORS = tuple(
    c for c in ErrorCode if c not in (ErrorCode.NOT_FOUND, ErrorCode.UNAUTHORIZED, ErrorCode.TOO_MANY_WATCHES)
)
_HTTP_CODES = {401: ErrorCode.UNAUTHORIZED, 404: ErrorCode.NOT_FOUND, 405: ErrorCode.INVALID_REQUEST}
STATIC = files("agent.web").joinpath("static")
StreamPath = Annotated[str, Path(pattern=STREAM_NAME.pattern, title="Stream name")]
WatchPath = Annotated[str, Path(pattern=REQUEST_ID.pattern, title="Watch id")]


def error_response(code: ErrorCode, message: str, request_id: str | None = None) -> JSONResponse:
    """An `ErrorMessage` with the HTTP status of its code."""
    body = ErrorMessage.of(code, message, request_id).model_dump(mode="json")
    headers = {"WWW-Authenticate": "Bearer"} if code is ErrorCode.UNAUTHORIZED else None
    return JSONResponse(body, status_code=STATUS[code], headers=headers)


def _errors(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    statuses = sorted({STATUS[c] for c in codes})
    return {
        s: {"model": ErrorMessage, "description": ", ".join(c for c in codes if STATUS[c] == s)}
        for s in statuses
    }


def _body(model: type[BaseModel]) -> dict[str, Any]:
    """An OpenAPI request body whose schema is `model`'s validation schema (the parser reads it raw)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    if "$defs" in schema:
        raise AssertionError(f"{model.__name__} needs $defs; hoist them into the OpenAPI components")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


class _Unauthorized(Exception):
    pass


def build_api(facade: AgentFacade, *, token: str | None, console: bool) -> FastAPI:
    """The agent's HTTP API over `facade`; `token` (if any) guards everything but health and static files."""
    api = FastAPI(
        title="FlexSelect Agent",
        version="1",
        summary="Questions about camera streams, evidence pictures, watches",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    bearer = HTTPBearer(auto_error=False)
    query_key = APIKeyQuery(name="access_token", auto_error=False)

    async def authorised(
        header: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        query: Annotated[str | None, Depends(query_key)],
    ) -> None:
        if token is None:
            return
        given = header.credentials if header is not None else query
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            raise _Unauthorized()

    guarded = [Depends(authorised)]
    unauthorized = _errors(ErrorCode.UNAUTHORIZED) if token is not None else {}

    def route(method: str, path: str, tag: str, *errors: ErrorCode, **kwargs: Any) -> Callable[[F], F]:
        """A token-guarded operation that documents `errors` (and 401 when a token is set)."""
        responses = {**kwargs.pop("responses", {}), **_errors(*errors), **unauthorized}
        return api.api_route(
            path, methods=[method], dependencies=guarded, tags=[tag], responses=responses, **kwargs
        )

    @api.exception_handler(_Unauthorized)
    async def _on_unauthorized(request: Request, exc: _Unauthorized) -> JSONResponse:
        return error_response(ErrorCode.UNAUTHORIZED, "a valid bearer token is required (http.token)")

    @api.exception_handler(RequestValidationError)
    async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "(request)"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        return error_response(ErrorCode.INVALID_REQUEST, f"{where}: {first.get('msg')}{more}")

    @api.exception_handler(StarletteHTTPException)
    async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.INVALID_REQUEST)
        response = error_response(code, f"{request.method} {request.url.path}: {exc.detail}")
        response.status_code = exc.status_code if exc.status_code < 500 else 500
        return response

    @api.exception_handler(PicturesUnavailableError)
    async def _on_pictures_down(request: Request, exc: PicturesUnavailableError) -> JSONResponse:
        response = error_response(ErrorCode.INTERNAL, str(exc))
        response.status_code = 503
        return response

    # ------------------------------------------------------------------------------------------- health
    @api.get("/health/live", response_model=Health, tags=["health"])
    async def live() -> Health:
        """200 while the process serves (no token needed, for probes)."""
        return Health(status="live")

    @api.get(
        "/health/ready",
        response_model=Health,
        tags=["health"],
        responses={503: {"model": Health, "description": "not ready"}},
    )
    async def ready() -> Response:
        """200 once the model is loaded, the memory is ready and MQTT is connected (no token needed)."""
        ok, detail = facade.readiness()
        body = Health(status="ready" if ok else "not ready", **detail)  # type: ignore[arg-type]
        return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)

    @route(
        "GET", "/metrics", "health", responses={200: {"content": {"text/plain": {}}}}, response_class=Response
    )
    async def metrics() -> Response:
        """Prometheus text exposition, read at scrape time."""
        return Response(await facade.metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # ------------------------------------------------------------------------------------------ streams
    async def known(stream: str) -> None:
        if stream not in await facade.stream_ids():
            raise RequestError(ErrorCode.UNKNOWN_STREAM, f"unknown stream {stream!r}")

    @route("GET", "/api/v1/streams", "streams", response_model=StreamList)
    async def streams() -> StreamList:
        """Every stream with its state, counters, memory fill and latest picture."""
        return StreamList(streams=[await facade.stream(s) for s in await facade.stream_ids()])

    @route("GET", "/api/v1/streams/{stream}", "streams", ErrorCode.UNKNOWN_STREAM, response_model=StreamView)
    async def stream(stream: StreamPath) -> StreamView:
        """One stream."""
        await known(stream)
        return await facade.stream(stream)

    @route(
        "GET",
        "/api/v1/streams/{stream}/pictures",
        "pictures",
        ErrorCode.UNKNOWN_STREAM,
        response_model=PictureList,
    )
    async def pictures(
        stream: StreamPath,
        since: Annotated[datetime | None, Query(title="Only pictures at or after (RFC 3339)")] = None,
        until: Annotated[datetime | None, Query(title="Only pictures at or before (RFC 3339)")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PICTURES_LISTED)] = 200,
    ) -> PictureList:
        """The kept pictures of a stream in a window, thinned evenly to `limit` (for a timeline)."""
        await known(stream)
        for value in (since, until):
            if value is not None and value.tzinfo is None:
                raise RequestError(ErrorCode.INVALID_REQUEST, "since/until need a timezone, e.g. ...Z")
        return await facade.pictures(stream, since, until, limit)

    @route(
        "GET",
        "/api/v1/streams/{stream}/pictures/{key}.jpg",
        "pictures",
        ErrorCode.NOT_FOUND,
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}, "description": "The JPEG"}},
    )
    async def picture(
        stream: StreamPath,
        key: Annotated[int, Path(ge=-(2**62), le=2**62, title="Frame time in microseconds since the epoch")],
    ) -> Response:
        """One evidence picture (a JPEG thumbnail of a retained frame)."""
        jpeg = await facade.picture(stream, key)
        if jpeg is None:
            raise RequestError(ErrorCode.NOT_FOUND, f"no picture of stream {stream!r} at {key} µs (evicted?)")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    # ---------------------------------------------------------------------------------------- questions
    @route(
        "POST",
        "/api/v1/ask",
        "questions",
        *ASK_ERRORS,
        response_model=AnswerMessage,
        openapi_extra=_body(AskRequest),
    )
    async def ask(request: Request) -> Response:
        """Ask a question: the MQTT `AskRequest` in, the `AnswerMessage` or an `ErrorMessage` out."""
        parsed = await facade.parse_ask(await request.body())  # a RequestError answers through its handler
        try:
            answer = await facade.ask(parsed)
        except RequestError:
            raise
        except Exception as exc:
            logger.exception("question %s failed", parsed.id)
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return error_response(ErrorCode.INTERNAL, f"the question failed: {text}", parsed.id)
        return JSONResponse(answer.model_dump(mode="json"))

    # ------------------------------------------------------------------------------------------ watches
    @route("GET", "/api/v1/watches", "watches", response_model=WatchList)
    async def watches() -> WatchList:
        """The standing questions."""
        return facade.watches()

    @route(
        "POST",
        "/api/v1/watches",
        "watches",
        ErrorCode.INVALID_JSON,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.QUESTION_TOO_LONG,
        ErrorCode.UNKNOWN_STREAM,
        ErrorCode.TOO_MANY_WATCHES,
        status_code=201,
        response_model=WatchSpec,
        openapi_extra=_body(WatchSpec),
    )
    async def add_watch(request: Request) -> Response:
        """Add or replace a standing question (the MQTT `watch/add` payload)."""
        spec = await facade.add_watch(await request.body())  # the watch limits may refuse it
        return JSONResponse(spec.model_dump(mode="json"), status_code=201)

    @route(
        "DELETE",
        "/api/v1/watches/{watch_id}",
        "watches",
        ErrorCode.NOT_FOUND,
        status_code=204,
        response_class=Response,
    )
    async def remove_watch(watch_id: WatchPath) -> Response:
        """Remove a standing question."""
        if not await facade.remove_watch(watch_id):
            raise RequestError(ErrorCode.NOT_FOUND, f"no watch {watch_id!r}", request_id=watch_id)
        return Response(status_code=204)

    @route("GET", "/api/v1/events", "watches", response_model=EventList)
    async def events(
        watch: Annotated[
            str | None, Query(pattern=REQUEST_ID.pattern, title="Only this watch's events")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = 50,
    ) -> EventList:
        """Recent watch events, newest first."""
        return EventList(events=facade.events(watch, limit))

    @api.exception_handler(RequestError)
    async def _on_request_error(request: Request, exc: RequestError) -> JSONResponse:
        return error_response(exc.code, exc.message, exc.request_id)

    # ------------------------------------------------------------------------------------------ console
    if console:

        @api.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(str(STATIC.joinpath("index.html")), media_type="text/html")

        api.mount("/console", StaticFiles(directory=str(STATIC)), name="console")
    return api
