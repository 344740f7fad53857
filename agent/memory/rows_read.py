"""Reads for a question: every retained row's metadata without embeddings, then the kept rows in full.

A question keeps a budget of rows (thousands) out of everything a stream retains (up to hundreds of
thousands, 7 KiB each for Qwen2.5-VL-7B). `read_layout` returns each retained row's metadata and where it
is stored (`RetainedLayout`, about 70 bytes a row); `read_rows` then returns the chosen rows' embeddings.
The bytes a question reads thus grow with its budget, not with the memory.

The two reads are not one snapshot: an append between them may evict or compact rows. `read_rows` finds each
row by (chunk, row), whatever compaction moved, and compares its metadata with the layout's; a row no longer
retained (or different) raises `RowsGoneError`, never a wrong token.

In Redis both reads are Lua scripts over byte ranges of the chunk strings (`codec.py` layout): the layout
script returns the 65 metadata bytes of each live record, the rows script the records of the asked rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from agent.memory.base import RetainedLayout
from agent.memory.codec import _TORCH_DTYPES, META_BYTES, META_DTYPE, Layout
from agent.memory.errors import RowsGoneError
from agent.memory.redis_scripts import _COMMON
from agent.memory.rows import Rows, time_order
from flexselect.types import VisualTokens

ENTRY_BYTES = 4 + META_BYTES  # a layout entry: u4 record slot, then the record's metadata bytes
KEPT_ROWS_PER_CALL = 1024  # asked rows per call of the rows script (7 MiB of Qwen2.5-VL-7B rows)
REQUEST = np.dtype([("chunk", "<f8"), ("row", "<u4"), ("slot", "<u4")])  # one asked row, 16 bytes
_DEAD = r"""
local function is_dead(bitmap, row)
  local byte = string.byte(bitmap, math.floor(row / 8) + 1) or 0
  return bit.band(byte, bit.rshift(128, row % 8)) ~= 0
end

-- the chunk's key, stored rows and dead-row bitmap; nil when it is gone, false when it does not decode
local function open_chunk(s, chunk, w)
  local dk = key(s, 'd:' .. chunk)
  local kind = redis.call('TYPE', dk).ok
  if kind == 'none' then return nil end
  if kind ~= 'string' then return false end
  local head = redis.call('GETRANGE', dk, 0, HDR - 1)
  if #head < HDR or string.sub(head, 1, 4) ~= 'FSMc' then return false end
  local n, width = struct.unpack('<I4I4', head, 5)
  if width ~= w or redis.call('STRLEN', dk) ~= HDR + n * w then return false end
  if not type_ok(key(s, 'x:' .. chunk), 'string') then return false end
  return {dk, n, redis.call('GET', key(s, 'x:' .. chunk)) or ''}
end
"""

LAYOUT_IN_RANGE = (
    _COMMON
    + _DEAD
    + r"""
-- ARGV: 1 prefix, 2 stream, 3 since, 4 until, 5 record width. For each chunk that may hold rows in the
-- range: its id, then 'g' (gone), 'c' (does not decode) or 'o' followed by, per live record, its slot
-- (u4) and its 65 metadata bytes. One script, so chunks and dead-row bitmaps agree.
local S, SINCE, UNTIL, W = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
if not (type_ok(key(S, 'c0'), 'zset') and type_ok(key(S, 'c1'), 'zset')) then
  return redis.error_reply('FSAMEM_CORRUPT the chunk index of stream ' .. S .. ' holds a foreign type')
