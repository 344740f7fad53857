"""Streams per GPU: how many 1 fps streams the agent's pipeline sustains while answering questions.

    python bench/streams_per_gpu.py [--model tiny|qwen2.5-vl-7b] [--streams 8,16,32,48] [--seconds 60]
                                    [--question-rate 1.0] [--long-media-hours 0] [--out bench/results]

Each of K synthetic streams delivers a chunk of frames (448x448 for the 7B shapes) every `chunk_seconds`
of wall time, as a camera at `fps` would; the real agent pipeline encodes it on the model worker (vision
tower, ingest scoring with the standing prompt) and appends it to the in-process memory, while one
question per `1/question_rate` seconds is answered over a random stream's memory. A load is sustained when
ingest keeps up: the 95th percentile of chunk lag (done - due) stays under one chunk period and no backlog
is left at the end. `--long-media-hours H` then runs the highest sustained load unpaced for H hours of
media time and samples GPU and host memory, which must stop growing once the memory budgets are full.
On a CPU the tiny configuration runs (frames 112x112) and only the shape of the results means anything.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.config import ModelSection
from agent.engine import ChunkInput, Engine
from agent.memory import MemoryConfig, RetentionConfig, open_memory
from agent.worker import ModelWorker, QueueFull
from bench.answer_latency import build, percentile
from bench.report import environment, plot, table, write_json

QUESTION = "what color was the square ?"


def rss_mib() -> float:
    """Current resident memory of this process (not the peak)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def gpu_mib() -> float:
    return torch.cuda.memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0


