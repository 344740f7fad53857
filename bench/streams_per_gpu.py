"""Streams per GPU: the largest load of 1 fps streams the agent sustains while answering questions.

    python bench/streams_per_gpu.py [--model tiny|qwen2.5-vl-7b] [--streams 16,32,64] [--seconds 20]
                                    [--question-rate 1.0] [--long-media-hours 2] [--time-limit 170]
                                    [--out bench/results]

Three phases, each printed (and written to the JSON) as soon as it ends, so a run cut short by a timeout
still leaves its tables:

1. Throughput: frames/s of the vision tower alone (transformers' stock per-window sdpa against the
   batched call per layer, `flexselect.vision_attention`) and of whole ingest (`Engine.encode_batch`:
   vision + ingest scoring of the standing prompt, plus the memory append) for batches of 4-frame chunks.
2. Load search: K synthetic streams deliver a chunk (448x448 frames for the 7B shapes) every
   `chunk_seconds` of wall time, as cameras at `fps` would; the agent's worker encodes the waiting chunks
   of all streams together and the memory keeps them, while one question per `1/question_rate` s is
   answered over a random stream. A load is sustained when the 95th percentile of chunk lag (done - due)
   stays under one chunk period and no backlog is left. Without `--streams`, the search starts from the
   load the measured ingest rate predicts, then steps up or halves until it brackets the largest
   sustained load, within the time limit.
3. Memory: the largest sustained load (capped so each stream gets at least 6 minutes) runs unpaced for
   `--long-media-hours` of media time in total over its streams (each stream's budget fills after two
   minutes of media), sampling GPU and host memory,
   which must stay flat once the budgets are full. It stops at the time limit and says how far it got.

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
from agent.engine import ChunkInput, Engine, PreparedChunk
from agent.memory import MemoryConfig, RetentionConfig, open_memory
from agent.worker import ModelWorker, QueueFull
from bench.answer_latency import build, percentile
from bench.report import environment, plot, table, write_json
from flexselect.timing import synced_now

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
    max_batch_chunks: int = 32,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Drive `streams` producers and a question loop for `seconds` (media seconds when unpaced); producers
    stop early at the monotonic `deadline`, so a load past capacity cannot overrun the run's time limit."""
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
    media_s = [0.0]
    cut = [False]  # a producer stopped at the deadline
    ttfts: list[float] = []
    refused = 0
    start = time.monotonic()
    chunks = int(seconds / chunk_seconds)
    async with ModelWorker(
        engine,
        question_slots=4,
        chunk_slots=streams * 2,
        max_batch_chunks=max_batch_chunks,
        max_consecutive=2,
    ) as worker:

        async def producer(k: int) -> None:
            for i in range(chunks):
                due = start + (i + 1) * chunk_seconds
                if paced:
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                if deadline is not None and time.monotonic() > deadline:
                    cut[0] = True
                    return
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
                media_s[0] += chunk_seconds

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
                await asyncio.sleep(2.0)

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
        "sustained": lag95 < period and not cut[0],
        "cut_short": cut[0],
        "lag_p50_s": statistics.median(lags) if lags else None,
        "lag_p95_s": lag95,
        "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
        "ttft_p95_s": percentile(ttfts, 0.95) if ttfts else None,
        "questions": len(ttfts),
        "refused": refused,
        "media_s": media_s[0],
        "wall_s": time.monotonic() - start,
        "gpu_mib": gpu_mib(),
        "rss_mib": rss_mib(),
    }


def chunks_for(n: int, frames: int, side: int, fps: float) -> list[ChunkInput]:
    rng = np.random.default_rng(1)
    return [
        ChunkInput(
            f"s{k}",
            rng.integers(0, 256, (frames, side, side, 3), dtype=np.uint8),
            np.arange(frames) / fps,
            frame_offset=0,
            time_origin=0.0,
            fps=fps,
        )
        for k in range(n)
    ]


async def timed_ingest(engine: Engine, prepared: list[PreparedChunk], repeats: int) -> float:
    """Seconds for `repeats` whole-ingest batches: encode, score and append to an in-process memory."""
    memory = open_memory(MemoryConfig())
    await memory.connect()
    engine.encode_batch(prepared)  # warm-up
    t0 = synced_now()
    for _ in range(repeats):
        for encoded in engine.encode_batch(prepared):
            await memory.append(encoded.stream_id, encoded.tokens, encoded.attention)
    elapsed = synced_now() - t0
    await memory.close()
    return elapsed


