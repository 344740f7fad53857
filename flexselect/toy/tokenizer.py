"""A word-level tokenizer for a closed vocabulary, with the Qwen chat special tokens kept atomic.

Words are split on whitespace only, so `?` must stand alone (the synthetic world writes it so). Decoding
joins words with single spaces, so a one- or two-word answer decodes to exactly its text.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD, UNK = "<|image_pad|>", "<|video_pad|>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD, UNK)
ROLE_WORDS: tuple[str, ...] = ("system", "user", "assistant")


def build_word_tokenizer(words: Sequence[str]) -> PreTrainedTokenizerFast:
    """A fast tokenizer whose vocabulary is the special tokens, the chat roles and `words`, in that order.

    Args:
        words: the closed vocabulary (each entry one whitespace-free word; duplicates are an error).

    Raises:
        ValueError: a word holds whitespace, repeats, or collides with a special token or role.
    """
    entries = [*SPECIAL_TOKENS, *ROLE_WORDS, *words]
    bad = [w for w in words if not w or any(c.isspace() for c in w)]
    if bad:
        raise ValueError(f"vocabulary words must be non-empty and hold no whitespace, got {bad}")
    if len(set(entries)) != len(entries):
        repeated = sorted({w for w in entries if entries.count(w) > 1})
        raise ValueError(f"vocabulary entries repeat or collide with special tokens: {repeated}")
    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(entries)}, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=UNK,
        eos_token=IM_END,
        pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE_PAD, "video_token": VIDEO_PAD},
    )
    tokenizer.add_special_tokens(
        {"extra_special_tokens": list(SPECIAL_TOKENS)}, replace_extra_special_tokens=False
    )
    return tokenizer
