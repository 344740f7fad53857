"""Decoding on a static KV cache (`flexselect.decoding.StaticDecoder`) gives the eager decoder's answers.

On a GPU its steps are CUDA graph replays (tests/gpu); here the same static step runs eagerly, which pins
everything the graphs replay: the cache copied in, the positions, the mask over unused cache rows, and the
reuse of one static cache across answers.
"""

from __future__ import annotations

import pytest
import torch

from flexselect.adapters import AdapterError
from flexselect.decoding import StaticDecoder
from flexselect.types import Sequence
from tests.flexselect.conftest import QUESTION

NEW_TOKENS = 12


def sequence(adapter, clip, drop: int = 0) -> Sequence:
    """The question over every visual token of `clip` but the last `drop`."""
    tokens = adapter.encode(clip.frames, clip.times)
    return adapter.build_sequence(adapter.prompt(QUESTION), tokens, torch.arange(len(tokens) - drop))


def eager_ids(adapter, seq: Sequence) -> list[int]:
    decoder, adapter.decoder = adapter.decoder, None
    try:
        return adapter.generate(seq, max_new_tokens=NEW_TOKENS).token_ids
    finally:
        adapter.decoder = decoder


def test_static_decoding_gives_the_eager_answer(adapter, clip):
    seq = sequence(adapter, clip)
    expected = eager_ids(adapter, seq)
    decoder = StaticDecoder(adapter, graphs=False, bucket=64).attach()
    assert adapter.generate(seq, max_new_tokens=NEW_TOKENS).token_ids == expected
    assert (decoder.answers, decoder.too_long) == (1, 0)


def test_static_steps_write_the_keys_and_values_of_eager_steps(adapter, clip):
    seq = sequence(adapter, clip)
    forced = [5, 17, 42, 7, 99]  # the same inputs for both, whatever the model would pick
    _, dynamic = adapter.prefill(seq)
    eager = adapter._eager_steps(seq, dynamic)
    _, prefilled = adapter.prefill(seq)
    decoder = StaticDecoder(adapter, graphs=False, bucket=64)
    static = decoder.steps(prefilled, seq.position_ids[..., -1:], len(forced) + 1)
    assert static is not None
    assert [static(t) for t in forced] == [eager(t) for t in forced]
    (slot,) = decoder._slots.values()
    n = seq.length + len(forced)
    assert slot.length >= n
    for want, got in zip(dynamic.layers, slot.cache.layers, strict=True):
        torch.testing.assert_close(got.keys[:, :, :n], want.keys, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got.values[:, :, :n], want.values, atol=1e-5, rtol=1e-5)


def test_a_shorter_answer_reuses_the_static_cache_and_sees_none_of_the_last_one(adapter, clip):
    decoder = StaticDecoder(adapter, graphs=False, bucket=1024).attach()
    long, short = sequence(adapter, clip), sequence(adapter, clip, drop=7)
    adapter.generate(long, max_new_tokens=NEW_TOKENS)
    slot = next(iter(decoder._slots.values()))
    assert adapter.generate(short, max_new_tokens=NEW_TOKENS).token_ids == eager_ids(adapter, short)
    assert list(decoder._slots.values()) == [slot]  # one cache length, one static cache


def test_an_answer_past_the_static_length_decodes_eagerly_and_is_counted(adapter, clip):
    seq = sequence(adapter, clip)
    decoder = StaticDecoder(adapter, graphs=False, max_length=seq.length + NEW_TOKENS - 1).attach()
    assert adapter.generate(seq, max_new_tokens=NEW_TOKENS).token_ids == eager_ids(adapter, seq)
    assert (decoder.answers, decoder.too_long, len(decoder._slots)) == (0, 1, 0)


@pytest.mark.parametrize("family", ["qwen2_5_vl"])
def test_static_caches_beyond_the_kept_number_are_released_oldest_first(adapter, clip):
    decoder = StaticDecoder(adapter, graphs=False, bucket=4, keep=1).attach()
    lengths = []
    for drop in (0, 12):  # two cache lengths
        seq = sequence(adapter, clip, drop=drop)
        assert adapter.generate(seq, max_new_tokens=NEW_TOKENS).token_ids == eager_ids(adapter, seq)
        lengths.append(-(-(seq.length + NEW_TOKENS) // 4) * 4)
    assert lengths[0] != lengths[1] and list(decoder._slots) == [lengths[1]]


@pytest.mark.parametrize("family", ["qwen2_5_vl"])
def test_cuda_graphs_are_refused_for_a_model_on_the_cpu(adapter):
    with pytest.raises(AdapterError, match="need a CUDA device"):
        StaticDecoder(adapter, graphs=True)
