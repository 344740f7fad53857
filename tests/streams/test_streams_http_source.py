"""HTTP sources against a real loopback HTTP server: a recording over HTTP reads like the file."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from streams import SourceNotFoundError, StreamConfig, open_source
from tests.streams.stream_clips import read_counter, write_counter_clip


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving `tmp_path`; yields (base URL, directory)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()
    thread.join(5)


async def test_a_recording_over_http_yields_the_same_chunks_as_the_file(http_root: tuple[str, Path]) -> None:
    base, root = http_root
    write_counter_clip(root / "clip.mp4", frames=40, fps=10, faststart=True)
    url = base.replace("http://", "http://viewer:pa55@") + "/clip.mp4"
    config = StreamConfig(sample_fps=2, chunk_seconds=2)
    async with open_source(url, config) as source:
        assert source.live is False and "pa55" not in source.uri
        chunks = [chunk async for chunk in source]
    async with open_source(root / "clip.mp4", config) as source:
        expected = [chunk async for chunk in source]
    assert [[read_counter(f) for f in c.frames] for c in chunks] == [[0, 5, 10, 15], [20, 25, 30, 35]]
    assert all(np.array_equal(a.times, b.times) for a, b in zip(chunks, expected, strict=True))
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(chunks, expected, strict=True))


async def test_a_missing_http_recording_fails_with_not_found(http_root: tuple[str, Path]) -> None:
    base, _ = http_root
    source = open_source(f"{base}/missing.mp4?token=abc123", StreamConfig())
    async with source:
        with pytest.raises(SourceNotFoundError, match="404") as info:
            await source.__anext__()
    assert "abc123" not in str(info.value) and "token=***" in str(info.value)