def throughput(engine: Engine, *, batches: list[int], frames: int, side: int, fps: float, repeats: int):
    """Frames/s of the vision tower (stock and batched attention) and of whole ingest per batch size."""
    adapter = engine.adapter
    vision = adapter.config.vision_config
    batched_name = vision._attn_implementation
    rows = []
    for n in batches:
        prepared = [engine.prepare(c) for c in chunks_for(n, frames, side, fps)]
        row: dict[str, Any] = {"chunks": n, "frames": n * frames}
        for label, name in (("vision_stock_fps", "sdpa"), ("vision_batched_fps", batched_name)):
            vision._attn_implementation = name
            adapter.encode_prepared([p.clip for p in prepared])  # warm-up
            t0 = synced_now()
            for _ in range(repeats):
                adapter.encode_prepared([p.clip for p in prepared])
            row[label] = n * frames * repeats / (synced_now() - t0)
        vision._attn_implementation = batched_name
        row["ingest_fps"] = n * frames * repeats / asyncio.run(timed_ingest(engine, prepared, repeats))
        one = [engine.prepare(c) for c in chunks_for(1, frames, side, fps)]
        t0 = synced_now()
        for _ in range(repeats):
            engine.encode_batch(one)
        row["ingest_one_chunk_fps"] = frames * repeats / (synced_now() - t0)
        row["vision_speedup"] = row["vision_batched_fps"] / row["vision_stock_fps"]
        rows.append(row)
        print(table([row], list(row)), flush=True)
    return rows


