"""Training batches equal what the processor and the adapter build at inference."""

from __future__ import annotations

import numpy as np
import torch
from transformers.video_utils import VideoMetadata

from flexselect.toy.batch import IGNORE, ToyExample, ToyTextCodec, collate, input_embeddings, vision_features
from streams.synth import ClipSampler


def examples(n: int = 3, frames: int = 8, spacing: float = 0.5) -> list[ToyExample]:
    rng = np.random.default_rng(3)
    sampler = ClipSampler(frames, (56, 56))
    clips = [sampler(rng) for _ in range(n)]
    times = np.arange(frames) * spacing
    return [ToyExample(c.frames, times, c.question, c.answer) for c in clips]


def processor_outputs(adapter, example: ToyExample, fps: float):
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": example.question}]}]
    text = adapter.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    n = len(example.frames)
    meta = VideoMetadata(
        total_num_frames=n, fps=fps, width=56, height=56, duration=n / fps, frames_indices=list(range(n))
    )
    return adapter.processor(
        text=[text],
        videos=[example.frames],
        return_tensors="pt",
        videos_kwargs={"video_metadata": [meta], "do_sample_frames": False},
    )


def test_ids_and_pixels_equal_the_processor(tiny_toy):
    exs = examples()
    batch = collate(exs, ToyTextCodec(tiny_toy.processor), 2)
    out = processor_outputs(tiny_toy, exs[1], fps=2.0)
    n = out["input_ids"].shape[1]
    per_clip = out["pixel_values_videos"].shape[0]
    assert torch.equal(batch.input_ids[1, :n], out["input_ids"][0])
    assert torch.equal(batch.pixel_values[per_clip : 2 * per_clip], out["pixel_values_videos"])


def test_labels_are_the_answer_and_end_of_turn_only(tiny_toy):
    exs = examples()
    codec = ToyTextCodec(tiny_toy.processor)
    batch = collate(exs, codec, 2)
    labelled = batch.labels[0][batch.labels[0] != IGNORE].tolist()
    assert labelled == codec.answer(exs[0].answer)
    assert tiny_toy.tokenizer.decode(labelled, skip_special_tokens=True) == exs[0].answer


def test_positions_and_embeddings_equal_the_adapter_sequence(tiny_toy):
    exs = examples(spacing=8.0)  # a stretched clock
    keep = np.zeros(16, dtype=bool)
    keep[[1, 6, 7, 14]] = True
    exs[2].keep = keep
    batch = collate(exs, ToyTextCodec(tiny_toy.processor), 2)
    with torch.no_grad():
        embeds = input_embeddings(tiny_toy.model, batch, vision_features(tiny_toy.model, batch))
    for i, ex in enumerate(exs):
        tokens = tiny_toy.encode(ex.frames, ex.times)
        index = None if ex.keep is None else torch.from_numpy(np.flatnonzero(ex.keep))
        seq = tiny_toy.build_sequence(tiny_toy.prompt(ex.question), tokens, index)
        assert torch.equal(batch.position_ids[:, i, : seq.length], seq.position_ids[:, 0])
        torch.testing.assert_close(embeds[i, : seq.length], seq.inputs_embeds[0], rtol=0, atol=1e-6)
