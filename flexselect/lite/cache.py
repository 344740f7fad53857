"""Cached FlexSelect-Lite scoring for streams: the question-independent work is done once, at ingest.

Visual tokens precede the question in a causal model, so their keys and values in every selector layer do
not depend on the question. `SelectorCache.append` runs each chunk through the selector once, inside a
group (`[prefix | chunk 1 | chunk 2 | ...]`, each chunk attending to the earlier ones), and keeps per-layer
keys and values (keys only at the last layer). `score` then runs only the question's few tokens against
each group's cache and returns a score for every cached token: the same numbers as a fresh selector pass
over the same groups. `drop` evicts rows without recomputing the rest (kept rows keep their keys, computed
when the dropped ones were still there), and `rebuild` recomputes everything from the kept tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from flexselect.lite.layers import (
    LayerKV,
    batched_question_attention,
    batched_question_layer,
    decoder_layer,
    decoder_layer_many,
    last_layer_keys,
    question_visibility,
)
from flexselect.lite.model import LiteSelector, SelectorError
from flexselect.lite.positions import as_position_ids
from flexselect.lite.tokens import PairedTokens, layout_of
from flexselect.types import Prompt, VisualTokens


def _metadata(tokens: VisualTokens) -> VisualTokens:
    """The layout fields of `tokens` without embeddings (what positions are computed from)."""
    n = len(tokens)
    return VisualTokens(
        embeds=torch.empty(n, 0),
        frame=tokens.frame,
        time=tokens.time,
        grid=tokens.grid,
        kind=tokens.kind,
        token_id=tokens.token_id,
        seconds_per_step=tokens.seconds_per_step,
    )


@dataclass
class CachedGroup:
    """One scoring group: its kept tokens and the selector state over `[prefix | kept tokens]`."""

    past: list[LayerKV]  # layers 0..N-2, keys and values
    last: LayerKV  # the last layer, keys only
    tokens: PairedTokens | None = None  # kept rows
    offsets: torch.Tensor | None = None  # (rows, kept) position offsets from the span start
    seen: VisualTokens | None = None  # layout of every row ever appended (positions never move)
    extent: int = 0  # where the question starts, after every row ever appended
    frames: set[int] = field(default_factory=set)

    def __len__(self) -> int:
        return 0 if self.tokens is None else len(self.tokens)


@dataclass(frozen=True)
class PrefixState:
    """The selector state over the prompt prefix alone, which every group starts from. Shared by groups
    (and by the caches of all streams with one prefix): tensors are never written in place."""

    past: list[LayerKV]
    last: LayerKV


@dataclass
class ExtendJob:
    """One piece of a chunk bound for one group, with its layout computed (see `SelectorCache.plan`)."""

    group: CachedGroup
    piece: PairedTokens
    seen: VisualTokens  # the group's layout after the piece
    offsets: torch.Tensor  # (rows, n) the piece's position offsets from the span start
    extent: int
    positions: torch.Tensor  # (3, 1, n) for M-RoPE, else (1, n)
    keep_inputs: bool  # the group keeps the piece's selector embeddings (else its layout only)


@dataclass
class StackedState:
    """All groups' selector state in one tensor per layer, padded to the longest group (see `stacked`)."""

    past_key: list[torch.Tensor]  # per layer 0..N-2: (G, Hkv, L, hd)
    past_value: list[torch.Tensor]
    last_key: torch.Tensor  # (G, Hkv, L, hd)
    valid: torch.Tensor  # (G, L) bool on the device: real rows (prefix and the group's tokens)
    rows: torch.Tensor  # (N,) on the device: flat (G * L) index of every cached token, in order
    extents: torch.Tensor  # (G,) int64 on the CPU: where each group's question starts after its prefix


def aggregate_groups(probs: torch.Tensor, how: str) -> torch.Tensor:
    """`flexselect.ranking.aggregate` over G groups: (G, H, T, L) -> (G, L)."""
    flat = probs.flatten(1, 2)
    if how == "max":
        return flat.max(dim=1).values
    if how == "mean":
        return flat.mean(dim=1)
    raise ValueError(f"aggregation must be 'max' or 'mean', got {how!r}")


