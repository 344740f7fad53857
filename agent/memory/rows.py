"""Stored token rows with their scores, and their assembly into a time-ordered read result."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agent.memory.base import RetainedTokens
from agent.memory.chunk import concat_tokens
from flexselect.types import VisualTokens


@dataclass(frozen=True)
class Rows:
    """Tokens of (part of) a chunk with per-token scores and original chunk row, all CPU tensors."""

    tokens: VisualTokens
    attention: torch.Tensor
    redundancy: torch.Tensor
    retention: torch.Tensor
    row: torch.Tensor

    def __len__(self) -> int:
        return len(self.tokens)

    def select(self, index: torch.Tensor) -> Rows:
        """Rows `index` (1-D index or boolean mask)."""
        return Rows(
            tokens=self.tokens.select(index),
            attention=self.attention[index],
            redundancy=self.redundancy[index],
            retention=self.retention[index],
            row=self.row[index],
        )

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        return Rows(
            tokens=concat_tokens([p.tokens for p in parts]),
            attention=torch.cat([p.attention for p in parts]),
            redundancy=torch.cat([p.redundancy for p in parts]),
            retention=torch.cat([p.retention for p in parts]),
            row=torch.cat([p.row for p in parts]),
        )


def retained_tokens(
    stream_id: str, rows: Rows, chunk: torch.Tensor, since: float | None, until: float | None
) -> RetainedTokens:
    """The rows with `since <= time <= until`, sorted by (time, chunk, row)."""
    order = time_order(rows.tokens.time.numpy(), chunk.numpy(), rows.row.numpy(), since, until)
    if order is not None:
        index = torch.from_numpy(order)
        rows, chunk = rows.select(index), chunk[index]  # copies; skipped when already in order
    return RetainedTokens(
        stream_id=stream_id,
        tokens=rows.tokens,
        attention=rows.attention,
        redundancy=rows.redundancy,
        retention=rows.retention,
        chunk=chunk,
        row=rows.row,
    )


def time_order(
    time: np.ndarray, chunk: np.ndarray, row: np.ndarray, since: float | None, until: float | None
) -> np.ndarray | None:
    """Positions of the rows with `since <= time <= until` sorted by (time, chunk, row); None when that
    is every row in its present order (the order every read returns, with or without embeddings)."""
    keep = np.ones(time.shape[0], dtype=bool)
    if since is not None:
        keep &= time >= since
    if until is not None:
        keep &= time <= until
    picked = np.flatnonzero(keep)
    order = picked[np.lexsort((row[picked], chunk[picked], time[picked]))]
    if order.shape[0] != time.shape[0] or np.any(order != np.arange(order.shape[0])):
        return order
    return None
