"""The local `read_rows` (`rows_in_process`) gives exactly what a row-by-row read of the full memory gives.

The reference below finds each asked row by (chunk, row) in `read()`'s result and checks it field by field;
it raises the error a chunk-by-chunk check raises first: the lowest chunk with a problem, and there a
dropped chunk, then an evicted row, then the first differing field (frame, time, grid, kind, token_id).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from agent.memory import MemoryConfig, RetentionConfig, TokenMemory, open_memory
from agent.memory.base import RetainedLayout, RetainedTokens
from agent.memory.errors import RowsGoneError
from agent.memory.local import LocalTokenMemory
from flexselect.types import TokenKind, VisualTokens
from tests.memory.memory_helpers import make_tokens
from tests.memory.test_memory_behaviour import PLAIN, assert_same_tokens

FIELDS = ("frame", "time", "grid", "kind", "token_id")
QWEN3_LEVELS = 3  # Qwen3-VL-like tokens: three deepstack rows beside each embedding


def local(max_tokens: int) -> TokenMemory:
    """A local memory that evicts by attention alone once a stream holds `max_tokens`."""
    retention = RetentionConfig(
        max_tokens_per_stream=max_tokens, floor_tokens_per_bucket=0, recent_seconds=0.0, **PLAIN
    )
    return open_memory(MemoryConfig(backend="local", retention=retention))


def reference_rows(layout: RetainedLayout, index: torch.Tensor, full: RetainedTokens) -> VisualTokens:
    """Rows `index` of `layout`, one by one, from the full read `full` taken at the same moment."""
    where = {(c, r): i for i, (c, r) in enumerate(zip(full.chunk.tolist(), full.row.tolist(), strict=True))}
    live = set(full.chunk.tolist())
    asked = [(i, int(layout.chunk[i]), int(layout.row[i])) for i in index.tolist()]
    sid = layout.stream_id
    for chunk in sorted({c for _, c, _ in asked}):
        mine = [(i, r) for i, c, r in asked if c == chunk]
        if chunk not in live:
            raise RowsGoneError(f"chunk {chunk} of stream {sid!r} was dropped; read again")
        if any((chunk, r) not in where for _, r in mine):
            raise RowsGoneError(
                f"rows of chunk {chunk} of stream {sid!r} were evicted since the layout was read; "
                "read the layout again"
            )
        for name in FIELDS:
            ours, stored = getattr(layout.tokens, name), getattr(full.tokens, name)
            if any(not torch.equal(ours[i], stored[where[(chunk, r)]]) for i, r in mine):
                raise RowsGoneError(
                    f"stream {sid!r}: the stored rows no longer match the layout read ({name} differs); "
                    "read the layout again"
                )
    rows = full.tokens.select(torch.tensor([where[(c, r)] for _, c, r in asked], dtype=torch.int64))
    return VisualTokens(**{f: getattr(rows, f) for f in VisualTokens.__dataclass_fields__})


async def both(
    memory: TokenMemory, layout: RetainedLayout, index: torch.Tensor
) -> tuple[VisualTokens | str, VisualTokens | str]:
    """(read_rows, reference) of `index`: the tokens, or the RowsGoneError message."""
    full = (await memory.read([layout.stream_id]))[layout.stream_id]
    try:
        got: VisualTokens | str = await memory.read_rows(layout, index)
    except RowsGoneError as exc:
        got = str(exc)
    try:
        want: VisualTokens | str = reference_rows(layout, index, full)
    except RowsGoneError as exc:
        want = str(exc)
    return got, want


async def append_frames(memory: TokenMemory, first: int, chunks: int, seed: int) -> None:
    """`chunks` chunks of 4 frames x 4 patches, bf16 with deepstack, random attention."""
    g = torch.Generator().manual_seed(seed)
    for k in range(chunks):
        frames = range(first + 4 * k, first + 4 * k + 4)
        tokens = make_tokens(frames, dim=16, dtype=torch.bfloat16, levels=QWEN3_LEVELS)
        await memory.append("cam", tokens, torch.rand(len(tokens), generator=g))


async def test_read_rows_equals_the_row_by_row_reference_after_evictions_and_compaction() -> None:
    async with local(max_tokens=200) as memory:
        await append_frames(memory, 0, 40, seed=1)  # 640 tokens through a 200-token budget
        layout = (await memory.read_layout(["cam"]))["cam"]
        await append_frames(memory, 160, 4, seed=2)  # evicts (and compacts) rows the layout names
        now = (await memory.read_layout(["cam"]))["cam"]
        slot_now = {
            (c, r): s for c, r, s in zip(now.chunk.tolist(), now.row.tolist(), now.slot.tolist(), strict=True)
        }
        names = list(zip(layout.chunk.tolist(), layout.row.tolist(), strict=True))
        alive = [i for i, name in enumerate(names) if name in slot_now]
        moved = [i for i in alive if slot_now[names[i]] != int(layout.slot[i])]  # compacted since the layout
        assert len(set(layout.chunk.tolist())) > 10 and len(alive) < len(layout) and moved
        g = torch.Generator().manual_seed(3)
        ascending = torch.tensor(alive)
        shuffled = ascending[torch.randperm(len(alive), generator=g)]
        repeated = torch.cat([ascending[:5], ascending[:5]])
        for index in (ascending, shuffled, repeated, ascending[-3:], torch.tensor(moved)):
            got, want = await both(memory, layout, index)
            assert isinstance(got, VisualTokens) and isinstance(want, VisualTokens)
            assert want.deepstack is not None and want.deepstack.shape[0] == QWEN3_LEVELS
            assert_same_tokens(got, want)


async def test_read_rows_raises_what_the_reference_raises_for_any_asked_rows() -> None:
    async with local(max_tokens=200) as memory:
        await append_frames(memory, 0, 40, seed=4)
        layout = (await memory.read_layout(["cam"]))["cam"]
        await append_frames(memory, 160, 6, seed=5)
        g = torch.Generator().manual_seed(6)
        errors = 0
        for _ in range(40):
            index = torch.randperm(len(layout), generator=g)[: int(torch.randint(1, 12, (1,), generator=g))]
            got, want = await both(memory, layout, index)
            if isinstance(want, str):
                errors += 1
                assert got == want
            else:
                assert isinstance(got, VisualTokens)
                assert_same_tokens(got, want)
        assert 0 < errors < 40


async def test_no_asked_rows_give_no_tokens() -> None:
    async with local(max_tokens=200) as memory:
        await append_frames(memory, 0, 2, seed=7)
        layout = (await memory.read_layout(["cam"]))["cam"]
        got = await memory.read_rows(layout, torch.empty(0, dtype=torch.int64))
    assert len(got) == 0 and got.deepstack is None


async def three_chunks(memory: TokenMemory, attention: list[list[float]]) -> RetainedLayout:
    """Chunks 0.. of one frame (4 patches) each with the given attention, and the layout read after."""
    for f, att in enumerate(attention):
        await memory.append("cam", make_tokens([f]), torch.tensor(att))
    return (await memory.read_layout(["cam"]))["cam"]


def asked(layout: RetainedLayout, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """Layout positions of (chunk, row) pairs, in the given order."""
    names = list(zip(layout.chunk.tolist(), layout.row.tolist(), strict=True))
    return torch.tensor([names.index(p) for p in pairs])


async def test_an_evicted_row_names_its_chunk() -> None:
    async with local(max_tokens=15) as memory:
        layout = await three_chunks(memory, [[0.8] * 4, [0.1, 0.9, 0.9, 0.9], [0.8] * 4])
        await memory.append("cam", make_tokens([3]), torch.full((4,), 5.0))  # evicts row 0 of chunk 1
        with pytest.raises(RowsGoneError) as err:
            await memory.read_rows(layout, asked(layout, [(0, 0), (1, 1), (1, 0)]))
    assert str(err.value) == (
        "rows of chunk 1 of stream 'cam' were evicted since the layout was read; read the layout again"
    )


async def test_a_dropped_chunk_names_itself() -> None:
    async with local(max_tokens=12) as memory:
        layout = await three_chunks(memory, [[0.8] * 4, [0.1] * 4, [0.8] * 4])
        await memory.append("cam", make_tokens([3]), torch.full((4,), 5.0))  # evicts all of chunk 1
        with pytest.raises(RowsGoneError) as err:
            await memory.read_rows(layout, asked(layout, [(2, 3), (1, 2), (0, 0)]))
    assert str(err.value) == "chunk 1 of stream 'cam' was dropped; read again"


async def test_the_lowest_chunk_with_a_problem_is_named_first() -> None:
    async with local(max_tokens=15) as memory:  # chunk 0 loses a row, then chunk 1 is dropped
        layout = await three_chunks(memory, [[0.1, 0.9, 0.9, 0.9], [0.2] * 4, [0.8] * 4])
        await memory.append("cam", make_tokens([3]), torch.full((4,), 5.0))
        await memory.append("cam", make_tokens([4]), torch.full((4,), 5.0))
        with pytest.raises(RowsGoneError) as err:
            await memory.read_rows(layout, asked(layout, [(1, 1), (0, 0)]))
    assert str(err.value) == (
        "rows of chunk 0 of stream 'cam' were evicted since the layout was read; read the layout again"
    )


def refilled(field: str) -> VisualTokens:
    """Frame 0's four patches with only `field` changed (time keeps the frame, grid keeps the kind)."""
    tokens = make_tokens([0])
    changed = {
        "frame": {"frame": tokens.frame + 1},
        "time": {"time": tokens.time + 0.5},
        "grid": {"grid": tokens.grid.flip(0)},
        "kind": {"kind": torch.full((4,), TokenKind.NEWLINE, dtype=torch.int8)},
        "token_id": {"token_id": tokens.token_id + 1},
    }[field]
    return dataclasses.replace(tokens, **changed)


