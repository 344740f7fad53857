"""Encode, select and answer: the one-shot FlexSelect flow over already decoded frames."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from flexselect.adapters.base import VideoLLMAdapter
from flexselect.budget import Scorer, select, selection_pays
from flexselect.config import Aggregation, SelectionConfig
from flexselect.ranking import ReferenceScorer, first_layer_input, layer_scores
from flexselect.timing import stopwatch
from flexselect.types import Answer, Prompt, Selection, Sequence, VisualTokens


@dataclass
class EvidenceSpan:
    """A run of consecutive kept frames: where the answer looked."""

    start: float  # seconds
    end: float  # seconds
    tokens: int
    score: float  # the best token score in the span


@dataclass
class AnswerResult:
    """An answer with what it cost and what it looked at."""

    answer: str
    total_tokens: int
    kept_tokens: int
    evidence: list[EvidenceSpan]
    timings_ms: dict[str, float] = field(default_factory=dict)
    selection: Selection | None = None
    note: str | None = None  # why the answer did not select (e.g. a full prefill was cheaper)
    # (kept,) the question's attention to the kept tokens at the reference layer in the answer's prefill
    # (the evidence order; `generate_ranked`), also when nothing was selected
    kept_scores: torch.Tensor | None = None

    @property
    def budget(self) -> int | None:
        """The token budget the selection used (after rounding), None when nothing was scored."""
        return None if self.selection is None else self.selection.budget


class _Timer:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.ms: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], object]) -> object:
        with stopwatch(self.device) as took:
            out = fn()
        self.ms[name] = self.ms.get(name, 0.0) + took.ms
        return out


def evidence_spans(
    tokens: VisualTokens, scores: torch.Tensor | None = None, *, min_share: float = 0.0
) -> list[EvidenceSpan]:
    """Group the frames of the evidence tokens into runs of consecutive frames (no more than one temporal
    step, `seconds_per_step`, apart) with their time spans,
    best first: ordered by the span's best token score (how much the question attended to it), ties in
    time order. Without scores every span scores 0 and the order is the time order.

    With scores, the evidence is the tokens scoring at least `min_share` of the best score: a budget also
    keeps context around what the question attends to, and that context is not where the answer was seen.
    """
    if scores is not None and len(tokens) and min_share > 0:
        best = float(scores.max())
        if best > 0:
            strong = scores >= min_share * best
            tokens, scores = tokens.select(strong.nonzero().squeeze(1)), scores[strong]
    if len(tokens) == 0:
        return []
    frames, inverse = torch.unique(tokens.frame, return_inverse=True)
    first_time = torch.zeros(len(frames), dtype=torch.float64).scatter_reduce(
        0, inverse, tokens.time, reduce="amin", include_self=False
    )
    last_time = torch.zeros(len(frames), dtype=torch.float64).scatter_reduce(
        0, inverse, tokens.time, reduce="amax", include_self=False
    )
    counts = torch.bincount(inverse, minlength=len(frames))
    best = torch.full((len(frames),), float("-inf")).scatter_reduce(
        0, inverse, scores.float() if scores is not None else torch.zeros(len(tokens)), reduce="amax"
    )
    order = torch.argsort(first_time, stable=True)  # frames in time order
    first_time, last_time, counts, best = first_time[order], last_time[order], counts[order], best[order]
    # Frames one step apart (a temporal patch for Qwen) or closer join a run; a longer gap ends it.
    joined = first_time.diff() <= 1.5 * tokens.seconds_per_step
    spans: list[EvidenceSpan] = []
    start = 0
    for i in range(1, len(frames) + 1):
        if i == len(frames) or not bool(joined[i - 1]):
            spans.append(
                EvidenceSpan(  # min and max: a span cannot invert even if frame order is not time order
                    start=float(first_time[start:i].min()),
                    end=float(last_time[start:i].max()),
                    tokens=int(counts[start:i].sum()),
                    score=float(best[start:i].max()),
                )
            )
            start = i
    spans.sort(key=lambda s: (-s.score, s.start))
    return spans


def reference_layer(adapter: VideoLLMAdapter, config: SelectionConfig) -> tuple[int, Aggregation]:
    """The reference layer and aggregation of `config` (None: the model's defaults): where evidence is
    ranked, whichever scorer selected."""
    return (
        adapter.default_layer() if config.layer is None else config.layer,
        config.aggregation or adapter.default_aggregation(),
    )


def generate_ranked(
    adapter: VideoLLMAdapter,
    seq: Sequence,
    prompt: Prompt,
    *,
    layer: int,
    aggregation: Aggregation,
    max_new_tokens: int,
) -> tuple[Answer, torch.Tensor]:
    """Generate the answer over `seq` and score its visual tokens (the kept ones) by the question's
    attention to them at the reference layer during the answer's own prefill: (kept,) float32 on the CPU.

    This is the evidence order for every scorer. Selection scores each group on its own (attention
    normalises over that group's tokens), and FlexSelect-Lite's scores only approximate the reference
    layer: good enough to keep the asked moment within the budget, not to rank it first among the kept
    tokens. The answer's prefill runs the reference layer over `[prefix | kept | question]` anyway, so
    there the question ranks just the kept tokens, all competing as they do in the answer, for the cost
    of one projection (`flexselect.ranking.first_layer_input`).
    """
    with first_layer_input(adapter, layer) as captured:
        generated = adapter.generate(seq, max_new_tokens=max_new_tokens)
    if not captured:
        raise RuntimeError(f"the answer's prefill never reached layer {layer}")
    with stopwatch(captured[0].hidden.device) as took:
        scores = layer_scores(
            adapter, captured[0], seq, prompt.query_len, layer=layer, aggregation=aggregation
        )
    generated.timings_ms["rank"] = took.ms
    return generated, scores.float().cpu()


class FlexSelectPipeline:
    """A base video LLM with a scorer: frames and a question in, an answer with evidence out."""

    def __init__(
        self,
        adapter: VideoLLMAdapter,
        scorer: Scorer | None,
        config: SelectionConfig,
        *,
        max_new_tokens: int = 64,
    ) -> None:
        self.adapter = adapter
        self.scorer = scorer
        self.config = config
        self.max_new_tokens = max_new_tokens

    def max_group_tokens(self, prompt: Prompt) -> int:
        """Visual tokens one scoring group may hold so the whole question still fits the model."""
        room = self.adapter.max_positions - len(prompt.prefix_ids) - len(prompt.suffix_ids)
        if room < 1:
            raise ValueError(
                f"the prompt alone ({len(prompt.prefix_ids) + len(prompt.suffix_ids)} tokens) fills the "
                f"model's {self.adapter.max_positions} positions; shorten the question"
            )
        return room

    def answer(self, frames: np.ndarray, times: np.ndarray, question: str) -> AnswerResult:
        """Encode `frames`, keep the budget's best tokens for `question`, and generate the answer."""
        timer = _Timer(self.adapter.device)
        tokens = timer.run("encode", lambda: self.adapter.encode(frames, times))
        assert isinstance(tokens, VisualTokens)
        return self.answer_tokens(tokens, question, timer=timer)

    def answer_tokens(
        self, tokens: VisualTokens, question: str, *, timer: _Timer | None = None
    ) -> AnswerResult:
        """Answer over already encoded visual tokens (e.g. a stream's memory)."""
        timer = timer or _Timer(self.adapter.device)
        prompt = self.adapter.prompt(question)
        selection: Selection | None = None
        keep: torch.Tensor | None = None
        note = self._full_prefill_note(prompt, len(tokens))
        if self.scorer is not None and note is None:  # scored even when all fit: the scores say which
            # tokens are evidence
            selection = timer.run(  # type: ignore[assignment]
                "select",
                lambda: select(
                    self.scorer, prompt, tokens, self.config, max_group_tokens=self.max_group_tokens(prompt)
                ),
            )
            assert selection is not None
            if len(selection.index) < len(tokens):
                keep = selection.index
        if keep is None:
            timer.ms.setdefault("select", 0.0)
            needed = len(prompt.prefix_ids) + len(tokens) + len(prompt.suffix_ids)
            if needed > self.adapter.max_positions:
                raise ValueError(
                    f"{len(tokens)} visual tokens and the prompt ({needed} tokens) exceed the model's "
                    f"{self.adapter.max_positions} positions; use a scorer with a budget"
                )
        seq = self.adapter.build_sequence(prompt, tokens, keep)
        kept = tokens if keep is None else tokens.select(keep)
        # Ranked by the reference layer in the answer's own prefill, whichever scorer selected, and also when
        # nothing was selected (no scorer, or a full prefill that is cheaper): evidence points at moments.
        layer, aggregation = reference_layer(self.adapter, self.config)
        new_tokens = self.max_new_tokens
        generated, kept_scores = generate_ranked(
            self.adapter, seq, prompt, layer=layer, aggregation=aggregation, max_new_tokens=new_tokens
        )
        timings = {**timer.ms, **generated.timings_ms}
        return AnswerResult(
            answer=generated.text,
            total_tokens=len(tokens),
            kept_tokens=len(kept),
            evidence=evidence_spans(kept, kept_scores, min_share=self.config.evidence_share),
            timings_ms=timings,
            selection=selection,
            kept_scores=kept_scores,
            note=note,
        )

    def _full_prefill_note(self, prompt: Prompt, retained: int) -> str | None:
        """Why a full prefill replaces reference selection here, or None (see `full_when_cheaper`)."""
        if not (self.config.full_when_cheaper and isinstance(self.scorer, ReferenceScorer)):
            return None
        fits = len(prompt.prefix_ids) + retained + len(prompt.suffix_ids) <= self.adapter.max_positions
        depth = self.adapter.num_layers
        if not fits or selection_pays(retained, self.config.budget, layer=self.scorer.layer, depth=depth):
            return None
        return (
            f"full prefill: reference selection through layer {self.scorer.layer} of {depth} cannot pay "
            f"for {retained} tokens with a budget of {self.config.budget}"
        )