def next_load(tried: dict[int, bool], first: int, ceiling: int) -> int | None:
    """The next load of the search: up by half while sustained, then bisect between the best sustained
    and the smallest unsustained load (None when bracketed to within 12% or out of range)."""
    if not tried:
        return first
    good = [k for k, ok in tried.items() if ok]
    bad = [k for k, ok in tried.items() if not ok]
    if not bad:
        step = max(good) + max(1, max(good) // 2)
        return step if step <= ceiling and step not in tried else None
    low, high = max(good, default=0), min(bad)
    if high - low <= max(1, high // 8):
        return None
    mid = (low + high) // 2 if low else max(1, high // 2)
    return mid if mid not in tried and mid > 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("tiny", "qwen2.5-vl-7b"), default="tiny")
    parser.add_argument("--streams", default=None, help="loads to try instead of the search")
    parser.add_argument("--seconds", type=float, default=None, help="wall seconds per load (20 GPU, 8 CPU)")
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--chunk-seconds", type=float, default=4.0)
    parser.add_argument("--question-rate", type=float, default=1.0)
    parser.add_argument("--max-batch-chunks", type=int, default=32, help="chunks per ingest batch")
    parser.add_argument("--max-loads", type=int, default=None, help="loads the search tries (4 GPU, 2 CPU)")
    parser.add_argument(
        "--long-media-hours", type=float, default=None, help="media hours in the memory run (2 GPU, 0 CPU)"
    )
    parser.add_argument("--time-limit", type=float, default=170.0, help="wall seconds for the whole run")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    began = time.monotonic()
    deadline = began + args.time_limit
    torch.set_grad_enabled(False)
    adapter, per_frame = build(args.model)
    big = args.model != "tiny"
    side = 448 if big else 112
    seconds = args.seconds or (20.0 if big else 8.0)
    long_hours = args.long_media_hours if args.long_media_hours is not None else (2.0 if big else 0.0)
    engine = Engine(
        adapter,
        ModelSection(name=args.model, budget=32 * per_frame),
        standing_prompts=["describe what happens in the video"],
    )
    frames = max(2, round(args.fps * args.chunk_seconds))
    budget_tokens = int(120 * args.fps * per_frame)  # two minutes of tokens per stream
    out = args.out / f"streams_per_gpu_{args.model}.json"
    payload: dict[str, Any] = {
        "fps": args.fps,
        "side": side,
        "chunk_frames": frames,
        "question_rate": args.question_rate,
        "vision_attention": adapter.config.vision_config._attn_implementation,
    }
    print(
        f"streams per device, {args.model}, {args.fps} fps, {side}x{side}, {frames}-frame chunks, "
        f"{args.question_rate} questions/s; {environment()['device']}",
        flush=True,
    )

    print("\n1. throughput (frames/s)", flush=True)
    payload["throughput"] = throughput(
        engine, batches=[1, 16] if big else [1, 4], frames=frames, side=side, fps=args.fps,
        repeats=3 if big else 1,
    )  # fmt: skip
    write_json(out, payload)
    ingest_fps = max(r["ingest_fps"] for r in payload["throughput"])
    predicted = max(1, int(0.8 * ingest_fps / args.fps))
    payload["predicted_streams"] = predicted

    columns = ["streams", "sustained", "lag_p50_s", "lag_p95_s", "ttft_p50_s", "ttft_p95_s", "questions",
               "refused", "gpu_mib", "rss_mib"]  # fmt: skip
    print(f"\n2. load search (whole ingest predicts about {predicted} streams)", flush=True)
    rows: list[dict[str, Any]] = []
    payload["rows"] = rows
    fixed = [int(v) for v in args.streams.split(",")] if args.streams else None
    max_loads = args.max_loads or (4 if big else 2)
    tried: dict[int, bool] = {}
    while True:
        if fixed is not None:
            load = fixed[len(rows)] if len(rows) < len(fixed) else None
        else:
            load = next_load(tried, predicted, ceiling=4 * predicted) if len(rows) < max_loads else None
        if load is None or time.monotonic() + seconds + 10 > deadline:
            break
        row = asyncio.run(
            run_load(
                engine, load, seconds=seconds, fps=args.fps, chunk_seconds=args.chunk_seconds, side=side,
                question_rate=args.question_rate, budget_tokens=budget_tokens,
                max_batch_chunks=args.max_batch_chunks, deadline=deadline - 20,
            )
        )  # fmt: skip
        rows.append(row)
        tried[load] = bool(row["sustained"])
        print(table([row], columns), flush=True)
        write_json(out, payload)
    sustained = [r for r in rows if r["sustained"]]
    best = max(sustained, key=lambda r: r["streams"]) if sustained else None
    payload["max_sustained_streams"] = best["streams"] if best else 0
    print("\nloads tried:", flush=True)
    print(table(sorted(rows, key=lambda r: r["streams"]), columns), flush=True)
    print(f"largest sustained load: {payload['max_sustained_streams']} streams", flush=True)
    write_json(out, payload)

    if long_hours > 0 and time.monotonic() + 15 < deadline:
        load = best["streams"] if best else max(1, predicted // 2)
        # every stream needs 3x its budget's fill time (120 s of media), so two thirds of the run is steady
        load = max(1, min(load, int(long_hours * 3600 / 360)))
        media_per_stream = long_hours * 3600 / load
        print(
            f"\n3. memory: {load} streams unpaced, {long_hours} h of media in total "
            f"({media_per_stream / 60:.1f} min each), until {deadline - time.monotonic():.0f} s from now",
            flush=True,
        )
        samples: list[dict[str, float]] = []
        long_row = asyncio.run(
            run_load(
                engine, load, seconds=media_per_stream, fps=args.fps, chunk_seconds=args.chunk_seconds,
                side=side, question_rate=args.question_rate, budget_tokens=budget_tokens, paced=False,
                samples=samples, max_batch_chunks=args.max_batch_chunks, deadline=deadline - 5,
            )
        )  # fmt: skip
        covered = long_row["media_s"] / 3600
        full_after = 120.0 * load / 3600  # media hours until every stream's budget is full
        full_at = long_row["wall_s"] * min(1.0, full_after / max(covered, 1e-9))  # wall s, roughly
        steady = [s for s in samples if s["t"] >= full_at]
        growth = {
            key: steady[-1][key] - steady[0][key] if len(steady) > 1 else None
            for key in ("gpu_mib", "rss_mib")
        }
        payload["long_run"] = {
            "streams": load, "media_hours_planned": long_hours, "media_hours_covered": covered,
            "wall_s": long_row["wall_s"], "samples": samples, "growth_after_full_mib": growth,
            "ingest_fps": covered * 3600 * args.fps / max(long_row["wall_s"], 1e-9),
        }  # fmt: skip
        print(
            f"covered {covered:.2f} of {long_hours} h of media in {long_row['wall_s']:.0f} s; "
            f"growth once the budgets were full: GPU {growth['gpu_mib']} MiB, host {growth['rss_mib']} MiB",
            flush=True,
        )
        marks = [samples[int(f * (len(samples) - 1))] for f in (0.1, 0.5, 1.0)] if samples else []
        print(table(marks, ["t", "gpu_mib", "rss_mib"]), flush=True)
        write_json(out, payload)
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
    print(f"done in {time.monotonic() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
