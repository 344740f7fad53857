"""Where each row a memory retains sits in a stream's selector cache, found by the rows' identities.

A row's identity is (frame, grid step, row, col, kind, token id); rows that share one (the timestamp and
image markers of Qwen3-VL and InternVL repeat within a frame) are told apart by their copy ordinal: the
k-th copy retained is the k-th copy cached, the key `agent.memory.survival` matches tokens by.

The question path matches on every question after an eviction, over every retained row, so the usual
case is made cheap: the cache's identities and their hashes are kept per group version (`RowIndex`), a
cache holding exactly the retained rows is seen with one comparison, and otherwise one stable sort of
each side's hashes matches the k-th retained copy to the k-th cached one, checked against the
identities. Only a hash collision between different identities takes the exact path (`exact_match`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from flexselect.types import VisualTokens


def identity(tokens: VisualTokens) -> torch.Tensor:
    """(N, 6) int64: frame, grid (step, row, col), kind, token id of each row, on the CPU."""
    return torch.cat(
        [
            tokens.frame.reshape(-1, 1).to(torch.int64),
            tokens.grid.to(torch.int64),
            tokens.kind.to(torch.int64).reshape(-1, 1),
            tokens.token_id.reshape(-1, 1).to(torch.int64),
        ],
        dim=1,
    ).cpu()


def ordinals(inverse: torch.Tensor) -> torch.Tensor:
    """(N,) the k-th appearance (0-based) of each row among rows with the same `inverse` class."""
    n = len(inverse)
    order = torch.sort(inverse, stable=True).indices
    counts = torch.bincount(inverse)
    starts = torch.cumsum(counts, 0) - counts
    ordinal = torch.empty(n, dtype=torch.int64)
    ordinal[order] = torch.arange(n) - starts[inverse[order]]
    return ordinal


def row_keys(tokens: VisualTokens) -> torch.Tensor:
    """(N, 7) int64 identity of each row: frame, grid (step, row, col), kind, token id, copy ordinal.

    The ordinal numbers the rows that share the first six fields in order of appearance, so keys are
    unique within `tokens` and duplicates are matched deterministically (first copy to first copy).
    """
    return row_keys_of(identity(tokens))


def row_keys_of(ident: torch.Tensor) -> torch.Tensor:
    """`row_keys` from an (N, 6) `identity`."""
    if len(ident) == 0:
        return torch.empty(0, 7, dtype=torch.int64)
    _, inverse = torch.unique(ident, dim=0, return_inverse=True)
    return torch.cat([ident, ordinals(inverse).view(-1, 1)], dim=1)


_MIX = 0x100000001B3  # the 64-bit FNV prime: multiply-xor mixing of the identity columns (wraps in int64)


def hash_rows(columns: torch.Tensor) -> torch.Tensor:
    """(N,) int64 hash of each row of `columns` (N, C) int64."""
    h = torch.full((len(columns),), -3750763034362895579, dtype=torch.int64)  # the FNV offset basis
    for c in range(columns.shape[1]):
        h = (h ^ columns[:, c]) * _MIX
    return h


def row_codes(ident: torch.Tensor) -> torch.Tensor:
    """(N,) int64 code of each row's `row_keys` identity, from its (N, 6) `identity`: a hash of the six
    fields and the copy ordinal. Equal keys give equal codes; callers verify the match (`exact_match`),
    so a hash collision costs time, never a wrong score."""
    if len(ident) == 0:
        return torch.empty(0, dtype=torch.int64)
    h = hash_rows(ident)
    _, inverse = torch.unique(h, return_inverse=True)
    return hash_rows(torch.stack([h, ordinals(inverse)], dim=1))


@dataclass(frozen=True)
class CachedRows:
    """The identities of a cache's rows in order, and their `hash_rows` hashes."""

    ident: torch.Tensor  # (N, 6) int64
    hashes: torch.Tensor  # (N,) int64


