"""URIs: credentials never leave `mask_uri`, and each URI maps to one source kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams import UnsupportedSourceError, mask_uri
from streams.uri import SourceKind, is_recording, mask_secrets, parse_source


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://***:***@10.0.0.5:554/stream1"),
        ("rtsps://admin:hunter2@cam.local/live", "rtsps://***:***@cam.local/live"),
        ("rtsp://token@cam.local/live", "rtsp://***@cam.local/live"),
        ("rtsp://admin:p@ss:w0rd@cam.local:554/x", "rtsp://***:***@cam.local:554/x"),
        (
            "rtsp://cam.local/live?user=admin&password=hunter2",
            "rtsp://cam.local/live?user=admin&password=***",
        ),
        ("http://cam/video.cgi?channel=1&pwd=hunter2&x=1", "http://cam/video.cgi?channel=1&pwd=***&x=1"),
        ("https://u:p@[::1]:8443/a.m3u8", "https://***:***@[::1]:8443/a.m3u8"),
        ("rtsp://10.0.0.5/stream1", "rtsp://10.0.0.5/stream1"),
        ("/srv/recordings/a.mp4", "/srv/recordings/a.mp4"),
    ],
)
def test_mask_uri_hides_user_password_and_secret_params(uri: str, masked: str) -> None:
    assert mask_uri(uri) == masked


def test_mask_secrets_masks_every_uri_inside_free_text() -> None:
    text = "[Errno 111] Connection refused: 'rtsp://admin:hunter2@10.0.0.5/a' then http://u:pw@h/b"
    assert (
        mask_secrets(text)
        == "[Errno 111] Connection refused: 'rtsp://***:***@10.0.0.5/a' then http://***:***@h/b"
    )


@pytest.mark.parametrize(
    ("uri", "kind", "locator"),
    [
        ("rtsp://cam/live", SourceKind.RTSP, "rtsp://cam/live"),
        ("RTSPS://cam/live", SourceKind.RTSP, "RTSPS://cam/live"),
        ("http://cam/mjpeg", SourceKind.HTTP, "http://cam/mjpeg"),
        ("https://host/rec.mp4", SourceKind.HTTP, "https://host/rec.mp4"),
        ("/data/rec.mkv", SourceKind.FILE, "/data/rec.mkv"),
        ("file:///data/my%20rec.mp4", SourceKind.FILE, "/data/my rec.mp4"),
        ("/dev/video0", SourceKind.DEVICE, "/dev/video0"),
        ("v4l2:///dev/video2", SourceKind.DEVICE, "/dev/video2"),
    ],
)
def test_parse_source_maps_uri_to_kind_and_locator(uri: str, kind: SourceKind, locator: str) -> None:
    spec = parse_source(uri)
    assert (spec.kind, spec.locator) == (kind, locator)


def test_parse_source_accepts_a_path_object(tmp_path: Path) -> None:
    assert parse_source(tmp_path / "a.mp4").locator == str(tmp_path / "a.mp4")


def test_unsupported_scheme_is_rejected_with_credentials_masked() -> None:
    with pytest.raises(UnsupportedSourceError) as info:
        parse_source("rtmp://admin:hunter2@host/app")
    assert "hunter2" not in str(info.value)
    assert "rtmp://***:***@host/app" in str(info.value)


@pytest.mark.parametrize(
    ("uri", "recording"),
    [("/a.mp4", True), ("http://h/a.mp4", True), ("http://h/stream.m3u8", False), ("rtsp://h/a.mp4", False)],
)
def test_recordings_are_files_and_http_urls_with_a_file_suffix(uri: str, recording: bool) -> None:
    assert is_recording(parse_source(uri)) is recording
