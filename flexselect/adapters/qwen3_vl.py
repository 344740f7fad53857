"""Qwen3-VL: per-step `<t seconds><|vision_start|>pads<|vision_end|>` layout with deepstack features."""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import transformers

from flexselect.adapters.base import AdapterError, PreparedClip
from flexselect.adapters.qwen_common import (
    QwenVideoAdapter,
    padded,
    sampled_fps,
    unravel_grid,
    video_metadata,
)
from flexselect.types import Sequence, TokenKind, VisualTokens


class Qwen3VLAdapter(QwenVideoAdapter):
    """Qwen3-VL; the span holds every step's timestamp and vision start/end markers and its patches."""

    family = "qwen3_vl"
    model_types = ("qwen3_vl",)
    mrope = True
    rows_follow_time = True

    @functools.cached_property
    def video_placeholder(self) -> str:
        """What the span replaces in the rendered template, as the installed processor decides it.

        Releases differ: transformers 5.24 expands only the pad token, so the template's own vision start
        and end stay around the per-step layout; 5.25 (like 4.x) replaces all three. The processor is asked
        once, on a one-step probe video, and a layout this adapter does not build is refused by name.
        """
        start, pad, end = (
            self.processor.vision_start_token,
            self.processor.video_token,
            self.processor.vision_end_token,
        )
        wrapper = start + pad + end
        probe = self._probe_layout(wrapper)
        keeps_outer = len(probe.ids) >= 2 and probe.ids[0] == probe.start_id and probe.ids[-2] == probe.end_id
        span = probe.ids[1:-1] if keeps_outer else probe.ids
        if span != probe.expected:
            raise AdapterError(
                f"transformers {transformers.__version__} lays out a Qwen3-VL video step as "
                f"{self.tokenizer.decode(span)!r}, not as this adapter builds it "
                f"({self.tokenizer.decode(probe.expected)!r}); the adapter must follow that processor"
            )
        return pad if keeps_outer else wrapper

    def _probe_layout(self, wrapper: str) -> _LayoutProbe:
        """The processor's ids for `wrapper` expanded around a one-step video, and what `encode` builds."""
        tp = self.temporal_patch
        side = int(self.config.vision_config.patch_size) * int(self.config.vision_config.spatial_merge_size)
        frames = np.zeros((tp, side * 2, side * 2, 3), dtype=np.uint8)
        times = np.arange(tp, dtype=np.float64) / 2.0
        out = self.processor(
            text=[wrapper],
            videos=[frames],
            videos_kwargs={"video_metadata": [video_metadata(frames, times)], "do_sample_frames": False},
            return_tensors="pt",
        )
        steps, gh, gw = (int(v) for v in out["video_grid_thw"][0])
        merge = int(self.config.vision_config.spatial_merge_size)
        start_id = self.tokenizer.convert_tokens_to_ids(self.processor.vision_start_token)
        end_id = self.tokenizer.convert_tokens_to_ids(self.processor.vision_end_token)
        step_time = float(times.mean())
        expected = [
            *self._tokenize(f"<{step_time:.1f} seconds>").tolist(),
            start_id,
            *[int(self.config.video_token_id)] * (steps * (gh // merge) * (gw // merge)),
            end_id,
        ]
        return _LayoutProbe(out["input_ids"][0].tolist(), expected, start_id, end_id)

    def encode_prepared(self, prepared: list[PreparedClip]) -> list[VisualTokens]:
        if not prepared:
            return []
        out = self.video_features(prepared)
        return [
            self._tokens(p, patches, torch.stack([level[i] for level in out.deepstack_features]))
            for i, (p, patches) in enumerate(zip(prepared, out.pooler_output, strict=True))
        ]

    def _tokens(self, prepared: PreparedClip, patches: torch.Tensor, deep: torch.Tensor) -> VisualTokens:
        """The per-step span of one clip from its patch rows (steps*per_step, D) and deepstack rows
        (levels, steps*per_step, D)."""
        assert prepared.inputs is not None
        clip, tp = prepared.clip, self.temporal_patch
        times, frame_offset, time_origin, fps = clip.times, clip.frame_offset, clip.time_origin, clip.fps
        inputs = prepared.inputs
        merge = int(self.config.vision_config.spatial_merge_size)
        steps, gh, gw = (int(v) for v in inputs["video_grid_thw"][0])
        per_step = (gh // merge) * (gw // merge)
        grid = unravel_grid(steps, gh // merge, gw // merge)
        padded_times = padded(times.astype(np.float64), tp)
        step_times = (padded_times[0::tp] + padded_times[tp - 1 :: tp]) / 2  # mean over the temporal patch
        start_id = self.tokenizer.convert_tokens_to_ids(self.processor.vision_start_token)
        end_id = self.tokenizer.convert_tokens_to_ids(self.processor.vision_end_token)
        pieces: list[VisualTokens] = []
        for step in range(steps):
            before = torch.cat(
                [self._tokenize(f"<{step_times[step] - time_origin:.1f} seconds>"), torch.tensor([start_id])]
            )
            rows = slice(step * per_step, (step + 1) * per_step)
            frame = frame_offset + step * tp
            pieces.append(self._markers(before, frame, float(padded_times[step * tp]), deep.shape[0]))
            pieces.append(
                VisualTokens(
                    embeds=patches[rows],
                    frame=torch.full((per_step,), frame, dtype=torch.long),
                    time=torch.full((per_step,), float(padded_times[step * tp]), dtype=torch.float64),
                    grid=grid[rows] + torch.tensor([frame_offset // tp, 0, 0]),
                    kind=torch.full((per_step,), int(TokenKind.PATCH), dtype=torch.int8),
                    token_id=torch.full((per_step,), int(self.config.video_token_id), dtype=torch.long),
                    deepstack=deep[:, rows],
                )
            )
            pieces.append(
                self._markers(torch.tensor([end_id]), frame, float(padded_times[step * tp]), deep.shape[0])
            )
        tokens = VisualTokens.concat(pieces)
        tokens.seconds_per_step = tp / (fps or sampled_fps(times))
        return tokens

    def _markers(self, ids: torch.Tensor, frame: int, time: float, levels: int) -> VisualTokens:
        n = len(ids)
        embeds = self.embed_ids(ids)
        return VisualTokens(
            embeds=embeds,
            frame=torch.full((n,), frame, dtype=torch.long),
            time=torch.full((n,), time, dtype=torch.float64),
            grid=torch.full((n, 3), -1, dtype=torch.long),
            kind=torch.full((n,), int(TokenKind.MARKER), dtype=torch.int8),
            token_id=ids.long(),
            deepstack=embeds.new_zeros(levels, n, embeds.shape[1]),
        )

    def visual_positions(self, tokens: VisualTokens, *, compact: bool) -> tuple[torch.Tensor, int]:
        """Text-like markers advance by one; each run of patches is an image at the current position.

        Timestamps are text here, so there is no timeline to compact: positions follow the span's layout.
        """
        return qwen3_vl_offsets(tokens)

    def _text_model_kwargs(self, seq: Sequence) -> dict[str, Any]:
        if seq.deepstack is None:
            return {}
        return {"visual_pos_masks": seq.visual_mask, "deepstack_visual_embeds": list(seq.deepstack)}


@dataclass(frozen=True)
class _LayoutProbe:
    """Token ids the processor produced for a probe video, and the ids `encode` builds for it."""

    ids: list[int]
    expected: list[int]
    start_id: int
    end_id: int


def qwen3_vl_offsets(tokens: VisualTokens) -> tuple[torch.Tensor, int]:
    """Qwen3-VL M-RoPE offsets of a visual span and its extent: text-like markers advance by one, each run
    of patches is an image at the current position. The selector shares it."""
    is_patch = tokens.kind == TokenKind.PATCH
    offsets = torch.empty(3, len(tokens), dtype=torch.long)
    current = 0
    for start, end, patch in _runs(is_patch):
        if not patch:
            offsets[:, start:end] = torch.arange(current, current + end - start)
            current += end - start
            continue
        rows, cols = tokens.grid[start:end, 1], tokens.grid[start:end, 2]
        offsets[0, start:end] = current
        offsets[1, start:end] = current + rows
        offsets[2, start:end] = current + cols
        current += int(max(rows.max(), cols.max())) + 1
    return offsets, current


def _runs(mask: torch.Tensor) -> list[tuple[int, int, bool]]:
    """(start, end, value) of each maximal run of equal values in a 1-D bool tensor."""
    if len(mask) == 0:
        return []
    change = torch.nonzero(mask[1:] != mask[:-1]).flatten() + 1
    bounds = [0, *change.tolist(), len(mask)]
    return [(a, b, bool(mask[a])) for a, b in itertools.pairwise(bounds)]
