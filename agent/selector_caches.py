"""Per-stream FlexSelect-Lite caches for the agent: each chunk runs through the selector once, at ingest.

The memory decides what a stream retains and evicts rows inside its backend, so the caches never see an
eviction as it happens. Instead every question first syncs a stream's cache with the tokens the memory
retains: rows no longer retained are dropped (no recomputation), and a cache missing any retained row (an
agent restart with a persistent memory, a cache cleared for size) is rebuilt from the retained rows, which
carry the selector's embeddings. The cache is derived state: losing it costs one rebuild, never an answer.

Rows are identified by (frame, grid step, row, col, kind, token id) plus the copy's ordinal among rows with
that identity (the k-th copy in the cache is the k-th copy retained), the key `agent.memory.survival`
matches tokens by.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from flexselect.budget import frame_groups
from flexselect.lite.cache import PrefixState, SelectorCache, prefix_state, run_extends
from flexselect.lite.model import LiteSelector, SelectorError
from flexselect.lite.scorer import LiteScorer
from flexselect.lite.tokens import PairedTokens, layout_of
from flexselect.types import Prompt, VisualTokens

logger = logging.getLogger(__name__)


def _identity(tokens: VisualTokens) -> torch.Tensor:
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


def _ordinals(inverse: torch.Tensor) -> torch.Tensor:
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
    ident = _identity(tokens)
    if len(ident) == 0:
        return torch.empty(0, 7, dtype=torch.int64)
    _, inverse = torch.unique(ident, dim=0, return_inverse=True)
    return torch.cat([ident, _ordinals(inverse).view(-1, 1)], dim=1)


_MIX = 0x100000001B3  # the 64-bit FNV prime: multiply-xor mixing of the identity columns (wraps in int64)


def _hash_rows(columns: torch.Tensor) -> torch.Tensor:
    """(N,) int64 hash of each row of `columns` (N, C) int64."""
    h = torch.full((len(columns),), -3750763034362895579, dtype=torch.int64)  # the FNV offset basis
    for c in range(columns.shape[1]):
        h = (h ^ columns[:, c]) * _MIX
    return h


def row_codes(ident: torch.Tensor) -> torch.Tensor:
    """(N,) int64 code of each row's `row_keys` identity, from its (N, 6) `_identity`: a hash of the six
    fields and the copy ordinal. One-dimensional, so matching 131k rows costs milliseconds, not the
    seconds `torch.unique(dim=0)` takes; equal keys give equal codes, and callers verify the match
    (`SelectorCaches._codes`), so a hash collision costs time, never a wrong score."""
    if len(ident) == 0:
        return torch.empty(0, dtype=torch.int64)
    h = _hash_rows(ident)
    _, inverse = torch.unique(h, return_inverse=True)
    return _hash_rows(torch.stack([h, _ordinals(inverse)], dim=1))


def _layout_only(tokens: PairedTokens) -> PairedTokens:
    """`tokens` without the base model's embeddings (the memory holds those): layout and selector rows."""
    assert tokens.lite is not None
    return PairedTokens.pair(layout_of(tokens), tokens.lite.detach())


def state_bytes_per_row(selector: LiteSelector) -> int:
    """Bytes of cached selector state per token: keys and values in layers 0..N-2, keys in the last."""
    shape = selector.config.decoder
    attn = selector.last.self_attn
    kv_width = attn.k_proj.out_features  # kv heads x head dim
    element = torch.empty(0, dtype=selector.dtype).element_size()
    return ((shape.layers - 1) * 2 + 1) * kv_width * element


@dataclass
class CacheStats:
    """What the caches of one stream have done (for tests and diagnostics)."""

    rebuilds: int = 0  # full recomputations from retained rows
    dropped: int = 0  # rows dropped in step with the memory
    cleared: int = 0  # caches cleared at ingest for exceeding `max_rows` or `max_bytes`
    fresh: int = 0  # questions scored by fresh passes: the retained rows exceed `max_bytes`
    in_step: int = 0  # syncs that found the cache holding exactly the retained rows, in order (no matching)


