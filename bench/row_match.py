"""Matching a stream's selector cache to the rows its memory retains, at each question.

    python bench/row_match.py [--sizes 32768,131072] [--evict 32] [--repeats 7] [--out bench/results]

The memory evicts inside its backend, so before scoring, every question matches the cached rows to the
retained ones (`agent.row_match`). For each family's token layout (a tiny model's encoding, tiled over
frames up to the size: Qwen3-VL and InternVL repeat timestamp and image markers within a frame) this
times, on the CPU where the agent runs it:

- `in_step`: nothing evicted since the last question, one new 8-frame chunk cached (one comparison);
- `evicted`: 1/`--evict` of the rows evicted at random since the last question, the cache's identities
  kept from that question (`RowIndex.after_drop`): one stable sort per side, checked;
- `evicted_unkept`: the same with every group's identities computed afresh;
- `exact`: the exact path (`exact_match`, codes of the full keys with their copy ordinals), which every
  question after an eviction took for Qwen3-VL and InternVL before the sorted match handled repeats.

Every timing is a median; every match is checked against the exact path.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from agent.row_match import RowIndex, exact_match, identity, match
from bench.report import environment, table, write_json
from flexselect.adapters import adapter_for_model_type
from flexselect.lite.tokens import layout_of
from flexselect.tiny import build_tiny
from flexselect.types import VisualTokens

FAMILIES = {"qwen2_5_vl": 56, "qwen3_vl": 64, "llava_onevision": 56, "internvl": 56}
GROUP_ROWS = 8192
CHUNK_FRAMES = 8


def layout(family: str, frame_side: int) -> VisualTokens:
    """One 8-frame chunk of `family`'s layout from a tiny random model (embeddings dropped)."""
    model, processor = build_tiny(family, frame_side=frame_side)
    adapter = adapter_for_model_type(model.config.model_type)(model, processor)
    frames = torch.randint(0, 255, (CHUNK_FRAMES, frame_side, frame_side, 3), dtype=torch.uint8).numpy()
    return layout_of(adapter.encode(frames, torch.arange(CHUNK_FRAMES).double().numpy()))


def tiled(chunk: VisualTokens, rows: int) -> VisualTokens:
    """Consecutive copies of `chunk`, frames and times shifted, up to `rows` rows (whole chunks)."""
    copies = range(max(1, rows // len(chunk)))
    shift = CHUNK_FRAMES
    return VisualTokens.concat(
        [replace(chunk, frame=chunk.frame + k * shift, time=chunk.time + k * shift) for k in copies]
    )


def groups(tokens: VisualTokens, per_frame: float) -> list[VisualTokens]:
    """`tokens` in parts of whole frames of about 8,192 rows (64 frames of Qwen2.5-VL-7B at 448x448),
    as a selector cache groups them."""
    group = tokens.frame // max(1, int(GROUP_ROWS / per_frame))
    return [tokens.select(torch.nonzero(group == g).flatten()) for g in torch.unique(group)]


def median_ms(run: Callable[[], object], repeats: int, setup: Callable[[], object] = lambda: None) -> float:
    """Median milliseconds of `run` over `repeats` runs (after one warm-up), `setup` before each, untimed."""
    times = []
    for _ in range(repeats + 1):
        setup()
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times[1:])


def measure(family: str, chunk: VisualTokens, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """One table row: the four timings for one family at one size."""
    tokens = tiled(chunk, size)
    n = len(tokens)
    per_frame = len(chunk) / CHUNK_FRAMES
    parts = groups(tokens, per_frame)
    gone = torch.randperm(n, generator=torch.Generator().manual_seed(size))[: n // args.evict]
    keep = torch.ones(n, dtype=torch.bool)
    keep[gone] = False
    retained = tokens.select(torch.nonzero(keep).flatten())
    found = match(RowIndex().rows(parts), retained)
    expected = exact_match(identity(tokens), identity(retained))
    assert found is not None and found[0] is not None and expected is not None
    assert torch.equal(found[0], expected[0]) and torch.equal(found[1], expected[1])

    before = [*parts[:-1], parts[-1].select(torch.arange(len(parts[-1]) - len(chunk)))]
    index = RowIndex()

    def in_step() -> None:
        assert match(index.rows(parts), tokens) is not None  # one chunk ingested since `before`

    kept = RowIndex()
    kept.rows(parts)
    after = groups(retained, per_frame)

    def evicted() -> None:
        rows = kept.rows(parts)
        found = match(rows, retained)
        assert found is not None
        RowIndex().after_drop(after, rows, found[1])  # what the cache then keeps for the next question

    return {
        "family": family,
        "rows": n,
        "evicted_rows": n - len(retained),
        "in_step_ms": median_ms(in_step, args.repeats, setup=lambda: index.rows(before)),
        "evicted_ms": median_ms(evicted, args.repeats),
        "evicted_unkept_ms": median_ms(lambda: match(RowIndex().rows(parts), retained), args.repeats),
        "exact_ms": median_ms(lambda: exact_match(identity(tokens), identity(retained)), args.repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="32768,131072", help="comma-separated retained-row counts")
    parser.add_argument("--evict", type=int, default=32, help="evict 1/EVICT of the rows (default 32)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    torch.manual_seed(0)
    env = environment()
    print(f"cache-to-memory row matching at a question; {env['device']}")
    columns = ["family", "rows", "evicted_rows", "in_step_ms", "evicted_ms", "evicted_unkept_ms", "exact_ms"]
    columns.append("exact_over_evicted")
    rows = []
    for family in args.families.split(","):
        chunk = layout(family, FAMILIES[family])
        for size in (int(s) for s in args.sizes.split(",")):
            row = measure(family, chunk, size, args)
            row["exact_over_evicted"] = row["exact_ms"] / row["evicted_ms"]
            rows.append(row)
            print(table(rows[-1:], columns), flush=True)
    print(table(rows, columns))
    write_json(
        args.out / "row_match.json", {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    )


if __name__ == "__main__":
    main()
