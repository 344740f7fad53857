"""Reference selection gives way to a full prefill where it cannot pay, and the answer says so."""

from __future__ import annotations

import pytest
import torch

from flexselect.budget import selection_pays
from flexselect.config import SelectionConfig
from flexselect.pipeline import FlexSelectPipeline
from flexselect.ranking import ReferenceScorer

QUESTION = "what color was the square ?"


def test_for_qwen2_5_vl_7b_selection_pays_from_about_24_600_tokens_with_a_7040_budget():
    assert not selection_pays(16_384, 7040, layer=19, depth=28)
    assert not selection_pays(24_600, 7040, layer=19, depth=28)
    assert selection_pays(24_700, 7040, layer=19, depth=28)
    assert selection_pays(65_536, 7040, layer=19, depth=28)


def test_a_pipeline_told_so_answers_over_every_token_when_selection_cannot_pay(adapter, clip):
    tokens = adapter.encode(clip.frames, clip.times)
    scorer = ReferenceScorer(adapter, layer=adapter.num_layers - 1)  # the last layer: selection never pays
    config = SelectionConfig(budget=len(tokens) // 2, layer=scorer.layer, full_when_cheaper=True)
    result = FlexSelectPipeline(adapter, scorer, config, max_new_tokens=2).answer_tokens(tokens, QUESTION)
    assert result.selection is None and result.kept_tokens == len(tokens)
    assert result.note is not None and result.note.startswith("full prefill: reference selection")


def test_where_selection_pays_the_pipeline_selects(adapter, clip):
    tokens = adapter.encode(clip.frames, clip.times)
    scorer = ReferenceScorer(adapter, layer=0)
    config = SelectionConfig(budget=4, layer=0, full_when_cheaper=True)
    result = FlexSelectPipeline(adapter, scorer, config, max_new_tokens=2).answer_tokens(tokens, QUESTION)
    assert result.note is None and result.selection is not None and result.kept_tokens == 4


def test_a_full_prefill_still_ranks_its_evidence_by_the_reference_layer(adapter, clip):
    tokens = adapter.encode(clip.frames, clip.times)
    scorer = ReferenceScorer(adapter, layer=adapter.num_layers - 1)
    config = SelectionConfig(budget=len(tokens) // 2, layer=scorer.layer, full_when_cheaper=True)
    result = FlexSelectPipeline(adapter, scorer, config, max_new_tokens=2).answer_tokens(tokens, QUESTION)
    expected = scorer.score(adapter.prompt(QUESTION), tokens).float()
    assert result.selection is None and result.kept_scores is not None
    torch.testing.assert_close(result.kept_scores, expected, rtol=1e-4, atol=1e-6)
    assert result.evidence[0].score == pytest.approx(float(expected.max()), rel=1e-4)
