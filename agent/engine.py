"""The agent's model-side work: encode chunks, score them for memory, answer over retained tokens.

It is synchronous and single-threaded: only the worker thread calls it.

With `model.scorer: lite` a FlexSelect-Lite selector scores instead of the reference layer: chunks are
encoded as `PairedTokens` (the selector's own embeddings beside the base model's), the memory keeps both,
and answers score the retained tokens through per-stream selector caches (`agent.selector_caches`): each
chunk runs through the selector once at ingest, and a question runs only its own tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from agent.config import ConfigError, ModelSection
from agent.selector import load_selector_for
from agent.selector_caches import SelectorCaches
from flexselect.adapters import VideoLLMAdapter
from flexselect.adapters.base import PreparedClip, VideoClip
from flexselect.batch_scoring import score_many
from flexselect.budget import Scorer, top_k
from flexselect.config import SelectionConfig, default_budget
from flexselect.lite.model import LiteSelector, SelectorError
from flexselect.lite.scorer import LiteScorer, encode_pairs
from flexselect.lite.tokens import PairedTokens
from flexselect.pipeline import (
    EvidenceSpan,
    FlexSelectPipeline,
    evidence_spans,
    generate_ranked,
    reference_layer,
)
from flexselect.ranking import ReferenceScorer
from flexselect.timing import synced_now
from flexselect.types import Answer, Prompt, Sequence, VisualTokens

logger = logging.getLogger(__name__)

QUESTION_ROOM = 256  # positions a cached group leaves for the question (unknown when a chunk is ingested)


@dataclass
class ChunkInput:
    """Frames of one chunk of one stream, ready for the vision tower."""

    stream_id: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    times: np.ndarray  # (T,) absolute Unix seconds
    frame_offset: int  # index of the first frame in the stream's own frame count
    time_origin: float  # subtracted where times become text (Qwen3-VL timestamps)
    fps: float | None = None  # the stream's sampling rate (None: estimated from the times)


@dataclass
class PreparedChunk:
    """A chunk after the CPU half of encoding (`Engine.prepare`), ready for `Engine.encode_batch`."""

    chunk: ChunkInput
    clip: PreparedClip


@dataclass
class EncodedChunk:
    """A chunk's visual tokens (`PairedTokens` with the lite scorer) and their query-independent ingest
    attention."""

    stream_id: str
    tokens: VisualTokens
    attention: torch.Tensor  # (N,) float32 on the CPU


@dataclass
class StreamEvidence:
    stream_id: str
    span: EvidenceSpan


@dataclass
class EngineAnswer:
    """An answer over the memory of one or more streams."""

    text: str
    evidence: list[StreamEvidence]
    retained_tokens: int
    used_tokens: int
    timings_ms: dict[str, float] = field(default_factory=dict)


class Engine:
    """Owns the adapter and scorer (and the selector with `scorer: lite`); every method runs on the worker
    thread only.

    Args:
        cache_rebuild_share / cache_max_rows / cache_max_bytes: `SelectorCaches` limits (`scorer: lite`);
            the agent (`agent.runtime.build_engine`) sizes the rows from the memory's retention and the
            bytes from `model.selector_cache_max_bytes`; the defaults fit the default retention.

    Raises:
        ConfigError: with `scorer: lite`, the selector does not load or was not trained for this model.
    """

    def __init__(
        self,
        adapter: VideoLLMAdapter,
        config: ModelSection,
        *,
        standing_prompts: list[str],
        cache_rebuild_share: float = 0.5,
        cache_max_rows: int = 65_536,
        cache_max_bytes: int | None = None,
    ):
        self.adapter = adapter
        self.config = config
        self.selector: LiteSelector | None = None
        self.scorer: Scorer | None = None
        self.caches: SelectorCaches | None = None
        if config.scorer == "reference":
            self.scorer = ReferenceScorer(adapter, layer=config.layer, aggregation=config.aggregation)
        elif config.scorer == "lite":
            try:
                self.selector = load_selector_for(config.selector, config.name, adapter)
            except SelectorError as exc:
                raise ConfigError(f"model.selector: {exc}") from exc
            self.scorer = LiteScorer(self.selector)
            prefix = adapter.prompt("?").prefix_ids
            self.caches = SelectorCaches(
                self.selector,
                prefix,
                max_group_tokens=max(1, adapter.max_positions - len(prefix) - QUESTION_ROOM),
                max_group_frames=config.max_frames_per_group,
                rebuild_share=cache_rebuild_share,
                max_rows=cache_max_rows,
                max_bytes=cache_max_bytes,
            )
        self._standing: list[Prompt] = []
        self.set_standing_prompts(standing_prompts)
        self.tokens_per_frame: float | None = None

    @property
    def model_name(self) -> str:
        return self.config.name

    @property
    def temporal_patch(self) -> int:
        """Frames the model merges into one token in time (1 for families that encode frame by frame)."""
        return getattr(self.adapter, "temporal_patch", 1)

    def set_standing_prompts(self, prompts: list[str]) -> None:
        """Prompts whose attention decides what the memory keeps (description prompt plus watches)."""
        self._standing = [self.adapter.prompt(p) for p in dict.fromkeys(prompts)]

    def prepare(self, chunk: ChunkInput) -> PreparedChunk:
        """The CPU half of encoding a chunk (resize and patchify, pinned for a GPU). Thread-safe: the worker
        runs it off the model thread so the model thread only runs the model."""
        clip = VideoClip(
            chunk.frames,
            chunk.times,
            frame_offset=chunk.frame_offset,
            time_origin=chunk.time_origin,
            fps=chunk.fps,
        )
        return PreparedChunk(chunk, self.adapter.prepare(clip))

    def encode(self, chunk: ChunkInput) -> EncodedChunk:
        """Encode one chunk (see `encode_batch`)."""
        return self.encode_batch([self.prepare(chunk)])[0]

    def encode_batch(self, prepared: list[PreparedChunk]) -> list[EncodedChunk]:
        """Vision tower and projector once over all the chunks (of one or many streams; with
        `scorer: lite` the tower's features also go through the selector's projector, once for the batch),
        then the ingest attention of the standing prompts, batched over chunks of one length. Results come
        back per chunk, in order, each equal to encoding that chunk alone. With `scorer: lite` each chunk
        also enters its stream's selector cache (all chunks' rows through each selector layer together),
        so the cache holds the rows handed to the memory."""
        if not prepared:
            return []
        clips = [p.clip for p in prepared]
        all_tokens: list[VisualTokens]
        if self.selector is not None:
            all_tokens = list(encode_pairs(self.selector, self.adapter, clips))
        else:
            all_tokens = self.adapter.encode_prepared(clips)
        if self.tokens_per_frame is None:
            first = all_tokens[0]
            self.tokens_per_frame = len(first) / len(first.frame_ids())  # per temporal step
        if self.caches is not None:
            self.caches.ingest_many(
                [(p.chunk.stream_id, tokens) for p, tokens in zip(prepared, all_tokens, strict=True)]
            )
        attention = self.ingest_attention_many(all_tokens)
        return [
            EncodedChunk(p.chunk.stream_id, _to_cpu(tokens), scores)
            for p, tokens, scores in zip(prepared, all_tokens, attention, strict=True)
        ]

    def ingest_attention(self, tokens: VisualTokens) -> torch.Tensor:
        """Max over standing prompts of the scorer's attention (uniform without a scorer)."""
        return self.ingest_attention_many([tokens])[0]

    def ingest_attention_many(self, tokens: list[VisualTokens]) -> list[torch.Tensor]:
        """`ingest_attention` of several chunks: one decoder pass per standing prompt over all chunks of one
        length, of the base model's reference layer (`flexselect.batch_scoring`) or of the selector
        (`LiteScorer.score_many`)."""
        if self.scorer is None or not self._standing:
            return [torch.ones(len(t), dtype=torch.float32) for t in tokens]
        per_prompt: list[list[torch.Tensor]] = []
        for prompt in self._standing:
            if isinstance(self.scorer, ReferenceScorer):
                per_prompt.append(score_many(self.scorer, prompt, tokens))
            elif isinstance(self.scorer, LiteScorer):
                per_prompt.append(self.scorer.score_many(prompt, tokens))
            else:
                per_prompt.append([self.scorer.score(prompt, t) for t in tokens])
        return [
            torch.stack([scores[i].float().cpu() for scores in per_prompt]).max(dim=0).values
            for i in range(len(tokens))
        ]

    def default_budget(self) -> int:
        """The configured budget, else 32 frames' worth of this model's tokens."""
        if self.config.budget is not None:
            return self.config.budget
        return default_budget(self.tokens_per_frame or 64.0)

    def answer(
        self, question: str, streams: list[tuple[str, VisualTokens]], budget: int | None
    ) -> EngineAnswer:
        """Select from the retained tokens of `streams` (in the given order) and generate the answer.

        Raises:
            SelectorError: with `scorer: lite`, a stream's tokens were stored without selector embeddings.
        """
        if self.selector is not None:
            check_paired([sid for sid, tokens in streams if not isinstance(tokens, PairedTokens)])
        merged, stream_index = merge_streams([tokens for _, tokens in streams])
        config = self.selection(budget)
        scores: torch.Tensor | None
        if self.caches is not None:
            text, keep, scores, timings = self._answer_cached(question, streams, merged, config)
        else:
            pipeline = FlexSelectPipeline(
                self.adapter, self.scorer, config, max_new_tokens=self.config.max_new_tokens
            )
            result = pipeline.answer_tokens(merged, question)
            text, timings = result.answer, result.timings_ms
            keep = torch.arange(len(merged)) if result.selection is None else result.selection.index
            scores = result.kept_scores  # the reference layer's attention in the answer's prefill
        return EngineAnswer(
            text=text,
            evidence=stream_evidence([sid for sid, _ in streams], merged, stream_index, keep, scores, config),
            retained_tokens=len(merged),
            used_tokens=len(keep),
            timings_ms=timings,
        )

    def selection(self, budget: int | None) -> SelectionConfig:
        """The selection settings of a question with `budget` (None: the default budget)."""
        return SelectionConfig(
            budget=budget or self.default_budget(),
            layer=self.config.layer,
            aggregation=self.config.aggregation,
            max_frames_per_group=self.config.max_frames_per_group,
        )

    def _answer_cached(
        self,
        question: str,
        streams: list[tuple[str, VisualTokens]],
        merged: VisualTokens,
        config: SelectionConfig,
    ) -> tuple[str, torch.Tensor, torch.Tensor, dict[str, float]]:
        """Score each stream's retained tokens through its selector cache, keep the budget's best scores
        over all streams (one global top-k; the cache's groups never span streams) and generate.

        Returns:
            The answer, the kept indices into `merged` (ascending), their evidence scores (the reference
            layer's attention in the answer's prefill), and timings (ms).
        """
        assert self.caches is not None
        prompt = self.adapter.prompt(question)
        start = self._now()
        scores = torch.cat([self.caches.scores(sid, tokens, prompt) for sid, tokens in streams])
        keep = top_k(scores, [torch.arange(len(scores))], config.budget, "global")
        keep = keep.cpu()  # the one read back to the host
        select_ms = (self._now() - start) * 1e3
        self.check_positions(prompt, merged, keep)
        seq = self.adapter.build_sequence(prompt, merged, None if len(keep) == len(merged) else keep)
        generated, ranked = self.generate_ranked(seq, prompt, config)
        return generated.text, keep, ranked, {"select": select_ms, **generated.timings_ms}

    def generate_ranked(
        self, seq: Sequence, prompt: Prompt, config: SelectionConfig
    ) -> tuple[Answer, torch.Tensor]:
        """Generate over `seq` and rank its kept tokens for the evidence by the reference layer's
        attention in the answer's own prefill (`flexselect.pipeline.generate_ranked`), as every path
        ranks them: the selector's scores choose the kept tokens, not their order."""
        layer, aggregation = reference_layer(self.adapter, config)
        return generate_ranked(
            self.adapter,
            seq,
            prompt,
            layer=layer,
            aggregation=aggregation,
            max_new_tokens=self.config.max_new_tokens,
        )

    def check_positions(self, prompt: Prompt, merged: VisualTokens, keep: torch.Tensor) -> None:
        """ValueError when every token is kept and the sequence exceeds the model's positions."""
        if len(keep) == len(merged):
            needed = len(prompt.prefix_ids) + len(merged) + len(prompt.suffix_ids)
            if needed > self.adapter.max_positions:
                raise ValueError(
                    f"{len(merged)} visual tokens and the prompt ({needed} tokens) exceed the model's "
                    f"{self.adapter.max_positions} positions; lower the budget"
                )

    def _now(self) -> float:
        """A clock reading after the adapter's device has finished its queued work."""
        return synced_now(self.adapter.device)


