"""The selector's paths run wherever the selector lives, without reading device data back to the host.

The selector is moved to PyTorch's `meta` device (shapes without data): any tensor made on the CPU and
mixed with the selector's raises there, exactly as a CPU tensor mixed with a CUDA one does, and any read
of device data on the host (`.item()`, `.tolist()`, `bool(...)`, `.cpu()`) raises too. So these CPU tests
catch the class of bug behind a CUDA crash, and show that cached scoring has no host round trip inside.
"""

from __future__ import annotations

import pytest
import torch

from flexselect.lite import SelectorCache
from tests.selector.selector_helpers import QUESTION, paired, tiny_adapter, tiny_selector


@pytest.fixture(scope="module")
def setup():
    adapter = tiny_adapter("qwen2_5_vl")
    selector = tiny_selector(adapter)
    tokens = paired(selector, adapter, 24)  # 12 temporal steps of 4 tokens, on the CPU as the memory holds
    meta = tiny_selector(adapter).to("meta")
    return adapter, selector, meta, tokens


def cache_of(selector, adapter, tokens, group_tokens: int) -> SelectorCache:
    cache = SelectorCache(selector, adapter.prompt(QUESTION).prefix_ids, max_group_tokens=group_tokens)
    for start in range(0, len(tokens), 8):
        cache.append(tokens.select(torch.arange(start, min(len(tokens), start + 8))))
    return cache


def test_a_fresh_selector_pass_takes_host_tokens_and_scores_on_the_selector_device(setup):
    adapter, _, meta, tokens = setup
    scores = meta.score_embeds(adapter.prompt(QUESTION), tokens.lite, tokens)
    assert scores.device.type == "meta" and scores.shape == (len(tokens),)


def test_cached_scoring_runs_on_the_selector_device_with_no_host_read(setup):
    adapter, _, meta, tokens = setup
    cache = cache_of(meta, adapter, tokens, group_tokens=16)
    scores = cache.score(adapter.prompt(QUESTION))  # a host read of meta data would raise
    assert len(cache.groups) == 3 and scores.device.type == "meta" and scores.shape == (len(tokens),)


@pytest.mark.parametrize("group_tokens", [48, 16, 8])
def test_cached_scoring_runs_each_selector_layer_once_per_question_whatever_the_groups(setup, group_tokens):
    adapter, selector, _, tokens = setup
    cache = cache_of(selector, adapter, tokens, group_tokens)
    calls: list[int] = []
    hooks = [
        layer.self_attn.q_proj.register_forward_hook(lambda *_, i=i: calls.append(i))
        for i, layer in enumerate(selector.layers)
    ]
    try:
        cache.score(adapter.prompt(QUESTION))
    finally:
        for hook in hooks:
            hook.remove()
    assert len(cache.groups) == 48 // group_tokens
    assert calls == list(range(len(selector.layers)))


def test_the_stacked_state_is_the_only_copy_of_the_cached_keys(setup):
    adapter, selector, _, tokens = setup
    cache = cache_of(selector, adapter, tokens, group_tokens=16)
    state = cache.stacked()
    for j, group in enumerate(cache.groups):
        assert (
            group.past[0].key.untyped_storage().data_ptr() == state.past_key[0].untyped_storage().data_ptr()
        )
        assert group.last.key.data_ptr() == state.last_key[j].data_ptr()