@pytest.mark.parametrize("field", FIELDS)
async def test_a_refilled_stream_names_the_first_differing_field(field: str) -> None:
    async with local(max_tokens=100) as memory:
        await memory.append("cam", make_tokens([0]), torch.ones(4))
        layout = (await memory.read_layout(["cam"]))["cam"]
        await memory.delete("cam")
        await memory.append("cam", refilled(field), torch.ones(4))  # the same (chunk, row) names
        with pytest.raises(RowsGoneError) as err:
            await memory.read_rows(layout, torch.tensor([3, 0, 1]))
    assert str(err.value) == (
        f"stream 'cam': the stored rows no longer match the layout read ({field} differs); "
        "read the layout again"
    )


async def test_a_layout_slot_is_the_rows_position_in_its_stored_chunk() -> None:
    async with local(max_tokens=200) as memory:
        await append_frames(memory, 0, 40, seed=8)  # evicted rows stay stored until compaction drops them
        layout = (await memory.read_layout(["cam"]))["cam"]
        assert isinstance(memory, LocalTokenMemory)
        chunks = memory._streams["cam"].chunks  # the stored chunks, to check the slots against
        stored = [
            int(chunks[c].rows.row[s])
            for c, s in zip(layout.chunk.tolist(), layout.slot.tolist(), strict=True)
        ]
    assert stored == layout.row.tolist()
    assert layout.slot.tolist() != layout.row.tolist()  # some chunks were compacted
