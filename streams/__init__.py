"""Video ingest: cameras and recordings as asynchronous sequences of timed chunks of RGB frames.

Knows nothing of models; imports av and numpy (decoder backends for `sample_uniform` optional).
"""

from streams.config import StreamConfig
from streams.errors import (
    AuthenticationError,
    BackendUnavailableError,
    InvalidMediaError,
    NoVideoStreamError,
    SourceNotFoundError,
    SourceUnavailableError,
    StreamError,
    UnsupportedSourceError,
)
from streams.sampling import UniformSample, VideoInfo, available_backends, probe, sample_uniform
from streams.source import Chunk, FrameSource, StreamState, StreamStats
from streams.threaded import ThreadedSource, open_source
from streams.uri import mask_uri

__all__ = [
    "AuthenticationError",
    "BackendUnavailableError",
    "Chunk",
    "FrameSource",
    "InvalidMediaError",
    "NoVideoStreamError",
    "SourceNotFoundError",
    "SourceUnavailableError",
    "StreamConfig",
    "StreamError",
    "StreamState",
    "StreamStats",
    "ThreadedSource",
    "UniformSample",
    "UnsupportedSourceError",
    "VideoInfo",
    "available_backends",
    "mask_uri",
    "open_source",
    "probe",
    "sample_uniform",
]
