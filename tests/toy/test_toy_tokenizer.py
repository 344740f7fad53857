"""The word-level tokenizer covers the world's vocabulary, keeps chat tokens atomic and round-trips."""

from __future__ import annotations

import pytest

from flexselect.toy.tokenizer import SPECIAL_TOKENS, build_word_tokenizer
from streams.synth import ANSWERS, QUESTION_KINDS, WORDS, question_text


@pytest.fixture(scope="module")
def tokenizer():
    return build_word_tokenizer(WORDS)


def test_every_world_word_is_one_known_token(tokenizer):
    ids = [tokenizer(word, add_special_tokens=False)["input_ids"] for word in WORDS]
    assert all(len(i) == 1 and i[0] != tokenizer.unk_token_id for i in ids)
    assert len({i[0] for i in ids}) == len(WORDS)


@pytest.mark.parametrize("kind", QUESTION_KINDS)
def test_questions_and_answers_round_trip(tokenizer, kind):
    texts = [question_text(kind, "red", "square"), *ANSWERS[kind]]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text


def test_special_tokens_stay_atomic_inside_text(tokenizer):
    text = "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>what color was the ring ?<|im_end|>"
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert tokens == [
        "<|im_start|>", "user", "<|vision_start|>", "<|video_pad|>", "<|vision_end|>",
        "what", "color", "was", "the", "ring", "?", "<|im_end|>",
    ]  # fmt: skip


def test_decoding_skips_the_end_of_turn(tokenizer):
    ids = tokenizer("top left <|im_end|>", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "top left"


def test_named_video_and_image_tokens(tokenizer):
    assert (tokenizer.video_token, tokenizer.image_token) == ("<|video_pad|>", "<|image_pad|>")
    assert tokenizer.convert_ids_to_tokens(list(range(len(SPECIAL_TOKENS)))) == list(SPECIAL_TOKENS)


def test_words_with_whitespace_are_rejected():
    with pytest.raises(ValueError, match="hold no whitespace"):
        build_word_tokenizer(["top left"])