class SelectorCache:
    """Per-layer selector keys and values of one stream's visual tokens, in scoring groups.

    Args:
        selector: the trained selector.
        prefix_ids: (P,) the prompt prefix every question of this stream uses (it opens every group).
        max_group_tokens: visual tokens per group (whole frames; a frame never straddles groups).
        max_group_frames: frames per group (the paper scores groups of 64 frames).
        keep_inputs: keep the selector embeddings of appended rows (for `rebuild()` without arguments and
            `tokens`); off, the cache keeps only their layout and a rebuild needs the rows again (the
            agent's caches: the memory holds the embeddings, so the cache keeps no second copy).
        prefix: the selector state over `prefix_ids` (see `prefix_state`), shared by caches of one prefix;
            computed on first use when not given.
    """

    def __init__(
        self,
        selector: LiteSelector,
        prefix_ids: torch.Tensor,
        *,
        max_group_tokens: int = 16384,
        max_group_frames: int = 64,
        keep_inputs: bool = True,
        prefix: PrefixState | None = None,
    ) -> None:
        if max_group_tokens < 1 or max_group_frames < 1:
            raise ValueError(
                f"group limits must be positive, got {max_group_tokens} tokens, {max_group_frames} frames"
            )
        self.selector = selector.eval()
        self.prefix_ids = prefix_ids.long().cpu()
        self.max_group_tokens = max_group_tokens
        self.max_group_frames = max_group_frames
        self.keep_inputs = keep_inputs
        self.groups: list[CachedGroup] = []
        self._stacked: StackedState | None = None
        self._prefix = prefix

    # ------------------------------------------------------------------------------------------ views
    def __len__(self) -> int:
        return sum(len(g) for g in self.groups)

    @property
    def tokens(self) -> PairedTokens | None:
        """Every cached token in order (None when empty)."""
        parts = [g.tokens for g in self.groups if g.tokens is not None and len(g)]
        return PairedTokens.concat(parts) if parts else None  # type: ignore[arg-type]

    def group_indices(self) -> list[torch.Tensor]:
        """Indices into `tokens` of each group (for a per-group budget)."""
        out, start = [], 0
        for g in self.groups:
            out.append(torch.arange(start, start + len(g)))
            start += len(g)
        return out

    def nbytes(self) -> int:
        """Bytes held by cached keys and values."""
        total = 0
        for g in self.groups:
            for kv in [*g.past, g.last]:
                total += kv.key.nbytes + (0 if kv.value is None else kv.value.nbytes)
        return total

    # ----------------------------------------------------------------------------------------- ingest
    @torch.no_grad()
    def append(self, chunk: PairedTokens) -> None:
        """Run a chunk (whole frames, in time order) through the selector into the open group(s)."""
        run_extends(self.selector, self.plan(chunk))

    @torch.no_grad()
    def plan(self, chunk: PairedTokens) -> list[ExtendJob]:
        """Split a chunk into pieces by group, opening the groups it needs, without running the selector:
        at most one piece per group, so the pieces of several plans (of different streams) can run
        together (`run_extends`). Run a plan before planning the same cache's next chunk."""
        if not isinstance(chunk, PairedTokens):
            raise SelectorError("SelectorCache.append needs PairedTokens (see flexselect.lite.encode_pair)")
        if len(chunk) == 0:
            return []
        self._stacked = None
        jobs: list[ExtendJob] = []
        frames, counts = torch.unique_consecutive(chunk.frame, return_counts=True)
        start = piece_start = 0
        pending: set[int] = set()  # frames of rows waiting to join the open group
        for frame, count in zip(frames.tolist(), counts.tolist(), strict=True):
            if count > self.max_group_tokens:
                raise SelectorError(
                    f"frame {frame} has {count} tokens; a group holds at most {self.max_group_tokens}"
                )
            group = self.groups[-1] if self.groups else None
            if group is None or not self._fits(group, start - piece_start + count, pending | {frame}):
                if start > piece_start:
                    jobs.append(self._job(self.groups[-1], chunk.select(torch.arange(piece_start, start))))
                self.groups.append(self._open_group())
                piece_start, pending = start, set()
            pending.add(frame)
            start += count
        jobs.append(self._job(self.groups[-1], chunk.select(torch.arange(piece_start, start))))
        return jobs

    def _fits(self, group: CachedGroup, more_tokens: int, more_frames: set[int]) -> bool:
        frames = len(group.frames | more_frames)
        return len(group) + more_tokens <= self.max_group_tokens and frames <= self.max_group_frames

    @torch.no_grad()
    def prefix_state(self) -> PrefixState:
        """The selector state over the prompt prefix (computed once, then shared by every new group)."""
        if self._prefix is None:
            self._prefix = prefix_state(self.selector, self.prefix_ids)
        return self._prefix

    def _open_group(self) -> CachedGroup:
        """A group holding only the prompt prefix."""
        state = self.prefix_state()
        return CachedGroup(past=list(state.past), last=state.last)

    def _job(self, group: CachedGroup, piece: PairedTokens) -> ExtendJob:
        """The layout of `piece` appended to `group`: positions follow every row the group ever held."""
        seen = _metadata(piece) if group.seen is None else VisualTokens.concat([group.seen, _metadata(piece)])
        offsets, extent = self.selector.offsets(seen)
        new = offsets[:, -len(piece) :]  # earlier rows' offsets never change (prefix-stable layouts)
        positions = as_position_ids(len(self.prefix_ids) + new, mrope=self.selector.config.mrope)
        return ExtendJob(group, piece, seen, new, extent, positions, self.keep_inputs)

    # ---------------------------------------------------------------------------------------- queries
    def stacked(self) -> StackedState:
        """Every group's state padded to the longest group and stacked, for batched questions.

        Built once after the groups change (ingest, drop) and kept until they change again. Each group's
        keys and values then become views into the stacked tensors, so the stacked state is the only copy;
        while chunks are ingested between questions, groups that grow hold fresh tensors until the next
        question stacks them again (at most twice the state for that moment).
        """
        if self._stacked is not None:
            return self._stacked
        groups = [g for g in self.groups if len(g)]
        p = len(self.prefix_ids)
        lengths = [p + len(g) for g in groups]  # metadata: Python ints, no device sync
        width = max(lengths)
        device = groups[0].last.key.device

        def stack(parts: list[torch.Tensor]) -> torch.Tensor:
            first = parts[0]
            out = first.new_zeros(len(parts), first.shape[1], width, first.shape[3])
            for i, part in enumerate(parts):
                out[i, :, : part.shape[2]] = part[0]
            return out

        n_layers = len(groups[0].past)
        past_key = [stack([g.past[i].key for g in groups]) for i in range(n_layers)]
        past_value = [stack([g.past[i].value for g in groups]) for i in range(n_layers)]  # type: ignore[misc]
        last_key = stack([g.last.key for g in groups])
        for j, (group, length) in enumerate(zip(groups, lengths, strict=True)):  # views: one copy only
            group.past = [
                LayerKV(past_key[i][j : j + 1, :, :length], past_value[i][j : j + 1, :, :length])
                for i in range(n_layers)
            ]
            group.last = LayerKV(last_key[j : j + 1, :, :length])
        valid = torch.arange(width)[None] < torch.tensor(lengths)[:, None]  # (G, L) on the CPU
        rows = torch.cat([j * width + torch.arange(p, length) for j, length in enumerate(lengths)])
        self._stacked = StackedState(
            past_key=past_key,
            past_value=past_value,
            last_key=last_key,
            valid=valid.to(device),
            rows=rows.to(device),
            extents=torch.tensor([g.extent for g in groups]),
        )
        return self._stacked

    @torch.no_grad()
    def score(self, prompt: Prompt) -> torch.Tensor:
        """(N,) float32 score of every cached token for the question in `prompt`, on the selector's device.

        Every selector layer runs once for the question rows of all groups together (each group's rows
        padded and masked), with no host round trip until the caller reads the scores.
        """
        if not torch.equal(prompt.prefix_ids.long().cpu(), self.prefix_ids):
            raise SelectorError(
                "the prompt's prefix differs from the one this cache was built with; rebuild it"
            )
        if prompt.query_len == 0:
            raise SelectorError("the prompt has no question tokens")
        sel = self.selector
        if len(self) == 0:
            return torch.empty(0, dtype=torch.float32, device=sel.device)
        state = self.stacked()
        p, t, g = len(self.prefix_ids), prompt.query_len, len(state.extents)
        question = sel.embed_ids(prompt.suffix_ids)[None].expand(g, -1, -1)  # (G, T, D)
        starts = p + state.extents[:, None] + torch.arange(t)[None]  # (G, T) on the CPU
        positions = starts[None].expand(3, -1, -1) if sel.config.mrope else starts
        cos, sin = sel.rope(positions, question)
        visible = question_visibility(state.valid, t)
        h = question
        for i, layer in enumerate(sel.layers[:-1]):
            h = batched_question_layer(layer, h, cos, sin, state.past_key[i], state.past_value[i], visible)
        probs = batched_question_attention(sel.last, h, cos, sin, state.last_key, visible)
        width = state.valid.shape[1]
        per_row = aggregate_groups(probs[..., :width], sel.config.aggregation)  # (G, L)
        return per_row.flatten().index_select(0, state.rows)

    # --------------------------------------------------------------------------------------- eviction
    @torch.no_grad()
    def drop(self, index: torch.Tensor) -> None:
        """Evict cached tokens (indices into `tokens`); the rest keep their cached keys and values."""
        total = len(self)
        index = index.long().cpu()
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= total):
            raise IndexError(f"drop index out of range for {total} cached tokens")
        self._stacked = None
        gone = torch.zeros(total, dtype=torch.bool)
        gone[index] = True
        p, start = len(self.prefix_ids), 0
        kept_groups = []
        for group in self.groups:
            n = len(group)
            keep = torch.nonzero(~gone[start : start + n]).flatten()
            start += n
            if len(keep) == n:
                kept_groups.append(group)
                continue
            if len(keep) == 0:
                continue
            rows = torch.cat([torch.arange(p), p + keep])
            group.past = [kv.keep(rows) for kv in group.past]
            group.last = group.last.keep(rows)
            assert group.tokens is not None and group.offsets is not None
            group.tokens = group.tokens.select(keep)
            group.offsets = group.offsets[:, keep]
            kept_groups.append(group)
        self.groups = kept_groups

    def clear(self) -> None:
        self.groups = []
        self._stacked = None

    def rebuild(self, tokens: PairedTokens | None = None) -> None:
        """Recompute the cache from stored tokens (e.g. after a restart); default: the tokens it holds."""
        if tokens is None and not self.keep_inputs:
            raise SelectorError("this cache keeps no selector embeddings: rebuild it from the stored rows")
        tokens = self.tokens if tokens is None else tokens
        self.clear()
        if tokens is not None:
            self.append(tokens)


