"""Decoder math the selector runs itself, so a fresh pass and a cached pass share every operation.

Each decoder layer is the transformers Qwen2 layer's own modules (norms, projections, MLP) driven by a
small loop: new rows attend to cached keys and values of earlier rows plus themselves, causally. The last
layer only needs its keys (the question's queries are scored against them), never values or an MLP.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.bias import causal_lower_right


@dataclass
class LayerKV:
    """Keys and values of some rows at one layer, after RoPE: each (1, kv_heads, S, head_dim)."""

    key: torch.Tensor
    value: torch.Tensor | None = None  # the last layer keeps keys only

    def __len__(self) -> int:
        return int(self.key.shape[2])

    def cat(self, other: LayerKV) -> LayerKV:
        value = None if self.value is None or other.value is None else torch.cat([self.value, other.value], 2)
        return LayerKV(torch.cat([self.key, other.key], dim=2), value)

    def keep(self, rows: torch.Tensor) -> LayerKV:
        """Only `rows` (indices along the sequence)."""
        rows = rows.to(self.key.device)
        value = None if self.value is None else self.value.index_select(2, rows)
        return LayerKV(self.key.index_select(2, rows), value)


def rope_module(attn: nn.Module) -> ModuleType:
    """The modeling module defining this attention's `apply_rotary_pos_emb` and `repeat_kv`."""
    return sys.modules[type(attn).__module__]


