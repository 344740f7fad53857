"""FlexSelect-Lite behind the `Scorer` protocol, and encoding that feeds both projectors in one tower pass."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from flexselect.adapters.base import VideoLLMAdapter
from flexselect.lite.model import LiteSelector, SelectorError
from flexselect.lite.tokens import PairedTokens
from flexselect.lite.vision import encode_with_features
from flexselect.types import Prompt, VisualTokens


def check_compatible(selector: LiteSelector, adapter: VideoLLMAdapter) -> None:
    """Raise `SelectorError` unless the selector was built for this base model's family and vision tower."""
    if selector.config.family != adapter.family:
        raise SelectorError(
            f"the selector reads {selector.config.family} vision features but the model is {adapter.family}"
        )


def encode_pair(
    selector: LiteSelector,
    adapter: VideoLLMAdapter,
    frames: np.ndarray,
    times: np.ndarray,
    **encode_kwargs: Any,
) -> PairedTokens:
    """Encode frames once: the base model's tokens with the selector's embeddings of the same rows."""
    check_compatible(selector, adapter)
    tokens, features = encode_with_features(adapter, frames, times, **encode_kwargs)
    with torch.no_grad():
        lite = selector.visual_embeds(features, tokens.kind, tokens.token_id)
    return PairedTokens.pair(tokens, lite)


class LiteScorer:
    """Scores visual tokens with a trained selector (FlexSelect-Lite): one pass of the small model per group.

    The tokens it scores must be `PairedTokens` (see `encode_pair`); prompt ids are the base model's,
    which the selector shares (same vocabulary).
    """

    name = "lite"

    def __init__(self, selector: LiteSelector) -> None:
        self.selector = selector.eval()

    def score(self, prompt: Prompt, tokens: VisualTokens) -> torch.Tensor:
        """One score per token of `tokens`, scored together as one group with compact positions."""
        if not isinstance(tokens, PairedTokens):
            raise SelectorError(
                "FlexSelect-Lite needs the selector's embeddings of the tokens: encode with "
                "flexselect.lite.encode_pair (or keep a SelectorCache) instead of adapter.encode"
            )
        assert tokens.lite is not None
        with torch.no_grad():
            return self.selector.score_embeds(prompt, tokens.lite, tokens).float().cpu()
