"""Answering over kept tokens: exact at full budget, equal to masking when pruned, whole question always."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flexselect.adapters import load_adapter
from flexselect.budget import select
from flexselect.config import SelectionConfig
from flexselect.pipeline import FlexSelectPipeline, evidence_spans
from flexselect.ranking import ReferenceScorer
from flexselect.tiny import save_tiny
from flexselect.types import VisualTokens

QUESTION = "what color was the square that crossed the left side?"


def processor_outputs(adapter, clip, question):
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    text = adapter.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    kwargs = {}
    if adapter.family.startswith("qwen"):
        kwargs = {"videos_kwargs": {"video_metadata": [clip.metadata()], "do_sample_frames": False}}
    return adapter.processor(text=[text], videos=[clip.frames], return_tensors="pt", **kwargs)


def model_kwargs(adapter, out, seq):
    """The unmodified model's inputs; Qwen2.5-VL gets the original (4.x) positions, see the adapter."""
    if adapter.family == "qwen2_5_vl":
        return {**out, "position_ids": seq.position_ids}
    return dict(out)


def test_full_budget_logits_equal_the_unmodified_forward(adapter, clip):
    tokens = adapter.encode(clip.frames, clip.times)
    prompt = adapter.prompt(QUESTION)
    config = SelectionConfig(budget=len(tokens), layer=2)
    selection = select(ReferenceScorer(adapter, layer=2), prompt, tokens, config, max_group_tokens=4000)
    assert torch.equal(selection.index, torch.arange(len(tokens)))
    seq = adapter.build_sequence(prompt, tokens, selection.index)
    logits, _ = adapter.prefill(seq)
    with torch.no_grad():
        expected = adapter.model(
            **model_kwargs(adapter, processor_outputs(adapter, clip, QUESTION), seq)
        ).logits
    assert torch.allclose(logits, expected[0, -1], atol=1e-5, rtol=0)


def test_full_budget_generation_equals_hf_generate(adapter, clip):
    tokens = adapter.encode(clip.frames, clip.times)
    prompt = adapter.prompt(QUESTION)
    seq = adapter.build_sequence(prompt, tokens)
    ours = adapter.generate(seq, max_new_tokens=6)
    out = processor_outputs(adapter, clip, QUESTION)
    with torch.no_grad():
        theirs = adapter.model.generate(
            **model_kwargs(adapter, out, seq),
            max_new_tokens=6,
            do_sample=False,
            eos_token_id=-1,
            pad_token_id=0,
        )
    assert ours.token_ids == theirs[0, out["input_ids"].shape[1] :].tolist()[: len(ours.token_ids)]
    assert len(ours.token_ids) >= 1


def test_pruned_forward_equals_full_forward_with_dropped_tokens_masked(adapter, clip):
    tokens = adapter.encode(clip.frames, clip.times)
    prompt = adapter.prompt(QUESTION)
    keep = torch.arange(0, len(tokens), 3)
    pruned, _ = adapter.prefill(adapter.build_sequence(prompt, tokens, keep))
    full = adapter.build_sequence(prompt, tokens)
    dropped = torch.ones(len(tokens), dtype=torch.bool)
    dropped[keep] = False
    full.attention_mask[0, full.visual_slice][dropped] = 0
    masked, _ = adapter.prefill(full)
    assert torch.allclose(pruned, masked, atol=1e-5, rtol=0)


def original_qwen25_positions(prefix_len, steps, rows, cols, seconds_per_step, tokens_per_second, suffix_len):
    """Qwen2.5-VL's original rope index for one video, written out plainly as the reference."""
    positions = [[i, i, i] for i in range(prefix_len)]
    for t in range(steps):
        for r in range(rows):
            for c in range(cols):
                positions.append(
                    [
                        prefix_len + int(t * seconds_per_step * tokens_per_second),
                        prefix_len + r,
                        prefix_len + c,
                    ]
                )
    start = max(max(p) for p in positions) + 1
    positions += [[start + i] * 3 for i in range(suffix_len)]
    return torch.tensor(positions).T


@pytest.mark.parametrize("fps", [2.0, 1.0, 0.5])
def test_qwen25_positions_follow_the_original_algorithm(tiny_dirs, fps):
    adapter = load_adapter(tiny_dirs["qwen2_5_vl"])
    frames = np.zeros((8, 56, 56, 3), dtype=np.uint8)
    tokens = adapter.encode(frames, np.arange(8) / fps)
    prompt = adapter.prompt("why?")
    seq = adapter.build_sequence(prompt, tokens)
    expected = original_qwen25_positions(len(prompt.prefix_ids), 4, 2, 2, 2 / fps, 2, len(prompt.suffix_ids))
    assert torch.equal(seq.position_ids[:, 0], expected)


def test_kept_tokens_keep_their_original_positions(adapter, clip):
    tokens = adapter.encode(clip.frames, clip.times)
    prompt = adapter.prompt(QUESTION)
    full = adapter.build_sequence(prompt, tokens)
    keep = torch.tensor([1, 5, len(tokens) - 1])
    pruned = adapter.build_sequence(prompt, tokens, keep)
    p = len(prompt.prefix_ids)
    assert torch.equal(pruned.position_ids[..., p : p + 3], full.position_ids[..., p + keep])
    assert torch.equal(pruned.position_ids[..., p + 3 :], full.position_ids[..., full.visual_slice.stop :])


