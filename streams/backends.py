"""Opening a source with PyAV, one recipe per kind (RTSP, HTTP, file, V4L2), and error translation.

Every network read is bounded twice: by FFmpeg's socket timeout (`read_timeout_s`) and by PyAV's
interrupt callback, which fires only when one read waits `stall_seconds` for a packet: the session
has stalled and is abandoned. A healthy read is never interrupted: FFmpeg's RTSP-over-TCP demuxer
drops the part of an interleaved packet it had read when interrupted, loses its framing and later
fails with `Input/output error`. Opening is bounded by `open_timeout_s`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import av
import av.error
from av.container import InputContainer

from streams.config import StreamConfig
from streams.errors import (
    AuthenticationError,
    InvalidMediaError,
    NoVideoStreamError,
    SourceNotFoundError,
    SourceUnavailableError,
    StreamError,
)
from streams.uri import SourceKind, SourceSpec, mask_secrets

# FFmpeg renders text files as "video" (the tty demuxer); such input is not a recording.
TEXT_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})


@dataclass(frozen=True)
class OpenArgs:
    """Arguments of one `av.open` call."""

    locator: str
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)


def open_args(spec: SourceSpec, config: StreamConfig) -> OpenArgs:
    """The `av.open` arguments for a source; `config.av_options` override ours."""
    micros = str(int(config.read_timeout_s * 1e6))
    probe = str(int(config.probe_seconds * 1e6))
    options: dict[str, str]
    fmt = None
    if spec.kind is SourceKind.RTSP:
        options = {
            "rtsp_transport": config.transport,
            "timeout": micros,
            "analyzeduration": probe,
            "allowed_media_types": "video",
        }
    elif spec.kind is SourceKind.HTTP:
        options = {"rw_timeout": micros, "analyzeduration": probe}
    elif spec.kind is SourceKind.DEVICE:
        options, fmt = {"analyzeduration": probe}, "v4l2"
    else:
        options = {}
    return OpenArgs(spec.locator, fmt, {**options, **config.av_options})


def open_container(spec: SourceSpec, config: StreamConfig) -> InputContainer:
    """Open `spec` for reading, with open and read time-outs set.

    The read time-out is the stall limit (`stall_seconds`), not a poll interval: an interrupted read
    can leave the demuxer unusable, so only a read that already counts as a stall is interrupted.

    Raises:
        StreamError: a translated error (see `translate_av_error`), credentials masked.
    """
    args = open_args(spec, config)
    if spec.kind is SourceKind.FILE and not os.path.exists(args.locator):
        raise SourceNotFoundError("no such file", uri=spec.masked)
    started = time.monotonic()
    try:
        return av.open(
            args.locator,
            format=args.format,
            options=args.options,
            timeout=(config.open_timeout_s, config.stall_seconds),
        )
    except (av.error.FFmpegError, OSError) as exc:
        # FFmpeg reports an interrupted open as ExitError or, for RTSP, as invalid data.
        timed_out = time.monotonic() - started >= config.open_timeout_s
        if isinstance(exc, av.error.ExitError) or (timed_out and spec.kind is not SourceKind.FILE):
            raise SourceUnavailableError(
                f"timed out after {config.open_timeout_s:g} s connecting and probing (no answer)",
                uri=spec.masked,
                cause=type(exc).__name__,
            ) from None
        raise translate_av_error(exc, spec) from None


def video_stream(container: InputContainer, spec: SourceSpec) -> av.VideoStream:
    """The first video stream of an open container.

    Raises:
        NoVideoStreamError: the container holds no video stream.
        InvalidMediaError: the "video" is text that FFmpeg renders as pictures.
    """
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise NoVideoStreamError(f"no video stream (streams: {', '.join(kinds)})", uri=spec.masked)
    stream = container.streams.video[0]
    if stream.codec_context.name in TEXT_CODECS:
        raise InvalidMediaError(
            f"not a readable video file, it is text ({stream.codec_context.name})", uri=spec.masked
        )
    return stream


def translate_av_error(exc: BaseException, spec: SourceSpec) -> StreamError:
    """A `StreamError` for an FFmpeg/OS error from opening or reading `spec`, with a clear message."""
    name = type(exc).__name__
    errno = getattr(exc, "errno", None)
    detail = mask_secrets(str(getattr(exc, "strerror", None) or exc))
    network = spec.kind in (SourceKind.RTSP, SourceKind.HTTP)
    error: StreamError
    if isinstance(exc, av.error.HTTPNotFoundError | FileNotFoundError):
        error = SourceNotFoundError(f"not found: {detail}", uri=spec.masked)
    elif isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        error = AuthenticationError(f"credentials refused: {detail}", uri=spec.masked)
    elif isinstance(exc, av.error.InvalidDataError) and not network:
        error = InvalidMediaError(
            f"not a readable video file, it may be corrupt, truncated or not media ({detail})",
            uri=spec.masked,
        )
    elif isinstance(exc, ConnectionRefusedError):
        error = SourceUnavailableError(
            "connection refused: is the host up and the port right?", uri=spec.masked
        )
    elif isinstance(exc, TimeoutError):
        error = SourceUnavailableError(f"timed out: {detail}", uri=spec.masked)
    elif isinstance(exc, PermissionError):
        error = SourceUnavailableError(f"permission denied: {detail}", uri=spec.masked)
    elif network or spec.kind is SourceKind.DEVICE:
        error = SourceUnavailableError(detail, uri=spec.masked)
    else:
        error = InvalidMediaError(detail, uri=spec.masked)
    error.cause, error.errno = name, errno
    return error
