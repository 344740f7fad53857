"""Prometheus metrics of one agent (its own registry, no global state).

Two kinds, following the Prometheus conventions (counters end in `_total`, no precomputed rates):
    - event metrics, counted where the event happens (`AgentMetrics`: questions, stage latencies,
      watch events);
    - state metrics, read from the agent's components at scrape time by a custom collector over an
      `AgentSample` (streams' health counters, memory sizes, queue depths, link states), never copied
      into gauges between scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from agent.selector_caches import CacheStats

STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


# ---------------------------------------------------------------------------------------- scrape-time state
@dataclass(frozen=True)
class StreamSample:
    """One stream's counters and sizes as read at scrape time."""

    stream: str
    online: bool
    chunks: int
    frames: int
    drops: int
    reconnects: int
    stalls: int
    ingest_errors: int
    memory_tokens: int
    memory_bytes: int
    memory_appended: int
    memory_evicted: int


@dataclass(frozen=True)
class SelectorCacheSample:
    """One stream's selector-cache counters (`agent.selector_caches.CacheStats`, scorer lite): every
    stream this agent holds a cache for, the ones it only answers about included."""

    stream: str
    clears: int
    rebuilds: int
    fresh: int


def selector_cache_samples(stats: Mapping[str, CacheStats]) -> list[SelectorCacheSample]:
    """The samples of every stream in `stats` (`SelectorCaches.stats`), by stream name: streams this
    agent only answers about rebuild caches too, and an operator should see what that costs."""
    return [SelectorCacheSample(s, c.cleared, c.rebuilds, c.fresh) for s, c in sorted(stats.items())]


@dataclass(frozen=True)
class AgentSample:
    """Everything the state collector exports, read from the running agent for one scrape."""

    streams: list[StreamSample] = field(default_factory=list)
    selector_caches: list[SelectorCacheSample] = field(default_factory=list)
    queue_depth: dict[str, int] = field(default_factory=dict)
    ingest_lag_s: float = 0.0  # wait of the last ingest batch's oldest chunk (agent.admission)
    ingest_shed_factor: int = 1  # n > 1: streams keep 1 frame in n because the model is behind
    mqtt_connected: bool = False
    memory_ready: bool = False
    memory_pending_chunks: int = 0
    memory_dropped_chunks: int = 0
    pictures_stored: int = 0
    pictures_evicted: int = 0
    picture_errors: int = 0
    decode_graph_answers: int = 0  # `flexselect.decoding.StaticDecoder` counters (model.decode_graphs)
    decode_graph_captures: int = 0
    decode_graph_too_long: int = 0


