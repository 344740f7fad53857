"""Batched training inputs that equal what the adapter builds at inference, and the forward that uses them.

One example is a clip (uint8 frames at the model's frame side), its frame times, a question, an answer and
optionally which visual tokens to keep. A batch holds the clips' patches for the vision tower and, per
example, the sequence `[prefix | kept visual tokens | suffix | answer <|im_end|>]` with the positions
`VideoLLMAdapter.build_sequence` gives: every position is computed on the full clip and then gathered, so a
clip with dropped tokens looks exactly like a FlexSelect selection of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
from transformers.modeling_outputs import CausalLMOutputWithPast

from flexselect.adapters.qwen_common import sampled_fps
from flexselect.toy.model import MERGE, PATCH, TEMPORAL_PATCH
from flexselect.toy.tokenizer import IM_END, PAD

IGNORE = -100


@dataclass
class ToyExample:
    """One clip with one question and its answer.

    Attributes:
        frames: (T, S, S, 3) uint8 RGB at the model's frame side S.
        times: (T,) seconds of each frame; their spacing sets the temporal positions.
        question: the question text.
        answer: the answer text (one or two words).
        keep: (N,) bool over the clip's visual tokens in (step, row, col) raster order, or None for all.
        token_targets: (N, A) int64 class of A per-token attributes (auxiliary loss), IGNORE to skip.
        evidence: (N,) bool tokens that show what the question is about (auxiliary loss), or None.
        evidence_targets: (E,) int64 attribute classes of the evidence (auxiliary loss), IGNORE to skip.
    """

    frames: np.ndarray
    times: np.ndarray
    question: str
    answer: str
    keep: np.ndarray | None = None
    token_targets: np.ndarray | None = None
    evidence: np.ndarray | None = None
    evidence_targets: np.ndarray | None = None


@dataclass
class ToyBatch:
    """Model inputs for a batch of examples (right-padded).

    Attributes:
        pixel_values: (P, 3*2*14*14) float32 patches of every clip, in processor layout.
        grid_thw: (B, 3) int64 (steps, patch rows, patch cols) per clip.
        input_ids: (B, L) int64; visual rows hold the video placeholder id, padding the pad id.
        visual_index: (B, L) int64 row of the vision output that fills a position, -1 for text and padding.
        position_ids: (3, B, L) int64 M-RoPE positions (time, height, width).
        attention_mask: (B, L) int64, 0 on padding.
        labels: (B, L) int64 answer tokens and the closing <|im_end|>, IGNORE elsewhere.
        token_targets: (B*N, A) int64 per-token attribute classes of every clip token, or None.
        query_mask: (B, L) bool the prompt rows after the visual span (FlexSelect's query rows).
        evidence: (B, L) bool visual positions holding evidence tokens (all False without evidence).
        evidence_targets: (B, E) int64 attribute classes of each example's evidence, or None.
    """

    pixel_values: torch.Tensor
    grid_thw: torch.Tensor
    input_ids: torch.Tensor
    visual_index: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    token_targets: torch.Tensor | None = None
    query_mask: torch.Tensor | None = None
    evidence: torch.Tensor | None = None
    evidence_targets: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def patchify(frames: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(B, T, S, S, 3) uint8 clips -> (B*steps*rows*cols, 3*2*14*14) float32, equal to the video processor.

    Frames must already be at the processor's size (its resize is then the identity). Odd T repeats the last
    frame, as the processor does. `mean`/`std` are the processor's per-channel values in 0..1 units.
    """
    b, t, h, w, c = frames.shape
    x = torch.from_numpy(np.ascontiguousarray(frames))
    if pad := -t % TEMPORAL_PATCH:
        x = torch.cat([x, x[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1)
        t += pad
    steps, gh, gw = t // TEMPORAL_PATCH, h // PATCH, w // PATCH
    # (b, steps, tp, gh/m, m, p, gw/m, m, p, c): split time into patches and space into merged 2x2 blocks
    x = x.view(b, steps, TEMPORAL_PATCH, gh // MERGE, MERGE, PATCH, gw // MERGE, MERGE, PATCH, c)
    # -> (b, steps, gh/m, gw/m, m, m, c, tp, p, p): the processor's patch order and feature layout
    x = x.permute(0, 1, 3, 6, 4, 7, 9, 2, 5, 8)
    x = x.reshape(b * steps * gh * gw, c, TEMPORAL_PATCH * PATCH * PATCH).float()
    # the processor's fused rescale + normalise: (x - 255 mean) / (255 std), per channel
    return ((x - mean.view(1, c, 1) * 255.0) / (std.view(1, c, 1) * 255.0)).flatten(1)


def visual_offsets(
    steps: int, rows: int, cols: int, times: np.ndarray, tokens_per_second: float
) -> tuple[torch.Tensor, int]:
    """(3, steps*rows*cols) position offsets of a clip's tokens and the span's extent, as in the adapter.

    Time is `step * tokens_per_second * seconds_per_step` truncated, height and width are the token's row
    and column; the text after the span resumes at the largest offset + 1.
    """
    seconds_per_step = TEMPORAL_PATCH / sampled_fps(times)
    interval = float(tokens_per_second) * torch.tensor(seconds_per_step, dtype=torch.float32)
    t, r, c = torch.meshgrid(torch.arange(steps), torch.arange(rows), torch.arange(cols), indexing="ij")
    offsets = torch.stack([(t.flatten() * interval).long(), r.flatten(), c.flatten()])
    return offsets, int(offsets.max()) + 1


class ToyTextCodec:
    """Question and answer ids from the processor's own chat template (cached per question)."""

    def __init__(self, processor: Qwen2_5_VLProcessor) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.video_id = int(self.tokenizer.convert_tokens_to_ids(processor.video_token))
        self.pad_id = int(self.tokenizer.convert_tokens_to_ids(PAD))
        self.end_id = int(self.tokenizer.convert_tokens_to_ids(IM_END))
        self._prompts: dict[str, tuple[list[int], list[int]]] = {}

    def prompt(self, question: str) -> tuple[list[int], list[int]]:
        """(prefix ids, suffix ids) around the visual span, as `VideoLLMAdapter.prompt` splits them."""
        if question not in self._prompts:
            messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            prefix, suffix = text.split(self.processor.video_token)
            self._prompts[question] = (self._ids(prefix), self._ids(suffix))
        return self._prompts[question]

    def answer(self, answer: str) -> list[int]:
        """Answer word ids followed by <|im_end|> (what greedy decoding must produce, then stop)."""
        return [*self._ids(answer), self.end_id]

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def collate(examples: list[ToyExample], codec: ToyTextCodec, tokens_per_second: float) -> ToyBatch:
    """Stack examples of one clip length into a `ToyBatch` (see the module docstring for the layout)."""
    frames = np.stack([e.frames for e in examples])
    b, t, h, w, _ = frames.shape
    vp = codec.processor.video_processor
    pixels = patchify(frames, torch.tensor(vp.image_mean), torch.tensor(vp.image_std))
    steps, rows, cols = -(-t // TEMPORAL_PATCH), h // (PATCH * MERGE), w // (PATCH * MERGE)
    per_clip = steps * rows * cols
    rows_ids, rows_vis, rows_pos, rows_lab, spans = [], [], [], [], []
    for i, ex in enumerate(examples):
        prefix, suffix = codec.prompt(ex.question)
        answer = codec.answer(ex.answer)
        offsets, extent = visual_offsets(steps, rows, cols, ex.times, tokens_per_second)
        kept = torch.arange(per_clip) if ex.keep is None else torch.from_numpy(np.flatnonzero(ex.keep))
        p, v, after = len(prefix), len(kept), len(suffix) + len(answer)
        ids = [*prefix, *[codec.video_id] * v, *suffix, *answer]
        text_pos = torch.cat([torch.arange(p), p + extent + torch.arange(after)])
        pos = torch.cat([text_pos[:p].expand(3, -1), p + offsets[:, kept], text_pos[p:].expand(3, -1)], dim=1)
        vis = torch.full((len(ids),), -1, dtype=torch.long)
        vis[p : p + v] = i * per_clip + kept
        lab = torch.full((len(ids),), IGNORE, dtype=torch.long)
        lab[len(ids) - len(answer) :] = torch.tensor(answer)
        rows_ids.append(torch.tensor(ids))
        rows_vis.append(vis)
        rows_pos.append(pos)
        rows_lab.append(lab)
        evidence = torch.zeros(len(ids), dtype=torch.bool)
        if ex.evidence is not None:
            evidence[p : p + v] = torch.from_numpy(ex.evidence)[kept]
        spans.append((p + v, p + v + len(suffix), evidence))
    length = max(len(r) for r in rows_ids)
    input_ids = torch.full((b, length), codec.pad_id, dtype=torch.long)
    visual_index = torch.full((b, length), -1, dtype=torch.long)
    position_ids = torch.zeros((3, b, length), dtype=torch.long)
    attention_mask = torch.zeros((b, length), dtype=torch.long)
    labels = torch.full((b, length), IGNORE, dtype=torch.long)
    query_mask = torch.zeros((b, length), dtype=torch.bool)
    evidence_mask = torch.zeros((b, length), dtype=torch.bool)
    for i, (ids, vis, pos, lab) in enumerate(zip(rows_ids, rows_vis, rows_pos, rows_lab, strict=True)):
        n = len(ids)
        input_ids[i, :n], visual_index[i, :n], position_ids[:, i, :n] = ids, vis, pos
        attention_mask[i, :n], labels[i, :n] = 1, lab
        start, end, evidence = spans[i]
        query_mask[i, start:end] = True
        evidence_mask[i, :n] = evidence
    grid = torch.tensor([[steps, h // PATCH, w // PATCH]] * b, dtype=torch.long)
    targets = evidence_targets = None
    if all(e.token_targets is not None for e in examples):
        targets = torch.from_numpy(np.concatenate([e.token_targets for e in examples])).long()  # type: ignore[misc]
    if all(e.evidence_targets is not None for e in examples):
        evidence_targets = torch.from_numpy(np.stack([e.evidence_targets for e in examples])).long()  # type: ignore[misc]
    return ToyBatch(
        pixel_values=pixels,
        grid_thw=grid,
        input_ids=input_ids,
        visual_index=visual_index,
        position_ids=position_ids,
        attention_mask=attention_mask,
        labels=labels,
        token_targets=targets,
        query_mask=query_mask,
        evidence=evidence_mask,
        evidence_targets=evidence_targets,
    )


@dataclass
class ToyForward:
    """The model's output over a batch, with the vision tokens it was given."""

    output: CausalLMOutputWithPast  # loss (answer tokens), logits (B, L, vocab), hidden states when asked
    features: torch.Tensor  # (B*N, D) every clip token from the vision tower, kept or not


def vision_features(model: Qwen2_5_VLForConditionalGeneration, batch: ToyBatch) -> torch.Tensor:
    """(B*N, D) the vision tower's merged tokens of every clip, in clip then raster order."""
    video = model.model.get_video_features(batch.pixel_values.to(model.dtype), batch.grid_thw)
    return torch.cat(video.pooler_output)


def input_embeddings(
    model: Qwen2_5_VLForConditionalGeneration, batch: ToyBatch, features: torch.Tensor
) -> torch.Tensor:
    """(B, L, D) input embeddings: text embeddings with the kept vision tokens scattered in."""
    embeds = model.get_input_embeddings()(batch.input_ids)
    visual = batch.visual_index >= 0
    return torch.where(visual[..., None], features[batch.visual_index.clamp(min=0)], embeds)


def forward(
    model: Qwen2_5_VLForConditionalGeneration, batch: ToyBatch, *, hidden_states: bool = False
) -> ToyForward:
    """The model's own forward (and its causal-LM loss on the answer tokens) over a batch."""
    features = vision_features(model, batch)
    output = model(
        inputs_embeds=input_embeddings(model, batch, features),
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        labels=batch.labels,
        use_cache=False,
        output_hidden_states=hidden_states,
    )
    return ToyForward(output=output, features=features)


def visual_rows(hidden: torch.Tensor, batch: ToyBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states (n, D) at the batch's visual positions, and the clip-token index (n,) of each."""
    visual = batch.visual_index >= 0
    return hidden[visual], batch.visual_index[visual]


def answers_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) bool: greedy decoding reproduces every answer token and the closing <|im_end|>.

    Teacher forcing is exact here: greedy output equals the target iff every target is the argmax given
    the targets before it.
    """
    target = labels[:, 1:]
    hit = (logits[:, :-1].argmax(-1) == target) | (target == IGNORE)
    return hit.all(dim=1)


def model_parameters(model: nn.Module) -> int:
    """Number of parameters of `model`."""
    return sum(p.numel() for p in model.parameters())