def test_long_video_is_scored_in_groups_and_answered_with_the_whole_question(family, tmp_path):
    side = 64 if family == "qwen3_vl" else 56
    adapter = load_adapter(save_tiny(family, tmp_path / family, frame_side=side, max_positions=320))
    frames = (np.random.default_rng(1).random((96, side, side, 3)) * 255).astype(np.uint8)
    tokens = adapter.encode(frames, np.arange(96) / 2.0)
    question = "after the grey disc passed, what color was the square that crossed the left side?"
    prompt = adapter.prompt(question)
    assert len(prompt.prefix_ids) + len(tokens) + len(prompt.suffix_ids) > adapter.max_positions
    pipeline = FlexSelectPipeline(adapter, ReferenceScorer(adapter, layer=2), SelectionConfig(budget=24))
    room = pipeline.max_group_tokens(prompt)
    selection = select(pipeline.scorer, prompt, tokens, pipeline.config, max_group_tokens=room)
    assert len(selection.groups) > 1
    assert all(len(g) <= room for g in selection.groups)
    assert torch.equal(torch.cat(selection.groups).sort().values, torch.arange(len(tokens)))
    seq = adapter.build_sequence(prompt, tokens, selection.index)
    assert seq.length <= adapter.max_positions
    assert torch.equal(seq.inputs_embeds[0, -len(prompt.suffix_ids) :], adapter.embed_ids(prompt.suffix_ids))
    result = pipeline.answer_tokens(tokens, question)
    assert result.kept_tokens == 24
    assert result.total_tokens == len(tokens)


def test_all_tokens_beyond_the_context_are_refused_without_a_scorer(tmp_path):
    adapter = load_adapter(save_tiny("llava_onevision", tmp_path / "m", max_positions=128))
    frames = np.zeros((64, 56, 56, 3), dtype=np.uint8)
    tokens = adapter.encode(frames, np.arange(64.0))
    pipeline = FlexSelectPipeline(adapter, None, SelectionConfig(budget=16))
    with pytest.raises(ValueError, match="exceed the model's 128 positions; use a scorer with a budget"):
        pipeline.answer_tokens(tokens, "what?")


def _tokens(times: list[float]) -> VisualTokens:
    n = len(times)
    return VisualTokens(
        embeds=torch.zeros(n, 2),
        frame=torch.arange(n),
        time=torch.tensor(times, dtype=torch.float64),
        grid=torch.stack(
            [torch.arange(n), torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)], 1
        ),
        kind=torch.zeros(n, dtype=torch.int8),
        token_id=torch.zeros(n, dtype=torch.long),
    )


def test_evidence_is_the_kept_tokens_that_score_near_the_best_not_their_context():
    tokens = _tokens([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    scores = torch.tensor([0.01, 0.9, 0.5, 0.02, 0.03, 0.2])
    spans = evidence_spans(tokens, scores, min_share=0.1)
    assert [(s.start, s.end, s.tokens, s.score) for s in spans] == [
        (1.0, 2.0, 2, pytest.approx(0.9)),
        (5.0, 5.0, 1, pytest.approx(0.2)),
    ]
    assert sum(s.tokens for s in evidence_spans(tokens, scores)) == 6  # min_share 0: every kept token


def test_an_evidence_span_never_ends_before_it_starts_even_when_frame_order_is_not_time_order():
    tokens = _tokens([50.0, 51.0, 10.0, 11.0])  # consecutive frame numbers from two runs of a stream
    spans = evidence_spans(tokens)
    assert all(s.start <= s.end for s in spans)
    assert sum(s.tokens for s in spans) == 4


def test_evidence_comes_best_first_whatever_its_time():
    tokens = _tokens([0.0, 1.0, 5.0, 6.0, 9.0])
    scores = torch.tensor([0.3, 0.2, 0.8, 0.9, 0.5])
    spans = evidence_spans(tokens, scores, min_share=0.1)
    assert [(s.start, s.end, s.score) for s in spans] == [
        (5.0, 6.0, pytest.approx(0.9)),
        (9.0, 9.0, pytest.approx(0.5)),
        (0.0, 1.0, pytest.approx(0.3)),
    ]


def test_a_scorer_still_names_the_evidence_when_the_whole_video_fits_the_budget(adapter, clip):
    config = SelectionConfig(budget=10_000, layer=1)
    result = FlexSelectPipeline(adapter, ReferenceScorer(adapter, layer=1), config, max_new_tokens=1).answer(
        clip.frames, clip.times, "what color?"
    )
    assert result.kept_tokens == result.total_tokens
    assert result.selection is not None and len(result.selection.index) == result.total_tokens
    best = float(result.selection.scores.max())
    evidence = sum(s.tokens for s in result.evidence)
    assert evidence == int((result.selection.scores >= 0.1 * best).sum())