end
local out = {}
for _, chunk in ipairs(redis.call('ZRANGEBYSCORE', key(S, 'c0'), '-inf', UNTIL)) do
  local last = redis.call('ZSCORE', key(S, 'c1'), chunk)
  if last and tonumber(last) >= SINCE then
    out[#out + 1] = chunk
    local info = open_chunk(S, chunk, W)
    if info == nil then
      out[#out + 1] = 'g'
    elseif not info then
      out[#out + 1] = 'c'
    else
      local parts = {'o'}
      for i = 0, info[2] - 1 do
        local off = HDR + i * W
        local meta = redis.call('GETRANGE', info[1], off, off + 64)
        if not is_dead(info[3], struct.unpack('<I4', meta)) then
          parts[#parts + 1] = struct.pack('<I4', i) .. meta
        end
      end
      out[#out + 1] = table.concat(parts)
    end
  end
end
return out
"""
)

KEPT_ROWS = (
    _COMMON
    + _DEAD
    + r"""
-- ARGV: 1 prefix, 2 stream, 3 record width, 4 bytes of a record to return (from its start), 5 per asked
-- row pack('<dI4I4', chunk, row, slot). Returns {'ok', the asked records' leading bytes in order} or
-- {'gone', i}: asked row i (0-based) is no longer retained.
local S, W, LEN, REQ = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local chunks, parts = {}, {}

local function row_at(dk, pos)
  local off = HDR + pos * W
  return struct.unpack('<I4', redis.call('GETRANGE', dk, off, off + 3))
end

-- the record of original row `row`: at `slot` unless compaction moved it, else by bisection (rows ascend)
local function find(info, row, slot)
  if slot < info[2] and row_at(info[1], slot) == row then return slot end
  local lo, hi = 0, info[2] - 1
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    local r = row_at(info[1], mid)
    if r == row then return mid end
    if r < row then lo = mid + 1 else hi = mid - 1 end
  end
  return nil
end

for i = 0, #REQ / 16 - 1 do
  local c, row, slot = struct.unpack('<dI4I4', REQ, 1 + i * 16)
  local chunk = string.format('%010x', c)
  local info = chunks[chunk]
  if info == nil then
    info = open_chunk(S, chunk, W) or false
    chunks[chunk] = info
  end
  if not info or is_dead(info[3], row) then return {'gone', i} end
  local pos = find(info, row, slot)
  if not pos then return {'gone', i} end
  local off = HDR + pos * W
  parts[#parts + 1] = redis.call('GETRANGE', info[1], off, off + LEN - 1)
end
return {'ok', table.concat(parts)}
"""
)


def layout_tokens(meta: np.ndarray, seconds_per_step: float) -> VisualTokens:
    """Tokens with zero-width embeddings from (N,) records of `META_DTYPE`."""
    n = meta.shape[0]

    def column(name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(meta[name], copy=True, order="C"))

    return VisualTokens(
        embeds=torch.empty(n, 0),
        frame=column("frame"),
        time=column("time"),
        grid=column("grid").reshape(n, 3),
        kind=column("kind"),
        token_id=column("token_id"),
        seconds_per_step=seconds_per_step,
    )


def retained_layout(
    stream_id: str,
    layout: Layout,
    meta: np.ndarray,
    chunk: np.ndarray,
    slot: np.ndarray,
    since: float | None,
    until: float | None,
) -> RetainedLayout:
    """The `RetainedLayout` of live records `meta` (`META_DTYPE`) with their chunk numbers and slots: the
    rows with `since <= time <= until` in the order `read` returns (time, chunk, row)."""
    order = time_order(meta["time"], chunk, meta["row"].astype(np.int64), since, until)
    if order is not None:
        meta, chunk, slot = meta[order], chunk[order], slot[order]
    tokens = layout_tokens(meta, layout.seconds_per_step)
    return RetainedLayout(
        stream_id=stream_id,
        tokens=tokens,
        attention=torch.from_numpy(np.array(meta["attention"], copy=True)),
        redundancy=torch.from_numpy(np.array(meta["redundancy"], copy=True)),
        retention=torch.from_numpy(np.array(meta["retention"], copy=True)),
        chunk=torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.int64)),
        row=torch.from_numpy(meta["row"].astype(np.int64)),
        slot=torch.from_numpy(np.ascontiguousarray(slot, dtype=np.int64)),
        selector_rows=layout.lite_dtype is not None,
    )


def decode_entries(entries: bytes | memoryview) -> tuple[np.ndarray, np.ndarray]:
    """(metadata records, slots) of the layout script's entries for one chunk."""
    raw = np.frombuffer(entries, dtype=np.uint8).reshape(-1, ENTRY_BYTES)
    slots = np.ascontiguousarray(raw[:, :4]).view("<u4").reshape(-1).astype(np.int64)
    meta = np.ascontiguousarray(raw[:, 4:]).view(META_DTYPE).reshape(-1)
    return meta, slots


def requests(layout: RetainedLayout, index: torch.Tensor) -> bytes:
    """The rows script's request bytes for rows `index` of `layout`."""
    out = np.empty(len(index), dtype=REQUEST)
    idx = index.cpu().numpy()
    out["chunk"] = layout.chunk.numpy()[idx]
    out["row"] = layout.row.numpy()[idx]
    out["slot"] = layout.slot.numpy()[idx]
    return out.tobytes()


def check_same(layout: RetainedLayout, index: torch.Tensor, found: VisualTokens) -> None:
    """RowsGoneError unless the rows `found` for `index` carry the layout's metadata (a stream deleted
    and refilled reuses (chunk, row) names for other tokens)."""
    want = layout.tokens.select(index)
    for name in ("frame", "time", "grid", "kind", "token_id"):
        if not torch.equal(getattr(want, name), getattr(found, name)):
            raise RowsGoneError(
                f"stream {layout.stream_id!r}: the stored rows no longer match the layout read ({name} "
                "differs); read the layout again"
            )


def record_head(stored: Layout) -> int:
    """Bytes at the start of a record that `read_rows` needs: metadata, embedding and deepstack rows."""
    return META_BYTES + stored.embed_bytes * (1 + stored.levels)


def full_rows(layout: RetainedLayout, index: torch.Tensor, records: bytes, stored: Layout) -> VisualTokens:
    """The tokens of rows `index` of `layout` from the leading `META_BYTES + row span` bytes of each of
    their records (the rows script's reply), checked against the layout.

    Raises:
        RowsGoneError: the records' metadata differ from the layout's.
    """
    n, emb, levels = len(index), stored.embed_bytes, stored.levels
    raw = np.frombuffer(records, dtype=np.uint8).reshape(n, record_head(stored))
    found = layout_tokens(np.ascontiguousarray(raw[:, :META_BYTES]).view(META_DTYPE).reshape(n), 0.0)
    check_same(layout, index, found)
    dtype = _TORCH_DTYPES[stored.dtype]
    embeds = torch.from_numpy(raw[:, META_BYTES : META_BYTES + emb].copy())
    deepstack = None
    if levels:
        deep = torch.from_numpy(raw[:, META_BYTES + emb :].copy())
        deepstack = deep.view(dtype).reshape(n, levels, stored.dim).transpose(0, 1).contiguous()
    kept = layout.tokens.select(index)
    return VisualTokens(
        embeds=embeds.view(dtype).reshape(n, stored.dim),
        frame=kept.frame,
        time=kept.time,
        grid=kept.grid,
        kind=kept.kind,
        token_id=kept.token_id,
        deepstack=deepstack,
        seconds_per_step=layout.tokens.seconds_per_step,
    )


def identity_records(
    identity: torch.Tensor, attention: torch.Tensor, redundancy: torch.Tensor, retention: torch.Tensor
) -> np.ndarray:
    """(n,) `META_DTYPE` records of rows with packed identities `identity` (`pack_identity`, live rows)
    and their scores: the in-process twin of the stored bytes, built in one pass per layout read."""
    ident = identity.numpy()
    meta = np.empty(len(ident), dtype=META_DTYPE)
    meta["row"] = ident[:, 0]
    meta["frame"] = ident[:, 1]
    meta["time"] = ident[:, 2].view(np.float64)
    meta["grid"] = ident[:, 3:6]
    meta["kind"] = ident[:, 6]
    meta["token_id"] = ident[:, 7]
    meta["attention"] = attention.numpy()
    meta["redundancy"] = redundancy.numpy()
    meta["retention"] = retention.numpy()
    return meta


# The columns of a stored chunk's packed identity (`pack_identity`), and the fields `check_same` compares,
# in its order, with the packed columns that hold each.
PACKED_COLUMNS = 8  # row (-1 once evicted), frame, time's float64 bits, grid (3), kind, token_id
_FIELD_COLUMNS = (
    ("frame", slice(1, 2)),
    ("time", slice(2, 3)),
    ("grid", slice(3, 6)),
    ("kind", slice(6, 7)),
    ("token_id", slice(7, 8)),
)
DEAD_ROW = -1


class StoredChunk(Protocol):
    """A chunk held in process: its stored rows and their packed identity (`pack_identity`, evicted
    rows' row column set to `DEAD_ROW`)."""

    rows: Rows
    identity: torch.Tensor


def pack_identity(rows: Rows) -> torch.Tensor:
    """(n, `PACKED_COLUMNS`) int64 of `rows`: row, frame, time's float64 bits, grid, kind, token_id.

    Built once per stored chunk, so a question checks every asked row against its layout with one
    gather per chunk and one comparison, instead of building tokens per chunk.
    """
    t = rows.tokens
    columns = [rows.row, t.frame, t.time.to(torch.float64).contiguous().view(torch.int64)]
    columns += [t.grid[:, i] for i in range(3)] + [t.kind, t.token_id]
    return torch.stack([c.to(torch.int64) for c in columns], dim=1)


def _layout_fields(layout: RetainedLayout, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """The layout's `check_same` fields of rows `index` (`index_select`: advanced indexing is slower)."""
    t = layout.tokens
    return {name: getattr(t, name).index_select(0, index) for name, _ in _FIELD_COLUMNS}


def _differs(got: torch.Tensor, want: dict[str, torch.Tensor]) -> torch.Tensor:
    """(n, 5) bool: which of `check_same`'s fields differ per row, `got` being packed identities; time
    compared as float64, as `torch.equal` compares it."""
    out = []
    for name, cols in _FIELD_COLUMNS:
        if name == "time":
            out.append(got[:, 2].contiguous().view(torch.float64) != want[name])
        else:
            ours = want[name].reshape(len(got), -1)
            out.append((got[:, cols] != ours).any(1))
    return torch.stack(out, dim=1)


def _raise_first_problem(
    layout: RetainedLayout, numbers: list[int], gone: list[bool], counts: list[int], bad: torch.Tensor
) -> None:
    """RowsGoneError for the lowest chunk with a problem: dropped, else an evicted row, else the first
    differing field. `bad` is (n, 6) bool per asked row (grouped by chunk): not found, then `_differs`."""
    group = torch.repeat_interleave(torch.arange(len(numbers)), torch.tensor(counts))
    per_chunk = torch.zeros(len(numbers), bad.shape[1], dtype=torch.int64).index_add_(0, group, bad.long())
    flagged = torch.tensor(gone) | (per_chunk > 0).any(1)
    u = int(torch.nonzero(flagged)[0])
    number = numbers[u]
    if gone[u]:
        raise RowsGoneError(f"chunk {number} of stream {layout.stream_id!r} was dropped; read again")
    if int(per_chunk[u, 0]):
        raise RowsGoneError(
            f"rows of chunk {number} of stream {layout.stream_id!r} were evicted since the layout was "
            "read; read the layout again"
        )
    name = _FIELD_COLUMNS[int(torch.nonzero(per_chunk[u, 1:])[0])][0]
    raise RowsGoneError(
        f"stream {layout.stream_id!r}: the stored rows no longer match the layout read ({name} "
        "differs); read the layout again"
    )


class _Gather:
    """The output of a kept-rows read, grouped by chunk: packed identities, embeddings and deepstack."""

    def __init__(self, first: VisualTokens, n: int) -> None:
        self.identity = torch.full((n, PACKED_COLUMNS), DEAD_ROW, dtype=torch.int64)
        self.embeds = first.embeds.new_empty(n, first.embeds.shape[1])
        deep = first.deepstack
        self.deepstack = None if deep is None else deep.new_empty(deep.shape[0], n, self.embeds.shape[1])

    def fill(
        self,
        chunks: list[StoredChunk | None],
        pos: torch.Tensor,
        counts: list[int],
        only: set[int] | None = None,
    ) -> None:
        """Gather the rows at stored positions `pos` of each chunk (of chunks `only`, if given)."""
        parts = [pos.split(counts), self.identity.split(counts), self.embeds.split(counts)]
        deep = [None] * len(counts) if self.deepstack is None else self.deepstack.split(counts, dim=1)
        for u, (c, p, ident, emb, ds) in enumerate(zip(chunks, *parts, deep, strict=True)):
            if c is None or not c.identity.shape[0] or (only is not None and u not in only):
                continue
            torch.index_select(c.identity, 0, p, out=ident)
            torch.index_select(c.rows.tokens.embeds, 0, p, out=emb)
            if ds is not None:
                assert c.rows.tokens.deepstack is not None
                torch.index_select(c.rows.tokens.deepstack, 1, p, out=ds)


def _search(
    chunks: list[StoredChunk | None], pos: torch.Tensor, row: torch.Tensor, counts: list[int], only: set[int]
) -> None:
    """Set `pos` (grouped by chunk, as `row`) to where chunks `only` store rows `row`, by bisection of
    their ascending stored rows: compaction moved rows away from their layout slots."""
    for u, (c, p, r) in enumerate(zip(chunks, pos.split(counts), row.split(counts), strict=True)):
        if u in only and c is not None and len(c.rows):
            p.copy_(torch.searchsorted(c.rows.row, r))


def rows_in_process(
    layout: RetainedLayout, index: torch.Tensor, lookup: Callable[[int], StoredChunk | None]
) -> VisualTokens:
    """Rows `index` of `layout` in full from in-process chunks (`lookup(chunk)`; None: the chunk is gone).

    The asked rows are grouped by chunk (they already are when `index` ascends: the layout is in time
    order). Each row is first looked for at its layout slot; per chunk one gather each of identity,
    embeddings and deepstack writes the output; one comparison of the packed identities with the
    layout's checks every row. Only the chunks compacted since the layout was read are searched and
    gathered again.

    Raises:
        RowsGoneError: a row was evicted (or differs) since the layout was read; the lowest chunk with a
            problem is named, as a chunk-by-chunk check would.
    """
    index = index.cpu().to(torch.int64)
    if len(index) == 0:
        return layout.tokens.select(index)  # no rows asked: nothing to fetch
    asked = index
    chunk = layout.chunk.index_select(0, index)
    order = None if bool((chunk[1:] >= chunk[:-1]).all()) else torch.argsort(chunk, stable=True)
    if order is not None:
        index, chunk = index.index_select(0, order), chunk.index_select(0, order)
    row = layout.row.index_select(0, index)
    numbers_t, counts_t = torch.unique_consecutive(chunk, return_counts=True)
    numbers, counts = numbers_t.tolist(), counts_t.tolist()
    chunks = [lookup(number) for number in numbers]
    first = next((c.rows.tokens for c in chunks if c is not None), None)
    if first is None:
        raise RowsGoneError(f"chunk {numbers[0]} of stream {layout.stream_id!r} was dropped; read again")
    stored = torch.tensor([0 if c is None else c.identity.shape[0] for c in chunks])
    last = torch.repeat_interleave((stored - 1).clamp_min(0), counts_t)
    pos = torch.minimum(layout.slot.index_select(0, index), last)
    out = _Gather(first, len(index))
    out.fill(chunks, pos, counts)
    found = out.identity[:, 0] == row
    if not bool(found.all()):  # moved by compaction (or gone): search those chunks by row
        group = torch.repeat_interleave(torch.arange(len(numbers)), counts_t)
        moved = set(group[~found].tolist())
        _search(chunks, pos, row, counts, moved)
        out.fill(chunks, torch.minimum(pos, last), counts, moved)
        found = out.identity[:, 0] == row
    want = _layout_fields(layout, index)
    differs = _differs(out.identity, want)
    gone = [c is None for c in chunks]
    if any(gone) or not bool(found.all()) or bool(differs.any()):
        _raise_first_problem(layout, numbers, gone, counts, torch.cat([~found[:, None], differs], dim=1))
    embeds, deepstack = out.embeds, out.deepstack
    if order is not None:  # back to the asked order
        embeds = torch.empty_like(embeds).index_copy_(0, order, embeds)
        if deepstack is not None:
            deepstack = torch.empty_like(deepstack).index_copy_(1, order, deepstack)
    kept = want if order is None else _layout_fields(layout, asked)
    return VisualTokens(
        embeds=embeds,
        frame=kept["frame"],
        time=kept["time"],
        grid=kept["grid"],
        kind=kept["kind"],
        token_id=kept["token_id"],
        deepstack=deepstack,
        seconds_per_step=layout.tokens.seconds_per_step,
    )
