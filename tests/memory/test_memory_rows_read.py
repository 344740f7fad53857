"""`read_layout` then `read_rows`: what a question reads, per backend (local, redis)."""

from __future__ import annotations

import pytest
import torch

from agent.memory import RetentionConfig, TokenMemory
from agent.memory.codec import META_BYTES, Layout
from agent.memory.errors import RowsGoneError
from agent.memory.rows_read import ENTRY_BYTES
from flexselect.types import VisualTokens
from tests.memory.memory_helpers import MemoryFactory, make_paired, make_tokens
from tests.memory.test_memory_behaviour import PLAIN, assert_same_tokens

# chunks of 4 tokens; the stream keeps 10, so every append evicts and the default compaction rewrites chunks
EVICTING = RetentionConfig(max_tokens_per_stream=10, floor_tokens_per_bucket=0, recent_seconds=0.0, **PLAIN)


async def fill(memory: TokenMemory, frames: range, *, levels: int = 0, paired: bool = False) -> None:
    for f in frames:
        make = make_paired if paired else make_tokens
        tokens = make([f], levels=levels, dtype=torch.bfloat16)
        await memory.append(
            "cam1", tokens, torch.rand(len(tokens), generator=torch.Generator().manual_seed(f))
        )


@pytest.mark.parametrize(("levels", "paired"), [(0, False), (2, False), (0, True)])
async def test_the_layout_is_the_full_read_without_embeddings(
    make_memory: MemoryFactory, levels: int, paired: bool
) -> None:
    async with make_memory(EVICTING) as memory:
        await fill(memory, range(8), levels=levels, paired=paired)
        full = (await memory.read(["cam1"], since=2.0, until=6.0))["cam1"]
        layout = (await memory.read_layout(["cam1"], since=2.0, until=6.0))["cam1"]
    assert len(layout) == len(full) > 0
    assert layout.tokens.embeds.shape == (len(full), 0) and layout.tokens.deepstack is None
    for name in ("frame", "time", "grid", "kind", "token_id"):
        assert torch.equal(getattr(layout.tokens, name), getattr(full.tokens, name)), name
    for name in ("attention", "redundancy", "retention", "chunk", "row"):
        assert torch.equal(getattr(layout, name), getattr(full, name)), name
    assert layout.selector_rows is paired
    assert layout.tokens.seconds_per_step == full.tokens.seconds_per_step


@pytest.mark.parametrize("levels", [0, 2])
async def test_read_rows_gives_the_full_reads_rows_in_the_asked_order(
    make_memory: MemoryFactory, levels: int
) -> None:
    async with make_memory(EVICTING) as memory:
        await fill(memory, range(8), levels=levels)
        layout = (await memory.read_layout(["cam1"]))["cam1"]
        index = torch.tensor([7, 0, 3, 9, 4])
        got = await memory.read_rows(layout, index)
        full = (await memory.read(["cam1"]))["cam1"]
    assert_same_tokens(got, layout_free(full.tokens.select(index)))


def layout_free(tokens: VisualTokens) -> VisualTokens:
    """`tokens` without selector rows: `read_rows` returns the base model's rows only."""
    return VisualTokens(**{f: getattr(tokens, f) for f in VisualTokens.__dataclass_fields__})


async def test_rows_moved_by_compaction_after_the_layout_read_are_still_found(
    make_memory: MemoryFactory,
) -> None:
    retention = RetentionConfig(
        max_tokens_per_stream=15, floor_tokens_per_bucket=0, recent_seconds=0.0, **PLAIN
    )
    async with make_memory(retention) as memory:
        for f in range(3):  # three chunks of 4; the lowest-attention rows sit at the start of each chunk
            await memory.append("cam1", make_tokens([f]), torch.tensor([0.1, 0.9, 0.8, 0.7]) + f)
        layout = (await memory.read_layout(["cam1"]))["cam1"]
        last = torch.nonzero(layout.chunk == 0).flatten()[1:]  # rows 1..3 of chunk 0, at slots 1..3
        assert layout.slot[last].tolist() == [1, 2, 3]
        await memory.append("cam1", make_tokens([3]), torch.tensor([5.0, 5.0, 5.0, 5.0]))  # evicts row 0
        got = await memory.read_rows(layout, last)
        full = (await memory.read(["cam1"]))["cam1"]
    assert full.row[full.chunk == 0].tolist() == [1, 2, 3]  # compacted: now at slots 0..2
    assert_same_tokens(got, full.tokens.select(torch.nonzero(full.chunk == 0).flatten()))


async def test_a_row_evicted_after_the_layout_read_is_an_error_not_a_wrong_token(
    make_memory: MemoryFactory,
) -> None:
    async with make_memory(EVICTING) as memory:
        await fill(memory, range(3))
        layout = (await memory.read_layout(["cam1"]))["cam1"]
        lowest = torch.argmin(layout.retention).reshape(1)
        await memory.append(
            "cam1", make_tokens([9], dtype=torch.bfloat16), torch.full((4,), 10.0)
        )  # evicts the lowest four
        with pytest.raises(RowsGoneError):
            await memory.read_rows(layout, lowest)
        assert len(await memory.read_rows(layout, torch.argmax(layout.retention).reshape(1))) == 1


async def test_a_stream_deleted_and_refilled_after_the_layout_read_is_an_error(
    make_memory: MemoryFactory,
) -> None:
    async with make_memory() as memory:
        await memory.append("cam1", make_tokens([0]), torch.ones(4))
        layout = (await memory.read_layout(["cam1"]))["cam1"]
        await memory.delete("cam1")
        await memory.append(
            "cam1", make_tokens([5]), torch.ones(4)
        )  # the same (chunk, row) names, other rows
        with pytest.raises(RowsGoneError):
            await memory.read_rows(layout, torch.tensor([0]))


async def question_bytes(memory: TokenMemory, stream_id: str, budget: int) -> tuple[int, int, int]:
    """(retained rows, bytes of the layout read, bytes of reading `budget` of the rows) of one stream."""
    before = (await memory.stats()).bytes_read
    layout = (await memory.read_layout([stream_id]))[stream_id]
    middle = (await memory.stats()).bytes_read
    await memory.read_rows(layout, torch.randperm(len(layout))[:budget].sort().values)
    return len(layout), middle - before, (await memory.stats()).bytes_read - middle


async def test_bytes_read_per_question_grow_with_the_budget_not_with_the_memory(
    make_memory: MemoryFactory,
) -> None:
    async with make_memory() as memory:
        for stream_id, frames in (("small", 64), ("large", 256)):  # 256 and 1,024 retained rows
            for f in range(0, frames, 16):
                tokens = make_tokens(range(f, f + 16), dim=256, dtype=torch.bfloat16, levels=1)
                await memory.append(stream_id, tokens, torch.rand(len(tokens)))
        small = await question_bytes(memory, "small", 64)
        large = await question_bytes(memory, "large", 64)
        double = await question_bytes(memory, "large", 128)
    head = META_BYTES + 2 * 256 * 2  # metadata, embedding and one deepstack row, bf16
    assert (small[0], large[0]) == (256, 1024)
    assert small[2] == large[2] == 64 * head  # the kept rows' bytes do not depend on the memory
    assert double[2] == 128 * head
    for rows, layout_bytes, _ in (small, large):
        assert rows * ENTRY_BYTES <= layout_bytes <= rows * ENTRY_BYTES + 16 * (rows // 64)  # + chunk ids
    width = Layout("bfloat16", 256, 1, 1.0).width
    assert large[1] + large[2] < 1024 * width / 4  # a full read would take every record