def check_paired(plain: list[str]) -> None:
    """SelectorError naming the streams stored without selector embeddings (FlexSelect-Lite needs them)."""
    if plain:
        raise SelectorError(
            f"streams {plain} were stored without selector embeddings (by an agent with another "
            "model.scorer), so FlexSelect-Lite cannot score them; delete them from the memory or "
            "answer with model.scorer: reference"
        )


def stream_evidence(
    stream_ids: list[str],
    merged: VisualTokens,
    stream_index: torch.Tensor,
    keep: torch.Tensor,
    scores: torch.Tensor | None,
    config: SelectionConfig,
) -> list[StreamEvidence]:
    """Evidence spans of the kept rows `keep` of `merged` per stream, best score first."""
    evidence: list[StreamEvidence] = []
    for i, stream_id in enumerate(stream_ids):
        mine = stream_index[keep] == i
        if bool(mine.any()):
            spans = evidence_spans(
                merged.select(keep[mine]),
                None if scores is None else scores[mine],
                min_share=config.evidence_share,
            )
            evidence += [StreamEvidence(stream_id, span) for span in spans]
    evidence.sort(key=lambda e: e.span.score, reverse=True)
    return evidence


def merge_streams(parts: list[VisualTokens]) -> tuple[VisualTokens, torch.Tensor]:
    """Lay several streams' tokens end to end as one video; returns it and each row's stream index.

    Frame and temporal-step indices of each later stream are shifted past the previous one (with a gap)
    so frames never collide and evidence runs never join across streams. `PairedTokens` stay paired (all
    non-empty parts or none must be).
    """
    if not parts:
        raise ValueError("no streams to merge")
    paired = {isinstance(tokens, PairedTokens) for tokens in parts if len(tokens)}
    if len(paired) > 1:
        raise ValueError("cannot merge streams with and without selector embeddings")
    shifted, index = [], []
    frame_base = step_base = 0
    for i, tokens in enumerate(parts):
        if len(tokens) == 0:
            continue
        frame_shift = frame_base - int(tokens.frame.min())
        steps = tokens.grid[:, 0][tokens.grid[:, 0] >= 0]
        step_shift = step_base - (int(steps.min()) if len(steps) else 0)
        grid = tokens.grid.clone()
        grid[:, 0] = torch.where(grid[:, 0] >= 0, grid[:, 0] + step_shift, grid[:, 0])
        moved = VisualTokens(
            embeds=tokens.embeds,
            frame=tokens.frame + frame_shift,
            time=tokens.time,
            grid=grid,
            kind=tokens.kind,
            token_id=tokens.token_id,
            deepstack=tokens.deepstack,
            seconds_per_step=tokens.seconds_per_step,
        )
        if isinstance(tokens, PairedTokens):
            assert tokens.lite is not None
            moved = PairedTokens.pair(moved, tokens.lite)
        shifted.append(moved)
        index.append(torch.full((len(tokens),), i, dtype=torch.long))
        frame_base = int(moved.frame.max()) + 4  # a gap keeps evidence runs apart
        step_base = int(grid[:, 0].max()) + 2
    concat = PairedTokens.concat if paired == {True} else VisualTokens.concat
    return concat(shifted), torch.cat(index)


def _to_cpu(tokens: VisualTokens) -> VisualTokens:
    """The tokens on the CPU for the memory, selector embeddings included (`PairedTokens` stay paired)."""
    cpu = VisualTokens(
        embeds=tokens.embeds.detach().cpu(),
        frame=tokens.frame.cpu(),
        time=tokens.time.cpu(),
        grid=tokens.grid.cpu(),
        kind=tokens.kind.cpu(),
        token_id=tokens.token_id.cpu(),
        deepstack=None if tokens.deepstack is None else tokens.deepstack.detach().cpu(),
        seconds_per_step=tokens.seconds_per_step,
    )
    if isinstance(tokens, PairedTokens):
        assert tokens.lite is not None
        return PairedTokens.pair(cpu, tokens.lite.detach().cpu())
    return cpu
