"""LLaVA-OneVision and InternVL: several clips through one vision-tower forward, each equal to encoding it
alone, with the processor's work done in `prepare`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flexselect.adapters import AdapterError, InternVLAdapter, LlavaOnevisionAdapter, VideoLLMAdapter
from flexselect.adapters.base import VideoClip
from flexselect.tiny import build_tiny

ADAPTERS = {"llava_onevision": LlavaOnevisionAdapter, "internvl": InternVLAdapter}
PIXELS = {"llava_onevision": "pixel_values_videos", "internvl": "pixel_values"}
SIDE = 56
CLOSE = {"atol": 1e-6, "rtol": 1e-5}


@pytest.fixture(scope="module", params=list(ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> VideoLLMAdapter:
    model, processor = build_tiny(request.param, frame_side=SIDE)
    return ADAPTERS[request.param](model, processor)


def clips(lengths: tuple[int, ...] = (4, 4, 2, 4)) -> list[VideoClip]:
    """Clips of different content, each starting where the previous one ended (frame labels of one width)."""
    rng = np.random.default_rng(1)
    out, offset = [], 10
    for n in lengths:
        out.append(
            VideoClip(
                frames=rng.integers(0, 256, (n, SIDE, SIDE, 3), dtype=np.uint8),
                times=offset + np.arange(n, dtype=np.float64),
                frame_offset=offset,
                time_origin=0.0,
                fps=1.0,
            )
        )
        offset += n
    return out


def tower_forwards(adapter: VideoLLMAdapter, batch: list[VideoClip]) -> tuple[list, int]:
    """`encode_prepared` of `batch` and the number of forwards the vision tower ran for it."""
    forwards = []
    handle = adapter.model.model.vision_tower.register_forward_hook(lambda *_: forwards.append(1))
    try:
        tokens = adapter.encode_prepared([adapter.prepare(c) for c in batch])
    finally:
        handle.remove()
    return tokens, len(forwards)


def test_several_clips_encode_in_one_tower_forward(adapter):
    tokens, forwards = tower_forwards(adapter, clips())
    assert forwards == 1
    assert len(tokens) == 4


def test_each_clip_of_a_batch_equals_the_clip_encoded_alone(adapter):
    batch = clips()
    together, _ = tower_forwards(adapter, batch)
    for clip, tokens in zip(batch, together, strict=True):
        alone = adapter.encode(
            clip.frames, clip.times, frame_offset=clip.frame_offset, time_origin=0.0, fps=clip.fps
        )
        for field in ("frame", "time", "grid", "kind", "token_id"):
            assert torch.equal(getattr(tokens, field), getattr(alone, field)), field
        assert tokens.seconds_per_step == alone.seconds_per_step
        torch.testing.assert_close(tokens.embeds, alone.embeds, **CLOSE)


def test_encode_prepared_of_no_clips_is_empty(adapter):
    assert adapter.encode_prepared([]) == []


def test_prepare_keeps_the_processors_pixels(adapter):
    clip = clips((3,))[0]
    prepared = adapter.prepare(clip)
    key = PIXELS[adapter.family]
    assert prepared.inputs is not None and list(prepared.inputs) == [key]
    expected = adapter.processor_inputs(clip.frames, clip.times)[key]
    assert prepared.inputs[key].dtype == torch.float32
    assert torch.equal(prepared.inputs[key], expected)


@pytest.mark.parametrize(
    "frames, times",
    [
        (np.zeros((2, SIDE, SIDE, 3), dtype=np.float32), np.arange(2.0)),  # not uint8
        (np.zeros((0, SIDE, SIDE, 3), dtype=np.uint8), np.arange(0.0)),  # no frames
        (np.zeros((2, SIDE, SIDE, 3), dtype=np.uint8), np.arange(3.0)),  # a time per frame is missing
    ],
    ids=["dtype", "empty", "times"],
)
def test_prepare_rejects_bad_frames_as_encode_does(adapter, frames, times):
    with pytest.raises(AdapterError) as by_encode:
        adapter.encode(frames, times)
    with pytest.raises(AdapterError) as by_prepare:
        adapter.prepare(VideoClip(frames, times))
    assert str(by_prepare.value) == str(by_encode.value)


def test_clips_whose_frames_differ_in_size_share_a_forward_per_run_in_clip_order(adapter):
    stacks = [
        torch.full((n, 3, side, side), float(k))
        for k, (n, side) in enumerate([(2, 4), (1, 4), (3, 8), (2, 4)])
    ]
    calls = []

    def per_frame(pixels: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(pixels.shape))
        return pixels.mean(dim=(1, 2, 3))

    out = adapter._per_frame_forward(stacks, per_frame)
    assert calls == [(3, 3, 4, 4), (3, 3, 8, 8), (2, 3, 4, 4)]
    assert [o.tolist() for o in out] == [[0.0, 0.0], [1.0], [2.0, 2.0, 2.0], [3.0, 3.0]]
