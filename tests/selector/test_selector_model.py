"""The selector model: one vision pass feeds both projectors, positions like the base, save/load, scoring."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flexselect.budget import select
from flexselect.config import SelectionConfig
from flexselect.lite import LiteScorer, LiteSelector, PairedTokens, SelectorError, encode_pair
from flexselect.lite.positions import sequence_positions, visual_offsets
from flexselect.types import TokenKind
from tests.selector.selector_helpers import QUESTION, frames_for, paired, tiny_adapter, tiny_selector

FAMILIES = ("qwen2_5_vl", "qwen3_vl", "llava_onevision", "internvl")


@pytest.mark.parametrize(("family", "side"), [("qwen2_5_vl", 112), ("qwen3_vl", 64), ("internvl", 56)])
def test_a_projector_as_wide_as_the_base_reproduces_the_base_embeddings(family, side):
    adapter = tiny_adapter(family, frame_side=side)  # 112 px Qwen2.5-VL frames span 4 attention windows
    wide = {"hidden": 64, "heads": 4, **({"mrope_section": (2, 3, 3)} if adapter.mrope else {})}
    selector = tiny_selector(adapter, **wide)
    frames, times = frames_for(family, 4)
    frames = frames if side == frames.shape[1] else frames.repeat(2, axis=1).repeat(2, axis=2)
    tokens = encode_pair(selector, adapter, frames, times)
    patch = tokens.kind == TokenKind.PATCH
    assert torch.equal(tokens.lite[patch], tokens.embeds[patch])


@pytest.mark.parametrize("family", FAMILIES)
def test_paired_tokens_align_with_the_base_tokens_row_for_row(family):
    adapter = tiny_adapter(family)
    selector = tiny_selector(adapter)
    frames, times = frames_for(family, 4)
    tokens = encode_pair(selector, adapter, frames, times)
    base = adapter.encode(frames, times)
    assert torch.equal(tokens.embeds, base.embeds)
    assert torch.equal(tokens.kind, base.kind) and torch.equal(tokens.grid, base.grid)
    assert tokens.lite.shape == (len(base), selector.config.decoder.hidden)


@pytest.mark.parametrize("family", FAMILIES)
def test_positions_are_the_adapters_compact_positions(family):
    adapter = tiny_adapter(family)
    tokens = adapter.encode(*frames_for(family, 6))
    offsets, extent = visual_offsets(family, tokens, tokens_per_second=2.0)
    expected, expected_extent = adapter.visual_positions(tokens, compact=True)
    assert torch.equal(offsets, expected) and extent == expected_extent


@pytest.mark.parametrize("family", FAMILIES)
def test_the_scorer_gives_one_score_per_token_in_every_family(family):
    adapter = tiny_adapter(family)
    selector = tiny_selector(adapter)
    tokens = paired(selector, adapter, 4)
    scores = LiteScorer(selector).score(adapter.prompt(QUESTION), tokens)
    assert scores.shape == (len(tokens),) and scores.dtype == torch.float32
    assert bool((scores > 0).all() and (scores <= 1).all())


def test_the_own_layer_loop_matches_the_transformers_decoder(qwen, selector):
    tokens = paired(selector, qwen, 6)
    prompt = qwen.prompt(QUESTION)
    p = len(prompt.prefix_ids)
    offsets, extent = selector.offsets(tokens)
    positions = sequence_positions(p, offsets, extent, prompt.query_len, mrope=True)
    parts = [selector.embed_ids(prompt.prefix_ids), tokens.lite, selector.embed_ids(prompt.suffix_ids)]
    embeds = torch.cat(parts)[None]
    box = {}

    def record(module, args, kwargs):
        box["x"] = kwargs["hidden_states"]

    hook = selector.last.self_attn.register_forward_pre_hook(record, with_kwargs=True)
    with torch.no_grad():
        mask = torch.ones(1, embeds.shape[1])
        selector.decoder(inputs_embeds=embeds, position_ids=positions, attention_mask=mask)
        mine = selector.layer_input(embeds, positions).hidden
    hook.remove()
    assert torch.allclose(mine, box["x"], atol=1e-5)


def test_save_and_load_round_trip_without_pickle(tmp_path: Path, qwen, selector):
    tokens = paired(selector, qwen, 4)
    prompt = qwen.prompt(QUESTION)
    selector.save(tmp_path / "sel")
    names = sorted(p.name for p in (tmp_path / "sel").iterdir())
    assert names == ["config.json", "model.safetensors", "selector.json"]
    loaded = LiteSelector.load(tmp_path / "sel")
    assert loaded.config == selector.config
    assert torch.equal(LiteScorer(loaded).score(prompt, tokens), LiteScorer(selector).score(prompt, tokens))


def test_loading_a_directory_without_weights_is_a_selector_error(tmp_path: Path, selector):
    selector.save(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(SelectorError, match=r"missing model\.safetensors"):
        LiteSelector.load(tmp_path)


def test_the_scorer_refuses_tokens_without_selector_embeddings(qwen, selector):
    tokens = qwen.encode(*frames_for("qwen2_5_vl", 4))
    with pytest.raises(SelectorError, match="encode_pair"):
        LiteScorer(selector).score(qwen.prompt(QUESTION), tokens)


def test_a_selector_for_another_family_is_refused(selector):
    other = tiny_adapter("internvl")
    with pytest.raises(SelectorError, match="qwen2_5_vl vision features"):
        encode_pair(selector, other, *frames_for("internvl", 2))


def test_budget_selection_hands_the_scorer_the_rows_of_each_group(qwen, selector):
    tokens = paired(selector, qwen, 8)
    prompt = qwen.prompt(QUESTION)
    config = SelectionConfig(budget=6, max_frames_per_group=2, grouping="interleaved")
    selection = select(LiteScorer(selector), prompt, tokens, config, max_group_tokens=1000)
    assert len(selection.groups) == 2
    for group in selection.groups:
        alone = LiteScorer(selector).score(prompt, tokens.select(group))
        assert torch.equal(selection.scores[group], alone)


def test_selecting_paired_tokens_keeps_both_embeddings_aligned(qwen, selector):
    tokens = paired(selector, qwen, 4)
    part = tokens.select(torch.tensor([3, 0]))
    assert isinstance(part, PairedTokens)
    assert torch.equal(part.lite, tokens.lite[[3, 0]]) and torch.equal(part.embeds, tokens.embeds[[3, 0]])
