"""Each source kind opens with explicit transport, time-outs and probing; users can override them."""

from __future__ import annotations

from streams import StreamConfig
from streams.backends import open_args
from streams.uri import parse_source


def test_rtsp_opens_over_tcp_with_socket_timeout_and_short_probe() -> None:
    args = open_args(parse_source("rtsp://cam/live"), StreamConfig(read_timeout_s=7, probe_seconds=0.5))
    assert args.options == {
        "rtsp_transport": "tcp",
        "timeout": "7000000",
        "analyzeduration": "500000",
        "allowed_media_types": "video",
    }


def test_http_streams_get_a_read_write_timeout() -> None:
    args = open_args(parse_source("https://cam/stream.m3u8"), StreamConfig(read_timeout_s=3))
    assert args.options["rw_timeout"] == "3000000"


def test_v4l2_devices_open_with_the_v4l2_demuxer() -> None:
    args = open_args(parse_source("/dev/video0"), StreamConfig(av_options={"video_size": "640x480"}))
    assert (args.locator, args.format, args.options["video_size"]) == ("/dev/video0", "v4l2", "640x480")


def test_av_options_override_ours() -> None:
    config = StreamConfig(transport="udp", av_options={"rtsp_transport": "http", "stimeout": "1"})
    args = open_args(parse_source("rtsp://cam/live"), config)
    assert (args.options["rtsp_transport"], args.options["stimeout"]) == ("http", "1")


def test_files_open_without_network_options() -> None:
    assert open_args(parse_source("/data/a.mp4"), StreamConfig()).options == {}
