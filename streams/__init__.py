"""Video ingest: cameras and recordings as asynchronous sequences of timed chunks of RGB frames.

Knows nothing of models; imports av and numpy (decoder backends for `sample_uniform` optional).
"""

from __future__ import annotations

import importlib

# Each public name and the module that defines it; loaded on first use so that importing a light
# submodule (a config, the errors) does not load the heavy ones (torch, av, aiomqtt, redis).
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


def __getattr__(name: str) -> object:
    """A re-exported name, imported from its defining module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
