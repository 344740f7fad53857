"""Moving the kept rows of a retained span to the model: one gather, straight into pinned host memory.

A question keeps ~7k of up to hundreds of thousands of retained rows (7 KiB each for Qwen2.5-VL-7B). On
CUDA the kept rows are gathered from the host tokens directly into a pinned buffer and copied to the
device asynchronously, so the kept embeddings are copied once on the host and once over the bus, and no
other field is copied with them (`layout_rows` carries the metadata without embeddings).
"""

from __future__ import annotations

import torch

from flexselect.types import VisualTokens


def gather_rows(
    embeds: torch.Tensor, index: torch.Tensor | None, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """`embeds[index]` (all rows when `index` is None) on `device` in `dtype`.

    Host rows bound for CUDA go through pinned memory (PyTorch's caching host allocator keeps the buffer
    until the copy has finished); everything else is a plain gather and copy.
    """
    if embeds.device.type != "cpu" or device.type != "cuda":
        rows = embeds if index is None else embeds[index.to(embeds.device)]
        return rows.to(device, dtype)
    n = len(embeds) if index is None else len(index)
    pinned = torch.empty((n, *embeds.shape[1:]), dtype=embeds.dtype, pin_memory=True)
    if index is None:
        pinned.copy_(embeds)
    else:
        torch.index_select(embeds, 0, index.cpu(), out=pinned)
    return pinned.to(device, non_blocking=True).to(dtype)


def layout_rows(tokens: VisualTokens, index: torch.Tensor | None) -> VisualTokens:
    """The metadata of rows `index` of `tokens` (all when None) with zero-width embeddings and no
    deepstack: what positions and masks are computed from."""
    layout = VisualTokens(
        embeds=tokens.embeds.new_empty(len(tokens), 0),
        frame=tokens.frame,
        time=tokens.time,
        grid=tokens.grid,
        kind=tokens.kind,
        token_id=tokens.token_id,
        seconds_per_step=tokens.seconds_per_step,
    )
    return layout if index is None else layout.select(index.to(tokens.frame.device))
