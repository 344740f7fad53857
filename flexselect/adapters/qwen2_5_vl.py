"""Qwen2.5-VL: temporal patches of two frames, 2x2 merged tokens, M-RoPE with time-scaled positions."""

from __future__ import annotations

import numpy as np
import torch

from flexselect.adapters.base import PreparedClip
from flexselect.adapters.qwen_common import (
    QwenVideoAdapter,
    padded,
    sampled_fps,
    unravel_grid,
)
from flexselect.types import TokenKind, VisualTokens


class Qwen25VLAdapter(QwenVideoAdapter):
    """Qwen2.5-VL; the span is the `<|video_pad|>` run (vision start/end stay in prefix/suffix)."""

    family = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    mrope = True

    @property
    def video_placeholder(self) -> str:
        return self.processor.video_token

    def encode_prepared(self, prepared: list[PreparedClip]) -> list[VisualTokens]:
        if not prepared:
            return []
        out = self.video_features(prepared)
        return [self._tokens(p, embeds) for p, embeds in zip(prepared, out.pooler_output, strict=True)]

    def _tokens(self, prepared: PreparedClip, embeds: torch.Tensor) -> VisualTokens:
        """The visual span of one clip from its rows of the tower's output (steps*rows*cols, D)."""
        assert prepared.inputs is not None
        clip, tp = prepared.clip, self.temporal_patch
        merge = int(self.config.vision_config.spatial_merge_size)
        steps, gh, gw = (int(v) for v in prepared.inputs["video_grid_thw"][0])
        grid = unravel_grid(steps, gh // merge, gw // merge)  # (N, 3) local (step, row, col)
        frame = clip.frame_offset + grid[:, 0] * tp
        step_times = torch.from_numpy(padded(clip.times.astype(np.float64), tp)[::tp].copy())
        grid[:, 0] += clip.frame_offset // tp
        n = embeds.shape[0]
        return VisualTokens(
            embeds=embeds,
            frame=frame,
            time=step_times[grid[:, 0] - clip.frame_offset // tp],
            grid=grid,
            kind=torch.full((n,), int(TokenKind.PATCH), dtype=torch.int8),
            token_id=torch.full((n,), int(self.config.video_token_id), dtype=torch.long),
            seconds_per_step=tp / (clip.fps or sampled_fps(clip.times)),
        )

    def visual_positions(self, tokens: VisualTokens, *, compact: bool) -> tuple[torch.Tensor, int]:
        """The original Qwen2.5-VL algorithm: t scaled by seconds per step, text resumes at max + 1."""
        return qwen2_5_vl_offsets(tokens, float(self.config.vision_config.tokens_per_second), compact=compact)


def qwen2_5_vl_offsets(
    tokens: VisualTokens, tokens_per_second: float, *, compact: bool
) -> tuple[torch.Tensor, int]:
    """Qwen2.5-VL M-RoPE offsets of a visual span and its extent: t scaled by seconds per step (time steps
    renumbered in order when `compact`), text resumes at max + 1. The selector shares it."""
    step = tokens.grid[:, 0]
    step = torch.unique(step, return_inverse=True)[1] if compact else step - step.min()
    interval = float(tokens_per_second) * torch.tensor(tokens.seconds_per_step, dtype=torch.float32)
    temporal = (step * interval).long()
    offsets = torch.stack([temporal, tokens.grid[:, 1], tokens.grid[:, 2]])
    return offsets, int(offsets.max()) + 1
