"""FlexSelect-Lite behind the `Scorer` protocol, and encoding that feeds both projectors in one tower pass."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from flexselect.adapters.base import PreparedClip, VideoClip, VideoLLMAdapter
from flexselect.lite.model import LiteSelector, SelectorError
from flexselect.lite.tokens import PairedTokens
from flexselect.lite.vision import encode_prepared_with_features
from flexselect.types import Prompt, VisualTokens


def check_compatible(selector: LiteSelector, adapter: VideoLLMAdapter) -> None:
    """Raise `SelectorError` unless the selector was built for this base model's family and vision tower."""
    if selector.config.family != adapter.family:
        raise SelectorError(
            f"the selector reads {selector.config.family} vision features but the model is {adapter.family}"
        )


def encode_pairs(
    selector: LiteSelector, adapter: VideoLLMAdapter, prepared: list[PreparedClip]
) -> list[PairedTokens]:
    """Encode several prepared clips (`adapter.prepare`) at once: the base tower through
    `adapter.encode_prepared` (one tower forward over all clips) and the selector's projector once over all
    their features. Each result equals `encode_pair` of that clip alone."""
    check_compatible(selector, adapter)
    encoded = encode_prepared_with_features(adapter, prepared)
    if not encoded:
        return []
    with torch.no_grad():
        lites = selector.visual_embeds_many(
            [features for _, features in encoded],
            [tokens.kind for tokens, _ in encoded],
            [tokens.token_id for tokens, _ in encoded],
        )
    return [PairedTokens.pair(tokens, lite) for (tokens, _), lite in zip(encoded, lites, strict=True)]


def encode_pair(
    selector: LiteSelector,
    adapter: VideoLLMAdapter,
    frames: np.ndarray,
    times: np.ndarray,
    **encode_kwargs: Any,
) -> PairedTokens:
    """Encode frames once: the base model's tokens with the selector's embeddings of the same rows.

    `encode_kwargs` are `VideoClip`'s (frame_offset, time_origin, fps); this is `encode_pairs` of one clip.
    """
    clip = VideoClip(frames, times, **encode_kwargs)
    return encode_pairs(selector, adapter, [adapter.prepare(clip)])[0]


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
        return self.score_many(prompt, [tokens])[0]

    def score_many(self, prompt: Prompt, tokens: list[VisualTokens]) -> list[torch.Tensor]:
        """`score(prompt, t)` for every `t`, with one selector pass per batch of groups of one length
        (`LiteSelector.score_embeds_many`). Returns one (len(t),) float32 CPU tensor per input, in order."""
        lites = [paired_lite(t) for t in tokens]
        with torch.no_grad():
            scores = self.selector.score_embeds_many(prompt, lites, tokens)
        return [s.float().cpu() for s in scores]


def paired_lite(tokens: VisualTokens) -> torch.Tensor:
    """The selector embeddings of `tokens`; `SelectorError` when they were encoded without them."""
    if not isinstance(tokens, PairedTokens):
        raise SelectorError(
            "FlexSelect-Lite needs the selector's embeddings of the tokens: encode with "
            "flexselect.lite.encode_pair (or keep a SelectorCache) instead of adapter.encode"
        )
    assert tokens.lite is not None
    return tokens.lite
