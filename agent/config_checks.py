"""Checks of the URLs, bind addresses and selector cache budget in the agent's config.

A bad value fails validation with its key path instead of failing at start (or leaking a credential written
into a config file). The selector cache budget needs the loaded selector's bytes per row, so it is checked
when the engine is built at start (`selector_cache_problem`), before any chunk is ingested.
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


def selector_cache_rows(max_tokens_per_stream: int) -> int:
    """Rows a stream's selector cache may hold between questions: twice what the memory retains.

    The memory evicts inside its backend and the cache learns of it only when a question syncs it, so
    between questions the cache holds the rows retained at the last sync plus every chunk ingested since.
    Retained plus one ingest batch would be too tight: a stream nobody asks about ingests for hours, so
    the cache would be cleared after every batch once the memory is full. Twice the retention lets a
    stream ingest a whole retention's worth of new rows between questions; past that most cached rows
    have been evicted anyway, so clearing and rebuilding from the retained rows at the next question
    costs little more than dropping them (a full memory's rebuild, once per retention's worth of ingest).
    """
    return 2 * max_tokens_per_stream


def selector_cache_problem(max_bytes: int | None, max_tokens_per_stream: int, row_bytes: int) -> str | None:
    """Why `model.selector_cache_max_bytes` cannot serve the retention, or None when it can.

    A budget smaller than `max_tokens_per_stream` rows of selector state (`row_bytes` each, from
    `agent.selector_caches.state_bytes_per_row`) would clear a full stream's cache at every ingest and
    score every question by fresh selector passes: refused at start instead of degrading silently.
    """
    if max_bytes is None or max_bytes >= max_tokens_per_stream * row_bytes:
        return None
    needed = max_tokens_per_stream * row_bytes
    return (
        f"model.selector_cache_max_bytes: {max_bytes} bytes cannot hold the "
        f"{max_tokens_per_stream} rows memory.retention.max_tokens_per_stream keeps per stream "
        f"({row_bytes} bytes of selector state per row: at least {needed} bytes, {2 * needed} to hold "
        "ingest between questions); raise it, unset it (no limit), or lower the retention"
    )
