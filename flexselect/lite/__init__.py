"""FlexSelect-Lite: a small rank-supervised selector, its scorer and its cached streaming scores."""

from flexselect.lite.cache import SelectorCache, StreamCaches
from flexselect.lite.config import (
    QWEN2_5_0_5B,
    QWEN2_5_0_5B_1D,
    TINY,
    DecoderShape,
    ProjectorConfig,
    SelectorConfig,
)
from flexselect.lite.model import LiteSelector, SelectorError
from flexselect.lite.scorer import LiteScorer, check_compatible, encode_pair
from flexselect.lite.tokens import PairedTokens
from flexselect.lite.vision import encode_with_features

__all__ = [
    "QWEN2_5_0_5B",
    "QWEN2_5_0_5B_1D",
    "TINY",
    "DecoderShape",
    "LiteScorer",
    "LiteSelector",
    "PairedTokens",
    "ProjectorConfig",
    "SelectorCache",
    "SelectorConfig",
    "SelectorError",
    "StreamCaches",
    "check_compatible",
    "encode_pair",
    "encode_with_features",
]
