"""`model.decode_graphs`: answers decode by CUDA graph replays, on a CUDA device only (refused otherwise),
and the decoder's counters are exported."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from agent.config import AgentConfig, ConfigError, ModelSection
from agent.metrics import AgentMetrics, AgentSample
from agent.runtime import build_engine
from agent.watches import WatchBook, WatchLimits
from flexselect.adapters import VideoLLMAdapter


def test_decode_graphs_are_off_by_default():
    assert ModelSection().decode_graphs is False


def test_decode_graphs_with_a_cpu_device_fail_validation_naming_both_keys():
    with pytest.raises(
        ValidationError, match=r"model.decode_graphs needs a CUDA device \(model.device is 'cpu'\)"
    ):
        ModelSection(device="cpu", decode_graphs=True)


def test_decode_graphs_with_a_cuda_device_validate():
    assert ModelSection(device="cuda:1", decode_graphs=True).decode_graphs is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="the model loads on the CPU only without CUDA")
def test_an_engine_with_decode_graphs_over_a_model_on_the_cpu_is_refused_at_start(
    adapter: VideoLLMAdapter, model_dir: Path
):
    config = AgentConfig.model_validate({"model": {"name": str(model_dir), "decode_graphs": True}})
    refused = r"model\.decode_graphs: CUDA graphs for decoding need a CUDA device"
    with pytest.raises(ConfigError, match=refused):
        build_engine(adapter, config, WatchBook([], WatchLimits()))
    assert adapter.decoder is None


def test_an_engine_without_decode_graphs_decodes_eagerly(adapter: VideoLLMAdapter, model_dir: Path):
    config = AgentConfig.model_validate({"model": {"name": str(model_dir)}})
    build_engine(adapter, config, WatchBook([], WatchLimits()))
    assert adapter.decoder is None


def test_the_decoder_counters_are_exported_as_metrics():
    sample = AgentSample(decode_graph_answers=7, decode_graph_captures=1, decode_graph_too_long=2)
    families = {f.name: f for f in text_string_to_metric_families(AgentMetrics().render(sample).decode())}
    exported = {
        name: [(s.name, s.value) for s in families[name].samples]
        for name in ("flexselect_decode_graph_answers", "flexselect_decode_graph_captures")
    }
    assert exported == {
        "flexselect_decode_graph_answers": [("flexselect_decode_graph_answers_total", 7.0)],
        "flexselect_decode_graph_captures": [("flexselect_decode_graph_captures_total", 1.0)],
    }
    too_long = families["flexselect_decode_graph_too_long"].samples
    assert [(s.name, s.value) for s in too_long] == [("flexselect_decode_graph_too_long_total", 2.0)]
