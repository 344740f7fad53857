"""Training-free token ranking: the attention question tokens pay visual tokens at reference layer L.

Recipe (FlexSelect): run decoder layers 0..L-1 over `[prefix | visual | suffix]`, take layer L's input norm
(applied by the layer itself) and q/k projections, apply the model's RoPE/M-RoPE, expand grouped KV heads,
softmax each question row over *all* keys (causal inside the question), slice the visual columns without
renormalising, and reduce over heads and question tokens with max (as published) or mean.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from flexselect.adapters.base import LayerInput, VideoLLMAdapter
from flexselect.config import Aggregation
from flexselect.types import Prompt, Sequence, VisualTokens


def question_attention(
    attn: nn.Module,
    layer_input: LayerInput,
    query_rows: torch.Tensor,
    rope: object,
) -> torch.Tensor:
    """Softmax attention of the `query_rows` over every key at one layer, like eager attention.

    Args:
        attn: the layer's attention module (q_proj, k_proj, optional q_norm/k_norm, head_dim, scaling).
        layer_input: normed hidden states entering the layer and its RoPE (cos, sin).
        query_rows: (T,) positions of the query tokens in the sequence.
        rope: the modeling module defining `apply_rotary_pos_emb` and `repeat_kv` for this attention.

    Returns:
        (heads, T, S) float32 probabilities; each row sums to one over all S keys.
    """
    x = layer_input.hidden  # (1, S, D)
    _, s, _ = x.shape
    hd = attn.head_dim
    q = attn.q_proj(x[:, query_rows]).view(1, len(query_rows), -1, hd)  # (1, T, Hq, hd)
    k = attn.k_proj(x).view(1, s, -1, hd)  # (1, S, Hkv, hd)
    if hasattr(attn, "q_norm"):  # Qwen3: per-head RMSNorm before RoPE
        q, k = attn.q_norm(q), attn.k_norm(k)
    q, k = q.transpose(1, 2), k.transpose(1, 2)  # (1, H, T|S, hd)
    cos, sin = layer_input.cos, layer_input.sin
    q, _ = rope.apply_rotary_pos_emb(q, q, cos[:, query_rows], sin[:, query_rows])  # type: ignore[attr-defined]
    _, k = rope.apply_rotary_pos_emb(k, k, cos, sin)  # type: ignore[attr-defined]
    k = rope.repeat_kv(k, attn.num_key_value_groups)  # type: ignore[attr-defined]  # (1, Hq, S, hd)
    logits = (q.float() @ k.float().transpose(-1, -2)) * attn.scaling  # (1, Hq, T, S)
    future = torch.arange(s, device=x.device)[None] > query_rows.to(x.device)[:, None]  # (T, S)
    logits = logits.masked_fill(future, float("-inf"))
    return logits.softmax(dim=-1)[0]


def aggregate(probs: torch.Tensor, how: Aggregation) -> torch.Tensor:
    """Reduce (heads, T, V) attention to one score per visual column."""
    flat = probs.flatten(0, 1)  # (heads*T, V)
    if how == "max":
        return flat.max(dim=0).values
    if how == "mean":
        return flat.mean(dim=0)
    raise ValueError(f"aggregation must be 'max' or 'mean', got {how!r}")


def score_sequence(
    adapter: VideoLLMAdapter,
    seq: Sequence,
    query_len: int,
    *,
    layer: int,
    aggregation: Aggregation,
) -> torch.Tensor:
    """Scores of the visual span of `seq` by its last `query_len` tokens at `layer`: (V,) float32."""
    layer_input = adapter.capture_layer_input(seq, layer)
    return layer_scores(adapter, layer_input, seq, query_len, layer=layer, aggregation=aggregation)


def layer_scores(
    adapter: VideoLLMAdapter,
    layer_input: LayerInput,
    seq: Sequence,
    query_len: int,
    *,
    layer: int,
    aggregation: Aggregation,
) -> torch.Tensor:
    """`score_sequence` from what already entered `layer` over `seq` (e.g. during the answer's prefill)."""
    query_rows = torch.arange(seq.length - query_len, seq.length, device=seq.inputs_embeds.device)
    with torch.no_grad():
        probs = question_attention(
            adapter.attention_module(layer), layer_input, query_rows, adapter.rope_module(layer)
        )
    return aggregate(probs[:, :, seq.visual_slice], aggregation)


@contextmanager
def first_layer_input(adapter: VideoLLMAdapter, layer: int) -> Iterator[list[LayerInput]]:
    """Record what enters `layer`'s attention on the first forward inside the block (a generation's
    prefill; its decoding steps come later and are not kept): a list that holds it once it ran.

    The answer's prefill already runs `layer` over `[prefix | kept | question]`, so the question's
    attention to the kept tokens there costs one projection, not a second pass through the layers.
    """
    box: list[LayerInput] = []

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not box:
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            cos, sin = kwargs["position_embeddings"]
            box.append(LayerInput(hidden=hidden, cos=cos, sin=sin))

    handle = adapter.attention_module(layer).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield box
    finally:
        handle.remove()


class ReferenceScorer:
    """Scores visual tokens with the base model's own reference layer (FlexSelect, training-free)."""

    name = "reference"

    def __init__(
        self,
        adapter: VideoLLMAdapter,
        *,
        layer: int | None = None,
        aggregation: Aggregation | None = None,
    ):
        self.adapter = adapter
        self.layer = adapter.default_layer() if layer is None else layer
        if not 0 <= self.layer < adapter.num_layers:
            raise ValueError(f"reference layer {self.layer} is outside 0..{adapter.num_layers - 1}")
        self.aggregation: Aggregation = aggregation or adapter.default_aggregation()

    def score(self, prompt: Prompt, tokens: VisualTokens) -> torch.Tensor:
        """One score per token of `tokens`, scored together as one group with compact positions."""
        seq = self.adapter.build_sequence(prompt, tokens, compact=True)
        return score_sequence(
            self.adapter, seq, prompt.query_len, layer=self.layer, aggregation=self.aggregation
        )
