"""The agent with `model.scorer: lite`: FlexSelect-Lite scores ingest and answers over remembered tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch

from agent.config import ConfigError, ModelSection
from agent.engine import ChunkInput, Engine, merge_streams
from agent.memory import MemoryConfig, open_memory
from flexselect.adapters import VideoLLMAdapter, load_adapter
from flexselect.lite import LiteScorer, PairedTokens, SelectorError
from flexselect.pipeline import evidence_spans
from flexselect.ranking import score_sequence
from tests.agent.service_helpers import agent_config, ask, client, running, wait_for_memory

QUESTION = "what color was the square ?"
STANDING = ["describe what happens in the video", "is there a square ?"]


@pytest.fixture
def engine(adapter: VideoLLMAdapter, model_dir: Path, selector_dir: Path) -> Engine:
    config = ModelSection(
        name=str(model_dir), scorer="lite", selector=str(selector_dir), budget=8, max_new_tokens=3
    )
    return Engine(adapter, config, standing_prompts=STANDING)


def chunk(start: int, frames: int = 4) -> ChunkInput:
    """`frames` random 56x56 frames at 2 fps starting at frame `start` of stream "cam"."""
    pixels = (np.random.default_rng(start).random((frames, 56, 56, 3)) * 255).astype(np.uint8)
    times = 1_700_000_000.0 + (start + np.arange(frames)) / 2.0
    return ChunkInput("cam", pixels, times, frame_offset=start, time_origin=1_700_000_000.0, fps=2.0)


def test_encoded_chunks_carry_selector_embeddings_on_the_cpu_and_lite_ingest_attention(engine):
    encoded = engine.encode(chunk(0))
    assert isinstance(encoded.tokens, PairedTokens) and encoded.tokens.lite is not None
    assert encoded.tokens.lite.device.type == "cpu" and encoded.tokens.embeds.device.type == "cpu"
    assert tuple(encoded.tokens.lite.shape) == (len(encoded.tokens), 32)  # the tiny decoder's width
    scorer = LiteScorer(engine.selector)
    per_prompt = [scorer.score(engine.adapter.prompt(p), encoded.tokens) for p in STANDING]
    assert torch.equal(encoded.attention, torch.stack(per_prompt).max(dim=0).values)


async def test_answers_select_with_the_selector_over_the_tokens_read_from_memory(engine):
    async with open_memory(MemoryConfig()) as memory:
        for start in (0, 4, 8, 12):
            encoded = engine.encode(chunk(start))
            await memory.append("cam", encoded.tokens, encoded.attention)
        retained = (await memory.read(["cam"]))["cam"].tokens
    assert isinstance(retained, PairedTokens) and len(retained) == 32
    answer = engine.answer(QUESTION, [("cam", retained)], None)
    prompt = engine.adapter.prompt(QUESTION)
    scores = LiteScorer(engine.selector).score(prompt, retained)
    keep = torch.topk(scores, 8).indices.sort().values
    assert (answer.retained_tokens, answer.used_tokens) == (32, 8)
    assert {e.stream_id for e in answer.evidence} == {"cam"}
    # The selector chooses the kept tokens; the reference layer's attention over the answer's own sequence
    # ranks them (issue 20: evidence ordered by how much the question attended to it).
    merged, _ = merge_streams([retained])
    layer = engine.adapter.default_layer()
    ranked = score_sequence(
        engine.adapter,
        engine.adapter.build_sequence(prompt, merged, keep),
        prompt.query_len,
        layer=layer,
        aggregation=engine.adapter.default_aggregation(),
    ).cpu()
    assert [(e.span.start, e.span.end, e.span.tokens) for e in answer.evidence] == [
        (s.start, s.end, s.tokens) for s in evidence_spans(retained.select(keep), ranked, min_share=0.1)
    ]
    assert [e.span.score for e in answer.evidence] == pytest.approx(
        [s.score for s in evidence_spans(retained.select(keep), ranked, min_share=0.1)], rel=1e-4
    )


def test_a_lite_engine_refuses_tokens_stored_without_selector_embeddings(engine):
    paired = engine.encode(chunk(0)).tokens
    assert isinstance(paired, PairedTokens)
    with pytest.raises(SelectorError, match=r"streams \['cam'\] were stored without selector embeddings"):
        engine.answer(QUESTION, [("cam", paired.base())], 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_selector_loads_in_the_models_dtype_on_its_device(model_dir, selector_dir, dtype):
    adapter = load_adapter(model_dir, dtype=dtype)
    config = ModelSection(name=str(model_dir), scorer="lite", selector=str(selector_dir))
    engine = Engine(adapter, config, standing_prompts=STANDING)
    assert engine.selector is not None
    assert (engine.selector.dtype, engine.selector.device) == (dtype, adapter.device)


def test_a_missing_selector_directory_fails_when_the_engine_starts(adapter, model_dir, tmp_path):
    config = ModelSection(name=str(model_dir), scorer="lite", selector=str(tmp_path / "nowhere"))
    with pytest.raises(
        ConfigError, match=r"^model\.selector: .*nowhere is not a selector directory: missing"
    ):
        Engine(adapter, config, standing_prompts=STANDING)


@pytest.mark.slow
def test_serve_with_a_missing_selector_directory_exits_with_one_clear_line(model_dir, tmp_path):
    config = tmp_path / "agent.yaml"
    missing = tmp_path / "nowhere"
    config.write_text(
        f"model: {{name: {model_dir}, scorer: lite, selector: {missing}}}\nhttp: {{enabled: false}}\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "-c", str(config)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"flexselect-agent serve: error: model.selector: {missing} is not a selector directory: missing "
        "config.json, selector.json, model.safetensors"
    )


# -------------------------------------------------------------------------------------- over MQTT


def lite_config(model_dir: Path, selector_dir: Path, recording: Path | None, prefix: str, **sections):
    streams = [] if recording is None else [
        {"id": "cam", "uri": str(recording), "source": {"sample_fps": 2, "chunk_seconds": 2}}
    ]  # fmt: skip
    model = {"scorer": "lite", "selector": str(selector_dir)}
    return agent_config(model_dir, streams, prefix, model=model, **sections)


@pytest.mark.services
async def test_the_service_answers_with_the_selector_from_the_local_memory(
    model_dir, selector_dir, recording, prefix
):
    async with (
        running(lite_config(model_dir, selector_dir, recording, prefix)) as app,
        client(prefix) as link,
    ):
        await wait_for_memory(app, "cam", 32)
        reply = await ask(link, QUESTION)
        assert app.memory is not None
        remembered = (await app.memory.read(["cam"]))["cam"].tokens
    assert reply["ok"] is True
    assert reply["tokens"] == {"retained": 32, "used": 16}
    assert reply["evidence"] and all(e["stream"] == "cam" for e in reply["evidence"])
    assert isinstance(remembered, PairedTokens) and len(remembered) == 32


@pytest.mark.services
async def test_a_restarted_lite_agent_answers_the_same_way_from_redis(
    model_dir, selector_dir, recording, prefix, redis_prefix
):
    memory = {"backend": "redis", "redis": {"url": "redis://127.0.0.1:6379/0", "key_prefix": redis_prefix}}
    first_config = lite_config(model_dir, selector_dir, recording, prefix, memory=memory)
    async with running(first_config) as app, client(prefix) as link:
        await wait_for_memory(app, "cam", 32)
        first = await ask(link, QUESTION, streams=["cam"])
    # The restarted agent has no streams configured: it answers from what Redis remembers.
    second_config = lite_config(model_dir, selector_dir, None, prefix, memory=memory)
    async with running(second_config) as app, client(prefix) as link:
        second = await ask(link, QUESTION, streams=["cam"])
        assert app.memory is not None
        remembered = (await app.memory.read(["cam"]))["cam"].tokens
    assert first["ok"] is True and second["ok"] is True
    assert second["answer"] == first["answer"]
    assert picture_paths(second["evidence"]) == picture_paths(first["evidence"])  # each run has its own port
    assert second["tokens"] == first["tokens"] == {"retained": 32, "used": 16}
    assert isinstance(remembered, PairedTokens) and len(remembered) == 32


def picture_paths(evidence: list[dict]) -> list[dict]:
    """Evidence with each picture URL reduced to its path: a restarted agent listens on another port."""
    return [{**e, "picture": urlsplit(e["picture"]).path if e.get("picture") else None} for e in evidence]
