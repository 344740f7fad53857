"""Video ingest: cameras and recordings as asynchronous sequences of timed chunks of RGB frames.

Knows nothing of models; imports av and numpy (decoder backends for `sample_uniform` optional).
"""

from __future__ import annotations

from common.lazy import lazy_exports

# Each public name and the module that defines it, imported on first use (common.lazy), so that importing
# a light submodule (a config, the errors) loads none of the heavy ones (torch, av, aiomqtt, redis).
_EXPORTS = {
    "AuthenticationError": "streams.errors",
    "available_backends": "streams.sampling",
    "BackendUnavailableError": "streams.errors",
    "Chunk": "streams.source",
    "FrameSource": "streams.source",
    "InvalidMediaError": "streams.errors",
    "mask_uri": "streams.uri",
    "NoVideoStreamError": "streams.errors",
    "open_source": "streams.threaded",
    "probe": "streams.sampling",
    "sample_uniform": "streams.sampling",
    "SourceNotFoundError": "streams.errors",
    "SourceUnavailableError": "streams.errors",
    "StreamConfig": "streams.config",
    "StreamError": "streams.errors",
    "StreamState": "streams.source",
    "StreamStats": "streams.source",
    "ThreadedSource": "streams.threaded",
    "UniformSample": "streams.sampling",
    "UnsupportedSourceError": "streams.errors",
    "VideoInfo": "streams.sampling",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