def _counter(name: str, doc: str, labels: list[str] | None = None) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class StateCollector(Collector):
    """Yields the state metrics of one `AgentSample` (a fresh collector per scrape)."""

    def __init__(self, sample: AgentSample) -> None:
        self.sample = sample

    def collect(self) -> Iterator[Metric]:
        yield from self._streams()
        yield from self._selector_caches()
        s = self.sample
        queue = _gauge(
            "flexselect_queue_depth", "Jobs waiting, by queue (questions, ingest, inflight)", ["queue"]
        )
        for name, depth in sorted(s.queue_depth.items()):
            queue.add_metric([name], depth)
        yield queue
        yield GaugeMetricFamily(
            "flexselect_ingest_lag_seconds",
            "Wait of the last ingest batch's oldest chunk for the model",
            value=s.ingest_lag_s,
        )
        yield GaugeMetricFamily(
            "flexselect_ingest_shed_factor",
            "1 while ingest keeps up; n while streams keep 1 frame in n (model overloaded)",
            value=s.ingest_shed_factor,
        )
        yield GaugeMetricFamily(
            "flexselect_mqtt_connected", "1 while connected to the broker", value=int(s.mqtt_connected)
        )
        yield GaugeMetricFamily(
            "flexselect_memory_ready", "1 while the memory backend is ready", value=int(s.memory_ready)
        )
        yield GaugeMetricFamily(
            "flexselect_memory_pending_chunks",
            "Chunks buffered while the memory backend is down",
            value=s.memory_pending_chunks,
        )
        yield CounterMetricFamily(
            "flexselect_memory_dropped_chunks",
            "Buffered chunks dropped because the pending buffer was full",
            value=s.memory_dropped_chunks,
        )
        yield CounterMetricFamily(
            "flexselect_pictures_stored", "Evidence pictures stored", value=s.pictures_stored
        )
        yield CounterMetricFamily(
            "flexselect_pictures_evicted",
            "Evidence pictures dropped because their frame's tokens were evicted",
            value=s.pictures_evicted,
        )
        yield CounterMetricFamily(
            "flexselect_picture_errors", "Chunks whose pictures could not be stored", value=s.picture_errors
        )
        yield CounterMetricFamily(
            "flexselect_decode_graph_answers",
            "Answers decoded by CUDA graph replays (model.decode_graphs)",
            value=s.decode_graph_answers,
        )
        yield CounterMetricFamily(
            "flexselect_decode_graph_captures",
            "CUDA graphs captured for decoding (one per cache length in use)",
            value=s.decode_graph_captures,
        )
        yield CounterMetricFamily(
            "flexselect_decode_graph_too_long",
            "Answers decoded eagerly because they pass the static cache's longest length",
            value=s.decode_graph_too_long,
        )

    def _streams(self) -> Iterator[Metric]:
        labels = ["stream"]
        families: list[tuple[Metric, str]] = [
            (_gauge("flexselect_stream_online", "1 while the stream delivers frames", labels), "online"),
            (_counter("flexselect_stream_chunks", "Chunks ingested into memory", labels), "chunks"),
            (_counter("flexselect_stream_frames", "Sampled frames ingested", labels), "frames"),
            (_counter("flexselect_stream_drops", "Chunks dropped by the stream's queue", labels), "drops"),
            (_counter("flexselect_stream_reconnects", "Reconnects of the source", labels), "reconnects"),
            (_counter("flexselect_stream_stalls", "Stalls detected by the watchdog", labels), "stalls"),
            (
                _counter("flexselect_ingest_errors", "Chunks that failed to encode or store", labels),
                "ingest_errors",
            ),
            (_gauge("flexselect_memory_tokens", "Retained visual tokens", labels), "memory_tokens"),
            (_gauge("flexselect_memory_bytes", "Retained payload bytes", labels), "memory_bytes"),
            (
                _counter("flexselect_memory_appended_tokens", "Tokens ever appended", labels),
                "memory_appended",
            ),
            (
                _counter("flexselect_memory_evicted_tokens", "Tokens ever evicted", labels),
                "memory_evicted",
            ),
        ]
        for family, attr in families:
            for stream in self.sample.streams:
                family.add_metric([stream.stream], float(getattr(stream, attr)))  # type: ignore[attr-defined]
            yield family

    def _selector_caches(self) -> Iterator[Metric]:
        """Declared only where there is a cache (scorer lite), so no family stands empty."""
        if not self.sample.selector_caches:
            return
        labels = ["stream"]
        families: list[tuple[Metric, str]] = [
            (
                _counter(
                    "flexselect_selector_cache_clears",
                    "Selector caches cleared at ingest for passing their row or byte limit",
                    labels,
                ),
                "clears",
            ),
            (
                _counter(
                    "flexselect_selector_cache_rebuilds",
                    "Selector caches rebuilt from the retained rows at a question",
                    labels,
                ),
                "rebuilds",
            ),
            (
                _counter(
                    "flexselect_selector_cache_fresh_questions",
                    "Questions scored by fresh selector passes: the retained rows pass the byte limit",
                    labels,
                ),
                "fresh",
            ),
        ]
        for family, attr in families:
            for cache in self.sample.selector_caches:
                family.add_metric([cache.stream], float(getattr(cache, attr)))
            yield family


# ------------------------------------------------------------------------------------------- event metrics
class AgentMetrics:
    """The agent's event metrics; `render(sample)` adds the scrape-time state and gives the exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.questions = Counter(
            "flexselect_questions_total", "Questions by outcome (ok or error code)", ["outcome"], registry=r
        )
        self.question_seconds = Histogram(
            "flexselect_question_stage_seconds",
            "Question latency by stage (queue, read, encode, select, prefill, generate, total)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.watch_events = Counter(
            "flexselect_watch_events_total", "Watch events published", ["watch"], registry=r
        )

    def render(self, sample: AgentSample | None = None) -> bytes:
        """The Prometheus text exposition: event metrics, then the state read into `sample`."""
        text = generate_latest(self.registry)
        if sample is not None:
            state = CollectorRegistry(auto_describe=False)
            state.register(StateCollector(sample))
            text += generate_latest(state)
        return text
