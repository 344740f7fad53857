"""The question read path at the floor: the local memory's `read_rows` against its previous per-chunk loop.

    python bench/read_rows.py [--retained 131072] [--kept 8192] [--settings 64:float32,3584:bfloat16]
                              [--repeats 7] [--out bench/results]

Per setting (embedding width and dtype) a stream of the in-process memory is filled past `--retained`
tokens in chunks of `--frames-per-chunk` frames, so eviction leaves partly dead and compacted chunks;
then the layout is read once and `--kept` of its rows (ascending, as selection returns them) are read in
full, by the product `read_rows` (per chunk one search and one gather each of identity, embeddings and
deepstack, then one comparison) and by the previous implementation kept here as the reference (per chunk
`nonzero`, `searchsorted`, token objects built and compared, scatter). Both run in the same process on
the same layout; their results are checked equal. Times are the best of the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from agent.memory import MemoryConfig, RetentionConfig, open_memory
from agent.memory.base import RetainedLayout
from agent.memory.errors import RowsGoneError
from agent.memory.local import LocalTokenMemory
from agent.memory.rows import Rows
from agent.memory.rows_read import check_same
from bench.report import environment, table, write_json
from flexselect.types import TokenKind, VisualTokens

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def previous_rows_in_process(
    layout: RetainedLayout, index: torch.Tensor, lookup: Callable[[int], tuple[Rows, torch.Tensor] | None]
) -> VisualTokens:
    """The per-chunk `rows_in_process` this benchmark compares against (before the packed identity)."""
    index = index.cpu().to(torch.int64)
    chunk, row = layout.chunk[index], layout.row[index]
    picked: list[tuple[torch.Tensor, Rows, torch.Tensor]] = []
    for number in torch.unique(chunk).tolist():
        sel = torch.nonzero(chunk == number).flatten()
        found = lookup(number)
        if found is None:
            raise RowsGoneError(f"chunk {number} of stream {layout.stream_id!r} was dropped; read again")
        rows, alive = found
        pos = torch.searchsorted(rows.row, row[sel]).clamp_max(max(len(rows) - 1, 0))
        if len(rows) == 0 or not bool((rows.row[pos] == row[sel]).all() and alive[pos].all()):
            raise RowsGoneError(
                f"rows of chunk {number} of stream {layout.stream_id!r} were evicted since the layout was "
                "read; read the layout again"
            )
        check_same(layout, index[sel], rows.tokens.select(pos))
        picked.append((sel, rows, pos))
    if not picked:
        return layout.tokens.select(index)
    first = picked[0][1].tokens
    n = len(index)
    embeds = first.embeds.new_empty(n, first.embeds.shape[1])
    deepstack = (
        None
        if first.deepstack is None
        else first.deepstack.new_empty(first.deepstack.shape[0], n, embeds.shape[1])
    )
    for sel, rows, pos in picked:
        embeds[sel] = rows.tokens.embeds[pos]
        if deepstack is not None:
            assert rows.tokens.deepstack is not None
            deepstack[:, sel] = rows.tokens.deepstack[:, pos]
    kept = layout.tokens.select(index)
    return VisualTokens(
        embeds=embeds,
        frame=kept.frame,
        time=kept.time,
        grid=kept.grid,
        kind=kept.kind,
        token_id=kept.token_id,
        deepstack=deepstack,
        seconds_per_step=kept.seconds_per_step,
    )


def chunk_tokens(first: int, frames: int, side: int, pool: torch.Tensor, levels: int) -> VisualTokens:
    """`frames` frames of side x side patches from frame `first`, one second apart; embeddings from `pool`."""
    per = side * side
    n = per * frames
    idx = torch.arange(n)
    frame = first + idx // per
    grid = torch.stack([torch.zeros(n, dtype=torch.int64), (idx % per) // side, idx % side], dim=1)
    return VisualTokens(
        embeds=pool,
        frame=frame,
        time=frame.to(torch.float64),
        grid=grid,
        kind=torch.full((n,), TokenKind.PATCH, dtype=torch.int8),
        token_id=torch.full((n,), 151_655),
        deepstack=pool.expand(levels, -1, -1).contiguous() if levels else None,
    )


async def measure(args: argparse.Namespace, dim: int, dtype_name: str) -> dict[str, Any]:
    """One table row: both implementations on the same memory, layout and kept rows."""
    per_chunk = args.side * args.side * args.frames_per_chunk
    chunks = -(-int(args.retained * args.overfill) // per_chunk)
    retention = RetentionConfig(
        max_tokens_per_stream=args.retained, max_tokens_total=1 << 30, max_bytes_per_stream=1 << 40,
        max_bytes_total=1 << 44, max_chunk_bytes=400 * 2**20, floor_tokens_per_bucket=0,
        recent_seconds=0.0, attention_norm="none", redundancy_weight=0.0,
    )  # fmt: skip
    g = torch.Generator().manual_seed(0)
    pools = [torch.randn(per_chunk, dim, generator=g).to(DTYPES[dtype_name]) for _ in range(4)]
    async with open_memory(MemoryConfig(backend="local", retention=retention)) as memory:
        assert isinstance(memory, LocalTokenMemory)
        for k in range(chunks):
            tokens = chunk_tokens(
                k * args.frames_per_chunk, args.frames_per_chunk, args.side, pools[k % 4], args.levels
            )
            await memory.append("cam", tokens, torch.rand(per_chunk, generator=g))
        layout = (await memory.read_layout(["cam"]))["cam"]
        keep = torch.randperm(len(layout), generator=g)[: args.kept].sort().values
        stored = memory._streams["cam"].chunks  # bench-only peek: the previous code's chunk lookup

        def lookup(number: int) -> tuple[Rows, torch.Tensor] | None:
            chunk = stored.get(number)
            return None if chunk is None else (chunk.rows, chunk.alive)

        new_s, old_s = [], []
        for _ in range(args.repeats):  # interleaved, so both see the same machine state
            start = time.perf_counter()
            new = await memory.read_rows(layout, keep)
            new_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            old = previous_rows_in_process(layout, keep, lookup)
            old_s.append(time.perf_counter() - start)
        assert torch.equal(new.embeds.view(torch.uint8), old.embeds.view(torch.uint8))
        if args.levels:
            assert new.deepstack is not None and old.deepstack is not None
            assert torch.equal(new.deepstack.view(torch.uint8), old.deepstack.view(torch.uint8))
        n_chunks = len(set(layout.chunk[keep].tolist()))
    old_ms, new_ms = min(old_s) * 1e3, min(new_s) * 1e3
    return {
        "dim": dim, "dtype": dtype_name, "levels": args.levels, "retained": len(layout), "chunks": n_chunks,
        "kept": len(keep), "old_ms": old_ms, "new_ms": new_ms, "ratio": old_ms / new_ms,
        "kept_mb": len(keep) * dim * (1 + args.levels) * pools[0].element_size() / 2**20,
    }  # fmt: skip


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for setting in args.settings.split(","):
        dim, dtype_name = setting.split(":")
        rows.append(await measure(args, int(dim), dtype_name))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--retained", type=int, default=131_072, help="stream budget (retained tokens)")
    parser.add_argument("--overfill", type=float, default=1.25, help="tokens appended / retained")
    parser.add_argument("--kept", type=int, default=8_192, help="rows a question reads in full")
    parser.add_argument("--settings", default="64:float32,3584:bfloat16", help="dim:dtype,...")
    parser.add_argument("--levels", type=int, default=0, help="deepstack levels (3: Qwen3-VL-like)")
    parser.add_argument("--side", type=int, default=16, help="patches per frame side (16 -> 256 tokens)")
    parser.add_argument("--frames-per-chunk", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7, help="timed reads per implementation (best kept)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    env = environment()
    print(f"read_rows: kept rows of a local memory, previous per-chunk loop vs now; {env['device']}")
    columns = ["dim", "dtype", "levels", "retained", "chunks", "kept", "kept_mb", "old_ms", "new_ms", "ratio"]
    print(table(rows, columns))
    write_json(
        args.out / "read_rows.json", {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    )


if __name__ == "__main__":
    main()
