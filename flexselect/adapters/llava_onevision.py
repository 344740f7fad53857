"""LLaVA-OneVision (the transformers architecture of LLaVA-Video): pooled SigLIP tokens, one newline."""

from __future__ import annotations

import numpy as np
import torch

from flexselect.adapters.base import VideoLLMAdapter
from flexselect.types import TokenKind, VisualTokens


class LlavaOnevisionAdapter(VideoLLMAdapter):
    """LLaVA-OneVision / LLaVA-Video; 1-D RoPE; the span is every frame's pooled grid plus one newline."""

    family = "llava_onevision"
    model_types = ("llava_onevision",)

    @property
    def video_placeholder(self) -> str:
        return self.processor.video_token

    def processor_inputs(self, frames: np.ndarray, times: np.ndarray) -> dict[str, torch.Tensor]:
        self._check_frames(frames, times)
        out = self.processor.video_processor(videos=[frames], return_tensors="pt")
        return {"pixel_values_videos": out["pixel_values_videos"]}

    def encode(
        self,
        frames: np.ndarray,
        times: np.ndarray,
        *,
        frame_offset: int = 0,
        time_origin: float = 0.0,
        fps: float | None = None,
    ) -> VisualTokens:
        pixels = self.processor_inputs(frames, times)["pixel_values_videos"]
        n_frames = pixels.shape[1]
        with torch.no_grad():
            out = self.model.model.get_video_features(pixels.to(self.device, self.model.dtype))
        features = out.pooler_output[0]  # (frames*side*side + 1, D): the last row is the newline
        per_frame = (features.shape[0] - 1) // n_frames
        side = round(per_frame**0.5)
        f, r, c = torch.meshgrid(
            torch.arange(n_frames), torch.arange(side), torch.arange(side), indexing="ij"
        )
        grid = torch.stack([f.flatten(), r.flatten(), c.flatten()], dim=1) + torch.tensor(
            [frame_offset, 0, 0]
        )
        grid = torch.cat([grid, torch.full((1, 3), -1, dtype=torch.long)])
        frame = torch.cat([frame_offset + f.flatten(), torch.tensor([frame_offset + n_frames - 1])])
        times64 = torch.from_numpy(times.astype(np.float64))
        kind = torch.full((len(frame),), int(TokenKind.PATCH), dtype=torch.int8)
        kind[-1] = int(TokenKind.NEWLINE)
        return VisualTokens(
            embeds=features,
            frame=frame,
            time=times64[frame - frame_offset],
            grid=grid,
            kind=kind,
            token_id=torch.full((len(frame),), int(self.config.video_token_id), dtype=torch.long),
            seconds_per_step=1.0,
        )

    def visual_positions(self, tokens: VisualTokens, *, compact: bool) -> tuple[torch.Tensor, int]:
        """1-D RoPE: consecutive positions in span order."""
        return torch.arange(len(tokens)).view(1, -1), len(tokens)