class RowIndex:
    """`CachedRows` of one cache, each group's part computed once per version of its rows.

    A cache replaces a group's tokens object whenever the group's rows change (an append, a drop), so
    a part is reused exactly while the same object is there; parts of objects no longer passed are
    released at the next call. It holds 56 bytes of host memory a cached row (identity and hash), next
    to the kilobytes a row of the memory and of the selector state take.
    """

    def __init__(self) -> None:
        self._parts: dict[int, tuple[VisualTokens, CachedRows]] = {}

    def rows(self, parts: Sequence[VisualTokens]) -> CachedRows:
        """The identities and hashes of the rows of `parts`, concatenated in order."""
        kept: dict[int, tuple[VisualTokens, CachedRows]] = {}
        for part in parts:
            hit = self._parts.get(id(part))
            if hit is None or hit[0] is not part:  # the held object keeps its id from being reused
                ident = identity(part)
                hit = (part, CachedRows(ident, hash_rows(ident)))
            kept[id(part)] = hit
        self._parts = kept
        if not kept:
            return CachedRows(torch.empty(0, 6, dtype=torch.int64), torch.empty(0, dtype=torch.int64))
        rows = [r for _, r in kept.values()]
        if len(rows) == 1:
            return rows[0]
        return CachedRows(torch.cat([r.ident for r in rows]), torch.cat([r.hashes for r in rows]))

    def after_drop(self, parts: Sequence[VisualTokens], rows: CachedRows, gone: torch.Tensor) -> None:
        """Take `rows` without the `gone` rows as those of `parts`, the cache's groups after it dropped
        them (same order), so the next question identifies and hashes none of them again.

        Raises:
            ValueError: `parts` do not hold exactly the rows kept.
        """
        keep = ~gone
        sizes = [len(part) for part in parts]
        if sum(sizes) != int(keep.sum()):
            raise ValueError(f"{sum(sizes)} rows after the drop, {int(keep.sum())} kept")
        ident, hashes = rows.ident[keep].split(sizes), rows.hashes[keep].split(sizes)
        self._parts = {
            id(part): (part, CachedRows(i, h)) for part, i, h in zip(parts, ident, hashes, strict=True)
        }


def match(cached: CachedRows, retained: VisualTokens) -> tuple[torch.Tensor | None, torch.Tensor] | None:
    """Where each retained row sits in the cache: (position, gone), position (M,) the cache row of each
    retained row and gone (N,) the cached rows not retained; position None when the cache holds exactly
    the retained rows in their order (no eviction since the last sync: one comparison shows it). None when
    a retained row is not cached.

    Rows are matched by `row_keys` (repeated identities first copy to first copy). Hashes are sorted
    stably, so equal hashes keep their order of appearance and the k-th retained row with a hash takes
    the k-th cached row with it; the identities then confirm every pair, and a hash shared by two
    different identities takes the exact path.
    """
    wanted = identity(retained)
    if cached.ident.shape == wanted.shape and torch.equal(cached.ident, wanted):
        return None, torch.zeros(len(wanted), dtype=torch.bool)
    n, m = len(cached.ident), len(wanted)
    if m == 0:
        return torch.empty(0, dtype=torch.int64), torch.ones(n, dtype=torch.bool)
    if n == 0:
        return None
    have, have_order = torch.sort(cached.hashes, stable=True)
    want, want_order = torch.sort(hash_rows(wanted), stable=True)
    index = torch.arange(m)
    run_head = torch.ones(m, dtype=torch.bool)
    run_head[1:] = want[1:] != want[:-1]
    copy = index - torch.cummax(torch.where(run_head, index, 0), 0).values  # k-th retained row with its hash
    at = torch.searchsorted(have, want) + copy  # the k-th cached row with that hash
    if bool((at >= n).any()) or not bool((have[at.clamp_max(n - 1)] == want).all()):
        return None  # more retained rows with some hash than cached ones: a retained row is not cached
    position = torch.empty(m, dtype=torch.int64)
    position[want_order] = have_order[at]
    if not bool((cached.ident[position] == wanted).all()):
        return exact_match(cached.ident, wanted)  # two different identities share a hash
    gone = torch.ones(n, dtype=torch.bool)
    gone[position] = False
    return position, gone


def exact_match(cached: torch.Tensor, wanted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`match` by codes of the full keys with their copy ordinals (`row_codes`, checked; `row_keys`
    where two different rows would share a code)."""
    have, want = row_codes(cached), row_codes(wanted)
    if not (_unique(have) and _unique(want) and _same_rows(have, cached, want, wanted)):
        exact = torch.cat([row_keys_of(cached), row_keys_of(wanted)])
        _, codes = torch.unique(exact, dim=0, return_inverse=True)
        have, want = codes[: len(cached)], codes[len(cached) :]
    if not bool(torch.isin(want, have).all()):
        return None
    order = torch.argsort(have)
    return order[torch.searchsorted(have[order], want)], ~torch.isin(have, want)


def _unique(codes: torch.Tensor) -> bool:
    """Whether `codes` are unique within one set of rows (the keys are, with their ordinals)."""
    return len(torch.unique(codes)) == len(codes)


def _same_rows(have: torch.Tensor, cached: torch.Tensor, want: torch.Tensor, wanted: torch.Tensor) -> bool:
    """Whether every pair of rows with equal codes across the two sets has equal identities."""
    if len(have) == 0:
        return True
    order = torch.argsort(have)
    at = torch.searchsorted(have[order], want).clamp_max(len(have) - 1)
    paired = order[at]
    hit = have[paired] == want
    return bool((cached[paired[hit]] == wanted[hit]).all())
