"""Prometheus metrics of one agent (its own registry, no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class AgentMetrics:
    """Every metric the agent exports; `render()` gives the text exposition format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Per stream (labels: stream)
        self.stream_fps = Gauge(
            "flexselect_stream_fps", "Sampled frames per second, recent", ["stream"], registry=r
        )
        self.stream_online = Gauge(
            "flexselect_stream_online", "1 while the stream delivers frames", ["stream"], registry=r
        )
        self.frames = Gauge("flexselect_stream_frames", "Frames ingested since start", ["stream"], registry=r)
        self.chunks = Counter(
            "flexselect_stream_chunks_total", "Chunks ingested into memory", ["stream"], registry=r
        )
        self.drops = Gauge(
            "flexselect_stream_drops", "Chunks dropped by the stream's queue", ["stream"], registry=r
        )
        self.reconnects = Gauge(
            "flexselect_stream_reconnects", "Reconnects of the source", ["stream"], registry=r
        )
        self.stalls = Gauge(
            "flexselect_stream_stalls", "Stalls detected by the watchdog", ["stream"], registry=r
        )
        self.memory_tokens = Gauge(
            "flexselect_memory_tokens", "Retained visual tokens", ["stream"], registry=r
        )
        self.memory_bytes = Gauge("flexselect_memory_bytes", "Retained payload bytes", ["stream"], registry=r)
        self.ingest_errors = Counter(
            "flexselect_ingest_errors_total", "Chunks that failed to encode or store", ["stream"], registry=r
        )
        # Questions
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
        # Queues and service state
        self.queue_depth = Gauge(
            "flexselect_queue_depth", "Jobs waiting for the model", ["queue"], registry=r
        )
        self.mqtt_connected = Gauge(
            "flexselect_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.memory_ready = Gauge(
            "flexselect_memory_ready", "1 while the memory backend is ready", registry=r
        )
        self.memory_pending = Gauge(
            "flexselect_memory_pending_chunks", "Chunks buffered while the memory backend is down", registry=r
        )
        self.memory_dropped = Gauge(
            "flexselect_memory_dropped_chunks",
            "Buffered chunks dropped while the backend was down",
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
