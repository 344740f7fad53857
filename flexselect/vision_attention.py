"""Vision-tower attention in one call per layer for the Qwen video families.

With `sdpa`, transformers' Qwen2.5-VL and Qwen3-VL vision attention splits the packed sequence at every
`cu_seqlens` boundary and calls attention once per piece: once per 64-patch window in Qwen2.5-VL's window
layers (16 per 448x448 temporal step) and once per temporal step in the full-attention layers, with a host
sync per layer to read the lengths. Those pieces nearly always have one length, so they stack into one
batch of equal windows and run as ONE `sdpa` call per layer, with the same kernel and the same arithmetic
per window.

The function is registered through transformers' `AttentionInterface` under `VARLEN_SDPA` and named in the
vision sub-config only (`enable_batched_vision_attention`), which the vision attention looks up on each
call. The name contains "flash" on purpose: the vision attention of these families hands the packed
boundaries (`cu_seq_lens_q`, `max_length_q`) only to implementations it takes for flash attention; nothing
else about flash attention is assumed or loaded.
Where the pieces are not all one length (odd frame sizes whose edge windows are cut), it runs the stock
per-piece loop, exactly as transformers' `sdpa` path does.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward

VARLEN_SDPA = "flexselect_flash_varlen_sdpa"
"""The attention implementation name the vision sub-config gets (see the module docstring for "flash")."""

BATCHABLE_FAMILIES = ("qwen2_5_vl", "qwen3_vl")
"""Model types whose vision attention passes packed boundaries and is exact under this function."""


def varlen_sdpa_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    scaling: float | None = None,
    dropout: float = 0.0,
    cu_seq_lens_q: torch.Tensor | None = None,
    cu_seq_lens_k: torch.Tensor | None = None,
    max_length_q: int | None = None,
    max_length_k: int | None = None,
    is_causal: bool | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """Non-causal attention over packed pieces `(1, heads, S, head_dim)`: one batched `sdpa` call when all
    pieces have one length, else the stock per-piece calls. Returns `(1, S, heads, head_dim)` like `sdpa`.

    Equal length is decided on the host without a device sync: `S == pieces * max_length_q` holds exactly
    when every piece is `max_length_q` long (the lengths sum to S and none exceeds the maximum).
    """
    if attention_mask is not None:
        raise ValueError("packed vision attention takes no attention mask")
    if query.shape[0] != 1:
        raise ValueError(f"packed vision attention expects a batch of 1, got {query.shape[0]}")
    common = {"scaling": scaling, "dropout": dropout, "is_causal": False}
    _, heads, total, dim = query.shape
    if cu_seq_lens_q is None:  # no boundaries: one piece
        return sdpa_attention_forward(module, query, key, value, None, **common)
    if cu_seq_lens_k is not None and cu_seq_lens_k is not cu_seq_lens_q and max_length_k != max_length_q:
        raise ValueError("packed vision attention needs the same boundaries for queries and keys")
    pieces = cu_seq_lens_q.shape[0] - 1
    if max_length_q is not None and pieces * int(max_length_q) == total:
        length = int(max_length_q)

        def windows(t: torch.Tensor) -> torch.Tensor:  # (1, H, n*L, D) -> (n, H, L, D)
            return t.view(heads, pieces, length, dim).transpose(0, 1)

        out, _ = sdpa_attention_forward(module, windows(query), windows(key), windows(value), None, **common)
        return out.reshape(1, total, heads, dim), None  # (n, L, H, D) -> (1, n*L, H, D)
    lengths = (cu_seq_lens_q[1:] - cu_seq_lens_q[:-1]).tolist()
    parts = [torch.split(t, lengths, dim=2) for t in (query, key, value)]
    outs = [sdpa_attention_forward(module, *qkv, None, **common)[0] for qkv in zip(*parts, strict=True)]
    return torch.cat(outs, dim=1), None


AttentionInterface.register(VARLEN_SDPA, varlen_sdpa_attention)


def enable_batched_vision_attention(model: PreTrainedModel) -> bool:
    """Switch the vision tower of a Qwen2.5-VL / Qwen3-VL model from per-window `sdpa` to one batched call
    per layer; the language model keeps its own implementation.

    Only a vision tower on `sdpa` changes (eager stays eager for attention outputs; flash attention already
    runs packed). Returns whether it changed.
    """
    config = model.config
    vision = getattr(config, "vision_config", None)
    if config.model_type not in BATCHABLE_FAMILIES or vision is None:
        return False
    if vision._attn_implementation != "sdpa":
        return False
    # Set on the config, not through `set_attn_implementation`: that treats any name containing "flash" as a
    # flash-attention kernel to load from the hub. The tower reads its config's name on every call.
    vision._attn_implementation = VARLEN_SDPA
    tower = getattr(getattr(model, "model", model), "visual", None)
    if tower is not None and tower.config is not vision:
        tower.config._attn_implementation = VARLEN_SDPA
    return True