async def run_load(
    engine: Engine,
    streams: int,
    *,
    seconds: float,
    fps: float,
    chunk_seconds: float,
    side: int,
    question_rate: float,
    budget_tokens: int,
    paced: bool = True,
    samples: list[dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Drive `streams` producers and a question loop for `seconds` (media seconds when unpaced)."""
    memory = open_memory(
        MemoryConfig(
            retention=RetentionConfig(
                max_tokens_per_stream=budget_tokens, max_tokens_total=budget_tokens * streams
            )
        )
    )
    await memory.connect()
    frames_per_chunk = max(2, round(fps * chunk_seconds))
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 256, (frames_per_chunk, side, side, 3), dtype=np.uint8) for _ in range(4)]
    lags: list[float] = []
    ttfts: list[float] = []
    refused = 0
    start = time.monotonic()
    chunks = int(seconds / chunk_seconds)
    async with ModelWorker(
        engine, question_slots=4, chunk_slots=streams * 2, max_batch_chunks=8, max_consecutive=2
    ) as worker:

        async def producer(k: int) -> None:
            for i in range(chunks):
                due = start + (i + 1) * chunk_seconds
                if paced:
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                t0 = i * chunk_seconds
                job = ChunkInput(
                    f"s{k}",
                    pool[(i + k) % len(pool)],
                    t0 + np.arange(frames_per_chunk) / fps,
                    frame_offset=i * frames_per_chunk,
                    time_origin=0.0,
                    fps=fps,
                )
                encoded = await worker.encode(job)
                await memory.append(job.stream_id, encoded.tokens, encoded.attention)
                lags.append(time.monotonic() - due)

        async def questions() -> None:
            nonlocal refused
            while time.monotonic() - start < seconds:
                await asyncio.sleep(1.0 / question_rate)
                stream = f"s{random.randrange(streams)}"
                retained = await memory.read([stream])
                if stream not in retained:
                    continue
                tokens = retained[stream].tokens
                asked = time.monotonic()
                try:
                    answer = await worker.run_question(
                        lambda e, s=stream, t=tokens: e.answer(QUESTION, [(s, t)], None)
                    )
                except QueueFull:
                    refused += 1
                    continue
                ttfts.append(time.monotonic() - asked - answer.timings_ms.get("generate", 0.0) / 1e3)

        async def sampler() -> None:
            while samples is not None:
                samples.append({"t": time.monotonic() - start, "gpu_mib": gpu_mib(), "rss_mib": rss_mib()})
                await asyncio.sleep(5.0)

        sampling = asyncio.create_task(sampler())
        tasks = [asyncio.create_task(producer(k)) for k in range(streams)]
        if paced:
            tasks.append(asyncio.create_task(questions()))
        await asyncio.gather(*tasks)
        sampling.cancel()
    await memory.close()
    period = chunk_seconds
    lag95 = percentile(lags, 0.95) if lags else float("inf")
    return {
        "streams": streams,
        "sustained": lag95 < period,
        "lag_p50_s": statistics.median(lags) if lags else None,
        "lag_p95_s": lag95,
        "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
        "ttft_p95_s": percentile(ttfts, 0.95) if ttfts else None,
        "questions": len(ttfts),
        "refused": refused,
        "gpu_mib": gpu_mib(),
        "rss_mib": rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("tiny", "qwen2.5-vl-7b"), default="tiny")
    parser.add_argument(
        "--streams", default=None, help="loads to try (default 8,16,32,48 on GPU; 1,2,4 on CPU)"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="wall seconds per load")
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--chunk-seconds", type=float, default=4.0)
    parser.add_argument("--question-rate", type=float, default=1.0)
    parser.add_argument("--long-media-hours", type=float, default=0.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    adapter, per_frame = build(args.model)
    big = args.model != "tiny"
    side = 448 if big else 112
    engine = Engine(
        adapter,
        ModelSection(name=args.model, budget=32 * per_frame),
        standing_prompts=["describe what happens in the video"],
    )
    loads = [int(s) for s in (args.streams or ("8,16,32,48" if big else "1,2,4")).split(",")]
    budget_tokens = int(120 * args.fps * per_frame)  # two minutes of tokens per stream
    rows = [
        asyncio.run(
            run_load(
                engine,
                k,
                seconds=args.seconds,
                fps=args.fps,
                chunk_seconds=args.chunk_seconds,
                side=side,
                question_rate=args.question_rate,
                budget_tokens=budget_tokens,
            )
        )
        for k in loads
    ]
    print(
        f"streams per device, {args.model}, {args.fps} fps, {side}x{side}, "
        f"{args.question_rate} questions/s; {environment()['device']}"
    )
    print(
        table(
            rows,
            [
                "streams",
                "sustained",
                "lag_p50_s",
                "lag_p95_s",
                "ttft_p50_s",
                "ttft_p95_s",
                "questions",
                "refused",
                "gpu_mib",
                "rss_mib",
            ],
        )
    )
    payload: dict[str, Any] = {"rows": rows, "fps": args.fps, "side": side}
    if args.long_media_hours > 0:
        best = max((r["streams"] for r in rows if r["sustained"]), default=loads[0])
        samples: list[dict[str, float]] = []
        asyncio.run(
            run_load(
                engine,
                best,
                seconds=args.long_media_hours * 3600,
                fps=args.fps,
                chunk_seconds=args.chunk_seconds,
                side=side,
                question_rate=args.question_rate,
                budget_tokens=budget_tokens,
                paced=False,
                samples=samples,
            )
        )
        payload["long_run"] = {"streams": best, "samples": samples}
        print(f"long run: {best} streams, {args.long_media_hours} h of media; memory (MiB) at 10%, 50%, end:")
        marks = [samples[int(f * (len(samples) - 1))] for f in (0.1, 0.5, 1.0)] if samples else []
        print(table(marks, ["t", "gpu_mib", "rss_mib"]))
        plot(
            args.out / f"memory_over_time_{args.model}.png",
            {
                "gpu MiB": ([s["t"] + 1 for s in samples], [max(s["gpu_mib"], 1e-3) for s in samples]),
                "host RSS MiB": ([s["t"] + 1 for s in samples], [s["rss_mib"] for s in samples]),
            },
            xlabel="seconds",
            ylabel="MiB",
            title="Memory over a long run",
        )
    if not big:
        print("(CPU, tiny configuration: on a GPU run --model qwen2.5-vl-7b for the targets)")
    write_json(args.out / f"streams_per_gpu_{args.model}.json", payload)


if __name__ == "__main__":
    main()
