"""FlexSelect-Lite: a small rank-supervised selector, its scorer and its cached streaming scores."""

from __future__ import annotations

import importlib

# Each public name and the module that defines it; loaded on first use so that importing a light
# submodule (a config, the errors) does not load the heavy ones (torch, av, aiomqtt, redis).
_EXPORTS = {
    "check_compatible": "flexselect.lite.scorer",
    "DecoderShape": "flexselect.lite.config",
    "encode_pair": "flexselect.lite.scorer",
    "encode_with_features": "flexselect.lite.vision",
    "LiteScorer": "flexselect.lite.scorer",
    "LiteSelector": "flexselect.lite.model",
    "PairedTokens": "flexselect.lite.tokens",
    "ProjectorConfig": "flexselect.lite.config",
    "QWEN2_5_0_5B": "flexselect.lite.config",
    "QWEN2_5_0_5B_1D": "flexselect.lite.config",
    "SelectorCache": "flexselect.lite.cache",
    "SelectorConfig": "flexselect.lite.config",
    "SelectorError": "flexselect.lite.model",
    "StreamCaches": "flexselect.lite.cache",
    "TINY": "flexselect.lite.config",
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