class SelectorCaches:
    """One `SelectorCache` per stream, kept in step with what the memory retains.

    Args:
        selector: the trained selector.
        prefix_ids: (P,) the prompt prefix of every question (it opens every cached group).
        max_group_tokens / max_group_frames: group limits of each cache (whole frames per group).
        rebuild_share: a cache is rebuilt when more than this share of some group's rows was dropped since
            the group was built (kept rows keep keys computed with the dropped ones, so cached scores drift
            from a fresh pass as more is dropped; docs/selector.md).
        max_rows: rows a stream's cache may hold between questions; an ingest past it clears the cache
            (rebuilt from the retained rows at the next question), since evictions are only seen at a sync.
            The agent sets it to twice the memory's retention (`agent.config_checks.selector_cache_rows`).
            Each clear is counted (`CacheStats.cleared`, exported per stream) and logged as a warning.
        max_bytes: device bytes of selector state a stream's cache may hold (None: no limit; see
            `state_bytes_per_row`). An ingest past it clears the cache; a question whose retained rows
            would need more is scored by fresh selector passes over its groups (the uncached Lite path,
            several times slower, still no base-model pass) and builds no cache, until the memory holds
            fewer rows. `CacheStats.fresh` counts those questions.
    """

    def __init__(
        self,
        selector: LiteSelector,
        prefix_ids: torch.Tensor,
        *,
        max_group_tokens: int,
        max_group_frames: int,
        rebuild_share: float = 0.5,
        max_rows: int = 65_536,
        max_bytes: int | None = None,
    ) -> None:
        if not 0.0 <= rebuild_share <= 1.0:
            raise ValueError(f"rebuild_share must be in [0, 1], got {rebuild_share}")
        if max_rows < 1:
            raise ValueError(f"max_rows must be positive, got {max_rows}")
        self.selector = selector
        self.prefix_ids = prefix_ids.long().cpu()
        self.max_group_tokens = max_group_tokens
        self.max_group_frames = max_group_frames
        self.rebuild_share = rebuild_share
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.row_bytes = state_bytes_per_row(selector)
        self.caches: dict[str, SelectorCache] = {}
        self.stats: dict[str, CacheStats] = {}
        self._prefix: PrefixState | None = None  # shared by every stream's groups

    def cache(self, stream_id: str) -> SelectorCache:
        """The stream's cache, created empty on first use."""
        if stream_id not in self.caches:
            self.caches[stream_id] = SelectorCache(
                self.selector,
                self.prefix_ids,
                max_group_tokens=self.max_group_tokens,
                max_group_frames=self.max_group_frames,
                keep_inputs=False,
                prefix=self._prefix_state(),
            )
            self.stats[stream_id] = CacheStats()
        return self.caches[stream_id]

    def _prefix_state(self) -> PrefixState:
        if self._prefix is None:
            with torch.no_grad():
                self._prefix = prefix_state(self.selector, self.prefix_ids)
        return self._prefix

    def forget(self, stream_id: str) -> None:
        """Release a stream's cache (e.g. the stream was deleted from the memory)."""
        self.caches.pop(stream_id, None)
        self.stats.pop(stream_id, None)

    def ingest(self, stream_id: str, tokens: VisualTokens) -> None:
        """Run a freshly encoded chunk (whole frames, after every earlier chunk) into the stream's cache.

        Raises:
            SelectorError: `tokens` carry no selector embeddings.
        """
        self.ingest_many([(stream_id, tokens)])

    def ingest_many(self, chunks: Sequence[tuple[str, VisualTokens]]) -> None:
        """`ingest` of several chunks, of one or many streams (each stream's in time order), with every
        selector layer run once per round over all of them: round k takes the k-th chunk of each stream,
        so one chunk per stream gives one pass. Each cache ends as after ingesting its chunks one by one
        (up to float rounding), clears for size included.

        Raises:
            SelectorError: a chunk carries no selector embeddings (then no cache changes).
        """
        for _, tokens in chunks:
            if not isinstance(tokens, PairedTokens):
                raise SelectorError(
                    "SelectorCaches.ingest needs PairedTokens (see flexselect.lite.encode_pair)"
                )
        pending: dict[str, list[PairedTokens]] = {}
        rows: dict[str, int] = {}
        for stream_id, tokens in chunks:
            cache = self.cache(stream_id)
            total = rows.get(stream_id, len(cache)) + len(tokens)
            if total > self.max_rows or not self._fits(total):
                self._clear_for_size(stream_id, cache, total)  # the chunks before it go with the cache
                pending[stream_id], rows[stream_id] = [], 0
                continue
            assert isinstance(tokens, PairedTokens)
            pending.setdefault(stream_id, []).append(_layout_only(tokens))
            rows[stream_id] = total
        for k in range(max((len(parts) for parts in pending.values()), default=0)):
            jobs = [
                job
                for stream_id, parts in pending.items()
                if k < len(parts)
                for job in self.caches[stream_id].plan(parts[k])
            ]
            run_extends(self.selector, jobs)

    def _clear_for_size(self, stream_id: str, cache: SelectorCache, rows: int) -> None:
        """Clear a cache an ingest would take past its limits, counted and logged: the next question
        rebuilds it from every retained row, a full selector pass an operator should see."""
        cache.clear()
        self.stats[stream_id].cleared += 1
        budget = "no byte limit" if self.max_bytes is None else f"{self.max_bytes} bytes"
        logger.warning(
            "stream %r: selector cache cleared at ingest: %d rows (%d bytes) would pass its limit of %d rows "
            "(%s); the next question rebuilds it from the retained rows",
            stream_id,
            rows,
            rows * self.row_bytes,
            self.max_rows,
            budget,
        )

    def sync(self, stream_id: str, retained: VisualTokens) -> None:
        """Make the stream's cache hold exactly the rows of `retained`: drop the rows no longer retained,
        rebuild when a retained row is missing or a group has lost more than `rebuild_share` of its rows.

        Raises:
            SelectorError: `retained` carry no selector embeddings.
        """
        self._sync(stream_id, retained)

    def scores(self, stream_id: str, retained: VisualTokens, prompt: Prompt) -> torch.Tensor:
        """(N,) float32 score of every row of `retained`, in its order, from the synced cache (on the
        selector's device: the caller reads them once, after top-k)."""
        if len(retained) == 0:
            self._sync(stream_id, retained)
            return torch.empty(0, dtype=torch.float32, device=self.selector.device)
        if not self._fits(len(retained)):
            return self._fresh(stream_id, retained, prompt)
        return self._gather(stream_id, self._sync(stream_id, retained), prompt)

    def synced_scores(self, stream_id: str, retained: VisualTokens, prompt: Prompt) -> torch.Tensor | None:
        """`scores` from the rows' metadata alone (`retained` need not carry selector rows) when the cache
        is in step with them after dropping the rows no longer retained; None when scoring needs the
        selector rows (a rebuild, or fresh passes past `max_bytes`): the caller then reads them and calls
        `scores`, which finds the drops already done. This lets a question read embeddings of only the
        rows it keeps."""
        if len(retained) == 0 or not self._fits(len(retained)):
            return None
        synced, position = self._drop_to(stream_id, retained)
        return self._gather(stream_id, position, prompt) if synced else None

    def _gather(self, stream_id: str, position: torch.Tensor | None, prompt: Prompt) -> torch.Tensor:
        """The cache's scores at `position` (the cache row of each retained row; None: the same order)."""
        scores = self.caches[stream_id].score(prompt)
        return scores if position is None else scores[position.to(scores.device)]

    def _fits(self, rows: int) -> bool:
        return self.max_bytes is None or rows * self.row_bytes <= self.max_bytes

    def _fresh(self, stream_id: str, retained: VisualTokens, prompt: Prompt) -> torch.Tensor:
        """Scores of `retained` by fresh selector passes over its frame groups (no cache is kept)."""
        if not isinstance(retained, PairedTokens):
            raise SelectorError(f"stream {stream_id!r}: retained tokens carry no selector embeddings")
        self.cache(stream_id).clear()
        self.stats[stream_id].fresh += 1
        groups = frame_groups(
            retained,
            grouping="contiguous",
            max_frames=self.max_group_frames,
            max_tokens=self.max_group_tokens,
        )
        scorer = LiteScorer(self.selector)
        scores = torch.empty(len(retained), dtype=torch.float32)
        for g in groups:
            scores[g] = scorer.score(prompt, retained.select(g))
        return scores.to(self.selector.device)

    def _sync(self, stream_id: str, retained: VisualTokens) -> torch.Tensor | None:
        """`sync`, returning the cache row of each retained row afterwards (None: the same order)."""
        if not isinstance(retained, PairedTokens):
            raise SelectorError(f"stream {stream_id!r}: retained tokens carry no selector embeddings")
        cache = self.cache(stream_id)
        if len(retained) == 0:
            cache.clear()
            return None
        synced, position = self._drop_to(stream_id, retained)
        return position if synced else self._rebuild(stream_id, retained)

    def _drop_to(self, stream_id: str, retained: VisualTokens) -> tuple[bool, torch.Tensor | None]:
        """Drop the cached rows `retained` lacks; (True, the cache row of each retained row, or None when
        the cache holds them in their order), or (False, None) when the cache must be rebuilt: a retained
        row is missing, or a group lost too many rows (the drops are done either way)."""
        cache = self.cache(stream_id)
        match = _match(cache, retained)
        if match is None:
            return False, None
        position, gone = match
        if position is None:  # the same rows in the same order: nothing to drop or match
            self.stats[stream_id].in_step += 1
            return True, None
        if bool(gone.any()):
            cache.drop(torch.nonzero(gone).flatten())
            self.stats[stream_id].dropped += int(gone.sum())
            position = (torch.cumsum(~gone, 0) - 1)[position]  # the kept rows keep their order
        if self.dropped_share(stream_id) > self.rebuild_share:
            return False, None
        return True, position

    def dropped_share(self, stream_id: str) -> float:
        """The largest share of a group's rows dropped since the group was built (0.0 without a cache)."""
        cache = self.caches.get(stream_id)
        shares = [1.0 - len(g) / len(g.seen) for g in (cache.groups if cache else []) if g.seen is not None]
        return max(shares, default=0.0)

    def _rebuild(self, stream_id: str, retained: PairedTokens) -> None:
        """Recompute the stream's cache from `retained`, which it then holds in their order."""
        self.caches[stream_id].rebuild(_layout_only(retained))
        self.stats[stream_id].rebuilds += 1