def prefix_state(selector: LiteSelector, prefix_ids: torch.Tensor) -> PrefixState:
    """The selector state over a prompt prefix alone (layers 0..N-2 keys and values, last-layer keys)."""
    positions = as_position_ids(torch.arange(len(prefix_ids)).view(1, -1), mrope=selector.config.mrope)
    h = selector.embed_ids(prefix_ids.long())[None]
    cos, sin = selector.rope(positions, h)
    past = []
    for layer in selector.layers[:-1]:
        h, kv = decoder_layer(layer, h, cos, sin)
        past.append(kv)
    return PrefixState(past=past, last=last_layer_keys(selector.last, h, cos, sin))


@torch.no_grad()
def run_extends(selector: LiteSelector, jobs: list[ExtendJob]) -> None:
    """Run planned pieces (each bound for a different group, of one or many streams) through the selector
    together: each layer's norms, projections and MLP once over all pieces' rows, attention per piece
    against its group's cached rows; then append each piece's keys and values to its group. The same
    numbers as running the pieces one at a time, up to float rounding."""
    if not jobs:
        return
    groups = [id(job.group) for job in jobs]
    if len(set(groups)) != len(groups):
        raise SelectorError("two pieces bound for one group must run one after the other")
    lengths = [len(job.piece) for job in jobs]
    assert all(job.piece.lite is not None for job in jobs)
    h = torch.cat([job.piece.lite.to(selector.device, selector.dtype) for job in jobs])[None]  # type: ignore[union-attr]
    positions = torch.cat([job.positions for job in jobs], dim=-1)
    cos, sin = selector.rope(positions, h)
    per_job: list[list[LayerKV]] = [[] for _ in jobs]
    for i, layer in enumerate(selector.layers[:-1]):
        h, new = decoder_layer_many(layer, h, cos, sin, [job.group.past[i] for job in jobs], lengths)
        for kvs, kv in zip(per_job, new, strict=True):
            kvs.append(kv)
    last = last_layer_keys(selector.last, h, cos, sin)
    start = 0
    for job, kvs, n in zip(jobs, per_job, lengths, strict=True):
        _finish(job, kvs, LayerKV(last.key[:, :, start : start + n]))
        start += n


