"""Cluster scaling: questions per second and streams served by 1, 2 and 3 agent processes, in one run.

    python bench/cluster_scaling.py [--agents 3] [--streams 6] [--capacity 2] [--seconds 20]
                                    [--redis-url redis://127.0.0.1:6379/0] [--redis-cluster]
                                    [--mqtt-host 127.0.0.1] [--mqtt-port 1883] [--out bench/results]

Starts `--agents` real agent processes (the tiny random Qwen2.5-VL checkpoint, CPU) that share `--streams`
real-time recordings through Redis leases (`--capacity` streams each) and take questions by claiming them
in Redis (every agent receives each question). Each phase waits until the streams are settled on the
live agents, then keeps 2 x agents questions in flight for `--seconds` (each about a random stream,
owned by any agent or none: every agent answers from the shared memory) and counts answers. Then one
agent is stopped with SIGTERM (its streams are handed over) and the next phase runs with one agent fewer.
Rows are printed from 1 agent up. On a shared 2-core CPU the question rate cannot grow past the cores;
only the shape means anything.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from agent.cluster.config import ClusterConfig
from agent.cluster.status import read_status
from agent.memory.redis_scripts import KeyLayout
from bench.cluster_agents import AgentProcess, Asker, agent_yaml
from bench.report import table, write_json

QUESTION = "what color was the square ?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=3)
    p.add_argument("--streams", type=int, default=6)
    p.add_argument("--capacity", type=int, default=2)
    p.add_argument("--seconds", type=float, default=20.0, help="load per phase")
    p.add_argument("--lease", type=float, default=2.0)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--redis-cluster", action="store_true", help="the URL names a Redis Cluster node")
    p.add_argument("--mqtt-host", default="127.0.0.1")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    return p.parse_args(argv)


def fixtures(directory: Path) -> tuple[Path, Path]:
    """The tiny checkpoint and a 10-minute 56x56 recording (played at real time by every stream)."""
    from flexselect.tiny import save_tiny
    from streams.synth import WorldConfig, generate_world, write_world

    model = save_tiny("qwen2_5_vl", directory / "tiny")
    video = directory / "world.mp4"
    write_world(
        generate_world(WorldConfig(seconds=600, fps=1, width=56, height=56, needles=4, seed=1, cell=28)),
        video,
    )
    return model, video


async def settle(
    client: Any, keys: KeyLayout, agents: int, streams: int, capacity: int, timeout: float
) -> int:
    """Wait until min(streams, agents x capacity) streams are owned by live agents; returns that count."""
    config = ClusterConfig(enabled=True, agent_id="bench")
    want = min(streams, agents * capacity)
    deadline = time.monotonic() + timeout
    while True:
        status = await read_status(client, keys, config)
        alive = [a for a in status.agents if a.alive]
        served = sum(len(a.streams) for a in alive)
        if len(alive) == agents and served == want:
            return served
        if time.monotonic() > deadline:
            raise TimeoutError(f"not settled on {agents} agents in {timeout:g} s:\n{status.table()}")
        await asyncio.sleep(0.2)


async def load(asker: Asker, streams: list[str], inflight: int, seconds: float) -> dict[str, Any]:
    """Keep `inflight` questions outstanding for `seconds`; answers per second and latencies."""
    ok: list[float] = []
    reads: list[float] = []
    errors: dict[str, int] = {}
    stop = time.monotonic() + seconds

    async def one_lane() -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            reply = await asker.ask(QUESTION, timeout=120, streams=[random.choice(streams)])
            if reply.get("ok"):
                ok.append(time.perf_counter() - started)
                reads.append(reply["timings_ms"].get("read", 0.0))
            else:
                code = reply["error"]["code"]
                errors[code] = errors.get(code, 0) + 1

    began = time.monotonic()
    await asyncio.gather(*(one_lane() for _ in range(inflight)))
    elapsed = time.monotonic() - began
    return {
        "questions_per_s": len(ok) / elapsed,
        "answered": len(ok),
        "errors": errors,
        "p50_ms": statistics.median(ok) * 1e3 if ok else None,
        "p95_ms": sorted(ok)[int(0.95 * (len(ok) - 1))] * 1e3 if ok else None,
        "read_p50_ms": statistics.median(reads) if reads else None,
    }


async def run(args: argparse.Namespace, directory: Path) -> tuple[list[dict[str, Any]], list[str]]:
    model, video = fixtures(directory)
    key_prefix = f"bench-{uuid.uuid4().hex[:8]}"
    mqtt_prefix = f"bench-{uuid.uuid4().hex[:8]}"
    source = {"sample_fps": 1, "chunk_seconds": 2, "realtime": True}
    names = [f"cam{i}" for i in range(args.streams)]
    streams = [{"id": s, "uri": str(video), "source": source} for s in names]
    agents = [
        AgentProcess(
            directory,
            agent_yaml(
                agent_id=f"bench{i}", model=str(model), streams=streams, redis_url=args.redis_url,
                redis_cluster=args.redis_cluster, key_prefix=key_prefix, mqtt_host=args.mqtt_host,
                mqtt_port=args.mqtt_port, mqtt_prefix=mqtt_prefix, capacity=args.capacity, lease_s=args.lease,
                model_extra={"budget": 16, "layer": 2, "max_new_tokens": 3},
            ),
        )
        for i in range(args.agents)
    ]  # fmt: skip
    client = (aioredis.RedisCluster if args.redis_cluster else aioredis.Redis).from_url(args.redis_url)
    keys = KeyLayout(key_prefix, cluster=args.redis_cluster)
    rows: list[dict[str, Any]] = []
    hung: list[str] = []
    try:
        for agent in agents:
            agent.start()
        async with Asker(args.mqtt_host, args.mqtt_port, mqtt_prefix) as asker:
            for live in range(args.agents, 0, -1):
                served = await settle(client, keys, live, args.streams, args.capacity, timeout=300)
                await asyncio.sleep(2 * 2)  # two chunks into the memory of newly claimed streams
                result = await load(asker, names, 2 * live, args.seconds)
                rows.append({"agents": live, "streams_served": served, **result})
                print(f"{live} agents: {result['questions_per_s']:.2f} q/s, {served} streams", flush=True)
                if live > 1:
                    stopping = agents[live - 1]
                    stopping.signal(signal.SIGTERM)
                    try:
                        await asyncio.to_thread(stopping.wait, 60)
                    except subprocess.TimeoutExpired:
                        # The handover is done (the next phase checks it); the exit hung: record where.
                        stopping.signal(signal.SIGABRT)  # faulthandler dumps its threads into its log
                        await asyncio.to_thread(stopping.wait, 10)
                        hung.append(stopping.id)
                        print(f"warning: {stopping.id} did not exit within 60 s of SIGTERM:\n"
                              f"{stopping.log()[-8000:]}", file=sys.stderr)  # fmt: skip
    except BaseException:
        for agent in agents:
            print(f"---- {agent.id}\n{agent.log()[-3000:]}", file=sys.stderr)
        raise
    finally:
        for agent in agents:
            agent.stop()
        async for key in client.scan_iter(match=f"{key_prefix}*"):
            await client.delete(key)
        await client.aclose()
    return sorted(rows, key=lambda r: r["agents"]), hung


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows, hung = asyncio.run(run(args, Path(tmp)))
    columns = ["agents", "streams_served", "questions_per_s", "answered", "p50_ms", "p95_ms", "read_p50_ms"]
    print(table(rows, columns))
    base = rows[0]["questions_per_s"] or float("nan")
    print(
        "questions/s relative to 1 agent: " + ", ".join(f"{r['questions_per_s'] / base:.2f}x" for r in rows)
    )
    print("one answer path: the taking agent reads the shared Redis memory (read_p50_ms), owner or not")
    if hung:
        print(f"SIGTERM: {hung} handed over but did not exit within 60 s (threads on stderr)")
    kind = "cluster" if args.redis_cluster else "standalone"
    write_json(
        args.out / f"cluster_scaling_{kind}.json",
        {"settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows, "sigterm_exit_hung": hung},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
