"""The agent sizes each stream's selector cache from what the memory retains, and says when it clears one."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from agent.config import AgentConfig, ConfigError
from agent.config_checks import selector_cache_problem
from agent.engine import Engine, merge_streams
from agent.metrics import AgentMetrics, AgentSample, selector_cache_samples
from agent.runtime import build_engine
from agent.selector_caches import SelectorCaches, state_bytes_per_row
from agent.watches import WatchBook, WatchLimits
from flexselect.adapters import VideoLLMAdapter
from flexselect.lite import PairedTokens, encode_pair

OLD_MAX_ROWS = 65_536  # the fixed row limit every agent ran with before the limit followed the retention


def agent_config(
    model_dir: Path, selector_dir: Path, *, retained: int, max_bytes: int | None = None
) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "model": {
                "name": str(model_dir),
                "scorer": "lite",
                "selector": str(selector_dir),
                "max_frames_per_group": 64,
                "selector_cache_max_bytes": max_bytes,
            },
            "memory": {"retention": {"max_tokens_per_stream": retained}},
        }
    )


def built(adapter: VideoLLMAdapter, config: AgentConfig) -> Engine:
    return build_engine(adapter, config, WatchBook([], WatchLimits()))


def caches(engine: Engine) -> SelectorCaches:
    assert engine.caches is not None
    return engine.caches


def frames_chunk(engine: Engine, start: int, frames: int) -> PairedTokens:
    """`frames` random 56x56 frames at 2 fps from frame `start`, encoded with the selector's rows."""
    assert engine.selector is not None
    pixels = (np.random.default_rng(start).random((frames, 56, 56, 3)) * 255).astype(np.uint8)
    times = 1_700_000_000.0 + (start + np.arange(frames)) / 2.0
    return encode_pair(
        engine.selector,
        engine.adapter,
        pixels,
        times,
        frame_offset=start,
        time_origin=1_700_000_000.0,
        fps=2.0,
    )


def test_the_row_limit_is_twice_the_memory_retention(adapter, model_dir, selector_dir):
    engine = built(adapter, agent_config(model_dir, selector_dir, retained=131_072))
    assert (caches(engine).max_rows, caches(engine).max_bytes) == (262_144, None)


def test_the_byte_budget_reaches_the_caches(adapter, model_dir, selector_dir):
    engine = built(adapter, agent_config(model_dir, selector_dir, retained=1024, max_bytes=1 << 30))
    assert caches(engine).max_bytes == 1 << 30


def test_a_stream_holding_more_than_the_old_row_limit_keeps_its_cache_across_ingests(
    adapter, model_dir, selector_dir
):
    engine = built(adapter, agent_config(model_dir, selector_dir, retained=131_072))
    store = caches(engine)
    encoded = frames_chunk(engine, 0, 2048)  # 4096 rows: 2 per frame
    first, _ = merge_streams([encoded] * 17)  # copies laid end to end, frames shifted: distinct rows
    assert isinstance(first, PairedTokens)
    store.ingest("cam", first)
    held = len(store.cache("cam"))
    assert held == len(first) > OLD_MAX_ROWS
    second = frames_chunk(engine, int(first.frame.max()) + 2, 8)  # a whole temporal step later
    store.ingest("cam", second)
    assert len(store.cache("cam")) == held + len(second)
    assert store.stats["cam"].cleared == 0


def test_a_clear_is_logged_naming_the_stream_rows_and_limit_and_exported(
    adapter, model_dir, selector_dir, caplog
):
    engine = built(adapter, agent_config(model_dir, selector_dir, retained=8))
    store = caches(engine)
    store.ingest("cam", frames_chunk(engine, 0, 8))  # 16 rows
    assert len(store.cache("cam")) == 16 == store.max_rows
    with caplog.at_level(logging.WARNING, logger="agent.selector_caches"):
        store.ingest("cam", frames_chunk(engine, 8, 8))
    assert len(store.cache("cam")) == 0 and store.stats["cam"].cleared == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"stream 'cam': selector cache cleared at ingest: 32 rows ({32 * store.row_bytes} bytes) would pass "
        "its limit of 16 rows (no byte limit); the next question rebuilds it from the retained rows"
    ]
    clears = exported(store)["flexselect_selector_cache_clears"]
    assert [(s.name, s.labels, s.value) for s in clears.samples] == [
        ("flexselect_selector_cache_clears_total", {"stream": "cam"}, 1.0)
    ]


def test_a_stream_this_agent_only_answers_about_exports_its_cache_rebuild(adapter, model_dir, selector_dir):
    engine = built(adapter, agent_config(model_dir, selector_dir, retained=64))
    store = caches(engine)
    store.ingest("cam", frames_chunk(engine, 0, 8))
    yard = frames_chunk(engine, 100, 8)  # retained in a shared memory, ingested by another agent
    store.scores("yard", yard, engine.adapter.prompt("what moved ?"))
    rebuilds = exported(store)["flexselect_selector_cache_rebuilds"]
    assert [(s.labels["stream"], s.value) for s in rebuilds.samples] == [("cam", 0.0), ("yard", 1.0)]


def exported(store: SelectorCaches) -> dict:
    """The metric families `/metrics` renders from `store`'s counters, as the web facade samples them."""
    sample = AgentSample(selector_caches=selector_cache_samples(store.stats))
    return {f.name: f for f in text_string_to_metric_families(AgentMetrics().render(sample).decode())}


def test_a_byte_budget_too_small_for_the_retention_fails_at_start_with_the_fix(
    adapter, model_dir, selector_dir
):
    config = agent_config(model_dir, selector_dir, retained=131_072, max_bytes=1 << 20)
    with pytest.raises(ConfigError) as failure:
        built(adapter, config)
    row = state_bytes_per_row(
        caches(built(adapter, agent_config(model_dir, selector_dir, retained=8))).selector
    )
    assert str(failure.value) == (
        f"model.selector_cache_max_bytes: 1048576 bytes cannot hold the 131072 rows "
        f"memory.retention.max_tokens_per_stream keeps per stream ({row} bytes of selector state per row: "
        f"at least {131_072 * row} bytes, {2 * 131_072 * row} to hold ingest between questions); raise it, "
        "unset it (no limit), or lower the retention"
    )


def test_a_byte_budget_of_exactly_the_retention_is_accepted():
    assert selector_cache_problem(131_072 * 96, 131_072, 96) is None
    assert selector_cache_problem(131_072 * 96 - 1, 131_072, 96) is not None
    assert selector_cache_problem(None, 131_072, 96) is None


def test_a_byte_budget_without_the_lite_scorer_is_refused_with_its_key_path():
    with pytest.raises(ValidationError) as failure:
        AgentConfig.model_validate({"model": {"selector_cache_max_bytes": 1 << 30}})
    assert [(e["loc"], e["msg"]) for e in failure.value.errors()] == [
        (
            ("model", "selector_cache_max_bytes"),
            "Value error, the selector cache is only used with model.scorer 'lite' (model.scorer is "
            "'reference'); set model.scorer: lite or remove model.selector_cache_max_bytes",
        )
    ]
