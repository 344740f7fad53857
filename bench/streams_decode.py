"""Benchmark of `streams` decoding on this machine.

1. Live-style ingest: sustained decode-and-sample throughput of 1080p H.264 at 25 fps sampled to
   1 fps, through the real `open_source` pipeline (PyAV thread, sampler, chunker, queue), with 1..N
   concurrent sources; reported as frames/s and as how many 25 fps streams run in real time.
2. One-shot answers: time to sample N frames uniformly from a one-hour recording (MP4 and MKV),
   per decoder installed here: pyav always, torchcodec if installed, and decord or decord2 if
   installed (measured for the record only; `streams` does not offer it).

Test media is generated once into --workdir (synthetic camera-like content, x264, no B-frames,
2 s GOP). Run: `.venv/bin/python bench/streams_decode.py [--json-out results.json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streams import StreamConfig, available_backends, open_source, probe, sample_uniform
from streams.sampling import uniform_indices

FPS = 25
GOP = 2 * FPS


# --- media ----------------------------------------------------------------------------------------


def camera_like_frames(n: int, width: int, height: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Frames with a slowly panning textured scene, a moving object and sensor noise (RGB uint8)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (height // 16 + 2, (width + 4 * n) // 16 + 2, 3), dtype=np.uint8)
    scene = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)[:height]
    scene = (scene.astype(np.int16) // 2 + rng.integers(0, 64, scene.shape, dtype=np.int16)).astype(np.uint8)
    noise = [rng.integers(-3, 4, (height, width, 1), dtype=np.int16) for _ in range(8)]
    size = height // 6
    for i in range(n):
        x = (2 * i) % (scene.shape[1] - width)
        frame = scene[:, x : x + width].astype(np.int16) + noise[i % len(noise)]
        top, left = (i * 3) % (height - size), (i * 7) % (width - size)
        frame[top : top + size, left : left + size] = (230, 40, 40)
        yield np.clip(frame, 0, 255).astype(np.uint8)


def encode(
    path: Path, frames: Iterable[np.ndarray], *, width: int, height: int, crf: int, preset: str
) -> Path:
    """Encode RGB frames as H.264 at 25 fps, 2 s GOP, no B-frames (as most cameras send)."""
    tmp = path.with_suffix(".part" + path.suffix)
    with av.open(str(tmp), "w", format=path.suffix.lstrip(".").replace("mkv", "matroska")) as out:
        stream = out.add_stream(
            "libx264", rate=FPS, options={"preset": preset, "crf": str(crf), "x264-params": "bframes=0"}
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = GOP
        stream.codec_context.time_base = Fraction(1, FPS)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    tmp.rename(path)
    return path


def repeat_remux(segment: Path, path: Path, copies: int) -> Path:
    """A long recording made of `copies` back-to-back copies of `segment` (packets copied, not re-encoded)."""
    tmp = path.with_suffix(".part" + path.suffix)
    with (
        av.open(str(segment)) as src,
        av.open(str(tmp), "w", format=path.suffix.lstrip(".").replace("mkv", "matroska")) as out,
    ):
        in_stream = src.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        packets = [p for p in src.demux(in_stream) if p.size]
        original = [(p.pts, p.dts) for p in packets]
        span = max(p.pts + (p.duration or 0) for p in packets)
        for copy in range(copies):
            for p, (pts, dts) in zip(packets, original, strict=True):
                # mux() rescales a packet in place, so restore its input time base every time.
                p.time_base = in_stream.time_base
                p.pts, p.dts = pts + copy * span, dts + copy * span
                p.stream = out_stream
                out.mux(p)
    tmp.rename(path)
    return path


def prepare_media(workdir: Path, *, live_seconds: int) -> dict[str, Path]:
    """Generate (or reuse) the 1080p clip and the one-hour recordings (MP4 and MKV)."""
    workdir.mkdir(parents=True, exist_ok=True)
    media = {
        "live_1080p": workdir / f"live_1080p_{live_seconds}s.mp4",
        "hour_mp4": workdir / "hour_640x360.mp4",
        "hour_mkv": workdir / "hour_640x360.mkv",
    }
    if not media["live_1080p"].exists():
        print(f"generating {media['live_1080p']} ...", flush=True)
        frames = camera_like_frames(live_seconds * FPS, 1920, 1080)
        encode(media["live_1080p"], frames, width=1920, height=1080, crf=26, preset="veryfast")
    segment = workdir / "minute_640x360.mp4"
    if not segment.exists():
        print(f"generating {segment} ...", flush=True)
        encode(
            segment,
            camera_like_frames(60 * FPS, 640, 360, seed=1),
            width=640,
            height=360,
            crf=26,
            preset="veryfast",
        )
    for key in ("hour_mp4", "hour_mkv"):
        if not media[key].exists():
            print(f"generating {media[key]} (60 copies of one minute) ...", flush=True)
            repeat_remux(segment, media[key], 60)
    return media


def describe(path: Path) -> str:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        seconds = float(s.duration * s.time_base) if s.duration and s.time_base else c.duration / 1e6
        mbps = path.stat().st_size * 8 / seconds / 1e6
        rate = float(s.average_rate or 0)
        return f"{s.width}x{s.height} {s.codec_context.name} {rate:g} fps, {seconds:.0f} s, {mbps:.1f} Mbit/s"


# --- 1. ingest throughput -------------------------------------------------------------------------


@dataclass
class IngestResult:
    mode: str
    sources: int
    frames_decoded: int
    frames_sampled: int
    wall_s: float
    cpu_s: float
    decode_fps: float  # all sources together, frames per wall second
    realtime_streams: float  # decode_fps / 25
    cpu_per_stream: float  # cores one 25 fps stream keeps busy (CPU seconds per media second)


async def ingest(path: Path, sources: int, config: StreamConfig, mode: str) -> IngestResult:
    """Run `sources` copies of the file through open_source as fast as they go (consumer keeps up)."""

    async def drain(i: int) -> tuple[int, int]:
        async with open_source(path, config, stream_id=f"bench-{i}") as source:
            async for _ in source:
                pass
            return source.stats.frames_decoded, source.stats.frames_sampled

    cpu0, wall0 = time.process_time(), time.perf_counter()
    counts = await asyncio.gather(*(drain(i) for i in range(sources)))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    decoded = sum(c[0] for c in counts)
    media_s = decoded / FPS if "keyframes" not in mode else sources * _duration(path)
    return IngestResult(
        mode=mode,
        sources=sources,
        frames_decoded=decoded,
        frames_sampled=sum(c[1] for c in counts),
        wall_s=round(wall, 2),
        cpu_s=round(cpu, 2),
        decode_fps=round(decoded / wall, 1),
        realtime_streams=round(media_s / wall, 2),
        cpu_per_stream=round(cpu / media_s, 3),
    )


def _duration(path: Path) -> float:
    with av.open(str(path)) as c:
        return c.duration / 1e6


def run_ingest(path: Path, max_sources: int, repeats: int) -> list[IngestResult]:
    """Each plan `repeats` times; keeps the median run by throughput (the machine may be shared)."""
    base = {"sample_fps": 1.0, "chunk_seconds": 4.0, "drop_policy": "wait"}
    plans = [("1 fps, 1 decoder thread", StreamConfig(**base), s) for s in range(1, max_sources + 1)]
    plans += [
        ("1 fps, FFmpeg auto threads", StreamConfig(**base, decode_threads=0), 1),
        ("1 fps, max_side 448", StreamConfig(**base, max_side=448), 1),
        ("keyframes only (0.5 fps)", StreamConfig(**base, keyframes_only=True), 1),
        ("keyframes only (0.5 fps)", StreamConfig(**base, keyframes_only=True), max_sources),
    ]
    results = []
    for mode, config, sources in plans:
        runs = sorted(
            (asyncio.run(ingest(path, sources, config, mode)) for _ in range(repeats)),
            key=lambda r: r.decode_fps,
        )
        result = runs[len(runs) // 2]
        print(
            f"  {mode:28s} sources={sources}: {result.decode_fps:7.1f} frames/s, "
            f"{result.realtime_streams:5.2f} x real time, {result.cpu_per_stream:.3f} cores per stream",
            flush=True,
        )
        results.append(result)
    return results


# --- 2. uniform sampling --------------------------------------------------------------------------


@dataclass
class SamplingResult:
    backend: str
    container: str
    n: int
    seconds_median: float
    seconds_all: list[float]
    correct: bool


def backend_label(name: str) -> str:
    """The backend with the distribution that provides it (decord vs decord2)."""
    if name != "decord":
        return name
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("decord2", "decord", "eva-decord"):
        try:
            return f"decord ({dist} {version(dist)})"
        except PackageNotFoundError:
            continue
    return name


def decord_times(path: Path, n: int) -> np.ndarray:
    """decord/decord2 `get_batch` on the same uniform indices; measured here only, not offered by streams."""
    import decord

    indices = uniform_indices(probe(path).frame_count, n).tolist()
    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=0)
    reader.get_batch(indices).asnumpy()
    return np.asarray(reader.get_frame_timestamp(indices))[:, 0]


def sampling_backends() -> list[str]:
    """What `streams` offers and is installed here, plus decord when installed (for the record)."""
    extra = ["decord"] if importlib.util.find_spec("decord") is not None else []
    return [*available_backends(), *extra]


def run_sampling(media: dict[str, Path], counts: list[int], repeats: int) -> list[SamplingResult]:
    """Backends take turns within each repeat, so a load spike on a shared machine hits them alike."""
    backends = sampling_backends()
    results = []
    for container in ("hour_mp4", "hour_mkv"):
        for n in counts:
            times: dict[str, list[float]] = {b: [] for b in backends}
            correct = dict.fromkeys(backends, True)
            failed: set[str] = set()
            for _ in range(repeats):
                for backend in (b for b in backends if b not in failed):
                    seconds, ok = time_sampling(media[container], n, backend)
                    if seconds is None:
                        failed.add(backend)
                        continue
                    times[backend].append(seconds)
                    correct[backend] = correct[backend] and ok
            for backend in backends:
                if not times[backend]:
                    continue
                result = SamplingResult(
                    backend_label(backend),
                    container.split("_")[1],
                    n,
                    round(statistics.median(times[backend]), 3),
                    [round(t, 3) for t in times[backend]],
                    correct[backend],
                )
                flag = "" if result.correct else "  (frames off target!)"
                label = f"{result.backend:22s} {result.container} n={n:3d}"
                print(f"  {label}: {result.seconds_median:6.3f} s{flag}", flush=True)
                results.append(result)
    return results


def time_sampling(path: Path, n: int, backend: str) -> tuple[float | None, bool]:
    """Seconds for one cold `sample_uniform` call, and whether every frame sits at its target time."""
    started = time.perf_counter()
    try:
        times = (
            decord_times(path, n) if backend == "decord" else sample_uniform(path, n, backend=backend).times
        )
    except Exception as exc:  # report and go on: a backend failing is a result too
        print(f"  {backend} {path.name} n={n}: failed: {type(exc).__name__}: {exc}", flush=True)
        return None, False
    seconds = time.perf_counter() - started
    # Uniform targets are segment centres; a frame must be the one shown at its target.
    targets = (np.arange(n) + 0.5) * 3600 / n
    return seconds, bool(np.all(np.abs(times - targets) <= 1.0 / FPS + 1e-6))


# --- main -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/flexselect-bench-streams"))
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--live-seconds", type=int, default=20, help="length of the 1080p clip")
    parser.add_argument("--max-sources", type=int, default=3, help="most concurrent 1080p sources")
    parser.add_argument("--counts", default="8,32,64", help="uniform sample sizes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-sampling", action="store_true")
    args = parser.parse_args()

    media = prepare_media(args.workdir, live_seconds=args.live_seconds)
    cpu = platform.processor() or platform.machine()
    machine = f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"\nmachine: {machine}; av {av.__version__} (FFmpeg {av.ffmpeg_version_info})")
    for key, path in media.items():
        print(f"media {key}: {describe(path)}")

    report: dict[str, object] = {
        "machine": machine,
        "av": av.__version__,
        "media": {k: describe(p) for k, p in media.items()},
    }
    if not args.skip_ingest:
        print(
            "\n1. ingest: 1080p H.264 25 fps -> sampled RGB chunks, through open_source (consumer keeps up)"
        )
        ingest_results = run_ingest(media["live_1080p"], args.max_sources, args.repeats)
        report["ingest"] = [asdict(r) for r in ingest_results]
        single = ingest_results[0]
        pair = next((r for r in ingest_results if r.sources == 2 and r.mode == single.mode), single)
        cores = os.cpu_count() or 1
        print(
            f"  => 1080p25 sampled to 1 fps costs {single.cpu_per_stream:.3f} cores per stream: "
            f"{cores} cores sustain about {int(cores / single.cpu_per_stream)} such streams in real time "
            f"by CPU time; {pair.sources} concurrent sources ran at {pair.realtime_streams:.1f} x real time"
        )
    if not args.skip_sampling:
        counts = [int(c) for c in args.counts.split(",")]
        print(
            f"\n2. uniform sampling of n frames from a one-hour 640x360 recording (median of {args.repeats}, "
            "cold open each time)"
        )
        report["sampling"] = [asdict(r) for r in run_sampling(media, counts, args.repeats)]
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