def _finish(job: ExtendJob, kvs: list[LayerKV], last: LayerKV) -> None:
    """Append a run piece's keys and values and its rows to its group."""
    group, piece = job.group, job.piece
    group.past = [past.cat(kv) for past, kv in zip(group.past, kvs, strict=True)]
    group.last = group.last.cat(last)
    if not job.keep_inputs:  # the layout only: zero-width selector rows
        assert piece.lite is not None
        piece = PairedTokens.pair(layout_of(piece), piece.lite[:, :0])
    group.tokens = piece if group.tokens is None else PairedTokens.concat([group.tokens, piece])
    group.offsets = job.offsets if group.offsets is None else torch.cat([group.offsets, job.offsets], dim=1)
    group.seen, group.extent = job.seen, job.extent
    group.frames.update(piece.frame.tolist())


class StreamCaches:
    """One `SelectorCache` per stream, created on first use."""

    def __init__(self, selector: LiteSelector, prefix_ids: torch.Tensor, **limits: int) -> None:
        self.selector, self.prefix_ids, self.limits = selector, prefix_ids, limits
        self.caches: dict[str, SelectorCache] = {}

    def __getitem__(self, stream: str) -> SelectorCache:
        if stream not in self.caches:
            self.caches[stream] = SelectorCache(self.selector, self.prefix_ids, **self.limits)
        return self.caches[stream]

    def forget(self, stream: str) -> None:
        self.caches.pop(stream, None)
