"""Cached-selector ingest of many streams: one batched pass against one pass per chunk.

    python bench/selector_ingest.py [--model tiny|qwen2.5-vl-7b] [--streams 1,16,64] [--warm-frames 32]
                                    [--repeats 5] [--out bench/results]

With `scorer: lite` every encoded chunk enters its stream's selector cache: each selector layer runs over
the chunk's rows against the rows its group already holds. For K streams that each deliver one 4-frame
chunk, this times `SelectorCaches.ingest` once per chunk (the agent before batching) against one
`SelectorCaches.ingest_many` over all K chunks (the agent now), on two sets of caches filled alike with
`--warm-frames` frames per stream first (so each chunk attends to a half-full 64-frame group, as in steady
state). Each repeat feeds both sets the next chunk of every stream; the table shows medians and the
selector's ingest rate in frames/s, and the largest score difference between the two sets at the end.

`--model qwen2.5-vl-7b` (CUDA): the paper's selector (Qwen2.5-0.5B shapes, bf16) on the 7B's layout,
128 tokens a 448x448 frame. The base model itself is not built: ingest into the cache reads only the rows'
layout and selector embeddings (a tiny Qwen2.5-VL supplies the prompt and the layout family). On a CPU
the tiny configuration runs and only the ratio means anything.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import torch

from agent.selector_caches import SelectorCaches
from bench.report import environment, table, write_json
from flexselect.adapters import VideoLLMAdapter
from flexselect.adapters.qwen2_5_vl import Qwen25VLAdapter
from flexselect.lite import LiteSelector, PairedTokens
from flexselect.timing import stopwatch
from flexselect.tiny import build_tiny
from flexselect.types import TokenKind
from lab.selector.recipe import decoder_for

QUESTION = "what color was the square ?"

FRAMES_PER_CHUNK = 4
GROUP_FRAMES = 64


def build(model: str) -> tuple[VideoLLMAdapter, LiteSelector, int]:
    """The prompt's adapter, a random selector (paper shapes in bf16 on CUDA for the 7B, else the tiny
    preset) and the base model's tokens per frame."""
    net, processor = build_tiny("qwen2_5_vl", frame_side=112)
    adapter = Qwen25VLAdapter(net, processor)
    torch.manual_seed(0)
    if model == "qwen2.5-vl-7b":
        selector = LiteSelector.for_adapter(adapter, decoder_for("qwen2.5-0.5b", adapter))
        return adapter, selector.to(device="cuda", dtype=torch.bfloat16).eval(), 128
    return adapter, LiteSelector.for_adapter(adapter, decoder_for("tiny", adapter)).eval(), 16


def stream_tokens(selector: LiteSelector, frames: int, per_frame: int, seed: int) -> PairedTokens:
    """`frames` 1 fps frames of `per_frame` tokens laid out as Qwen2.5-VL's (two frames a temporal step),
    with random selector embeddings on the selector's device (where `encode_pairs` leaves them at ingest)
    and no base embeddings."""
    g = torch.Generator().manual_seed(seed)
    n = frames * per_frame
    idx = torch.arange(n)
    frame = idx // per_frame
    side = int(per_frame**0.5)
    lite = torch.randn(n, selector.config.decoder.hidden, generator=g) * 0.02
    return PairedTokens(
        lite=lite.to(selector.device, selector.dtype),
        embeds=torch.empty(n, 0),
        frame=frame,
        time=frame.double(),
        grid=torch.stack([frame // 2, (idx % per_frame) // side, idx % side], dim=1),
        kind=torch.full((n,), int(TokenKind.PATCH), dtype=torch.int8),
        token_id=torch.zeros(n, dtype=torch.long),
        seconds_per_step=2.0,
    )


def new_caches(selector: LiteSelector, prefix_ids: torch.Tensor, per_frame: int) -> SelectorCaches:
    return SelectorCaches(
        selector,
        prefix_ids,
        max_group_tokens=GROUP_FRAMES * per_frame,
        max_group_frames=GROUP_FRAMES,
        max_rows=1 << 30,
    )


def stream_chunks(tokens: PairedTokens, per_frame: int) -> list[PairedTokens]:
    """A stream's tokens as consecutive 4-frame chunks."""
    size = FRAMES_PER_CHUNK * per_frame
    return [tokens.select(torch.arange(s, s + size)) for s in range(0, len(tokens), size)]


def measure(
    adapter: VideoLLMAdapter, selector: LiteSelector, per_frame: int, streams: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One table row: K streams, both ways, on caches filled alike."""
    prompt = adapter.prompt(QUESTION)
    warm = args.warm_frames // FRAMES_PER_CHUNK
    frames = (warm + args.repeats + 1) * FRAMES_PER_CHUNK
    names = [f"cam{k}" for k in range(streams)]
    chunks = {
        name: stream_chunks(stream_tokens(selector, frames, per_frame, k), per_frame)
        for k, name in enumerate(names)
    }
    one, many = (new_caches(selector, prompt.prefix_ids, per_frame) for _ in range(2))
    for caches in (one, many):
        for k in range(warm):
            caches.ingest_many([(name, chunks[name][k]) for name in names])
    one_ms, many_ms = [], []
    for k in range(warm, warm + args.repeats + 1):  # the first round warms up and is not counted
        batch = [(name, chunks[name][k]) for name in names]
        with stopwatch(selector.device) as took_one:
            for name, chunk in batch:
                one.ingest(name, chunk)
        with stopwatch(selector.device) as took_many:
            many.ingest_many(batch)
        if k > warm:
            one_ms.append(took_one.ms)
            many_ms.append(took_many.ms)
    retained = PairedTokens.concat(chunks[names[-1]])  # every chunk went in
    diff = (one.scores(names[-1], retained, prompt) - many.scores(names[-1], retained, prompt)).abs().max()
    one_med, many_med = statistics.median(one_ms), statistics.median(many_ms)
    chunk_frames = streams * FRAMES_PER_CHUNK
    return {
        "streams": streams,
        "rows": streams * FRAMES_PER_CHUNK * per_frame,
        "one_by_one_ms": one_med,
        "batched_ms": many_med,
        "ratio": one_med / many_med,
        "one_by_one_fps": chunk_frames / one_med * 1e3,
        "batched_fps": chunk_frames / many_med * 1e3,
        "max_score_diff": float(diff),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny", choices=["tiny", "qwen2.5-vl-7b"])
    parser.add_argument("--streams", default="1,16,64", help="comma-separated stream counts")
    parser.add_argument("--warm-frames", type=int, default=32, help="frames per stream cached first")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per stream count")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    adapter, selector, per_frame = build(args.model)
    rows = []
    env = environment()
    print(f"selector ingest: one pass per chunk vs one batched pass; {args.model}, {env['device']}")
    columns = ["streams", "rows", "one_by_one_ms", "batched_ms", "ratio", "one_by_one_fps", "batched_fps"]
    columns.append("max_score_diff")
    for streams in (int(s) for s in args.streams.split(",")):
        rows.append(measure(adapter, selector, per_frame, streams, args))
        print(table(rows[-1:], columns), flush=True)
    print(table(rows, columns))
    write_json(
        args.out / f"selector_ingest_{args.model}.json",
        {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
    )


if __name__ == "__main__":
    main()