def _match(cache: SelectorCache, retained: VisualTokens) -> tuple[torch.Tensor | None, torch.Tensor] | None:
    """Where each retained row sits in the cache: (position, gone), position (M,) the cache row of each
    retained row and gone (N,) the cached rows not retained; position None when the cache holds exactly
    the retained rows in their order (no eviction since the last sync: one comparison shows it). None when
    a retained row is not cached.

    Rows are matched by identity (`row_keys`: repeated identities first copy to first copy). The usual
    case, every identity once, takes one hash, one sort and one search, checked against the identities;
    repeated identities or a hash collision take the exact path (`_exact_match`).
    """
    parts = [_identity(g.tokens) for g in cache.groups if g.tokens is not None and len(g)]
    cached = torch.cat(parts) if parts else torch.empty(0, 6, dtype=torch.int64)
    wanted = _identity(retained)
    if cached.shape == wanted.shape and torch.equal(cached, wanted):
        return None, torch.zeros(len(cached), dtype=torch.bool)
    if len(cached) == 0:
        return None if len(wanted) else (torch.empty(0, dtype=torch.int64), torch.zeros(0, dtype=torch.bool))
    hashed = _hash_rows(cached)
    order = torch.argsort(hashed)
    ordered = hashed[order]
    if bool((ordered[1:] == ordered[:-1]).any()):  # a repeated identity or a collision
        return _exact_match(cached, wanted)
    wanted_hash = _hash_rows(wanted)
    at = torch.searchsorted(ordered, wanted_hash).clamp_max(len(ordered) - 1)
    if not bool((ordered[at] == wanted_hash).all()):
        return None  # an identity the cache lacks
    position = order[at]
    uses = torch.bincount(position, minlength=len(cached))
    if not bool((cached[position] == wanted).all()) or bool((uses > 1).any()):
        return _exact_match(cached, wanted)  # a collision, or a retained identity repeated
    return position, uses == 0


def _exact_match(cached: torch.Tensor, wanted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`_match` by codes of the full keys with their copy ordinals (`row_codes`, checked; `row_keys`
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


def row_keys_of(ident: torch.Tensor) -> torch.Tensor:
    """`row_keys` from an (N, 6) `_identity`."""
    if len(ident) == 0:
        return torch.empty(0, 7, dtype=torch.int64)
    _, inverse = torch.unique(ident, dim=0, return_inverse=True)
    return torch.cat([ident, _ordinals(inverse).view(-1, 1)], dim=1)


def _unique(codes: torch.Tensor) -> bool:
    """Whether `codes` are unique within one set of rows (the keys are, with their ordinals)."""
    return len(torch.unique(codes)) == len(codes)


def _same_rows(have: torch.Tensor, cached: torch.Tensor, want: torch.Tensor, wanted: torch.Tensor) -> bool:
    """Whether every pair of rows with equal codes across the two sets has equal identities."""
    if len(have) == 0:
        return True
    order = torch.argsort(have)
    at = torch.searchsorted(have[order], want).clamp_max(len(have) - 1)
    match = order[at]
    hit = have[match] == want
    return bool((cached[match[hit]] == wanted[hit]).all())
