"""A chunk checked, moved to CPU and scored: what every backend stores for one append."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from agent.memory.config import RetentionConfig
from agent.memory.errors import MemoryInputError
from agent.memory.scoring import FrameRef, redundancy, retention
from flexselect.lite.tokens import PairedTokens
from flexselect.types import VisualTokens

STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
EMBED_DTYPES: dict[torch.dtype, str] = {
    torch.float32: "float32",
    torch.bfloat16: "bfloat16",
    torch.float16: "float16",
}


@dataclass(frozen=True)
class ScoredChunk:
    """One append on CPU with its per-token scores (all (N,) float32)."""

    tokens: VisualTokens
    attention: torch.Tensor
    redundancy: torch.Tensor
    retention: torch.Tensor

    def __len__(self) -> int:
        return len(self.tokens)


def check_stream_id(stream_id: str) -> str:
    """`stream_id` if it is a valid stream id, else MemoryInputError."""
    if not isinstance(stream_id, str) or not STREAM_ID.match(stream_id):
        raise MemoryInputError(
            f"stream id {stream_id!r} is invalid; use 1-128 chars of [A-Za-z0-9._@-], starting alphanumeric"
        )
    return stream_id


def lite_rows(tokens: VisualTokens) -> torch.Tensor | None:
    """The selector's (N, d) embeddings of `PairedTokens` (`flexselect.lite`), None for plain tokens.

    Read by attribute so that the memory never imports the selector package (and with it transformers).
    """
    lite = getattr(tokens, "lite", None)
    return lite if isinstance(lite, torch.Tensor) else None


def with_lite(tokens: VisualTokens, lite: torch.Tensor | None) -> VisualTokens:
    """`tokens` paired with selector rows `lite` (a `PairedTokens`), or `tokens` itself if `lite` is None."""
    if lite is None:
        return tokens
    return PairedTokens.pair(tokens, lite)


def concat_tokens(parts: list[VisualTokens]) -> VisualTokens:
    """Concatenate one stream's tokens with their own class's `concat`, so `PairedTokens` keep `lite`."""
    if not parts:
        raise ValueError("concat_tokens needs at least one part")
    return type(parts[0]).concat(parts)


def to_cpu(tokens: VisualTokens, *, copy: bool) -> VisualTokens:
    """Contiguous CPU tensors with canonical metadata dtypes; `copy` guarantees no alias of the caller's.

    Embeddings (and selector rows) keep their dtype and bytes; integer metadata is widened losslessly,
    time goes to float64.
    """

    def own(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        return t.detach().to("cpu", dtype, copy=copy).contiguous()

    lite = lite_rows(tokens)
    cpu = VisualTokens(
        embeds=own(tokens.embeds),
        frame=own(tokens.frame, torch.int64),
        time=own(tokens.time, torch.float64),
        grid=own(tokens.grid, torch.int64),
        kind=own(tokens.kind, torch.int8),
        token_id=own(tokens.token_id, torch.int64),
        deepstack=None if tokens.deepstack is None else own(tokens.deepstack),
        seconds_per_step=float(tokens.seconds_per_step),
    )
    return with_lite(cpu, None if lite is None else own(lite))


def payload_bytes(tokens: VisualTokens) -> int:
    """Bytes of the embedding (and deepstack and selector) rows of `tokens`."""
    if not len(tokens):
        return 0
    per = tokens.embeds[0:1].numel() * tokens.embeds.element_size()
    if tokens.deepstack is not None:
        per *= 1 + tokens.deepstack.shape[0]
    lite = lite_rows(tokens)
    if lite is not None:
        per += lite[0:1].numel() * lite.element_size()
    return per * len(tokens)


def _check(tokens: VisualTokens, attention: torch.Tensor, config: RetentionConfig) -> None:
    n = len(tokens)
    if n == 0 or n > config.max_chunk_tokens:
        raise MemoryInputError(
            f"a chunk needs 1..{config.max_chunk_tokens} tokens (max_chunk_tokens), got {n}"
        )
    if tokens.embeds.dim() != 2 or tokens.embeds.dtype not in EMBED_DTYPES:
        raise MemoryInputError(
            "embeds must be (N, D) float32/bfloat16/float16, got "
            f"{tuple(tokens.embeds.shape)} {tokens.embeds.dtype}"
        )
    if tokens.deepstack is not None and tokens.deepstack.dtype != tokens.embeds.dtype:
        raise MemoryInputError(
            f"deepstack dtype {tokens.deepstack.dtype} differs from embeds {tokens.embeds.dtype}"
        )
    lite = lite_rows(tokens)
    if lite is not None and (lite.dim() != 2 or lite.shape[0] != n or lite.dtype not in EMBED_DTYPES):
        raise MemoryInputError(
            f"selector rows (lite) must be ({n}, d) float32/bfloat16/float16, got {tuple(lite.shape)} "
            f"{lite.dtype}"
        )
    if payload_bytes(tokens) > config.max_chunk_bytes:
        raise MemoryInputError(
            f"chunk payload {payload_bytes(tokens)} B exceeds max_chunk_bytes={config.max_chunk_bytes}; "
            "split the chunk"
        )
    if attention.shape != (n,):
        raise MemoryInputError(f"attention has shape {tuple(attention.shape)}, expected ({n},)")
    if not bool(torch.isfinite(attention).all()) or not bool(torch.isfinite(tokens.time).all()):
        raise MemoryInputError("attention and time must be finite")
    if config.attention_norm == "mean" and bool((attention < 0).any()):
        raise MemoryInputError("attention must be non-negative with attention_norm='mean'")


def score_chunk(
    tokens: VisualTokens,
    attention: torch.Tensor,
    previous: FrameRef | None,
    config: RetentionConfig,
    *,
    copy: bool = True,
) -> tuple[ScoredChunk, FrameRef | None]:
    """Check a chunk, bring it to CPU and compute its scores; also return its newest frame for the next one.

    With `copy=False` the result may share memory with `tokens` (fine when it is encoded right away).

    Raises:
        MemoryInputError: empty or oversized chunk, bad dtype, misshapen or non-finite attention or times.
    """
    _check(tokens, attention, config)
    cpu = to_cpu(tokens, copy=copy)
    att = attention.detach().to("cpu", torch.float32).contiguous()
    red, newest = redundancy(cpu, previous, threshold=config.similarity_threshold)
    ret = retention(
        att,
        red,
        attention_weight=config.attention_weight,
        redundancy_weight=config.redundancy_weight,
        attention_norm=config.attention_norm,
    )
    return ScoredChunk(tokens=cpu, attention=att, redundancy=red, retention=ret), newest
