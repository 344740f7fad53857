"""Streaming needle survival: does a small memory budget keep the rare events of an hour-long stream?

    python bench/memory_needle_survival.py [--model toy] [--hours 1] [--fps 1] [--needles 6]
                                           [--budgets 0.05,0.2] [--policies attention,redundancy]
                                           [--chunk-seconds 4] [--answer-budget N] [--out bench/results]
                                           [--retained DIR]

A synthetic world (grid-aligned needle events in a textured haystack) is rendered frame by frame and
streamed through the agent's ingest path: the model encodes each chunk, the standing prompt's attention
scores it, and the in-process memory appends it under a token budget (a fraction of everything streamed).
At the end it reports the fraction of needle tokens still retained, and asks each needle question over the
retained tokens with FlexSelect to measure how many are still answered correctly. The same is run with a
memory that ignores attention (redundancy and time buckets only) for comparison. `--hours` is the horizon
the questions are asked at (0.05 = 3 minutes, 1, 24); with `--retained DIR` each streamed memory is saved
and a later run with the same settings asks over it without streaming again (a day takes most of an hour).

Each row also says how the answer placed the retained tokens: the span of their original positions
against the model's trained range (`trained_positions`), and "exact" when it fits or "gaps compressed"
when the position policy (`flexselect.positions`) shrank its long gaps.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.config import ModelSection
from agent.engine import ChunkInput, Engine
from agent.memory import MemoryConfig, RetentionConfig, open_memory, retained_fraction
from agent.models import resolve_model
from bench.report import environment, table, write_json
from flexselect.adapters import load_adapter
from flexselect.types import TokenKind, VisualTokens
from streams.synth import WorldConfig, WorldRenderer, generate_world, ground_truth


def needle_mask(tokens: VisualTokens, needles: list[Any], cell: int, tp: int) -> torch.Tensor:
    """Tokens that show a needle: in one of its frames' temporal steps and inside its grid cells."""
    mask = torch.zeros(len(tokens), dtype=torch.bool)
    patch = tokens.kind == TokenKind.PATCH
    for n in needles:
        x, y, w, h = n.box
        row, col = tokens.grid[:, 1], tokens.grid[:, 2]
        steps = torch.tensor(sorted({f // tp for f in n.frames}), dtype=tokens.grid.dtype)
        in_time = torch.isin(tokens.grid[:, 0], steps)
        in_space = (row >= y // cell) & (row <= (y + h - 1) // cell) & (col >= x // cell)
        in_space &= col <= (x + w - 1) // cell
        mask |= patch & in_time & in_space
    return mask


async def stream_world(
    engine: Engine, world: Any, budget: int, attention_weight: float, chunk: int
) -> tuple[VisualTokens, VisualTokens, float]:
    """Stream the whole world through a memory of `budget` tokens; (all needle tokens, retained, seconds).

    The floors of all 5-minute buckets together take about 12 % of the budget whatever the horizon (1 %
    of it per bucket up to an hour, divided by the hours beyond): a day has 288 buckets, and floors of 1 %
    each would exceed the budget, which evicts the oldest buckets whole, needles and all (docs/memory.md).
    """
    hours = max(1.0, world.config.seconds / 3600)
    retention = RetentionConfig(
        max_tokens_per_stream=budget,
        max_tokens_total=budget,
        bucket_seconds=300.0,
        floor_tokens_per_bucket=max(1, int(budget // (100 * hours))),
        recent_seconds=30.0,
        attention_weight=attention_weight,
    )
    memory = open_memory(MemoryConfig(retention=retention))
    await memory.connect()
    renderer = WorldRenderer(world)
    fps = world.config.fps
    tp = getattr(engine.adapter, "temporal_patch", 1)
    needles: list[VisualTokens] = []
    start = time.perf_counter()
    for first in range(0, world.frame_count, chunk):
        last = min(world.frame_count, first + chunk)
        frames = np.stack([renderer.frame(i) for i in range(first, last)])
        job = ChunkInput(
            "world", frames, np.arange(first, last) / fps, frame_offset=first, time_origin=0.0, fps=fps
        )
        encoded = engine.encode(job)
        mask = needle_mask(encoded.tokens, list(world.needles), world.config.cell, tp)
        if bool(mask.any()):
            needles.append(encoded.tokens.select(mask))
        await memory.append("world", encoded.tokens, encoded.attention)
    seconds = time.perf_counter() - start
    retained = (await memory.read(["world"]))["world"].tokens
    await memory.close()
    return VisualTokens.concat(needles), retained, seconds


def save_stream(path: Path, needles: VisualTokens, retained: VisualTokens, seconds: float) -> None:
    """Keep a streamed memory's end state, so that its questions can be asked again without streaming."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {name: dataclasses.asdict(t) for name, t in (("needles", needles), ("retained", retained))}
    torch.save({**fields, "seconds": seconds}, path)


def load_stream(path: Path) -> tuple[VisualTokens, VisualTokens, float]:
    """What `save_stream` kept: (all needle tokens, retained tokens, seconds the streaming took)."""
    saved = torch.load(path, weights_only=True)
    return VisualTokens(**saved["needles"]), VisualTokens(**saved["retained"]), float(saved["seconds"])


def position_span(adapter: Any, retained: VisualTokens, prompt: Any) -> dict[str, Any]:
    """The retained span's original positions (prompt included) against the model's trained range, and
    how the answer placed them: "exact" when they fit, else "gaps compressed"."""
    _, extent = adapter.visual_positions(retained, compact=False)
    needed = len(prompt.prefix_ids) + extent + len(prompt.suffix_ids)
    trained = adapter.trained_positions
    return {
        "positions": needed,
        "trained_positions": trained,
        "placement": "exact" if needed <= trained else "gaps compressed",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="toy")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--needles", type=int, default=6)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--side", type=int, default=56, help="frame side; the toy model's is 56")
    parser.add_argument("--budgets", default="0.05,0.2", help="memory budgets as fractions of all tokens")
    parser.add_argument(
        "--policies",
        default="attention,redundancy",
        help="memory policies: attention (attention+redundancy) and/or redundancy (redundancy only)",
    )
    parser.add_argument(
        "--chunk-seconds", type=float, default=4.0, help="media seconds per ingested chunk (default 4)"
    )
    parser.add_argument("--kinds", default=None, help="question kinds to ask (default: all the world asks)")
    parser.add_argument(
        "--answer-budget", type=int, default=None, help="tokens kept per answer (default: the engine's)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument(
        "--retained",
        type=Path,
        default=None,
        help="directory of streamed memories: ask over the one saved there for the same settings, else "
        "stream and save it (a day's stream takes most of an hour on a CPU; its questions take seconds)",
    )
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    adapter = load_adapter(resolve_model(args.model), dtype="float32")
    engine = Engine(
        adapter, ModelSection(name=args.model), standing_prompts=["describe what happens in the video"]
    )
    world = generate_world(
        WorldConfig(
            seconds=args.hours * 3600,
            fps=args.fps,
            width=args.side,
            height=args.side,
            needles=args.needles,
            seed=args.seed,
            cell=28,
            max_needle_seconds=4.0,
            min_needle_seconds=2.0,
        )
    )
    truth = ground_truth(world)
    kinds = set(args.kinds.split(",")) if args.kinds else None
    questions = [q for q in truth.questions if kinds is None or q.kind in kinds]
    tp = int(getattr(adapter, "temporal_patch", 1))
    chunk = max(tp, round(args.chunk_seconds * args.fps) // tp * tp)
    chosen = [p.strip() for p in args.policies.split(",") if p.strip()]
    policies = {"attention": ("attention+redundancy", 1.0), "redundancy": ("redundancy only", 0.0)}
    if not chosen or any(p not in policies for p in chosen):
        parser.error(f"--policies takes attention and/or redundancy, got {args.policies!r}")
    total = (
        len(
            engine.encode(
                ChunkInput(
                    "probe",
                    np.zeros((2, args.side, args.side, 3), np.uint8),
                    np.arange(2.0),
                    0,
                    0.0,
                    args.fps,
                )
            ).tokens
        )
        / 2
        * world.frame_count
    )
    rows: list[dict[str, Any]] = []
    for fraction in (float(b) for b in args.budgets.split(",")):
        budget = max(16, int(total * fraction))
        for policy, weight in (policies[p] for p in chosen):
            saved = None
            if args.retained is not None:
                name = f"{args.model}_{args.hours}h_{args.fps}fps_seed{args.seed}_{chunk}f_{budget}_{weight}"
                saved = args.retained / f"{Path(name).name}.pt"
            if saved is not None and saved.is_file():
                needle_tokens, retained, seconds = load_stream(saved)
            else:
                needle_tokens, retained, seconds = asyncio.run(
                    stream_world(engine, world, budget, weight, chunk)
                )
                if saved is not None:
                    save_stream(saved, needle_tokens, retained, seconds)
            survived = retained_fraction(retained, needle_tokens)
            correct = 0
            for q in questions:
                answer = engine.answer(q.question, [("world", retained)], args.answer_budget)
                correct += answer.text == q.answer
            span = position_span(adapter, retained, engine.adapter.prompt(questions[0].question))
            rows.append(
                {
                    "budget": budget,
                    "fraction": fraction,
                    "policy": policy,
                    "needle_tokens": len(needle_tokens),
                    "survived": survived,
                    "answered": f"{correct}/{len(questions)}",
                    "accuracy": correct / max(1, len(questions)),
                    "stream_s": seconds,
                    **span,
                }
            )
    print(
        f"needle survival, {args.model}, {args.hours} h at {args.fps} fps, {len(world.needles)} needles, "
        f"{int(total)} tokens streamed; {environment()['device']}"
    )
    print(
        table(
            rows,
            [
                "budget",
                "fraction",
                "policy",
                "needle_tokens",
                "survived",
                "answered",
                "accuracy",
                "stream_s",
                "positions",
                "trained_positions",
                "placement",
            ],
        )
    )
    write_json(
        args.out / f"needle_survival_{Path(args.model).name}.json",
        {"hours": args.hours, "fps": args.fps, "chunk_frames": chunk, "rows": rows},
    )


if __name__ == "__main__":
    main()
