"""Every model path of every family runs on CUDA and gives the CPU's result (tiny models, float32).

Each test builds the same tiny random model twice, on the CPU and on the GPU (the same weights), runs one
path on both and compares: encoding, reference scoring, FlexSelect-Lite scoring fresh and cached, budget
selection, answering, the agent's `Engine` with both scorers, and selector training steps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.selector_caches import SelectorCaches
from flexselect.adapters import VideoLLMAdapter, adapter_for_model_type
from flexselect.adapters.base import VideoClip
from flexselect.config import SelectionConfig
from flexselect.decoding import StaticDecoder
from flexselect.lite import (
    TINY,
    LiteScorer,
    LiteSelector,
    PairedTokens,
    SelectorCache,
    encode_pair,
    encode_pairs,
)
from flexselect.pipeline import FlexSelectPipeline
from flexselect.ranking import ReferenceScorer
from flexselect.tiny import FAMILIES, build_tiny

pytestmark = pytest.mark.gpu

FRAME_SIDE = {"qwen2_5_vl": 56, "qwen3_vl": 64, "llava_onevision": 56, "internvl": 56}
QUESTION = "what color was the square ?"
CLOSE = {"rtol": 1e-3, "atol": 1e-4}


@dataclass
class Pair:
    """The same tiny model and selector on the CPU and on the GPU, and one clip's frames."""

    cpu: VideoLLMAdapter
    gpu: VideoLLMAdapter
    sel_cpu: LiteSelector
    sel_gpu: LiteSelector
    frames: np.ndarray
    times: np.ndarray


@pytest.fixture(scope="module", params=FAMILIES)
def pair(request, cuda) -> Pair:
    family = request.param
    torch.manual_seed(0)
    model, processor = build_tiny(family, frame_side=FRAME_SIDE[family])
    cls = adapter_for_model_type(model.config.model_type)
    cpu = cls(model.eval(), processor)
    gpu = cls(copy.deepcopy(model).to(cuda).eval(), processor)
    decoder = TINY if cpu.mrope else replace(TINY, mrope_section=None)
    sel_cpu = LiteSelector.for_adapter(cpu, decoder).eval()
    sel_gpu = copy.deepcopy(sel_cpu).to(cuda).eval()
    side = FRAME_SIDE[family]
    frames = (np.random.default_rng(0).random((8, side, side, 3)) * 255).astype(np.uint8)
    return Pair(cpu, gpu, sel_cpu, sel_gpu, frames, np.arange(8) / 2.0)


def same_layout(a, b) -> None:
    for name in ("frame", "time", "grid", "kind", "token_id"):
        assert torch.equal(getattr(a, name).cpu(), getattr(b, name).cpu()), name


def test_encoding_on_the_gpu_gives_the_cpu_tokens(pair):
    a = pair.cpu.encode(pair.frames, pair.times)
    b = pair.gpu.encode(pair.frames, pair.times)
    same_layout(a, b)
    torch.testing.assert_close(b.embeds.cpu(), a.embeds, **CLOSE)


def test_reference_scores_on_the_gpu_equal_the_cpu_scores(pair):
    tokens = pair.cpu.encode(pair.frames, pair.times)  # host tokens, as the memory holds them
    a = ReferenceScorer(pair.cpu).score(pair.cpu.prompt(QUESTION), tokens)
    b = ReferenceScorer(pair.gpu).score(pair.gpu.prompt(QUESTION), tokens)
    torch.testing.assert_close(b.float().cpu(), a.float(), **CLOSE)


