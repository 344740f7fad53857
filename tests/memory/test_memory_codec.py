"""The byte format of stored chunks."""

from __future__ import annotations

import pytest
import torch

from agent.memory import CorruptEntryError, RetentionConfig
from agent.memory.chunk import score_chunk
from agent.memory.codec import HEADER_BYTES, Layout, chunk_records, decode_records, encode_chunk
from flexselect.lite.tokens import PairedTokens
from tests.memory.memory_helpers import make_paired, make_tokens


def encoded(dtype: torch.dtype = torch.bfloat16, levels: int = 2) -> tuple[bytes, Layout]:
    tokens = make_tokens([0, 1], dim=6, dtype=dtype, levels=levels, newline=True)
    chunk, _ = score_chunk(tokens, torch.rand(len(tokens)), None, RetentionConfig())
    return bytes(encode_chunk(chunk)), Layout.of(chunk.tokens)


def test_a_record_holds_65_metadata_bytes_and_the_embedding_rows() -> None:
    blob, layout = encoded()
    assert layout == Layout("bfloat16", 6, 2, 1.0)
    assert layout.width == 65 + 6 * 2 * 3
    assert len(blob) == HEADER_BYTES + 10 * layout.width and blob[:4] == b"FSMc"


def test_decoding_restores_every_field() -> None:
    tokens = make_tokens([3, 4], dim=6, dtype=torch.float16, levels=1, newline=True)
    chunk, _ = score_chunk(tokens, torch.rand(len(tokens)), None, RetentionConfig())
    layout = Layout.of(chunk.tokens)
    rows = decode_records(chunk_records(bytes(encode_chunk(chunk)), layout), layout)
    assert torch.equal(rows.tokens.embeds.view(torch.int16), tokens.embeds.view(torch.int16))
    assert rows.tokens.deepstack is not None and tokens.deepstack is not None
    assert torch.equal(rows.tokens.deepstack.view(torch.int16), tokens.deepstack.view(torch.int16))
    for name in ("frame", "time", "grid", "kind", "token_id"):
        assert torch.equal(getattr(rows.tokens, name), getattr(tokens, name)), name
    assert torch.equal(rows.retention, chunk.retention) and rows.row.tolist() == list(range(len(tokens)))


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[:-1], lambda b: b"XXXX" + b[4:], lambda b: b[:10]],
    ids=["truncated", "magic", "short"],
)
def test_damaged_bytes_are_reported_as_corrupt(damage) -> None:  # type: ignore[no-untyped-def]
    blob, layout = encoded()
    with pytest.raises(CorruptEntryError):
        chunk_records(damage(blob), layout)


def test_selector_rows_follow_the_deepstack_rows_in_each_record() -> None:
    tokens = make_paired([0, 1], dim=6, dtype=torch.bfloat16, levels=2, lite_dim=5, lite_dtype=torch.float16)
    chunk, _ = score_chunk(tokens, torch.rand(len(tokens)), None, RetentionConfig())
    layout = Layout.of(chunk.tokens)
    blob = bytes(encode_chunk(chunk))
    assert layout == Layout("bfloat16", 6, 2, 1.0, "float16", 5)
    assert layout.width == 65 + 6 * 2 * 3 + 5 * 2
    first = HEADER_BYTES + 65 + 6 * 2 * 3  # the first record's selector row
    assert tokens.lite is not None
    assert blob[first : first + 10] == tokens.lite[0].view(torch.uint8).numpy().tobytes()
    rows = decode_records(chunk_records(blob, layout), layout)
    assert isinstance(rows.tokens, PairedTokens) and rows.tokens.lite is not None
    assert torch.equal(rows.tokens.lite.view(torch.int16), tokens.lite.view(torch.int16))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "float32;8",
        "int8;8;0;1.0",
        "float32;x;0;1.0",
        "float32;0;0;1.0",
        "float32;8;0;1.0;float32",
        "float32;8;0;1.0;int8;6",
        "float32;8;0;1.0;float32;0",
        "float32;8;0;1.0;float32;x",
    ],
)
def test_a_bad_layout_string_is_corrupt(text: str) -> None:
    with pytest.raises(CorruptEntryError):
        Layout.decode(text)


def test_layout_strings_round_trip() -> None:
    layout = Layout("float16", 3584, 3, 0.5)
    assert Layout.decode(layout.encode()) == layout


def test_a_layout_with_selector_rows_appends_their_dtype_and_width_to_the_plain_string() -> None:
    plain, paired = Layout("float16", 3584, 3, 0.5), Layout("float16", 3584, 3, 0.5, "float32", 896)
    assert (plain.encode(), paired.encode()) == ("float16;3584;3;0.5", "float16;3584;3;0.5;float32;896")
    assert Layout.decode(paired.encode()) == paired
