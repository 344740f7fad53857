"""The auxiliary losses read what the model computes: FlexSelect's attention and per-token targets."""

from __future__ import annotations

import sys

import numpy as np
import torch

from flexselect.adapters.base import LayerInput
from flexselect.ranking import question_attention
from flexselect.toy.batch import IGNORE, ToyTextCodec, forward
from flexselect.toy.train import AttentionInput, evidence_attention_loss
from lab.toy.data import TOKEN_CLASSES, ToyData, ToyDataConfig, evidence_targets, token_targets
from streams.synth import COLOR_NAMES, SHAPES, ClipSampler

DATA = ToyDataConfig(lengths=(8, 16), length_weights=(0.5, 0.5), frames_per_batch=64)


def test_evidence_attention_is_the_scorers_attention(tiny_toy):
    batch = ToyData(DATA, ToyTextCodec(tiny_toy.processor), 2, seed=1).batch_at(5000)
    attn = tiny_toy.model.model.language_model.layers[2].self_attn
    rope = sys.modules[type(attn).__module__]
    with torch.no_grad(), AttentionInput(attn) as captured:
        forward(tiny_toy.model, batch)
        loss = evidence_attention_loss(captured, batch)
        masses = []
        for i in range(len(batch)):
            n = int(batch.attention_mask[i].sum())
            rows = torch.nonzero(batch.query_mask[i]).flatten()
            layer_input = LayerInput(
                captured.hidden[i : i + 1, :n], captured.cos[i : i + 1, :n], captured.sin[i : i + 1, :n]
            )
            probs = question_attention(attn, layer_input, rows, rope)  # (heads, rows, n)
            masses.append(probs[:, :, batch.evidence[i, :n]].sum(dim=-1).mean())
    torch.testing.assert_close(loss, -torch.log(torch.stack(masses) + 1e-6).mean())


def test_query_rows_are_the_prompt_after_the_visual_span(tiny_toy):
    codec = ToyTextCodec(tiny_toy.processor)
    batch = ToyData(DATA, codec, 2, seed=1).batch_at(0)
    rows = torch.nonzero(batch.query_mask[0]).flatten()
    ids = batch.input_ids[0, rows].tolist()
    assert tiny_toy.tokenizer.convert_ids_to_tokens([ids[0], ids[-1]]) == ["<|vision_end|>", "assistant"]


def test_token_targets_name_each_needles_colour_shape_and_cell():
    clip = ClipSampler(8, (56, 56))(np.random.default_rng(11))
    targets = token_targets(clip).reshape(4, 2, 2, 4)  # (steps, rows, cols, attributes)
    needle = clip.needles[0]
    row, col = needle.box[1] // 28, needle.box[0] // 28
    step = needle.first_frame // 2
    assert targets[step, row, col, 0] > 0 and targets[step, row, col, 1] > 0
    assert targets[..., 2].tolist() == [[[0, 0], [1, 1]]] * 4
    assert targets[..., 3].tolist() == [[[0, 1], [0, 1]]] * 4
    assert [t - 1 for t in TOKEN_CLASSES[:2]] == [7, 5]


def test_dropped_tokens_always_keep_the_evidence(tiny_toy):
    data = ToyData(ToyDataConfig(drop_prob=1.0, min_keep=0.02), ToyTextCodec(tiny_toy.processor), 2, seed=2)
    rng = np.random.default_rng(0)
    for _ in range(20):
        ex = data.example(rng, 16, augment=True).example
        assert ex.keep is not None and ex.evidence is not None
        assert not (ex.evidence & ~ex.keep).any()


def test_batches_are_a_pure_function_of_seed_and_step(tiny_toy):
    codec = ToyTextCodec(tiny_toy.processor)
    first, second = (ToyData(DATA, codec, 2, seed=4).batch_at(17) for _ in range(2))
    assert torch.equal(first.input_ids, second.input_ids)
    assert torch.equal(first.pixel_values, second.pixel_values)


def test_evidence_targets_name_the_needle_a_question_is_about():
    clip = ClipSampler(16, (56, 56), kinds=("place",))(np.random.default_rng(5))
    needle = next(n for n in clip.needles if n.id == clip.needle_ids[0])
    colour, shape, row, col, third = evidence_targets(clip).tolist()
    assert clip.answer == needle.quadrant == ("top", "bottom")[row] + " " + ("left", "right")[col]
    assert (colour, shape, third) == (
        COLOR_NAMES.index(needle.color) + 1,
        SHAPES.index(needle.shape) + 1,
        min(2, 3 * needle.first_frame // 16),
    )


def test_count_questions_only_name_the_shared_shape():
    clip = ClipSampler(16, (56, 56), kinds=("count",))(np.random.default_rng(6))
    targets = evidence_targets(clip)
    assert (targets[[0, 2, 3, 4]] == IGNORE).all()
    assert targets[1] > 0