def test_lite_scores_fresh_and_cached_on_the_gpu_equal_the_cpu_scores(pair):
    a_tokens = encode_pair(pair.sel_cpu, pair.cpu, pair.frames, pair.times)
    b_tokens = encode_pair(pair.sel_gpu, pair.gpu, pair.frames, pair.times)
    torch.testing.assert_close(b_tokens.lite.cpu(), a_tokens.lite, **CLOSE)
    prompt = pair.cpu.prompt(QUESTION)
    a = LiteScorer(pair.sel_cpu).score(prompt, a_tokens)
    b = LiteScorer(pair.sel_gpu).score(prompt, a_tokens)  # host tokens into a GPU selector
    torch.testing.assert_close(b, a, **CLOSE)
    caches = []
    for sel in (pair.sel_cpu, pair.sel_gpu):
        cache = SelectorCache(sel, prompt.prefix_ids, max_group_tokens=max(1, len(a_tokens) // 3))
        for start in range(0, len(a_tokens), 16):
            cache.append(a_tokens.select(torch.arange(start, min(len(a_tokens), start + 16))))
        caches.append(cache)
    assert len(caches[1].groups) >= 2  # several groups scored together
    cached = caches[1].score(prompt)
    assert cached.device.type == pair.sel_gpu.device.type
    torch.testing.assert_close(cached.cpu(), caches[0].score(prompt), **CLOSE)


def test_selector_caches_of_several_streams_ingest_together_on_the_gpu_as_on_the_cpu(pair):
    tokens = encode_pair(pair.sel_cpu, pair.cpu, pair.frames, pair.times)  # host rows, as the memory holds
    prompt = pair.cpu.prompt(QUESTION)
    ids = torch.unique(tokens.frame)
    chunks = [tokens.select(torch.isin(tokens.frame, ids[i : i + 2])) for i in range(0, len(ids), 2)]
    scores = []
    for sel in (pair.sel_cpu, pair.sel_gpu):
        caches = SelectorCaches(sel, prompt.prefix_ids, max_group_tokens=1 << 20, max_group_frames=3)
        for chunk in chunks:  # groups of 3 frames: chunks straddle groups
            caches.ingest_many([("door", chunk), ("yard", chunk)])
        scores.append([caches.scores(name, tokens, prompt) for name in ("door", "yard")])
    for a, b in zip(*scores, strict=True):
        assert b.device.type == pair.sel_gpu.device.type
        torch.testing.assert_close(b.cpu(), a, **CLOSE)


def test_decoding_by_cuda_graph_replays_gives_the_eager_answers_on_the_gpu(pair):
    adapter = pair.gpu
    tokens = adapter.encode(pair.frames, pair.times)
    prompt = adapter.prompt(QUESTION)
    seqs = [adapter.build_sequence(prompt, tokens, torch.arange(len(tokens) - drop)) for drop in (0, 3)]
    eager = [adapter.generate(seq, max_new_tokens=10).token_ids for seq in seqs]
    decoder = StaticDecoder(adapter, graphs=True).attach()
    try:
        graphed = [adapter.generate(seq, max_new_tokens=10).token_ids for seq in seqs]
    finally:
        adapter.decoder = None
    assert graphed == eager
    assert (decoder.captures, decoder.answers) == (1, 2)  # one cache length: one capture, replayed


def test_batched_lite_encoding_and_scoring_on_the_gpu_equal_the_cpu(pair):
    halves = [(pair.frames[:4], pair.times[:4], 0), (pair.frames[4:], pair.times[4:], 4)]
    results = []
    for adapter, sel in ((pair.cpu, pair.sel_cpu), (pair.gpu, pair.sel_gpu)):
        clips = [adapter.prepare(VideoClip(f, t, frame_offset=o)) for f, t, o in halves]
        tokens = encode_pairs(sel, adapter, clips)  # device tokens straight into the selector, as ingest
        assert all(t.lite.device.type == sel.device.type for t in tokens)
        results.append((tokens, LiteScorer(sel).score_many(adapter.prompt(QUESTION), tokens)))
    (a_tokens, a_scores), (b_tokens, b_scores) = results
    for a, b in zip(a_tokens, b_tokens, strict=True):
        same_layout(a, b)
        torch.testing.assert_close(b.lite.cpu(), a.lite, **CLOSE)
    for a, b in zip(a_scores, b_scores, strict=True):
        torch.testing.assert_close(b, a, **CLOSE)


@pytest.mark.parametrize("scorer", ["reference", "lite"])
def test_selection_and_answers_on_the_gpu_match_the_cpu(pair, scorer):
    tokens = encode_pair(pair.sel_cpu, pair.cpu, pair.frames, pair.times)
    config = SelectionConfig(budget=len(tokens) // 4, max_frames_per_group=4)
    results = []
    for adapter, sel in ((pair.cpu, pair.sel_cpu), (pair.gpu, pair.sel_gpu)):
        s = ReferenceScorer(adapter) if scorer == "reference" else LiteScorer(sel)
        pipeline = FlexSelectPipeline(adapter, s, config, max_new_tokens=4)
        results.append(pipeline.answer_tokens(tokens, QUESTION))
    a, b = results
    torch.testing.assert_close(b.selection.scores, a.selection.scores, **CLOSE)
    kept_a, kept_b = a.selection.scores[a.selection.index], a.selection.scores[b.selection.index]
    assert float(kept_b.sum()) >= float(kept_a.sum()) - 1e-4  # equally good tokens (ties may swap)
    if torch.equal(a.selection.index, b.selection.index):
        assert b.answer == a.answer


def test_selector_training_steps_on_the_gpu_follow_the_cpu(pair, tmp_path: Path):
    from flexselect.training.data import teacher_sample
    from flexselect.training.distill import TrainConfig, train

    if pair.cpu.family != "qwen2_5_vl":
        pytest.skip("training is family-independent past the teacher samples; one family suffices")
    teacher = ReferenceScorer(pair.cpu)
    samples = [teacher_sample(pair.cpu, teacher, pair.frames, pair.times, QUESTION) for _ in range(2)]
    config = TrainConfig(epochs=1, batch_size=2, lr=1e-3, min_lr=1e-4, eval_k=4, seed=3, bf16=False)
    losses = []
    for i, sel in enumerate((copy.deepcopy(pair.sel_cpu), copy.deepcopy(pair.sel_gpu))):
        state = train(sel.train(), config=config, samples=samples, heldout=samples, out=tmp_path / str(i),
                      progress=False)  # fmt: skip
        losses.append(state["history"][-1]["train_loss"])
        assert sel.device == (pair.sel_cpu if i == 0 else pair.sel_gpu).device
    assert losses[1] == pytest.approx(losses[0], rel=1e-3, abs=1e-5)


def test_the_engine_answers_on_the_gpu_with_both_scorers(cuda, tmp_path: Path):
    from agent.config import ModelSection
    from agent.engine import ChunkInput, Engine
    from flexselect.adapters import load_adapter
    from flexselect.tiny import save_tiny
    from lab.selector.recipe import decoder_for

    model_dir = save_tiny("qwen2_5_vl", tmp_path / "tiny")
    answers = {}
    for device in ("cpu", str(cuda)):
        adapter = load_adapter(model_dir, dtype="float32", device=device)
        torch.manual_seed(0)
        selector_dir = tmp_path / f"selector-{device}"
        if device == "cpu":
            sel = LiteSelector.for_adapter(adapter, decoder_for("tiny", adapter), base_model=str(model_dir))
            sel.save(selector_dir)
        else:
            selector_dir = tmp_path / "selector-cpu"
        for scorer in ("reference", "lite"):
            config = ModelSection(
                name=str(model_dir), device=device, scorer=scorer,
                selector=str(selector_dir) if scorer == "lite" else None, budget=8, max_new_tokens=3,
            )  # fmt: skip
            engine = Engine(adapter, config, standing_prompts=["describe what happens in the video"])
            parts = []
            for start in (0, 4, 8):
                pixels = (np.random.default_rng(start).random((4, 56, 56, 3)) * 255).astype(np.uint8)
                times = 1_700_000_000.0 + (start + np.arange(4)) / 2.0
                encoded = engine.encode(ChunkInput("cam", pixels, times, start, 1_700_000_000.0, fps=2.0))
                assert encoded.tokens.embeds.device.type == "cpu" and encoded.attention.device.type == "cpu"
                parts.append(encoded)
            concat = PairedTokens.concat if scorer == "lite" else type(parts[0].tokens).concat
            retained = concat([p.tokens for p in parts])
            answer = engine.answer(QUESTION, [("cam", retained)], None)
            attention = torch.cat([p.attention for p in parts])
            answers[device, scorer] = (answer, attention)
    for scorer in ("reference", "lite"):
        (a, att_a), (b, att_b) = answers["cpu", scorer], answers[str(cuda), scorer]
        torch.testing.assert_close(att_b, att_a, **CLOSE)
        assert (b.retained_tokens, b.used_tokens) == (a.retained_tokens, a.used_tokens)
        assert isinstance(b.text, str) and b.evidence


def test_kept_rows_reach_the_gpu_through_pinned_memory_unchanged(cuda):
    from flexselect.transfer import gather_rows

    embeds = torch.randn(1000, 64, dtype=torch.bfloat16)
    index = torch.tensor([3, 1, 999, 500])
    rows = gather_rows(embeds, index, cuda, torch.bfloat16)
    torch.cuda.synchronize(cuda)
    assert rows.device.type == cuda.type and torch.equal(rows.cpu(), embeds[index])
    assert torch.equal(gather_rows(embeds, None, cuda, torch.float32).cpu(), embeds.float())
