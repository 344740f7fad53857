"""Reference-layer scoring of many chunks in one decoder pass.

Ingest scores every new chunk against the standing prompts, each chunk alone as one group. Chunks of one
camera geometry give sequences of one length, so they stack into a batch: layers 0..L-1 run once over the
batch (the expensive part), and each row's question attention is read from its own slice. Sequences of
other lengths form their own batches. Each score equals `ReferenceScorer.score` of that chunk alone up to
the floating-point order of batched matrix products.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from flexselect.adapters.base import LayerInput
from flexselect.ranking import ReferenceScorer, aggregate, question_attention
from flexselect.types import Prompt, Sequence, VisualTokens


def stack_sequences(seqs: list[Sequence]) -> Sequence:
    """Equal-length, equally laid out sequences as one batch (B, S, ...); deepstack rows in batch order."""
    first = seqs[0]
    if any(s.length != first.length or s.visual_slice != first.visual_slice for s in seqs):
        raise ValueError("only sequences of one length and visual span stack into a batch")
    mrope = first.position_ids.dim() == 3
    deepstack = None
    if first.deepstack is not None:
        deepstack = torch.cat([s.deepstack for s in seqs], dim=1)  # type: ignore[misc]
    return Sequence(
        inputs_embeds=torch.cat([s.inputs_embeds for s in seqs]),
        position_ids=torch.cat([s.position_ids for s in seqs], dim=1 if mrope else 0),
        attention_mask=torch.cat([s.attention_mask for s in seqs]),
        visual_slice=first.visual_slice,
        visual_mask=torch.cat([s.visual_mask for s in seqs]),
        deepstack=deepstack,
    )


def score_many(scorer: ReferenceScorer, prompt: Prompt, tokens: list[VisualTokens]) -> list[torch.Tensor]:
    """`scorer.score(prompt, t)` for every `t`, with one decoder pass per group of equal-length sequences.

    Returns one (len(t),) float32 tensor per input, in input order.
    """
    adapter = scorer.adapter
    seqs = [adapter.build_sequence(prompt, t, compact=True) for t in tokens]
    groups: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    for i, seq in enumerate(seqs):
        groups[(seq.length, seq.visual_slice.start, seq.visual_slice.stop)].append(i)
    scores: list[torch.Tensor | None] = [None] * len(seqs)
    attn, rope = adapter.attention_module(scorer.layer), adapter.rope_module(scorer.layer)
    for rows in groups.values():
        batch = stack_sequences([seqs[i] for i in rows])
        layer_input = adapter.capture_layer_input(batch, scorer.layer)
        query = torch.arange(batch.length - prompt.query_len, batch.length, device=batch.inputs_embeds.device)
        for b, i in enumerate(rows):
            one = LayerInput(
                hidden=layer_input.hidden[b : b + 1],
                cos=layer_input.cos[b : b + 1],
                sin=layer_input.sin[b : b + 1],
            )
            with torch.no_grad():
                probs = question_attention(attn, one, query, rope)
            scores[i] = aggregate(probs[:, :, batch.visual_slice], scorer.aggregation)
    return [s for s in scores if s is not None]
