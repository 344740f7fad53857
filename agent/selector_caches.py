"""Per-stream FlexSelect-Lite caches for the agent: each chunk runs through the selector once, at ingest.

The memory decides what a stream retains and evicts rows inside its backend, so the caches never see an
eviction as it happens. Instead every question first syncs a stream's cache with the tokens the memory
retains: rows no longer retained are dropped (no recomputation), and a cache missing any retained row (an
agent restart with a persistent memory, a cache cleared for size) is rebuilt from the retained rows, which
carry the selector's embeddings. The cache is derived state: losing it costs one rebuild, never an answer.

Rows are identified by (frame, grid step, row, col, kind, token id) plus the copy's ordinal among rows with
that identity (the k-th copy in the cache is the k-th copy retained), matched by `agent.row_match`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from agent.row_match import RowIndex, match
from flexselect.budget import frame_groups
from flexselect.lite.cache import PrefixState, SelectorCache, prefix_state, run_extends
from flexselect.lite.model import LiteSelector, SelectorError
from flexselect.lite.scorer import LiteScorer
from flexselect.lite.tokens import PairedTokens, layout_of
from flexselect.types import Prompt, VisualTokens

logger = logging.getLogger(__name__)


def _layout_only(tokens: PairedTokens) -> PairedTokens:
    """`tokens` without the base model's embeddings (the memory holds those): layout and selector rows."""
    assert tokens.lite is not None
    return PairedTokens.pair(layout_of(tokens), tokens.lite.detach())


def _parts(cache: SelectorCache) -> list[VisualTokens]:
    """The cache's rows, one part per non-empty group, in order."""
    return [g.tokens for g in cache.groups if g.tokens is not None and len(g)]


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
        self._rows: dict[str, RowIndex] = {}  # each cache's row identities, for matching at a question
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
            self._rows[stream_id] = RowIndex()
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
        self._rows.pop(stream_id, None)

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
        cache, index = self.cache(stream_id), self._rows[stream_id]
        rows = index.rows(_parts(cache))
        found = match(rows, retained)
        if found is None:
            return False, None
        position, gone = found
        if position is None:  # the same rows in the same order: nothing to drop or match
            self.stats[stream_id].in_step += 1
            return True, None
        if bool(gone.any()):
            cache.drop(torch.nonzero(gone).flatten())
            index.after_drop(_parts(cache), rows, gone)
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
