"""FlexSelect-Lite: a small rank-supervised selector, its scorer and its cached streaming scores."""

from __future__ import annotations

from common.lazy import lazy_exports

# Each public name and the module that defines it, imported on first use (common.lazy), so that importing
# a light submodule (a config, the errors) loads none of the heavy ones (torch, av, aiomqtt, redis).
_EXPORTS = {
    "check_compatible": "flexselect.lite.scorer",
    "DecoderShape": "flexselect.lite.config",
    "encode_pair": "flexselect.lite.scorer",
    "encode_pairs": "flexselect.lite.scorer",
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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