def project_qkv(
    attn: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, want_q: bool, want_v: bool
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """Q (B, H, n, d), K and V (B, Hkv, n, d) of normed rows `x` (B, n, D), with RoPE on Q and K."""
    b, n, _ = x.shape
    hd = attn.head_dim
    rope = rope_module(attn)
    k = attn.k_proj(x).view(b, n, -1, hd).transpose(1, 2)  # (B, Hkv, n, hd)
    q = attn.q_proj(x).view(b, n, -1, hd).transpose(1, 2) if want_q else None  # (B, H, n, hd)
    if q is not None:
        q, k = rope.apply_rotary_pos_emb(q, k, cos, sin)
    else:
        _, k = rope.apply_rotary_pos_emb(k, k, cos, sin)
    v = attn.v_proj(x).view(b, n, -1, hd).transpose(1, 2) if want_v else None
    return q, k, v


def decoder_layer(
    layer: nn.Module, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: LayerKV | None = None
) -> tuple[torch.Tensor, LayerKV]:
    """One Qwen2 decoder layer over new rows `h` (B, n, D) that follow the cached rows `past` (B = 1 with
    `past`; a fresh pass may stack equal-length sequences as a batch).

    Returns the layer's output (B, n, D) and the new rows' keys and values.
    """
    attn = layer.self_attn
    x = layer.input_layernorm(h)
    q, k, v = project_qkv(attn, x, cos, sin, want_q=True, want_v=True)
    assert q is not None and v is not None
    b, n = h.shape[0], h.shape[1]
    if past is None or len(past) == 0:
        keys, values, mask, causal = k, v, None, True
    else:
        assert past.value is not None
        keys, values = torch.cat([past.key, k], dim=2), torch.cat([past.value, v], dim=2)
        mask, causal = causal_lower_right(n, keys.shape[2]), False  # all cached rows, then causal
    out = F.scaled_dot_product_attention(
        q, keys, values, attn_mask=mask, is_causal=causal, scale=attn.scaling, enable_gqa=True
    )  # (B, H, n, hd)
    h = h + attn.o_proj(out.transpose(1, 2).reshape(b, n, -1))
    h = h + layer.mlp(layer.post_attention_layernorm(h))
    return h, LayerKV(k, v)


def decoder_layer_many(
    layer: nn.Module,
    h: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    pasts: list[LayerKV],
    lengths: list[int],
) -> tuple[torch.Tensor, list[LayerKV]]:
    """`decoder_layer` for several pieces at once, each following its own cached rows: the norms,
    projections and MLP run once over all pieces' rows; attention runs per piece against its own cache
    (no padding, so no memory grows with the longest cache).

    Args:
        h: (1, R, D) the pieces' rows, concatenated in order (R = sum of `lengths`).
        cos, sin: (1, R, head_dim) rotary tables at each row's position.
        pasts: each piece's cached rows at this layer (with values).
        lengths: rows per piece (Python ints: slicing needs no device sync).
    Returns the layer's output (1, R, D) and each piece's new keys and values.
    """
    attn = layer.self_attn
    x = layer.input_layernorm(h)
    q, k, v = project_qkv(attn, x, cos, sin, want_q=True, want_v=True)
    assert q is not None and v is not None
    outs, new, start = [], [], 0
    for past, n in zip(pasts, lengths, strict=True):
        qs, ks, vs = q[:, :, start : start + n], k[:, :, start : start + n], v[:, :, start : start + n]
        start += n
        if len(past) == 0:
            keys, values, mask, causal = ks, vs, None, True
        else:
            assert past.value is not None
            keys, values = torch.cat([past.key, ks], dim=2), torch.cat([past.value, vs], dim=2)
            mask, causal = causal_lower_right(n, keys.shape[2]), False
        outs.append(
            F.scaled_dot_product_attention(
                qs, keys, values, attn_mask=mask, is_causal=causal, scale=attn.scaling, enable_gqa=True
            )
        )
        new.append(LayerKV(ks, vs))
    out = torch.cat(outs, dim=2)  # (1, H, R, hd)
    h = h + attn.o_proj(out.transpose(1, 2).reshape(1, h.shape[1], -1))
    h = h + layer.mlp(layer.post_attention_layernorm(h))
    return h, new


def last_layer_keys(layer: nn.Module, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> LayerKV:
    """Keys of rows `h` (1, n, D) entering the last layer: all a cached visual token ever needs there."""
    _, k, _ = project_qkv(layer.self_attn, layer.input_layernorm(h), cos, sin, want_q=False, want_v=False)
    return LayerKV(k)


def cached_question_attention(
    layer: nn.Module, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: LayerKV
) -> torch.Tensor:
    """Softmax attention of question rows `h` (1, T, D) at the last layer over cached keys and themselves.

    The recipe of `flexselect.ranking.question_attention`: float32 logits, causal among the question rows,
    softmax over all keys. Returns (heads, T, S + T) probabilities.
    """
    attn = layer.self_attn
    q, k, _ = project_qkv(attn, layer.input_layernorm(h), cos, sin, want_q=True, want_v=False)
    assert q is not None
    keys = rope_module(attn).repeat_kv(
        torch.cat([past.key, k], dim=2), attn.num_key_value_groups
    )  # (1, H, S+T, hd)
    logits = (q.float() @ keys.float().transpose(-1, -2)) * attn.scaling  # (1, H, T, S+T)
    t, s = q.shape[2], len(past)
    future = torch.ones(t, t, dtype=torch.bool, device=h.device).triu(1)  # (T, T) question-to-later-question
    logits[..., s:] = logits[..., s:].masked_fill(future, float("-inf"))
    return logits.softmax(dim=-1)[0]


# ------------------------------------------------------------------------------------- batched questions
def _fold_heads(q: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """(G, H, T, d) queries as (G, Hkv, H/Hkv * T, d): each key head's query heads stacked along rows, so
    grouped-query attention needs no copy of the cached keys (head h reads key head h // (H / Hkv))."""
    g, h, t, d = q.shape
    return q.reshape(g, kv_heads, (h // kv_heads) * t, d)


def question_visibility(past_valid: torch.Tensor, t: int) -> torch.Tensor:
    """(G, 1, T, L + T) bool: question row i of group g sees the group's valid cached rows (`past_valid`,
    (G, L)) and question rows 0..i."""
    g, length = past_valid.shape
    causal = torch.ones(t, t, dtype=torch.bool, device=past_valid.device).tril()
    past = past_valid[:, None, None, :].expand(g, 1, t, length)
    return torch.cat([past, causal.expand(g, 1, t, t)], dim=-1)


def batched_question_layer(
    layer: nn.Module,
    h: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    past_key: torch.Tensor,
    past_value: torch.Tensor,
    visible: torch.Tensor,
) -> torch.Tensor:
    """`decoder_layer` for the question rows of G groups at once, each against its own padded cache.

    Args:
        h: (G, T, D) question rows entering the layer (they differ per group after the first layer).
        cos, sin: (G, T, head_dim) rotary tables at each group's question positions.
        past_key, past_value: (G, Hkv, L, hd) cached rows, padded to the longest group.
        visible: (G, 1, T, L + T) from `question_visibility`.
    Returns the layer's output (G, T, D). One call of every projection for all groups; no host sync.
    """
    attn = layer.self_attn
    g, t, _ = h.shape
    x = layer.input_layernorm(h)
    q, k, v = project_qkv(attn, x, cos, sin, want_q=True, want_v=True)
    assert q is not None and v is not None
    kv_heads = k.shape[1]
    rep = q.shape[1] // kv_heads
    keys, values = torch.cat([past_key, k], dim=2), torch.cat([past_value, v], dim=2)
    mask = visible.repeat(1, 1, rep, 1)  # (G, 1, rep * T, L + T), rows in folded order
    out = F.scaled_dot_product_attention(
        _fold_heads(q, kv_heads), keys, values, attn_mask=mask, scale=attn.scaling
    )  # (G, Hkv, rep * T, hd)
    out = out.reshape(g, q.shape[1], t, -1)  # (G, H, T, hd)
    h = h + attn.o_proj(out.transpose(1, 2).reshape(g, t, -1))
    return h + layer.mlp(layer.post_attention_layernorm(h))


def batched_question_attention(
    layer: nn.Module,
    h: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    past_key: torch.Tensor,
    visible: torch.Tensor,
) -> torch.Tensor:
    """`cached_question_attention` for G groups at once: (G, H, T, L + T) float32 probabilities, zero on
    padded rows."""
    attn = layer.self_attn
    g, t, _ = h.shape
    q, k, _ = project_qkv(attn, layer.input_layernorm(h), cos, sin, want_q=True, want_v=False)
    assert q is not None
    kv_heads = k.shape[1]
    rep = q.shape[1] // kv_heads
    keys = torch.cat([past_key, k], dim=2).float()  # (G, Hkv, L + T, hd)
    logits = (_fold_heads(q, kv_heads).float() @ keys.transpose(-1, -2)) * attn.scaling
    logits = logits.masked_fill(~visible.repeat(1, 1, rep, 1), float("-inf"))
    return logits.softmax(dim=-1).reshape(g, q.shape[1], t, -1)
