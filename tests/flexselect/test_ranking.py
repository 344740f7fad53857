"""The training-free scorer reproduces eager attention at layer L and runs nothing above it."""

from __future__ import annotations

import pytest
import torch

from flexselect.ranking import ReferenceScorer, aggregate

QUESTION = "what color was the square that crossed the left side?"


def eager_visual_attention(eager_adapter, prompt, tokens, layer):
    seq = eager_adapter.build_sequence(prompt, tokens, compact=True)
    with torch.no_grad():
        out = eager_adapter.text_model(
            inputs_embeds=seq.inputs_embeds,
            position_ids=seq.position_ids,
            attention_mask=seq.attention_mask,
            output_attentions=True,
            **eager_adapter._text_model_kwargs(seq),
        )
    rows = slice(seq.length - prompt.query_len, seq.length)
    return out.attentions[layer][0, :, rows, seq.visual_slice]  # (heads, T, V)


@pytest.mark.parametrize("aggregation", ["max", "mean"])
@pytest.mark.parametrize("layer", [1, 3])
def test_scores_equal_eager_attention_probabilities(adapter, eager_adapter, clip, layer, aggregation):
    tokens = adapter.encode(clip.frames, clip.times)
    prompt = adapter.prompt(QUESTION)
    scores = ReferenceScorer(adapter, layer=layer, aggregation=aggregation).score(prompt, tokens)
    expected = aggregate(eager_visual_attention(eager_adapter, prompt, tokens, layer), aggregation)
    assert scores.shape == (len(tokens),)
    assert torch.allclose(scores, expected, atol=1e-5, rtol=0)


def test_eager_rows_sum_to_one_over_all_keys_not_over_visual_keys(adapter, eager_adapter, clip):
    """The visual columns are not renormalised: their mass is below one (prefix and text take some)."""
    tokens = adapter.encode(clip.frames, clip.times)
    probs = eager_visual_attention(eager_adapter, adapter.prompt(QUESTION), tokens, 2)
    assert float(probs.sum(-1).max()) < 0.999


def test_scorer_never_runs_a_layer_above_the_reference_layer(adapter, clip):
    layer = 2
    ran: list[str] = []
    handles = []
    for i, block in enumerate(adapter.text_model.layers):
        handles.append(block.register_forward_pre_hook(lambda m, a, i=i: ran.append(f"layer{i}")))
        handles.append(block.mlp.register_forward_pre_hook(lambda m, a, i=i: ran.append(f"mlp{i}")))
    try:
        ReferenceScorer(adapter, layer=layer).score(
            adapter.prompt(QUESTION), adapter.encode(clip.frames, clip.times)
        )
    finally:
        for h in handles:
            h.remove()
    assert ran == ["layer0", "mlp0", "layer1", "mlp1", "layer2"]


def test_layer_outside_the_model_is_rejected(adapter):
    with pytest.raises(ValueError, match=r"outside 0\.\.3"):
        ReferenceScorer(adapter, layer=4)


def test_default_layer_is_the_papers_for_known_models():
    from flexselect.config import default_reference_layer

    assert default_reference_layer("qwen2_5_vl", 28) == 20
    assert default_reference_layer("llava_onevision", 28) == 19
    assert default_reference_layer("internvl", 32) == 15
    assert default_reference_layer("qwen2_5_vl", 80) == 60
    assert default_reference_layer("qwen3_vl", 36) == 24  # unknown: ~70% depth


def test_a_checkpoints_calibrated_layer_is_its_default(tmp_path):
    from flexselect.adapters import load_adapter
    from flexselect.tiny import build_tiny

    model, processor = build_tiny("llava_onevision")
    model.config.flexselect_reference_layer = 1
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert load_adapter(tmp_path).default_layer() == 1


def test_a_checkpoints_calibrated_aggregation_is_its_scorers_default(tmp_path):
    from flexselect.adapters import load_adapter
    from flexselect.tiny import build_tiny

    model, processor = build_tiny("qwen2_5_vl")
    processor.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    assert ReferenceScorer(load_adapter(tmp_path)).aggregation == "max"  # uncalibrated: as published
    model.config.flexselect_aggregation = "mean"
    model.save_pretrained(tmp_path)
    adapter = load_adapter(tmp_path)
    assert adapter.default_aggregation() == "mean"
    assert ReferenceScorer(adapter).aggregation == "mean"
    assert ReferenceScorer(adapter, aggregation="max").aggregation == "max"
