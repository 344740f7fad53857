"""The streams error tree; every message names the source with its credentials masked.

    StreamError
    ├── UnsupportedSourceError      the URI names no source kind we read (also a ValueError)
    ├── SourceUnavailableError      cannot connect or open: unreachable, refused, timed out, closed
    │   ├── SourceNotFoundError     no such file, device or stream path (404)
    │   └── AuthenticationError     the server refused the credentials (401, 403)
    ├── InvalidMediaError           opened, but not decodable media: corrupt, truncated, not video data
    │   └── NoVideoStreamError      a valid media file without a video stream
    └── BackendUnavailableError     a decoder backend that is not installed was asked for

Library errors are translated at the edge. Their original text (which may hold a password) is not
chained: the translated error keeps the FFmpeg error's name and errno as attributes instead.
"""

from __future__ import annotations


class StreamError(Exception):
    """Base of every error raised by `streams`.

    Attributes:
        uri: the source, with credentials masked (never the raw URI).
        cause: the name of the library error this was translated from, if any.
        errno: that error's errno, if any.
    """

    def __init__(
        self, message: str, *, uri: str | None = None, cause: str | None = None, errno: int | None = None
    ) -> None:
        self.message = message
        self.uri = uri
        self.cause = cause
        self.errno = errno
        super().__init__(f"{message} ({uri})" if uri else message)


class UnsupportedSourceError(StreamError, ValueError):
    """The URI's scheme is not one that `streams` reads."""


class SourceUnavailableError(StreamError):
    """The source could not be reached or opened, or the connection was lost."""


class SourceNotFoundError(SourceUnavailableError):
    """The file, device or stream path does not exist."""


class AuthenticationError(SourceUnavailableError):
    """The server refused the credentials in the URI."""


class InvalidMediaError(StreamError):
    """The source opened but holds no decodable video: corrupt, truncated or not media at all."""


class NoVideoStreamError(InvalidMediaError):
    """The media has no video stream (e.g. an audio-only file)."""


class BackendUnavailableError(StreamError):
    """A decoder backend was requested that is not installed here."""
