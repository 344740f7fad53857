"""Source URIs: what kind of source a URI names, and its text with credentials masked."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from urllib.parse import unquote, urlsplit

from common.masking import mask_secrets
from streams.errors import UnsupportedSourceError


class SourceKind(Enum):
    """The backend a URI is read with."""

    RTSP = "rtsp"  # rtsp:// and rtsps:// cameras
    HTTP = "http"  # http(s):// streams (MJPEG, MPEG-TS, HLS) or remote recordings
    FILE = "file"  # local recordings in any container FFmpeg reads
    DEVICE = "device"  # V4L2 capture devices


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source: its kind, the locator handed to FFmpeg, and the masked text for logs."""

    kind: SourceKind
    locator: str
    masked: str


_RECORDING_SUFFIXES = (
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".ts",
    ".flv",
    ".mpg",
    ".mpeg",
    ".wmv",
)


def mask_uri(uri: str | os.PathLike[str]) -> str:
    """`uri` with any user name, password and secret query values replaced by `***`.

    Safe on anything: plain paths come back unchanged, and text that does not parse as a URI is
    masked by pattern, so the result can go into every log line and error message.
    """
    return mask_secrets(os.fspath(uri))


def parse_source(uri: str | os.PathLike[str]) -> SourceSpec:
    """Classify `uri` (rtsp, rtsps, http, https, file://, v4l2://, /dev/video*, or a local path).

    Raises:
        UnsupportedSourceError: the scheme is not one of those, or the URI is empty.
    """
    text = os.fspath(uri).strip()
    masked = mask_uri(text)
    if not text:
        raise UnsupportedSourceError("empty source URI", uri=masked)
    scheme = _scheme(text)
    if scheme in ("rtsp", "rtsps"):
        return SourceSpec(SourceKind.RTSP, text, masked)
    if scheme in ("http", "https"):
        return SourceSpec(SourceKind.HTTP, text, masked)
    if scheme == "file":
        path = unquote(urlsplit(text).path)
        return _local(path, mask_uri(path))
    if scheme == "v4l2":
        path = unquote(urlsplit(text).path) or "/dev/video0"
        return SourceSpec(SourceKind.DEVICE, path, mask_uri(path))
    if scheme is None:
        return _local(text, masked)
    raise UnsupportedSourceError(
        f"unsupported scheme {scheme!r}: use rtsp://, rtsps://, http(s)://, file://, v4l2:// or a path",
        uri=masked,
    )


def is_recording(spec: SourceSpec) -> bool:
    """Whether a source is a finite recording (files, and http URLs ending in a file suffix)."""
    if spec.kind is SourceKind.FILE:
        return True
    if spec.kind is SourceKind.HTTP:
        return urlsplit(spec.locator).path.lower().endswith(_RECORDING_SUFFIXES)
    return False


def _local(path: str, masked: str) -> SourceSpec:
    if path.startswith("/dev/video"):
        return SourceSpec(SourceKind.DEVICE, path, masked)
    return SourceSpec(SourceKind.FILE, str(Path(path).expanduser()), masked)


def _scheme(text: str) -> str | None:
    match = re.match(r"([a-zA-Z][a-zA-Z0-9+.\-]*)://", text)
    return match[1].lower() if match else None
