"""FlexSelect-Lite over many chunks at once: one tower forward and one projector call per batch, one selector
pass per prompt and chunk length, and every result equal to encoding or scoring that chunk alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flexselect.adapters import VideoLLMAdapter
from flexselect.adapters.base import PreparedClip, VideoClip
from flexselect.lite import LiteScorer, LiteSelector, PairedTokens, encode_pair, encode_pairs
from tests.selector.selector_helpers import QUESTION, counting, frames_for, tiny_adapter, tiny_selector

FAMILIES = ("qwen2_5_vl", "qwen3_vl", "llava_onevision", "internvl")
QWEN_FAMILIES = ("qwen2_5_vl", "qwen3_vl")
FRAMES = (4, 2, 4, 4)  # chunk lengths: two lengths of tokens, three chunks of one length
CLOSE = {"atol": 1e-6, "rtol": 1e-5}  # as the batched reference ingest tests


def clips(adapter: VideoLLMAdapter, frames: tuple[int, ...] = FRAMES) -> list[PreparedClip]:
    """Prepared clips of different content, each starting where the previous one ended; past frame 10 and
    second 10, so the frame labels (InternVL) and timestamps (Qwen3-VL) have one width, and chunks of one
    frame count one token count."""
    out, offset = [], 12
    for seed, n in enumerate(frames):
        pixels, times = frames_for(adapter.family, n, seed=seed)
        clip = VideoClip(pixels, times + 10.0 + offset / 2.0, frame_offset=offset, time_origin=0.0, fps=2.0)
        out.append(adapter.prepare(clip))
        offset += n
    return out


def alone(selector: LiteSelector, adapter: VideoLLMAdapter, prepared: PreparedClip) -> PairedTokens:
    clip = prepared.clip
    return encode_pair(
        selector,
        adapter,
        clip.frames,
        clip.times,
        frame_offset=clip.frame_offset,
        time_origin=clip.time_origin,
        fps=clip.fps,
    )


@pytest.fixture(scope="module", params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def pair(family: str) -> tuple[VideoLLMAdapter, LiteSelector]:
    adapter = tiny_adapter(family)
    return adapter, tiny_selector(adapter)


def test_encode_pairs_gives_each_chunk_what_encode_pair_gives_it_alone(pair):
    adapter, selector = pair
    prepared = clips(adapter)
    batched = encode_pairs(selector, adapter, prepared)
    assert len(batched) == len(prepared)
    for many, one in zip(batched, (alone(selector, adapter, p) for p in prepared), strict=True):
        assert isinstance(many, PairedTokens)
        for field in ("frame", "time", "grid", "kind", "token_id"):
            assert torch.equal(getattr(many, field), getattr(one, field)), field
        assert many.seconds_per_step == one.seconds_per_step
        torch.testing.assert_close(many.embeds, one.embeds, **CLOSE)
        torch.testing.assert_close(many.lite, one.lite, **CLOSE)


def test_encode_pairs_of_no_clips_is_empty(pair):
    adapter, selector = pair
    assert encode_pairs(selector, adapter, []) == []


def test_score_many_gives_each_chunk_its_score_alone(pair):
    adapter, selector = pair
    tokens = encode_pairs(selector, adapter, clips(adapter))
    assert len({len(t) for t in tokens}) == 2  # two lengths, so two batches
    scorer, prompt = LiteScorer(selector), adapter.prompt(QUESTION)
    for many, t in zip(scorer.score_many(prompt, tokens), tokens, strict=True):
        one = scorer.score(prompt, t)
        assert many.shape == (len(t),) and many.dtype == torch.float32 and many.device.type == "cpu"
        torch.testing.assert_close(many, one, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("chunks", [1, 4])
def test_one_projector_call_per_batch_whatever_the_chunk_count(pair, chunks):
    adapter, selector = pair
    prepared = clips(adapter, FRAMES[:chunks])
    with counting(selector.projector) as calls:
        encode_pairs(selector, adapter, prepared)
    assert calls[0] == 1


def vision_tower(adapter: VideoLLMAdapter) -> nn.Module:
    model = adapter.model.model
    return model.visual if adapter.family in QWEN_FAMILIES else model.vision_tower


@pytest.mark.parametrize("chunks", [1, 4])
def test_every_tower_runs_once_per_batch_whatever_the_chunk_count(pair, chunks):
    adapter, selector = pair
    prepared = clips(adapter, FRAMES[:chunks])
    with counting(vision_tower(adapter)) as tower:
        encode_pairs(selector, adapter, prepared)
    assert tower[0] == 1  # as `adapter.encode_prepared`


def test_one_selector_pass_per_prompt_and_chunk_length(pair):
    adapter, selector = pair
    tokens = encode_pairs(selector, adapter, clips(adapter))
    prompts = [adapter.prompt(QUESTION), adapter.prompt("is a door open ?")]
    scorer = LiteScorer(selector)
    with counting(selector.layers[0].mlp) as passes:  # the first decoder layer runs once per pass
        for prompt in prompts:
            scorer.score_many(prompt, tokens)
    assert passes[0] == len(prompts) * len({len(t) for t in tokens})


def test_score_embeds_many_keeps_gradients_like_score_embeds(pair):
    adapter, selector = pair
    tokens = encode_pairs(selector, adapter, clips(adapter, (4, 4)))
    lites = [t.lite.detach().clone().requires_grad_(True) for t in tokens]
    scores = selector.score_embeds_many(adapter.prompt(QUESTION), lites, tokens)
    torch.stack(scores).sum().backward()
    assert all(lite.grad is not None and bool(lite.grad.abs().sum() > 0) for lite in lites)
