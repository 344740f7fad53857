"""Checks of the URLs and bind addresses in the agent's config.

A bad value fails validation with its key path instead of failing at start (or leaking a credential written
into a config file).
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import SplitResult, urlsplit

from streams.errors import UnsupportedSourceError
from streams.uri import SourceKind, mask_uri, parse_source

ENV_PREFIX = "FLEXSELECT__"


def has_credentials(uri: str) -> bool:
    """Whether `uri` carries a user name, a password or a secret query value (e.g. `?token=`)."""
    return mask_uri(uri) != uri


def literal_uri_credentials(data: dict[str, Any]) -> list[str]:
    """One message per stream URI written in the config file with credentials in it (refused)."""
    problems = []
    for i, stream in enumerate(data.get("streams") or []):
        uri = stream.get("uri") if isinstance(stream, dict) else None
        if isinstance(uri, str) and has_credentials(uri):
            problems.append(
                f"streams.{i}.uri: credentials (user info or a secret query value) may not be written in "
                f"config files; use streams.{i}.uri_file or the {ENV_PREFIX}STREAMS__{i}__URI environment "
                "variable"
            )
    return problems


def _split(url: str) -> SplitResult:
    """`urlsplit` that also reads the port, so a malformed host or port fails here and not at connect."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
    except ValueError as exc:
        raise ValueError(f"{mask_uri(url)!r} is not a valid URL: {exc}") from None
    return parts


def check_stream_uri(uri: str) -> str:
    """Return `uri` if `streams` can open it: a known scheme, and a host (and valid port) for network URIs.

    Raises:
        ValueError: naming the masked URI and the accepted forms.
    """
    try:
        spec = parse_source(uri)
    except UnsupportedSourceError as exc:
        raise ValueError(str(exc)) from None
    if spec.kind in (SourceKind.RTSP, SourceKind.HTTP) and not _split(uri).hostname:
        raise ValueError(f"{mask_uri(uri)!r} names no host")
    return uri


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps a server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
