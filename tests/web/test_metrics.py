"""The agent's metrics follow Prometheus conventions and are read from its parts at scrape time."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.web.conftest import RunningAgent

pytestmark = [pytest.mark.services, pytest.mark.slow]


def scrape(agent: RunningAgent) -> dict[str, object]:
    status, body = agent.get("/metrics")
    assert status == 200
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def value(families: dict[str, object], name: str, **labels: str) -> float:
    family = families[name]
    sample_name = f"{name}_total" if family.type == "counter" else name  # type: ignore[attr-defined]
    matches = [s.value for s in family.samples if s.name == sample_name and s.labels == labels]  # type: ignore[attr-defined]
    assert len(matches) == 1, (name, labels, family.samples)  # type: ignore[attr-defined]
    return matches[0]


def test_counters_end_in_total_no_rates_and_every_declared_metric_has_a_value(
    toy_agent: RunningAgent,
) -> None:
    _, body = toy_agent.get("/metrics")
    text = body.decode()
    for line in text.splitlines():
        if line.startswith("# TYPE") and line.endswith(" counter"):
            assert line.split()[2].endswith("_total"), line
    families = scrape(toy_agent)
    assert not [n for n in families if any(w in n for w in ("fps", "rate", "per_second"))]
    events = {"flexselect_questions", "flexselect_watch_events"}  # labelled by outcome / watch: none yet
    for family in families.values():
        if family.type in ("counter", "gauge") and family.name not in events:  # type: ignore[attr-defined]
            assert family.samples, f"{family.name} is declared but has no sample"  # type: ignore[attr-defined]
    truth = toy_agent.truth
    assert value(families, "flexselect_stream_frames", stream="cam") == truth.frame_count
    assert value(families, "flexselect_stream_chunks", stream="cam") == truth.frame_count / 4
    assert value(families, "flexselect_ingest_errors", stream="cam") == 0
    assert value(families, "flexselect_memory_pending_chunks") == 0
    assert value(families, "flexselect_memory_dropped_chunks") == 0
    assert value(families, "flexselect_stream_online", stream="cam") == 0  # the recording ended


def test_memory_sizes_are_read_at_scrape_time(toy_agent: RunningAgent) -> None:
    families = scrape(toy_agent)
    _, body = toy_agent.get("/api/v1/streams/cam")
    view = json.loads(body)
    assert value(families, "flexselect_memory_tokens", stream="cam") == view["memory_tokens"] > 0
    assert value(families, "flexselect_memory_appended_tokens", stream="cam") == view["memory_tokens"]
    assert value(families, "flexselect_pictures_stored") >= view["pictures"] > 0
